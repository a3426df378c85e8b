"""Fixtures of the webhook listener tests: a served listener and a client aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from ft_listener_support import TOKEN, Client, Recorder

from connector.ingress.webhooks import WebhookListener


@pytest.fixture
def recorder() -> Recorder:
    """The in-memory `record` the `listener` fixture hands events to."""
    return Recorder()


@pytest.fixture
async def listener(recorder: Recorder) -> AsyncIterator[WebhookListener]:
    """A listener on a free loopback port, recording into `recorder`."""
    served = WebhookListener(
        token=TOKEN,
        record=recorder,
        health=lambda: {"last_poll_age": 1.5, "pending": 2},
    )
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture
async def client(listener: WebhookListener) -> AsyncIterator[Client]:
    """A plain aiohttp session aimed at `listener`."""
    async with aiohttp.ClientSession() as session:
        yield Client(listener, session)
