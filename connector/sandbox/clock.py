"""The sandbox's clocks: the real one, and a manual one tests move by hand.

Both providers' lifecycles sleep on the same clock, so a `ManualClock` drives
Finetuning generations and TemPolor jobs alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class Clock:
    """Wall-clock time (epoch seconds) and sleeping until a moment: the real thing."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Return once `time()` has reached `deadline`."""
        delay = deadline - self.time()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock(Clock):
    """A clock that only moves when told to, so tests need not wait.

    Starts at 2025-01-15 10:30:00 UTC (the docs' example instant) unless given
    another epoch time. `advance()` wakes every sleeper whose deadline passed;
    let the event loop run (e.g. `await sandbox.settle()`) to see the effects.
    """

    def __init__(self, start: float = 1_736_937_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        """The current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (≥ 0) and wake the sleepers now due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        still_waiting: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, future in self._sleepers:
            if deadline <= self._now:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((deadline, future))
        self._sleepers = still_waiting

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `advance()` reaches `deadline` (returns at once if already there)."""
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (deadline, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            with contextlib.suppress(ValueError):
                self._sleepers.remove(entry)
