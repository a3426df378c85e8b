"""Journal writes that wait out a failing journal instead of losing work.

A full disk, a locked or unwritable database: a run waits at its next write, in
this process, and carries on once the write succeeds; nothing is skipped and
nothing needs a restart. Meanwhile `problem` says what fails, which the runtime
reports as "degraded" on `/healthz`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from connector.journal.connection import JournalError

_LOGGER = logging.getLogger("connector.dispatch.runtime")

# A failing write is retried in place: first after this many seconds, doubling up
# to the maximum; the warning is repeated at most this often.
JOURNAL_RETRY_FIRST = 0.1
JOURNAL_RETRY_MAX = 5.0
JOURNAL_LOG_EVERY = 60.0
T = TypeVar("T")


class JournalWrites:
    """Calls journal writes, retrying each with backoff while the journal fails."""

    def __init__(self) -> None:
        self.problem: str | None = None  # the last write that failed, until one succeeds
        self._logged = 0.0

    async def __call__(self, what: str, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `write(*args, **kwargs)`; only `JournalError` is retried (misuse raises)."""
        delay = JOURNAL_RETRY_FIRST
        while True:
            try:
                result = write(*args, **kwargs)
            except JournalError as err:
                self.failing(what, err)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, JOURNAL_RETRY_MAX)
                continue
            self.ok()
            return result

    def failing(self, what: str, err: Exception) -> None:
        """A write failed: remember what, warn (at most every `JOURNAL_LOG_EVERY` s)."""
        now = time.monotonic()
        first = self.problem is None
        self.problem = f"cannot {what}: {err}"
        if first or now - self._logged >= JOURNAL_LOG_EVERY:
            self._logged = now
            _LOGGER.warning(
                "journal write failed (%s); retrying with backoff, runs wait", self.problem
            )

    def ok(self) -> None:
        """A write succeeded: the journal is healthy again."""
        if self.problem is not None:
            _LOGGER.warning("journal writable again after: %s", self.problem)
            self.problem = None
