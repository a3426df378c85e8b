"""REST hooks and their outbox: which events are still to be delivered to which URL.

A hook (made by `POST /api/v1/hooks`) asks for the events of one trigger to
be POSTed to a URL. Delivery must survive a crash and a receiver that is down,
so it goes through an outbox: `record_events(..., deliveries=)` inserts one
`pending` row per (hook, new event) in the very transaction that records the
event, and the deliverer works through `due_deliveries`, marking each row
delivered, due again later (`delivery_retry`) or given up. A row is unique per
(hook, event): an event is never queued twice for one hook.

The hook's signing secret is not in the database: it is the 0600 secret file
`hook-<hook_id>` (`hook_secret`), deleted with the hook, so a copy of the
database or a dump of it never carries it.

An outbox row's `finished_at` is when its latest attempt ended (for a row
still pending after a failed attempt too); it is what a hook's
`last_attempt_at` shows, and what retention ages delivered and failed rows by.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from connector.journal.codec import encode_json, loads, utc, utc_required
from connector.journal.secret_files import SecretFiles
from connector.redaction import register_secret, scrub_text

__all__ = ["OUTBOX_STATES", "HookJournal", "HookRow", "OutboxRow", "insert_deliveries"]

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
OUTBOX_STATES: Final = frozenset({PENDING, DELIVERED, FAILED})

# Also part of a file name (`hook-<id>`), so no dots or slashes.
_HOOK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# An error worth reading fits in this; a receiver's whole error page does not belong here.
_MAX_ERROR = 1000


@dataclass(frozen=True)
class HookRow:
    """A REST hook, with how its deliveries went."""

    hook_id: str
    trigger: str
    target_url: str
    filter: dict[str, Any]
    token_name: str | None
    created_at: datetime
    pending: int
    delivered: int
    failed: int
    last_status: int | None  # of the latest attempt, None if it got no HTTP answer
    last_error: str | None  # of the latest attempt, None if it succeeded
    last_attempt_at: datetime | None


@dataclass(frozen=True)
class OutboxRow:
    """One event to deliver to one hook."""

    id: int
    hook_id: str
    event_key: str
    state: str  # pending, delivered, failed
    attempts: int
    next_attempt_at: float  # epoch seconds
    last_status: int | None
    last_error: str | None
    created_at: datetime


class HookJournal(SecretFiles):
    """Hooks, their secret files and their outbox rows."""

    def add_hook(
        self,
        hook_id: str,
        trigger: str,
        target_url: str,
        filter: Mapping[str, Any],
        token_name: str | None,
    ) -> HookRow:
        """Store a new hook; ValueError if `hook_id` is taken or not usable.

        Make its secret afterwards with `hook_secret`.
        """
        _check_hook_id(hook_id)
        for name, value in (("trigger", trigger), ("target_url", target_url)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} of hook {hook_id!r} must be a non-empty string")
        if not isinstance(filter, Mapping):
            raise ValueError(
                f"filter of hook {hook_id!r} must be an object (got {type(filter).__name__})"
            )
        encoded = encode_json(dict(filter))
        now = self._now()
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM hooks WHERE hook_id = ?", (hook_id,)).fetchone():
                raise ValueError(f"a hook {hook_id!r} exists already")
            db.execute(
                "INSERT INTO hooks (hook_id, trigger, target_url, filter, token_name, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (hook_id, trigger, target_url, encoded, token_name, now),
            )
            row = db.execute(f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE hook_id = ?", (hook_id,))
            return _hook_row(db, row.fetchone())

    def hooks(self) -> list[HookRow]:
        """Every hook, oldest first, with its delivery counts."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_HOOK_COLUMNS} FROM hooks ORDER BY created_at, hook_id"
            ).fetchall()
            return [_hook_row(db, row) for row in rows]

    def hook(self, hook_id: str) -> HookRow | None:
        """One hook with its delivery counts, or None."""
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE hook_id = ?", (hook_id,)
            ).fetchone()
            return _hook_row(db, row) if row is not None else None

    def remove_hook(self, hook_id: str) -> bool:
        """Delete a hook, its outbox rows and its secret file; False if there was no hook."""
        # One lock around the rows and the file: a `hook_secret` call cannot
        # slip in between and make the file again for a hook that is gone.
        with self._lock:
            with self._transaction(write=True) as db:
                db.execute("DELETE FROM outbox WHERE hook_id = ?", (hook_id,))
                found = db.execute("DELETE FROM hooks WHERE hook_id = ?", (hook_id,)).rowcount
            if _HOOK_ID.fullmatch(hook_id):
                self.remove_secret(_secret_name(hook_id))
        return found == 1

    def hook_secret(self, hook_id: str, factory: Callable[[], str]) -> str:
        """The hook's signing secret, made once by `factory()` (the file `hook-<id>`, 0600).

        ValueError if there is no such hook: a secret made for a removed hook
        would be a file nothing ever deletes. The value is registered as a
        secret, so it is scrubbed from everything the connector writes.
        """
        _check_hook_id(hook_id)
        with self._lock:
            with self._transaction(write=False) as db:
                exists = db.execute("SELECT 1 FROM hooks WHERE hook_id = ?", (hook_id,))
                if exists.fetchone() is None:
                    raise ValueError(f"no hook {hook_id!r}")
            value = self.secret(_secret_name(hook_id), factory)
        register_secret(value)
        return value

    # -- the outbox ---------------------------------------------------------------------

    def due_deliveries(self, *, now: float | None = None, limit: int = 50) -> list[OutboxRow]:
        """Pending rows whose next attempt is due by `now` (default: the clock), oldest first."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more (got {limit})")
        at = self._now() if now is None else now
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE state = ? AND next_attempt_at <= ?"
                " ORDER BY id LIMIT ?",
                (PENDING, at, limit),
            ).fetchall()
        return [_outbox_row(row) for row in rows]

    def next_delivery_at(self) -> float | None:
        """When the next pending row is due (epoch seconds), None if none is pending."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = ?", (PENDING,)
            ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def delivery_done(self, outbox_id: int, status: int) -> None:
        """The receiver took the event (HTTP `status`): the row is delivered."""
        self._attempted(outbox_id, DELIVERED, status, None, None)

    def delivery_retry(
        self, outbox_id: int, *, status: int | None, error: str, next_attempt_at: float
    ) -> None:
        """An attempt failed; the row stays pending, due again at `next_attempt_at`."""
        self._attempted(outbox_id, PENDING, status, error, next_attempt_at)

    def delivery_given_up(self, outbox_id: int, *, status: int | None, error: str) -> None:
        """An attempt failed and there will be no other: the row is failed."""
        self._attempted(outbox_id, FAILED, status, error, None)

    def deliveries(self, hook_id: str, *, limit: int = 20) -> list[OutboxRow]:
        """A hook's outbox rows, newest first."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more (got {limit})")
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE hook_id = ? ORDER BY id DESC LIMIT ?",
                (hook_id, limit),
            ).fetchall()
        return [_outbox_row(row) for row in rows]

    def _attempted(
        self,
        outbox_id: int,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float | None,
    ) -> None:
        """Journal one attempt on a pending row.

        A row that is gone is ignored: its hook was removed while the attempt
        was under way, and there is nothing left to record it on.
        """
        text = scrub_text(error)[:_MAX_ERROR] if error else None
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute("SELECT state FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
            if row is None:
                return
            if row[0] != PENDING:
                raise ValueError(f"outbox row {outbox_id} is already {row[0]}")
            db.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, last_status = ?,"
                " last_error = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
                " finished_at = ? WHERE id = ?",
                (state, status, text, next_attempt_at, now, outbox_id),
            )


def insert_deliveries(
    db: sqlite3.Connection, event_key: str, hook_ids: Sequence[str], now: float
) -> None:
    """Queue a new event for these hooks inside the caller's transaction.

    A hook that is gone (removed since the caller chose it) is skipped, and so
    is a hook listed twice.
    """
    for hook_id in hook_ids:
        db.execute(
            "INSERT OR IGNORE INTO outbox (hook_id, event_key, state, next_attempt_at,"
            " created_at) SELECT hook_id, ?, ?, ?, ? FROM hooks WHERE hook_id = ?",
            (event_key, PENDING, now, now, hook_id),
        )


def _check_hook_id(hook_id: str) -> None:
    if not isinstance(hook_id, str) or not _HOOK_ID.fullmatch(hook_id):
        raise ValueError(f"a hook id is 1 to 64 letters, digits, '_' or '-' (got {hook_id!r})")


def _secret_name(hook_id: str) -> str:
    return f"hook-{hook_id}"


_HOOK_COLUMNS = "hook_id, trigger, target_url, filter, token_name, created_at"
_OUTBOX_COLUMNS = (
    "id, hook_id, event_key, state, attempts, next_attempt_at, last_status, last_error, created_at"
)


def _hook_row(db: sqlite3.Connection, row: sqlite3.Row) -> HookRow:
    hook_id = row["hook_id"]
    counts = dict.fromkeys(OUTBOX_STATES, 0)
    for state, count in db.execute(
        "SELECT state, count(*) FROM outbox WHERE hook_id = ? GROUP BY state", (hook_id,)
    ):
        counts[state] = int(count)
    last = db.execute(
        "SELECT last_status, last_error, finished_at FROM outbox"
        " WHERE hook_id = ? AND attempts > 0 ORDER BY finished_at DESC, id DESC LIMIT 1",
        (hook_id,),
    ).fetchone()
    return HookRow(
        hook_id=hook_id,
        trigger=row["trigger"],
        target_url=row["target_url"],
        filter=loads(row["filter"]) or {},
        token_name=row["token_name"],
        created_at=utc_required(row["created_at"]),
        pending=counts[PENDING],
        delivered=counts[DELIVERED],
        failed=counts[FAILED],
        last_status=last["last_status"] if last is not None else None,
        last_error=last["last_error"] if last is not None else None,
        last_attempt_at=utc(last["finished_at"]) if last is not None else None,
    )


def _outbox_row(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        hook_id=row["hook_id"],
        event_key=row["event_key"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=float(row["next_attempt_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=utc_required(row["created_at"]),
    )
