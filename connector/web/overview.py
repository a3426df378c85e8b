"""What the overview shows about a running connector: its health and its credits.

The credits come from the provider (`GET /v1/me`), so they are cached: the
page refreshes itself every few seconds, and an open tab must not spend the
account's read budget. A failure to read them is shown as such, never as 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.dispatch.runtime import Runtime
from connector.errors import ConnectorError
from connector.providers.finetuning.models import Account
from connector.web.render import seconds_text

__all__ = ["CREDITS_TTL", "Credits", "CreditsCache", "HealthItem", "health_items"]

CREDITS_TTL = 60.0  # seconds a balance is shown before it is read again
CREDITS_TIMEOUT = 60.0  # in the background: the client's own retries may take a while


@dataclass(frozen=True)
class HealthItem:
    """One line of the health section: what, its state (ok, warn, bad) and why."""

    name: str
    state: str
    text: str


def health_items(runtime: Runtime, api_url: str) -> list[HealthItem]:
    """The listeners, the pollers and the journal, each with a state and a sentence."""
    items = [HealthItem("HTTP API", "ok", f"listening on {api_url}")]
    listener = runtime.listener
    if listener is not None:
        items.append(HealthItem("Webhook listener", "ok", f"listening on {listener.url}"))
    else:
        items.append(
            HealthItem("Webhook listener", "ok", "not configured: the poller finds completions")
        )
    interval = runtime.config.poll.idle_interval
    for name, poller in (("Poller", runtime.poller), ("TemPolor poller", runtime.tempolor_poller)):
        if poller is None:
            if name == "Poller":
                items.append(HealthItem(name, "warn", "not running"))
            continue
        last = poller.last_success
        if last is None:
            items.append(HealthItem(name, "warn", "no poll has finished yet"))
            continue
        age = time.monotonic() - last
        # A poll is due every idle interval at the latest; three missed ones is trouble.
        state = "ok" if age <= max(3 * interval, 30.0) else "bad"
        items.append(HealthItem(name, state, f"last poll {seconds_text(age)} ago"))
    problem = runtime.journal.problem
    if problem:
        items.append(HealthItem("Journal", "bad", problem))
    else:
        items.append(HealthItem("Journal", "ok", "writing"))
    return items


@dataclass(frozen=True)
class Credits:
    """The balance as last read (None when it could not be), and when."""

    account: Account | None
    error: str | None
    read_at: float

    def as_context(self, now: float) -> dict[str, Any]:
        limits = self.account.limits if self.account is not None else None
        return {
            "remaining": limits.total_remaining if limits else None,
            "monthly_remaining": limits.monthly_remaining if limits else None,
            "monthly": limits.monthly_generations if limits else None,
            "pack": limits.pack_credits if limits else None,
            "queue": limits.queue_depth if limits else None,
            "error": self.error,
            "age": max(0.0, now - self.read_at),
        }


class CreditsCache:
    """The account's balance, read at most once per `ttl` seconds, in the background:
    a page never waits for the provider (one that hangs would hold the whole overview,
    health included, which is what should explain the hang)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        ttl: float = CREDITS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._ttl = ttl
        self._clock = clock
        self._last: Credits | None = None
        self._reading: asyncio.Task[None] | None = None

    def peek(self) -> Credits | None:
        """The last balance read (None before the first read ends); starts a read when
        it is older than `ttl` and none is under way."""
        last = self._last
        stale = last is None or self._clock() - last.read_at >= self._ttl
        if stale and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(self._read(), name="web-credits")
        return last

    async def get(self) -> Credits:
        """The balance, waiting for a read when the last one is stale."""
        self.peek()
        if self._reading is not None and not self._reading.done():
            await asyncio.shield(self._reading)
        assert self._last is not None
        return self._last

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()

    async def _read(self) -> None:
        try:
            async with asyncio.timeout(CREDITS_TIMEOUT):
                account = await self._runtime.finetuning.get_account()
        except TimeoutError:
            self._last = Credits(
                None, f"the provider did not answer within {CREDITS_TIMEOUT:.0f} s", self._clock()
            )
        except ConnectorError as err:
            self._last = Credits(None, str(err), self._clock())
        else:
            self._last = Credits(account, None, self._clock())
