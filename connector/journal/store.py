"""The durable journal: events, runs, action steps and poller state, in SQLite (WAL).

The connector promises that every terminal generation fires its trigger exactly
once across webhooks, polling, restarts and crashes, and that no action step is
repeated or skipped. The journal is where that promise is kept. `Store` is its
one door: each concern is a class of its own over the one connection
(`connection.JournalConnection`), and `Store` is all of them together:

    events.py        EventJournal        events recorded once by key, with their runs
    runs.py          RunJournal          runs once per (event, automation); steps journalled
    cursors.py       CursorJournal       the pollers' saved positions
    submissions.py   SubmissionJournal   generations submitted and pending; intents
    intents.py       GenerationIntent    what a `generate` step journals before it submits
    idempotency.py   IdempotencyJournal  the HTTP API's idempotency keys
    hooks.py         HookJournal         REST hooks and their outbox of deliveries
    secret_files.py  SecretFiles         the webhook token, hook secrets, in 0600 files
    store.py         Store               opening, the schema and its migrations,
                                         retention, WAL checkpoints

They are mixins rather than parts the Store delegates to: one object, one lock,
one `_transaction` (an event, its runs and its deliveries commit together), and
the public methods keep their names without a delegating copy of each.

Durability: the database runs in WAL mode with `synchronous=NORMAL`. A commit
has reached the operating system when a call returns, so it survives the
process being killed (SIGKILL, OOM, a crash), which is the failure this module
is tested against. A power loss or kernel crash may lose the last few
transactions (never corrupt the file); `durability="full"` switches to
`synchronous=FULL`, which fsyncs every commit at some cost in throughput.

Files: the state directory is created 0700 and the database 0600 (SQLite gives
its `-wal` and `-shm` files the database's permissions). Secrets such as the
webhook token and the REST hooks' signing secrets live in separate 0600 files
beside it, never in the database.

Errors: a database that is corrupt, locked for too long, unwritable or made by
a newer connector raises `JournalError` (`connection.py`), naming the file and
what to do. Misuse (finishing a step that never started, replaying a running
run) raises `ValueError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from connector.journal.connection import JournalError, translate
from connector.journal.cursors import CursorJournal
from connector.journal.events import EventJournal
from connector.journal.hooks import HookJournal
from connector.journal.idempotency import IDEMPOTENCY_TTL, IdempotencyJournal
from connector.journal.runs import RunJournal
from connector.journal.secret_files import SecretFiles
from connector.journal.submissions import SubmissionJournal

__all__ = ["DURABILITY", "SCHEMA_VERSION", "PruneResult", "Store"]

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
DURABILITY: Final = {"normal": "NORMAL", "full": "FULL"}

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
    # 2: the HTTP API's idempotency keys, REST hooks and their outbox.
    (
        """
        CREATE TABLE idempotency (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            body_hash TEXT NOT NULL,
            event_key TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID
        """,
        # No secret column: a hook's signing secret is the file hook-<hook_id>.
        """
        CREATE TABLE hooks (
            hook_id TEXT PRIMARY KEY,
            trigger TEXT NOT NULL,
            target_url TEXT NOT NULL,
            filter TEXT NOT NULL,
            token_name TEXT,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        # No foreign key to events: retention prunes events and their rows itself.
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hook_id TEXT NOT NULL REFERENCES hooks (hook_id) ON DELETE CASCADE,
            event_key TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_status INTEGER,
            last_error TEXT,
            created_at REAL NOT NULL,
            finished_at REAL,
            UNIQUE (hook_id, event_key)
        )
        """,
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        # The API lists an event's runs, and retention asks whether an event has any.
        "CREATE INDEX runs_by_event ON runs (event_key)",
        # GET /api/v1/runs?automation= (and `ftconnect runs --automation`), newest first.
        "CREATE INDEX runs_by_automation ON runs (automation_id, started_at)",
    ),
)


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


class Store(
    EventJournal,
    RunJournal,
    CursorJournal,
    SubmissionJournal,
    IdempotencyJournal,
    HookJournal,
    SecretFiles,
):
    """The connector's journal in `<state_dir>/state.db`; see the module docstring.

    Open with `Store.open(state_dir)`; close with `close()` or use it as a
    context manager. Every method is thread-safe.
    """

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
            raise translate(err, path, busy_timeout) from err
        try:
            _configure(connection, durability, busy_timeout)
            _migrate(connection, path)
        except sqlite3.Error as err:
            connection.close()
            raise translate(err, path, busy_timeout) from err
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, clock=clock, busy_timeout=busy_timeout)

    # -- retention ----------------------------------------------------------------------

    def prune(self, *, older_than: float) -> PruneResult:
        """Delete what is older than `older_than` seconds, then give the space back.

        Deletes finished runs (and their steps and intents) that ended before
        the cut-off, events received before it that no run refers to any more
        (so never one with an unfinished run), and submitted markers of
        generations no longer pending. Outbox rows go with their event, and
        delivered or failed ones once their last attempt is older than the
        cut-off. Cursors, pending rows, hooks and idempotency keys stay
        (`prune_idempotency` ages those by their own time to live), and so do
        the runs and events of keys still alive: a retry within a key's time to
        live must find its run, whatever `retention_days` says.

        A pruned event key is forgotten: retention must exceed how far back
        the poller and webhooks can still report a generation.
        """
        if older_than < 0:
            raise ValueError(f"older_than must be 0 or more seconds (got {older_than})")
        now = self._now()
        cutoff = now - older_than
        live_keys = "SELECT event_key FROM idempotency WHERE created_at >= :alive"
        old_runs = (
            "SELECT run_id FROM runs WHERE status <> 'running'"
            " AND COALESCE(finished_at, started_at) < :cutoff"
            f" AND event_key NOT IN ({live_keys})"
        )
        window = {"cutoff": cutoff, "alive": now - IDEMPOTENCY_TTL}
        with self._transaction(write=True) as db:
            # Steps and intents explicitly (not by cascade) so the counts are right.
            steps = db.execute(f"DELETE FROM steps WHERE run_id IN ({old_runs})", window).rowcount
            db.execute(f"DELETE FROM intents WHERE run_id IN ({old_runs})", window)
            runs = db.execute(f"DELETE FROM runs WHERE run_id IN ({old_runs})", window).rowcount
            events = db.execute(
                "DELETE FROM events WHERE received_at < :cutoff"
                " AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.event_key = events.key)"
                f" AND key NOT IN ({live_keys})",
                window,
            ).rowcount
            # Rows of a pruned event go even if pending: the event to send is gone.
            db.execute(
                "DELETE FROM outbox WHERE NOT EXISTS"
                " (SELECT 1 FROM events WHERE events.key = outbox.event_key)"
            )
            db.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'failed')"
                " AND COALESCE(finished_at, created_at) < :cutoff",
                {"cutoff": cutoff},
            )
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
                raise translate(err, self.path, self._busy_timeout) from err

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


def _prepare_directory(directory: Path) -> None:
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode passes through the umask; say exactly what we mean.
            os.chmod(directory, 0o700)
            return
        if not directory.is_dir():
            raise JournalError(
                f"the state dir {directory} exists but is not a directory; "
                "point state_dir somewhere else",
                path=directory,
            )
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as err:
        raise JournalError(
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
            raise JournalError(
                f"cannot restrict the permissions of {path} to 0600: {err.strerror or err}",
                path=path,
            ) from err
        return
    except OSError as err:
        raise JournalError(
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
            raise JournalError(
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
