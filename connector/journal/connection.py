"""The journal's one SQLite connection, shared by every part of the `Store`.

Each concern of the journal (events, runs, cursors, submissions, hooks, secret files)
is a class built on `JournalConnection`, and `Store` is all of them over one
connection: a check and the write that depends on it, even across concerns
(an event and its runs), share one transaction.

Concurrency: one connection per `Store`, shared by threads under a lock (each
call is a short transaction). Other processes (the CLI reading `events` while
`ftconnect run` writes) may open the same file; writers wait up to
`busy_timeout` seconds for each other.

Errors: a database that is corrupt, locked for too long, unwritable or made by
a newer connector raises `JournalError`, naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from connector.errors import ConnectorError

__all__ = ["JournalConnection", "JournalError", "translate"]


class JournalError(ConnectorError):
    """The state database cannot be used; the message names the file and what to do."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class JournalConnection:
    """The connection, its lock and the clock; transactions for the concerns built on it.

    Made by `Store.open()`, which prepares the directory, the file and the schema.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        clock: Callable[[], float],
        busy_timeout: float,
    ) -> None:
        self._conn: sqlite3.Connection | None = connection
        self.path = path
        self.state_dir = path.parent
        self._clock = clock
        self._busy_timeout = busy_timeout
        # Re-entrant: a step that spans the database and a file (a hook and its
        # secret file) holds it around both, and its transaction takes it again.
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the connection; the last one to close checkpoints the WAL into the file."""
        with self._lock:
            connection, self._conn = self._conn, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error as err:
                raise translate(err, self.path, self._busy_timeout) from err

    def __enter__(self) -> Self:
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

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"the state database {self.path} is closed", path=self.path)
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite errors become JournalError.

        Writes take the write lock up front (BEGIN IMMEDIATE) so a check and
        the insert that depends on it cannot interleave with another process;
        reads get one consistent snapshot for their several queries.
        """
        with self._lock:
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as err:
                raise translate(err, self.path, self._busy_timeout) from err
            try:
                yield connection
            except BaseException as exc:
                _rollback(connection, exc)
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, self.path, self._busy_timeout) from exc
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as err:
                _rollback(connection, err)
                raise translate(err, self.path, self._busy_timeout) from err

    def _now(self) -> float:
        # Kept to the microsecond, what a datetime holds: a time read back as a
        # datetime and turned into epoch seconds again (a paging cursor) is then
        # exactly the value stored, so comparing it with the column is exact.
        return round(float(self._clock()), 6)


def _rollback(connection: sqlite3.Connection, cause: BaseException) -> None:
    if not connection.in_transaction:
        return
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as err:
        # The original error is the one to raise; keep this one visible on it.
        cause.add_note(f"rolling back also failed: {err}")


def translate(err: sqlite3.Error, path: Path, busy_timeout: float) -> JournalError:
    """A JournalError naming the file and what to do about `err`."""
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
    return JournalError(text, path=path)
