"""The durable journal: events, runs, action steps and poller state, in SQLite (WAL).

The connector promises that every terminal generation fires its trigger exactly
once across webhooks, polling, restarts and crashes, and that no action step is
repeated or skipped. This module is where that promise is kept:

* `record_event` is the single door for events. The event key is the primary
  key, so a webhook and a poll that see the same completion race to one insert
  and exactly one of them gets True (across threads and processes alike).
  Passing `runs=` starts the matching automations' runs in the same
  transaction, so a crash can never leave an event recorded but not dispatched.
* A run is unique per (event key, automation id): the same event never starts
  the same automation twice. `ftconnect replay` is the one deliberate exception
  (`reset_run_for_replay`), which marks the old run `replayed`.
* Every action step is journalled before it starts (`step_started`, status
  `running`) and after it ends. After a crash, `unfinished_runs` shows each step
  that was running: its outcome is unknown, and `record_intent` (written before
  a create is sent) is what lets the runtime reconcile it instead of guessing.

Durability: the database runs in WAL mode with `synchronous=NORMAL`. A commit
has reached the operating system when a call returns, so it survives the
process being killed (SIGKILL, OOM, a crash), which is the failure this module
is tested against. A power loss or kernel crash may lose the last few
transactions (never corrupt the file); `durability="full"` switches to
`synchronous=FULL`, which fsyncs every commit at some cost in throughput.

Concurrency: one connection per `Store`, shared by threads under a lock (each
call is a short transaction). Other processes (the CLI reading `events` while
`ftconnect run` writes) may open the same file; writers wait up to
`busy_timeout` seconds for each other.

Files: the state directory is created 0700 and the database 0600 (SQLite gives
its `-wal` and `-shm` files the database's permissions). Secrets such as the
webhook token live in separate 0600 files beside it, never in the database.

Errors: a database that is corrupt, locked for too long, unwritable or made by
a newer connector raises `StoreError`, naming the file and what to do. Misuse
(finishing a step that never started, replaying a running run) raises
`ValueError`.

Values given as JSON (event data, step outputs, cursors, intents) are encoded
leniently so journalling an outcome never fails after the action has already
happened: datetimes become ISO 8601 strings, sets and tuples lists, pydantic
models their JSON form, enums their value, anything else `str()`. They come
back as those JSON types.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from pydantic import BaseModel

from connector.events import Event, generation_dict
from connector.providers.finetuning.models import Generation, iso_utc
from connector.redaction import scrub, scrub_text

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
DURABILITY: Final = {"normal": "NORMAL", "full": "FULL"}
RUN_STATUSES: Final = frozenset({"succeeded", "failed", "skipped"})
STEP_STATUSES: Final = frozenset({"succeeded", "failed", "skipped"})
RUNNING: Final = "running"
REPLAYED: Final = "replayed"

_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# Each entry brings the schema from version i to i + 1. Never edit a released
# entry: append a new one, so every existing database walks the same path.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE events (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            provider TEXT NOT NULL,
            source TEXT NOT NULL,
            generation TEXT,
            data TEXT NOT NULL,
            submitted_by_connector INTEGER NOT NULL,
            occurred_at REAL NOT NULL,
            received_at REAL NOT NULL
        )
        """,
        "CREATE INDEX events_by_time ON events (received_at)",
        "CREATE INDEX events_by_kind ON events (kind, received_at)",
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            event_key TEXT NOT NULL REFERENCES events (key),
            automation_id TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            replay_of TEXT,
            started_at REAL NOT NULL,
            finished_at REAL
        )
        """,
        # A replayed run no longer holds its (event, automation) slot: its replay does.
        """
        CREATE UNIQUE INDEX runs_once ON runs (event_key, automation_id)
        WHERE status <> 'replayed'
        """,
        "CREATE INDEX runs_by_status ON runs (status, started_at)",
        "CREATE INDEX runs_by_time ON runs (started_at)",
        "CREATE INDEX runs_by_replay ON runs (replay_of)",
        """
        CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            step_index INTEGER NOT NULL,
            step_id TEXT NOT NULL,
            action TEXT NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            options TEXT,
            output TEXT,
            error TEXT,
            started_at REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (run_id, step_index)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE intents (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            step_index INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (run_id, step_index)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        # No foreign key to runs: a submission outlives the pruning of its run.
        """
        CREATE TABLE pending (
            provider TEXT NOT NULL,
            generation_id TEXT NOT NULL,
            created_at REAL,
            run_id TEXT,
            added_at REAL NOT NULL,
            PRIMARY KEY (provider, generation_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE submitted (
            provider TEXT NOT NULL,
            generation_id TEXT NOT NULL,
            run_id TEXT,
            submitted_at REAL NOT NULL,
            PRIMARY KEY (provider, generation_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX submitted_by_time ON submitted (submitted_at)",
    ),
)


class StoreError(Exception):
    """The state database cannot be used; the message names the file and what to do."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


# -- rows -------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None


@dataclass(frozen=True)
class EventRow:
    """One recorded event, as `ftconnect events` lists it."""

    key: str
    kind: str
    provider: str
    source: str
    generation: dict[str, Any] | None  # the wire JSON, with "provider"
    data: dict[str, Any]
    submitted_by_connector: bool
    occurred_at: datetime
    received_at: datetime

    def to_event(self) -> Event:
        """The `Event` again (what a resumed run's templates see as `trigger`)."""
        generation = (
            Generation.model_validate(self.generation) if self.generation is not None else None
        )
        return Event(
            kind=self.kind,
            key=self.key,
            provider=self.provider,
            generation=generation,
            data=dict(self.data),
            source=self.source,
            submitted_by_connector=self.submitted_by_connector,
            occurred_at=self.occurred_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect events --json`."""
        return {
            "key": self.key,
            "kind": self.kind,
            "provider": self.provider,
            "source": self.source,
            "generation": self.generation,
            "data": self.data,
            "submitted_by_connector": self.submitted_by_connector,
            "occurred_at": _iso(self.occurred_at),
            "received_at": _iso(self.received_at),
        }


@dataclass(frozen=True)
class StepRow:
    """One action step of a run; `attempt` counts how many times it was started."""

    run_id: str
    step_index: int
    step_id: str
    action: str
    status: str  # running (outcome unknown after a crash), succeeded, failed, skipped
    attempt: int
    options: Any  # the rendered options as given to step_started (parsed JSON), or None
    output: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect runs --json`."""
        return {
            "run_id": self.run_id,
            "step_index": self.step_index,
            "step_id": self.step_id,
            "action": self.action,
            "status": self.status,
            "attempt": self.attempt,
            "options": self.options,
            "output": self.output,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class RunRow:
    """One automation run for one event, with its steps in order."""

    run_id: str
    event_key: str
    automation_id: str
    status: str  # running, succeeded, failed, skipped, replayed
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    replay_of: str | None = None
    steps: list[StepRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect runs --json`."""
        return {
            "run_id": self.run_id,
            "event_key": self.event_key,
            "automation_id": self.automation_id,
            "status": self.status,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "replay_of": self.replay_of,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True)
class PendingRow:
    """A generation this connector submitted that has not ended yet."""

    provider: str
    generation_id: str
    created_at: datetime | None
    run_id: str | None
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "provider": self.provider,
            "generation_id": self.generation_id,
            "created_at": _iso(self.created_at),
            "run_id": self.run_id,
            "added_at": _iso(self.added_at),
        }


@dataclass(frozen=True)
class PruneResult:
    """What `prune` deleted, and the file size after it."""

    events: int
    runs: int
    steps: int
    submitted: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "events": self.events,
            "runs": self.runs,
            "steps": self.steps,
            "submitted": self.submitted,
            "size_bytes": self.size_bytes,
        }


# -- encoding ---------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    # Lenient on purpose (see the module docstring): a step's outcome must be
    # journalled even if an action returned something JSON does not know.
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)


def _plain(value: Any) -> Any:
    """`value` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return _plain(_json_default(value))


def encode_json(value: Any) -> str:
    """JSON text as the store writes it (lenient; see the module docstring).

    Strict JSON (a non-finite float becomes null, so every reader of the journal
    gets standard JSON), and every registered secret is removed first: the
    journal is read by `ftconnect runs/events --json` and the web page, and a
    secret written once would stay in the file's free pages.

    For callers building `options_json` for `step_started` the same way.
    """
    return json.dumps(scrub(_plain(value)), separators=(",", ":"), allow_nan=False)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _epoch(value: datetime) -> float:
    # Naive datetimes are UTC, as everywhere else in the connector.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _utc(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _utc_required(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


# -- the store --------------------------------------------------------------------------


class Store:
    """The connector's journal in `<state_dir>/state.db`; see the module docstring.

    Open with `Store.open(state_dir)`; close with `close()` or use it as a
    context manager. Every method is thread-safe.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        clock: Callable[[], float],
        busy_timeout: float,
    ) -> None:
        # Use Store.open(): it prepares the directory, the file and the schema.
        self._conn: sqlite3.Connection | None = connection
        self.path = path
        self.state_dir = path.parent
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path | str,
        *,
        filename: str = "state.db",
        durability: str = "normal",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
    ) -> Store:
        """Open (creating if needed) the journal in `state_dir`, migrated to the current schema.

        `durability` is "normal" (survives process crashes; a power loss may
        lose the last transactions) or "full" (fsync on every commit).
        """
        if durability not in DURABILITY:
            raise ValueError(f"durability must be 'normal' or 'full' (got {durability!r})")
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name (got {filename!r})")
        directory = Path(state_dir).expanduser()
        path = directory / filename
        _prepare_directory(directory)
        _prepare_file(path)
        try:
            connection = sqlite3.connect(
                path,
                timeout=busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # shared by threads under Store._lock
            )
        except sqlite3.Error as err:
            raise _translate(err, path, busy_timeout) from err
        try:
            _configure(connection, durability, busy_timeout)
            _migrate(connection, path)
        except sqlite3.Error as err:
            connection.close()
            raise _translate(err, path, busy_timeout) from err
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock=clock, busy_timeout=busy_timeout)

    def close(self) -> None:
        """Close the connection; the last one to close checkpoints the WAL into the file."""
        with self._lock:
            connection, self._conn = self._conn, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error as err:
                raise _translate(err, self.path, self._busy_timeout) from err

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    # -- transactions -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the state database {self.path} is closed", path=self.path)
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite errors become StoreError.

        Writes take the write lock up front (BEGIN IMMEDIATE) so a check and
        the insert that depends on it cannot interleave with another process;
        reads get one consistent snapshot for their several queries.
        """
        with self._lock:
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as err:
                raise _translate(err, self.path, self._busy_timeout) from err
            try:
                yield connection
            except BaseException as exc:
                self._rollback(connection, exc)
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc, self.path, self._busy_timeout) from exc
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback(connection, err)
                raise _translate(err, self.path, self._busy_timeout) from err

    @staticmethod
    def _rollback(connection: sqlite3.Connection, cause: BaseException) -> None:
        if not connection.in_transaction:
            return
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error as err:
            # The original error is the one to raise; keep this one visible on it.
            cause.add_note(f"rolling back also failed: {err}")

    def _now(self) -> float:
        return float(self._clock())

    # -- events -------------------------------------------------------------------------

    def record_event(self, event: Event, *, runs: Iterable[tuple[str, str]] = ()) -> bool:
        """Record an event once: True if it is new, False if its key was seen before.

        `runs` are (run_id, automation_id) pairs to start in the same
        transaction when the event is new, so a crash between recording the
        event and starting its runs cannot lose them.
        """
        return self.record_events([(event, list(runs))])[0]

    def record_events(
        self, entries: Sequence[tuple[Event, Sequence[tuple[str, str]]]]
    ) -> list[bool]:
        """Record several events, each with its runs, in ONE transaction (group commit).

        Returns, per entry, whether the event was new. A terminal generation's
        pending mark is cleared in the same transaction. One commit for many
        events is what lets a busy listener keep up without giving up durability.
        """
        rows = []
        for event, _runs in entries:
            generation: str | None = None
            if event.generation is not None:
                generation = encode_json(generation_dict(event.generation))
            rows.append(
                (
                    event.key,
                    event.kind,
                    event.provider,
                    event.source,
                    generation,
                    encode_json(dict(event.data)),
                    int(event.submitted_by_connector),
                    _epoch(event.occurred_at),
                )
            )
        now = self._now()
        results: list[bool] = []
        with self._transaction(write=True) as db:
            for (event, runs), row in zip(entries, rows, strict=True):
                cursor = db.execute(
                    "INSERT INTO events (key, kind, provider, source, generation, data,"
                    " submitted_by_connector, occurred_at, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    (*row, now),
                )
                if cursor.rowcount != 1:
                    results.append(False)
                    continue
                for run_id, automation_id in runs:
                    if not self._start_run(db, run_id, event.key, automation_id, now):
                        raise ValueError(f"automation {automation_id!r} listed twice in runs=")
                if event.generation is not None and event.generation.is_terminal:
                    db.execute(
                        "DELETE FROM pending WHERE provider = ? AND generation_id = ?",
                        (event.generation.provider, event.generation.id),
                    )
                results.append(True)
        return results

    def has_event(self, key: str) -> bool:
        """Whether an event with this key was recorded (and not pruned)."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone()
        return row is not None

    def event_row(self, key: str) -> EventRow | None:
        """The recorded event with this key, as a row."""
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE key = ?", (key,))
            found = row.fetchone()
        return _event_row(found) if found is not None else None

    def load_event(self, key: str) -> Event | None:
        """The recorded event with this key, rebuilt as an `Event`."""
        row = self.event_row(key)
        return row.to_event() if row is not None else None

    def events(self, *, limit: int = 50, kind: str | None = None) -> list[EventRow]:
        """The latest events, newest first; only those of `kind` if given."""
        query = f"SELECT {_EVENT_COLUMNS} FROM events"
        params: list[Any] = []
        if kind is not None:
            query += " WHERE kind = ?"
            params.append(kind)
        query += " ORDER BY received_at DESC, rowid DESC LIMIT ?"
        params.append(max(0, limit))
        with self._transaction(write=False) as db:
            rows = db.execute(query, params).fetchall()
        return [_event_row(row) for row in rows]

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, run_id: str, event_key: str, automation_id: str) -> bool:
        """Start a run of an automation for a recorded event (status running).

        False if a run for (event_key, automation_id) exists already: the same
        event never starts the same automation twice.
        """
        now = self._now()
        with self._transaction(write=True) as db:
            return self._start_run(db, run_id, event_key, automation_id, now)

    def _start_run(
        self, db: sqlite3.Connection, run_id: str, event_key: str, automation_id: str, now: float
    ) -> bool:
        if db.execute("SELECT 1 FROM events WHERE key = ?", (event_key,)).fetchone() is None:
            raise ValueError(f"no event {event_key!r} is recorded; record_event it first")
        taken = db.execute(
            "SELECT 1 FROM runs WHERE event_key = ? AND automation_id = ? AND status <> ?",
            (event_key, automation_id, REPLAYED),
        ).fetchone()
        if taken is not None:
            return False
        if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None:
            raise ValueError(f"run id {run_id!r} is already used by another run")
        db.execute(
            "INSERT INTO runs (run_id, event_key, automation_id, status, started_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (run_id, event_key, automation_id, RUNNING, now),
        )
        return True

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """End a running run: succeeded, failed or skipped."""
        if status not in RUN_STATUSES:
            raise ValueError(f"a run ends succeeded, failed or skipped (got {status!r})")
        now = self._now()
        with self._transaction(write=True) as db:
            current = self._run_status(db, run_id)
            if current != RUNNING:
                raise ValueError(f"run {run_id!r} is already {current}")
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE run_id = ?",
                (status, scrub_text(error) if error else error, now, run_id),
            )

    @staticmethod
    def _run_status(db: sqlite3.Connection, run_id: str) -> str:
        row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise ValueError(f"no run {run_id!r}")
        return str(row[0])

    def step_started(
        self,
        run_id: str,
        step_index: int,
        step_id: str,
        action: str,
        options_json: str | None = None,
    ) -> int:
        """Journal that a step is about to run; returns its attempt number (1, 2, ...).

        A step found `running` (a crash left its outcome unknown) or `failed`
        starts a new attempt. Starting a step that already succeeded is refused:
        that would repeat it; its recorded output is the result.
        """
        if step_index < 0:
            raise ValueError(f"step_index must be 0 or more (got {step_index})")
        if options_json is not None:
            try:
                options = json.loads(options_json)
            except ValueError as err:
                # Refused now rather than breaking `runs --json` later.
                raise ValueError(f"options_json of step {step_id!r} is not JSON: {err}") from None
            # Re-encoded: strict JSON, and no secret (a signing secret among the options).
            options_json = encode_json(options)
        now = self._now()
        with self._transaction(write=True) as db:
            status = self._run_status(db, run_id)
            if status != RUNNING:
                raise ValueError(f"run {run_id!r} is {status}; its steps cannot start")
            row = db.execute(
                "SELECT status, attempt FROM steps WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO steps (run_id, step_index, step_id, action, status, attempt,"
                    " options, started_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    (run_id, step_index, step_id, action, RUNNING, options_json, now),
                )
                return 1
            if row[0] == "succeeded":
                raise ValueError(
                    f"step {step_index} of run {run_id!r} already succeeded; "
                    "use its recorded output instead of running it again"
                )
            attempt = int(row[1]) + 1
            db.execute(
                "UPDATE steps SET step_id = ?, action = ?, status = ?, attempt = ?, options = ?,"
                " output = NULL, error = NULL, started_at = ?, finished_at = NULL"
                " WHERE run_id = ? AND step_index = ?",
                (step_id, action, RUNNING, attempt, options_json, now, run_id, step_index),
            )
            return attempt

    def step_finished(
        self,
        run_id: str,
        step_index: int,
        status: str,
        output: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Journal a running step's outcome: succeeded (with its output), failed or skipped."""
        if status not in STEP_STATUSES:
            raise ValueError(f"a step ends succeeded, failed or skipped (got {status!r})")
        encoded = encode_json(dict(output)) if output is not None else None
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT status FROM steps WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
            if row is None:
                raise ValueError(f"step {step_index} of run {run_id!r} was never started")
            if row[0] != RUNNING:
                raise ValueError(f"step {step_index} of run {run_id!r} is already {row[0]}")
            db.execute(
                "UPDATE steps SET status = ?, output = ?, error = ?, finished_at = ?"
                " WHERE run_id = ? AND step_index = ?",
                (status, encoded, scrub_text(error) if error else error, now, run_id, step_index),
            )

    def run(self, run_id: str) -> RunRow | None:
        """One run with its steps, or None."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            found = self._with_steps(db, rows.fetchall())
        return found[0] if found else None

    def runs(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        automation_id: str | None = None,
    ) -> list[RunRow]:
        """The latest runs with their steps, newest first, optionally filtered."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        if automation_id is not None:
            conditions.append("automation_id = ?")
            params.append(automation_id)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        params.append(max(0, limit))
        with self._transaction(write=False) as db:
            return self._with_steps(db, db.execute(query, params).fetchall())

    def unfinished_runs(self) -> list[RunRow]:
        """Runs still `running` (to resume on start), oldest first, each with its steps.

        A step `running` here was interrupted: its outcome is unknown (see
        `intent`); a `succeeded` one is done and carries its output. A run
        made by `reset_run_for_replay` shows here with no steps.
        """
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY started_at, rowid",
                (RUNNING,),
            ).fetchall()
            return self._with_steps(db, rows)

    def running_run_ids(self) -> list[str]:
        """The ids of runs still `running`, oldest first (cheap: no steps are read)."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT run_id FROM runs WHERE status = ? ORDER BY started_at, rowid", (RUNNING,)
            ).fetchall()
        return [row[0] for row in rows]

    def reset_run_for_replay(self, run_id: str) -> str:
        """`ftconnect replay RUN_ID`: a new run (new id) for the same event and automation.

        The old run is marked `replayed` (it keeps its steps, for the record)
        and the new one, status running with no steps, takes its place; it is
        returned by `unfinished_runs`. Returns the new run id.
        """
        new_id = uuid.uuid4().hex[:12]
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT status, event_key, automation_id FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no run {run_id!r}")
            status, event_key, automation_id = row
            if status == RUNNING:
                raise ValueError(
                    f"run {run_id!r} is still running (or will be resumed on start); "
                    "replay it once it has finished"
                )
            if status == REPLAYED:
                newer = db.execute(
                    "SELECT run_id FROM runs WHERE replay_of = ?", (run_id,)
                ).fetchone()
                where = f" as {newer[0]!r}; replay that one" if newer is not None else ""
                raise ValueError(f"run {run_id!r} was already replayed{where}")
            # Mark the old one first: the unique index only ignores replayed runs.
            db.execute(
                "UPDATE runs SET status = ?, finished_at = COALESCE(finished_at, ?)"
                " WHERE run_id = ?",
                (REPLAYED, now, run_id),
            )
            db.execute(
                "INSERT INTO runs (run_id, event_key, automation_id, status, replay_of, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, event_key, automation_id, RUNNING, run_id, now),
            )
        return new_id

    @staticmethod
    def _with_steps(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[RunRow]:
        if not rows:
            return []
        ids = [row["run_id"] for row in rows]
        steps: dict[str, list[StepRow]] = {run_id: [] for run_id in ids}
        # Chunked to stay under SQLite's limit on bound parameters.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for step in db.execute(
                f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id IN ({marks})"
                " ORDER BY run_id, step_index",
                chunk,
            ):
                steps[step["run_id"]].append(_step_row(step))
        return [_run_row(row, steps[row["run_id"]]) for row in rows]

    # -- cursors ------------------------------------------------------------------------

    def get_cursor(self, name: str) -> Any | None:
        """A JSON value saved under `name` (poller state and the like), or None."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return _loads(row[0]) if row is not None else None

    def set_cursor(self, name: str, value: Any) -> None:
        """Save a JSON value under `name`, replacing the previous one."""
        encoded = encode_json(value)
        now = self._now()
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (name, encoded, now),
            )

    # -- submissions --------------------------------------------------------------------

    def add_pending(
        self,
        provider: str,
        generation_id: str,
        created_at: datetime | None,
        run_id: str | None = None,
    ) -> None:
        """A generation this connector submitted is in progress (also marks it submitted)."""
        created = _epoch(created_at) if created_at is not None else None
        now = self._now()
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO pending (provider, generation_id, created_at, run_id, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, generation_id) DO UPDATE SET"
                " created_at = COALESCE(excluded.created_at, pending.created_at),"
                " run_id = COALESCE(excluded.run_id, pending.run_id)",
                (provider, generation_id, created, run_id, now),
            )
            db.execute(
                "INSERT INTO submitted (provider, generation_id, run_id, submitted_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (provider, generation_id) DO NOTHING",
                (provider, generation_id, run_id, now),
            )

    def remove_pending(self, provider: str, generation_id: str) -> None:
        """The generation ended; it stays marked as submitted until retention."""
        with self._transaction(write=True) as db:
            db.execute(
                "DELETE FROM pending WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            )

    def pending(self, provider: str | None = None) -> list[PendingRow]:
        """Submitted generations not yet ended, in the order they were added."""
        query = (
            "SELECT provider, generation_id, created_at, run_id, added_at FROM pending"
            + (" WHERE provider = ?" if provider is not None else "")
            + " ORDER BY added_at, provider, generation_id"
        )
        params = (provider,) if provider is not None else ()
        with self._transaction(write=False) as db:
            rows = db.execute(query, params).fetchall()
        return [
            PendingRow(
                provider=row["provider"],
                generation_id=row["generation_id"],
                created_at=_utc(row["created_at"]),
                run_id=row["run_id"],
                added_at=_utc_required(row["added_at"]),
            )
            for row in rows
        ]

    def submitted_by(self, provider: str, generation_id: str) -> str | None:
        """The run a submitted generation belongs to ("" when no run is recorded), or None."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT run_id FROM submitted WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            ).fetchone()
        return None if row is None else (row[0] or "")

    def is_submitted(self, provider: str, generation_id: str) -> bool:
        """Whether this connector submitted the generation (kept after it ends, until pruned)."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT 1 FROM submitted WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            ).fetchone()
        return row is not None

    def record_intent(self, run_id: str, step_index: int, fingerprint: Mapping[str, Any]) -> None:
        """Before a create is sent: what it will ask for (tags, parameters, seed, time).

        If the process dies before the answer is journalled, the runtime can
        look for a generation matching this fingerprint instead of creating a
        second one. A new attempt of the step replaces the intent.
        """
        encoded = encode_json(dict(fingerprint))
        now = self._now()
        with self._transaction(write=True) as db:
            self._run_status(db, run_id)
            db.execute(
                "INSERT INTO intents (run_id, step_index, fingerprint, recorded_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (run_id, step_index) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at",
                (run_id, step_index, encoded, now),
            )

    def intent(self, run_id: str, step_index: int) -> Mapping[str, Any] | None:
        """The fingerprint recorded for a step, or None."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT fingerprint FROM intents WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
        if row is None:
            return None
        value = _loads(row[0])
        return value if isinstance(value, dict) else None

    # -- retention ----------------------------------------------------------------------

    def prune(self, *, older_than: float) -> PruneResult:
        """Delete what is older than `older_than` seconds, then give the space back.

        Deletes finished runs (and their steps and intents) that ended before
        the cut-off, events received before it that no run refers to any more
        (so never one with an unfinished run), and submitted markers of
        generations no longer pending. Cursors and pending rows stay.

        A pruned event key is forgotten: retention must exceed how far back
        the poller and webhooks can still report a generation.
        """
        if older_than < 0:
            raise ValueError(f"older_than must be 0 or more seconds (got {older_than})")
        cutoff = self._now() - older_than
        old_runs = (
            "SELECT run_id FROM runs WHERE status <> 'running'"
            " AND COALESCE(finished_at, started_at) < :cutoff"
        )
        with self._transaction(write=True) as db:
            # Steps and intents explicitly (not by cascade) so the counts are right.
            steps = db.execute(
                f"DELETE FROM steps WHERE run_id IN ({old_runs})", {"cutoff": cutoff}
            ).rowcount
            db.execute(f"DELETE FROM intents WHERE run_id IN ({old_runs})", {"cutoff": cutoff})
            runs = db.execute(
                "DELETE FROM runs WHERE status <> 'running'"
                " AND COALESCE(finished_at, started_at) < :cutoff",
                {"cutoff": cutoff},
            ).rowcount
            events = db.execute(
                "DELETE FROM events WHERE received_at < :cutoff"
                " AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.event_key = events.key)",
                {"cutoff": cutoff},
            ).rowcount
            submitted = db.execute(
                "DELETE FROM submitted WHERE submitted_at < :cutoff AND NOT EXISTS"
                " (SELECT 1 FROM pending WHERE pending.provider = submitted.provider"
                " AND pending.generation_id = submitted.generation_id)",
                {"cutoff": cutoff},
            ).rowcount
        self._compact()
        return PruneResult(
            events=events,
            runs=runs,
            steps=steps,
            submitted=submitted,
            size_bytes=self.size_bytes(),
        )

    def defer_checkpoints(self) -> None:
        """Stop copying the WAL into the database inside commits; call `checkpoint()`.

        SQLite's automatic checkpoint runs inside whichever commit crosses its
        threshold: a stall of milliseconds on the event loop every few dozen
        events. A long-running process turns it off and checkpoints from a
        worker thread instead.
        """
        with self._lock:
            self._connection().execute("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking writers (PASSIVE).

        Uses a connection of its own, so a worker thread can run it while the
        event loop keeps writing through the main one.
        """
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as err:
            _LOGGER.warning("checkpoint of %s postponed: %s", self.path, err)
        finally:
            connection.close()

    def _compact(self) -> None:
        with self._transaction(write=True) as db:
            # Python's sqlite3 steps a pragma that returns no columns only once,
            # and each step of incremental_vacuum frees one page: loop, inside
            # one transaction so it costs one commit, bounded by the free count.
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
            for _ in range(free):
                db.execute("PRAGMA incremental_vacuum")
                left = int(db.execute("PRAGMA freelist_count").fetchone()[0])
                if left == 0 or left >= free:
                    break
                free = left
        with self._lock:
            connection = self._connection()
            try:
                # TRUNCATE copies the WAL into the file (which shrinks by the pages
                # the vacuum freed) and empties the WAL. A reader in another
                # process may keep it from completing; the next prune catches up.
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as err:
                raise _translate(err, self.path, self._busy_timeout) from err

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):  # no WAL after a clean close
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def check(self) -> list[str]:
        """SQLite's quick integrity check: an empty list when the file is sound."""
        with self._transaction(write=False) as db:
            rows = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    # -- secrets ------------------------------------------------------------------------

    def secret(self, name: str, factory: Callable[[], str]) -> str:
        """A secret kept in its own 0600 file `<state_dir>/<name>`, made once by `factory()`.

        Kept out of the database so `events`/`runs` dumps and database copies
        never carry it. Creation is atomic and race-free across processes: the
        value is written to a private temporary file and hard-linked into
        place, so a reader sees either no file or the whole secret.
        """
        if not _SECRET_NAME.fullmatch(name) or name.startswith(self.path.name):
            raise ValueError(f"not a usable secret file name: {name!r}")
        target = self.state_dir / name
        with self._lock:
            existing = _read_secret(target)
            if existing is not None:
                return existing
            value = factory()
            if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
                raise ValueError(f"the factory for secret {name!r} must return one non-empty line")
            value = value.strip()
            temporary = self.state_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(value + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, target)
                except FileExistsError:
                    # Another process won the race: its secret is the secret.
                    winner = _read_secret(target)
                    if winner is None:
                        raise StoreError(
                            f"the secret file {target} appeared but could not be read",
                            path=target,
                        ) from None
                    return winner
            except OSError as err:
                raise StoreError(
                    f"cannot write the secret file {target}: {err.strerror or err}; "
                    f"check the permissions of {self.state_dir}",
                    path=target,
                ) from err
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
            return value


# -- rows from sqlite ---------------------------------------------------------------------

_EVENT_COLUMNS = (
    "key, kind, provider, source, generation, data, submitted_by_connector,"
    " occurred_at, received_at"
)
_RUN_COLUMNS = "run_id, event_key, automation_id, status, error, replay_of, started_at, finished_at"
_STEP_COLUMNS = (
    "run_id, step_index, step_id, action, status, attempt, options, output, error,"
    " started_at, finished_at"
)


def _event_row(row: sqlite3.Row) -> EventRow:
    return EventRow(
        key=row["key"],
        kind=row["kind"],
        provider=row["provider"],
        source=row["source"],
        generation=_loads(row["generation"]),
        data=_loads(row["data"]) or {},
        submitted_by_connector=bool(row["submitted_by_connector"]),
        occurred_at=_utc_required(row["occurred_at"]),
        received_at=_utc_required(row["received_at"]),
    )


def _step_row(row: sqlite3.Row) -> StepRow:
    return StepRow(
        run_id=row["run_id"],
        step_index=row["step_index"],
        step_id=row["step_id"],
        action=row["action"],
        status=row["status"],
        attempt=row["attempt"],
        options=_loads(row["options"]),
        output=_loads(row["output"]),
        error=row["error"],
        started_at=_utc_required(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
    )


def _run_row(row: sqlite3.Row, steps: list[StepRow]) -> RunRow:
    return RunRow(
        run_id=row["run_id"],
        event_key=row["event_key"],
        automation_id=row["automation_id"],
        status=row["status"],
        error=row["error"],
        started_at=_utc_required(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        replay_of=row["replay_of"],
        steps=steps,
    )


def _read_secret(path: Path) -> str | None:
    """The secret in `path`, None if there is no such file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StoreError(
            f"cannot read the secret file {path}: {err.strerror or err}", path=path
        ) from err
    if not value:
        raise StoreError(
            f"the secret file {path} is empty; delete it to have a new secret made "
            "(anything using the old one, such as a webhook URL, must then be updated)",
            path=path,
        )
    return value


# -- opening ------------------------------------------------------------------------------


def _prepare_directory(directory: Path) -> None:
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode passes through the umask; say exactly what we mean.
            os.chmod(directory, 0o700)
            return
        if not directory.is_dir():
            raise StoreError(
                f"the state dir {directory} exists but is not a directory; "
                "point state_dir somewhere else",
                path=directory,
            )
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as err:
        raise StoreError(
            f"cannot create the state dir {directory}: {err.strerror or err}", path=directory
        ) from err
    if mode & 0o077:
        # A directory the user chose is theirs to manage; the files in it are 0600.
        _LOGGER.warning(
            "state dir %s is accessible to other users (mode %o); chmod 700 it", directory, mode
        )


def _prepare_file(path: Path) -> None:
    try:
        # Create it 0600 ourselves: sqlite would use 0644 minus the umask, and
        # it gives the -wal and -shm files the database file's permissions.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, 0o600)
        except OSError as err:
            raise StoreError(
                f"cannot restrict the permissions of {path} to 0600: {err.strerror or err}",
                path=path,
            ) from err
        return
    except OSError as err:
        raise StoreError(
            f"cannot create the state database {path}: {err.strerror or err}; "
            f"check the permissions of {path.parent}",
            path=path,
        ) from err
    os.close(descriptor)


def _configure(connection: sqlite3.Connection, durability: str, busy_timeout: float) -> None:
    connection.row_factory = sqlite3.Row
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # Reading the schema also makes sqlite read the header: a file that is not a
    # database fails here, on open, rather than on the first event.
    tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if tables == 0:
        # Only takes effect before the first table is created; lets prune give
        # freed pages back to the file system without a full VACUUM.
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(
            f"cannot use write-ahead logging (journal mode stayed {mode!r}); "
            "the state dir must be on a local file system"
        )
    connection.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
    connection.execute("PRAGMA foreign_keys = ON")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, one step per version, in one transaction."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    # IMMEDIATE, then read the version again: two processes opening a new file
    # at once must not both create the tables.
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the state database {path} has schema version {version}, newer than this "
                f"connector understands ({SCHEMA_VERSION}); upgrade ftconnect or use "
                "another state_dir",
                path=path,
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target - 1]:
                connection.execute(statement)
            # user_version is part of the transaction: a crash leaves the old version.
            connection.execute(f"PRAGMA user_version = {target}")
            _LOGGER.info("state database %s migrated to schema version %d", path, target)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _translate(err: sqlite3.Error, path: Path, busy_timeout: float) -> StoreError:
    """A StoreError naming the file and what to do about `err`."""
    message = str(err)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        text = (
            f"the state database {path} stayed locked by another process for more than "
            f"{busy_timeout:g} s ({message}); is another `ftconnect run` using this state dir? "
            "Stop it, or give each connector its own state_dir"
        )
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        text = (
            f"the state database {path} is corrupt ({message}). Stop the connector, move the "
            "file (and its -wal and -shm files) aside for diagnosis, and start again: a new "
            "journal is created, forgetting which events already fired"
        )
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        text = (
            f"cannot write the state database {path} ({message}); check that "
            f"{path.parent} is writable by this user"
        )
    elif "disk is full" in lowered or "disk i/o" in lowered:
        text = f"cannot write the state database {path} ({message}); check the disk"
    else:
        text = f"state database {path}: {message}"
    return StoreError(text, path=path)
