"""Client-side rate budgets that mirror the server's, so the client never provokes a 429.

A budget allows `limit` requests per `window` seconds. A slot is taken when a
request is sent and is only released `window` seconds after its answer came
back: the server counted the request somewhere between those two moments, so
no window of the server's, sliding or fixed, can ever see more than `limit`.
The server's own view (`X-RateLimit-Limit` / `X-RateLimit-Remaining`, shared
with other programs using the same key) and `Retry-After` tighten it further.

No wait is silent: one longer than `ANNOUNCE_AFTER` (2 s) is said once, as an
INFO record on the `connector.waits` logger ("waiting 23.4 s for the reads
budget (...)") and through an optional `on_wait(reason, seconds)` callback that
a terminal can render (`connector.cli.progress.WaitProgress`). The API clients use
the same helpers for their retry backoff.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

ANNOUNCE_AFTER = 2.0
"""Waits longer than this many seconds are announced; shorter ones stay silent."""

WAIT_LOGGER = logging.getLogger("connector.waits")
"""Where announced waits are logged, at INFO: one record per wait."""

WaitDone = Callable[[], object]
WaitCallback = Callable[[str, float], WaitDone | None]
"""`on_wait(reason, seconds)`, called once when a wait longer than `ANNOUNCE_AFTER` starts.

`reason` completes "waiting 4.0 s ...": "for the reads budget (60 requests per
60 s)", "to retry GET /v1/me (attempt 2 of 5) after HTTP 503". `seconds` is how
long the wait is expected to last, `math.inf` when that is unknown. The callback
may return a function, which is called once when the wait ends (cancelled
included), e.g. to erase a status line. An exception raised by either is logged
at DEBUG and otherwise ignored: showing a wait never breaks a request.
"""


_REPORT_TO: ContextVar[WaitCallback | None] = ContextVar("connector_on_wait", default=None)


@contextmanager
def waits_reported_to(on_wait: WaitCallback | None) -> Iterator[None]:
    """Within this block (this task only), budget waits go to `on_wait` rather than to
    the budget's own `on_wait`: how a client passes its callback to budgets it shares,
    without changing how `acquire()` is called."""
    token = _REPORT_TO.set(on_wait)
    try:
        yield
    finally:
        _REPORT_TO.reset(token)


def describe_wait(reason: str, seconds: float) -> str:
    """The line for a wait: "waiting 23.4 s for the reads budget (...)"."""
    if math.isfinite(seconds):
        return f"waiting {seconds:.1f} s {reason}"
    return f"waiting {reason}"


def announce_wait(reason: str, seconds: float, on_wait: WaitCallback | None) -> WaitDone | None:
    """Log the wait at INFO and tell `on_wait`; returns what to call when the wait ends."""
    WAIT_LOGGER.info("%s", describe_wait(reason, seconds))
    if on_wait is None:
        return None
    try:
        return on_wait(reason, seconds)
    except Exception:
        WAIT_LOGGER.debug("the on_wait callback failed", exc_info=True)
        return None


def end_wait(done: WaitDone | None) -> None:
    """Call what `announce_wait` returned, if anything (its failure is only logged)."""
    if done is None:
        return
    try:
        done()
    except Exception:
        WAIT_LOGGER.debug("the end of an on_wait callback failed", exc_info=True)


@asynccontextmanager
async def said_if_slow(
    reason: str, limit: float, on_wait: WaitCallback | None
) -> AsyncIterator[None]:
    """Around a wait whose end is not known in advance (an answer from a server): said
    once it has lasted `ANNOUNCE_AFTER` seconds, with the time left until `limit`."""
    loop = asyncio.get_running_loop()
    done: list[WaitDone | None] = []

    def announce() -> None:
        done.append(announce_wait(reason, max(0.0, limit - ANNOUNCE_AFTER), on_wait))

    timer = loop.call_later(ANNOUNCE_AFTER, announce)
    try:
        yield
    finally:
        timer.cancel()
        for item in done:
            end_wait(item)


async def announced_sleep(
    sleep: Sleep,
    seconds: float,
    reason: str,
    on_wait: WaitCallback | None,
    *,
    announce: bool | None = None,
) -> None:
    """`sleep(seconds)`, said first when longer than `ANNOUNCE_AFTER` (or when `announce`)."""
    if announce is None:
        announce = seconds > ANNOUNCE_AFTER
    done = announce_wait(reason, seconds, on_wait) if announce else None
    try:
        await sleep(seconds)
    finally:
        end_wait(done)


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
        on_wait: WaitCallback | None = None,
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
        self._foreign_until = 0.0  # slots the server counted for someone else hold until then
        self._lock = asyncio.Lock()
        self.waited = 0.0  # total seconds callers spent waiting here
        self.on_wait = on_wait  # told of every wait over ANNOUNCE_AFTER (see WaitCallback)

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

    def wait_reason(self) -> str:
        """What a caller of `acquire` waits for now, completing "waiting 23.4 s ..."."""
        self._expire()
        now = self._clock()
        full = self._in_flight + len(self._releases) >= self.limit
        if self._paused_until > now and (
            not full or not self._releases or self._paused_until >= self._releases[0]
        ):
            return f"for the {self.name} budget: the server asked for a pause (Retry-After)"
        if not self._releases:
            return (
                f"for the {self.name} budget: all {self.limit} slots are taken by requests "
                "still waiting for their answers"
            )
        shared = (
            "; the server counted requests this client did not send: another program "
            "may share the key"
            if self._foreign_until > now
            else ""
        )
        return f"for the {self.name} budget ({self.limit} requests per {self.window:g} s{shared})"

    def _length_known(self) -> bool:
        """Whether `delay()` is the whole wait: not when every slot is still in flight
        (then the budget is checked again every 50 ms until one is answered)."""
        self._expire()
        full = self._in_flight + len(self._releases) >= self.limit
        return not full or bool(self._releases)

    async def acquire(self, *, on_wait: WaitCallback | None = None) -> int:
        """Wait until a slot is free and take it; returns the slots used at that moment
        (this one included), for `observe`. Callers are served in arrival order.

        A wait longer than `ANNOUNCE_AFTER` is announced once, however often the
        budget is checked during it, on the `connector.waits` logger and to the
        first callback of: `on_wait`, the one of an enclosing `waits_reported_to`,
        `self.on_wait`. The one exception: a wait announced as of
        unknown length (every slot in flight) is announced again, once, when its
        length becomes known."""
        if on_wait is None:
            on_wait = _REPORT_TO.get() or self.on_wait
        announced = announced_length = False
        done: WaitDone | None = None
        waited_here = 0.0
        try:
            async with self._lock:
                while (wait := self.delay()) > 0:
                    if not announced_length and waited_here + wait > ANNOUNCE_AFTER:
                        known = self._length_known()
                        if known or not announced:
                            end_wait(done)
                            expected = wait if known else math.inf
                            done = announce_wait(self.wait_reason(), expected, on_wait)
                            announced, announced_length = True, known
                    self.waited += wait
                    waited_here += wait
                    await self._sleep(wait)
                self._in_flight += 1
                return self.used
        finally:
            end_wait(done)

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
        if missing > 0:
            self._foreign_until = max(self._foreign_until, expiry)

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (the server's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
