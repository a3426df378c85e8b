"""One daemon per journal: an exclusive lock on the state directory.

Two `ftconnect run` processes on one state_dir would both resume the same
unfinished runs and spend credits twice. The runtime takes an exclusive
`flock` on `<state_dir>/daemon.lock` when it starts and holds it for its whole
life; a second one fails at once with `StateDirLocked`, naming the directory
and the pid that holds it. The kernel releases the lock when the holder dies,
SIGKILL included, so a crash never leaves a stale lock behind (the pid written
in the file is only for messages).

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

__all__ = ["LOCK_FILE", "StateDirLock", "StateDirLocked", "holder"]

LOCK_FILE = "daemon.lock"
ACQUIRE_TRIES = 5


class StateDirLocked(RuntimeError):
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirLocked(self.state_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for messages; the lock is what counts
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race a new holder)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state_dir: Path | str) -> int | None:
    """The pid of the daemon holding `state_dir` (0 if it cannot be read), or None if free."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
