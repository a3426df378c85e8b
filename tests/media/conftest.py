"""Fixtures shared by the media tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The one HTTP session a test's downloads and webhooks share, as a connector's do."""
    async with aiohttp.ClientSession() as session:
        yield session
