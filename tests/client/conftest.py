"""Fixtures for the Finetuning.ai client unit tests (helpers: ft_client_support.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest
from aioresponses import aioresponses
from ft_client_support import API_KEY, FakeClock

from connector.providers.finetuning.client import FinetuningClient


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff jitter is 0 so retry delays are exact (the jitter test puts it back)."""
    monkeypatch.setattr(random, "uniform", lambda _low, _high: 0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[FinetuningClient]:
    """A client on the fake clock: its retries and both budgets never really sleep."""
    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        yield api
