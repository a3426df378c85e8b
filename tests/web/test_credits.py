"""The overview's credits: read in the background, never waited for by a page."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from connector.errors import InternalServerError
from connector.providers.finetuning.models import Account, AccountLimits
from connector.web.overview import CreditsCache


class Provider:
    def __init__(self) -> None:
        self.calls = 0
        self.answer: Any = Account(id="u1", limits=AccountLimits(total_remaining=42))
        self.release = asyncio.Event()

    async def get_account(self) -> Account:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_hanging_provider_never_holds_the_page() -> None:
    """Found by the hostile review: the overview waited 10 s for /v1/me."""
    provider = Provider()
    clock = Clock()
    cache = CreditsCache(SimpleNamespace(finetuning=provider), ttl=60, clock=clock)  # type: ignore[arg-type]
    assert cache.peek() is None  # answered at once, the read under way
    assert cache.peek() is None
    await asyncio.sleep(0)
    assert provider.calls == 1  # one read, however many pages asked
    provider.release.set()
    credits = await cache.get()
    assert credits.account is not None
    assert credits.as_context(0)["remaining"] == 42
    clock.now = 30
    assert cache.peek() is credits  # fresh enough: no new read
    await asyncio.sleep(0)
    assert provider.calls == 1
    clock.now = 61
    provider.answer = InternalServerError("the provider answered 500")
    assert cache.peek() is credits  # stale, shown while the next read runs
    failed = await cache.get()
    assert failed.account is None
    assert failed.error is not None
    assert "500" in failed.error
    cache.close()
