"""Client-side rate budgets that mirror the server's, so the client never provokes a 429.

A budget allows `limit` requests per `window` seconds. A slot is taken when a
request is sent and is only released `window` seconds after its answer came
back: the server counted the request somewhere between those two moments, so
no window of the server's, sliding or fixed, can ever see more than `limit`.
The server's own view (`X-RateLimit-Limit` / `X-RateLimit-Remaining`, shared
with other programs using the same key) and `Retry-After` tighten it further.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateBudget:
    """`limit` requests per `window` seconds, shared by every caller of one client."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        name: str = "requests",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate budget {name!r}: limit must be at least 1 (got {limit})")
        if window <= 0:
            raise ValueError(f"rate budget {name!r}: window must be positive (got {window})")
        self.limit = limit
        self.window = window
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._releases: list[float] = []  # heap of times at which used slots free up
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited = 0.0  # total seconds callers spent waiting here

    def __repr__(self) -> str:
        return f"RateBudget({self.name!r}, {self.limit}/{self.window:g}s, used={self.used})"

    @property
    def used(self) -> int:
        """Slots taken now: in flight plus answered within the last window."""
        self._expire()
        return self._in_flight + len(self._releases)

    def _expire(self) -> None:
        now = self._clock()
        while self._releases and self._releases[0] <= now:
            heapq.heappop(self._releases)

    def delay(self) -> float:
        """Seconds until a slot is free (0 when one is free now)."""
        self._expire()
        now = self._clock()
        wait = max(0.0, self._paused_until - now)
        if self._in_flight + len(self._releases) >= self.limit:
            if self._releases:
                wait = max(wait, self._releases[0] - now)
            else:
                # Every slot is in flight: check again shortly, when one may have answered.
                wait = max(wait, min(0.05, self.window))
        return wait

    async def acquire(self) -> int:
        """Wait until a slot is free and take it; returns the slots used at that moment
        (this one included), for `observe`. Callers are served in arrival order."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                self.waited += wait
                await self._sleep(wait)
            self._in_flight += 1
            return self.used

    def release(self) -> None:
        """The answer to a request has arrived: its slot frees one window from now."""
        self._in_flight = max(0, self._in_flight - 1)
        heapq.heappush(self._releases, self._clock() + self.window)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def observe(self, limit: int | None, remaining: int | None, used_at_send: int) -> None:
        """Take the server's `X-RateLimit-*` view into account.

        Called after `release()` for the same request, with what `acquire()`
        returned for it. The server counted when it admitted the request, so it
        is compared with our count at send time (slots may have expired since).
        When the server has counted more (another program shares the key), add
        phantom slots that free one window from now.
        """
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit
        if remaining is None:
            return
        server_used = self.limit - max(0, remaining)
        missing = server_used - used_at_send
        expiry = self._clock() + self.window
        for _ in range(max(0, missing)):
            heapq.heappush(self._releases, expiry)

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (the server's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
