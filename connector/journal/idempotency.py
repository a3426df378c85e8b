"""Idempotency keys of the HTTP API: a retried request finds the event its first try made.

A client that sends `POST /api/v1/actions/{key}` with an `Idempotency-Key`
and loses the answer sends it again; the second request must not call the
action twice. The first claim of (scope, key) stores which event it made and
a hash of its body; a repeat within the time to live gets that row back and
the caller answers from it (or refuses the key, when the body differs: the
store returns the row either way and leaves the comparison to the caller).

The check and the insert are one write transaction, so two requests racing
with the same key get one winner, across threads and processes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from connector.journal.codec import utc_required
from connector.journal.connection import JournalConnection

__all__ = ["IDEMPOTENCY_TTL", "IdempotencyJournal", "IdempotencyRow"]

# How long a key is remembered: 24 hours, as Stripe and the IETF draft have it.
IDEMPOTENCY_TTL = 24 * 3600.0


@dataclass(frozen=True)
class IdempotencyRow:
    """The first request made with an idempotency key in its scope (a token, an action)."""

    scope: str
    key: str
    body_hash: str
    event_key: str
    created_at: datetime


class IdempotencyJournal(JournalConnection):
    """Idempotency keys: claimed once per scope, forgotten after their time to live."""

    def claim_idempotency(
        self, scope: str, key: str, body_hash: str, event_key: str, *, ttl: float
    ) -> tuple[IdempotencyRow, bool]:
        """Claim `key` in `scope` for a request: (the row, True) if this request is the first.

        An unexpired row (made less than `ttl` seconds ago) is returned as it is,
        with False, whatever `body_hash` and `event_key` were given now: the
        caller replays its answer or, if the hashes differ, refuses the reuse.
        No row, or an expired one, is replaced by the given values, with True.
        """
        if ttl < 0:
            raise ValueError(f"ttl must be 0 or more seconds (got {ttl})")
        for name, value in (
            ("scope", scope),
            ("key", key),
            ("body_hash", body_hash),
            ("event_key", event_key),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string (got {value!r})")
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM idempotency WHERE scope = ? AND key = ?"
                " AND created_at >= ?",
                (scope, key, now - ttl),
            ).fetchone()
            if row is not None:
                return _row(row), False
            db.execute(
                "INSERT INTO idempotency (scope, key, body_hash, event_key, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET"
                " body_hash = excluded.body_hash, event_key = excluded.event_key,"
                " created_at = excluded.created_at",
                (scope, key, body_hash, event_key, now),
            )
        return (
            IdempotencyRow(
                scope=scope,
                key=key,
                body_hash=body_hash,
                event_key=event_key,
                created_at=utc_required(now),
            ),
            True,
        )

    def prune_idempotency(self, *, older_than: float) -> int:
        """Forget keys claimed more than `older_than` seconds ago; returns how many."""
        if older_than < 0:
            raise ValueError(f"older_than must be 0 or more seconds (got {older_than})")
        cutoff = self._now() - older_than
        with self._transaction(write=True) as db:
            return db.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,)).rowcount


_COLUMNS = "scope, key, body_hash, event_key, created_at"


def _row(row: sqlite3.Row) -> IdempotencyRow:
    return IdempotencyRow(
        scope=row["scope"],
        key=row["key"],
        body_hash=row["body_hash"],
        event_key=row["event_key"],
        created_at=utc_required(row["created_at"]),
    )
