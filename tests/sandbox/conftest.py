"""Fixtures of the Finetuning.ai sandbox tests: a sandbox on a manual clock, callers, a receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from ft_sandbox_support import Api, Receiver

from connector.sandbox import ManualClock, SandboxConfig, SandboxHandle, run_sandbox


@pytest.fixture
def clock() -> ManualClock:
    """Time stands still at 2025-01-15 10:30:00 UTC until a test advances it."""
    return ManualClock()


@pytest.fixture
def config() -> SandboxConfig:
    """1 s pending then 2 s processing, on the manual clock (override by parametrizing)."""
    return SandboxConfig(pending_delay=1.0, processing_delay=2.0)


@pytest.fixture
async def sb(config: SandboxConfig, clock: ManualClock) -> AsyncIterator[SandboxHandle]:
    """A running sandbox on a free loopback port."""
    async with run_sandbox(config, clock=clock) as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(sb: SandboxHandle, http: aiohttp.ClientSession) -> Api:
    """Caller with the first Pro account's key (Demo User)."""
    return Api(http, sb.url, sb.api_key)


@pytest.fixture
def second(sb: SandboxHandle, http: aiohttp.ClientSession) -> Api:
    """Caller with the second Pro account's key (Second User)."""
    return Api(http, sb.url, sb.api_keys["Second User"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1."""
    hook = await Receiver().start()
    yield hook
    await hook.close()
