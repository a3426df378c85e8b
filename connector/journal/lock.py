"""One daemon per journal: an exclusive lock on the state directory.

Two `ftconnect run` processes on one state_dir would both resume the same
unfinished runs and spend credits twice. The runtime takes an exclusive
`flock` on the state directory itself when it starts and holds it for its
whole life; a second one fails at once with `StateDirLocked`, naming the
directory and the pid that holds it. The lock is on the directory, not on a
file in it, so deleting a file cannot let a second daemon in. The kernel
releases the lock when the holder dies, SIGKILL included, so a crash never
leaves a stale lock behind. `<state_dir>/daemon.lock` holds the holder's pid,
for messages only.

Readers (`ftconnect events`, `runs`) take no lock: SQLite lets them read while
the daemon writes. `holder()` tells them (and `ftconnect replay`) whether a
daemon is running, and which.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from connector.errors import ConnectorError

__all__ = ["LOCK_FILE", "StateDirLock", "StateDirLocked", "holder"]

LOCK_FILE = "daemon.lock"
ACQUIRE_TRIES = 5


class StateDirLocked(ConnectorError):
    """Another process holds the state directory's lock."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"the state dir {state_dir} is in use by {who} (another `ftconnect run`?): "
            "one daemon per state_dir; stop it first, or give this one its own state_dir"
        )
        self.state_dir = state_dir
        self.pid = pid


class StateDirLock:
    """The exclusive lock on one state directory; `acquire()` then `release()`."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise `StateDirLocked` at once (never waits)."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for attempt in range(ACQUIRE_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # `holder()` takes a shared lock for an instant: a reader, not a
                    # daemon, may be what is in the way, so look again shortly.
                    if attempt == ACQUIRE_TRIES - 1:
                        raise
                    time.sleep(0.05)
        except BlockingIOError:
            os.close(fd)
            raise StateDirLocked(self.state_dir, _read_pid(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            pid_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(pid_fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(pid_fd)
        except OSError:
            pass  # the pid is only for messages; the lock is what counts
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (the pid file is emptied, not removed: a new holder rewrites it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.truncate(self.path, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state_dir: Path | str) -> int | None:
    """The pid of the daemon holding `state_dir` (0 if it cannot be read), or None if free."""
    directory = Path(state_dir)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(directory / LOCK_FILE) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_bytes()[:32].decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
