"""Helpers of the webhook listener tests: recorders, payloads and a threaded server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from connector.events import Event
from connector.ingress.webhooks import WebhookListener

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Characters that URL encoding changes ("+", "/", "="), so every spelling of the
# token is exercised: raw in the config, percent-encoded on the wire.
TOKEN = "wh-9fK2+x/Q7=zP4_hook"
MAX_BODY = 64 * 1024

T = TypeVar("T")


def fixture(name: str) -> dict[str, Any]:
    """A JSON fixture of tests/fixtures as a dict."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def body_of(payload: Any) -> bytes:
    """A payload as the bytes a provider would post."""
    return json.dumps(payload).encode()


@dataclass
class Recorder:
    """An in-memory `record`: keeps every event, answers whether its key was new."""

    events: list[Event] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    async def __call__(self, event: Event) -> bool:
        self.events.append(event)
        new = event.key not in self.keys
        self.keys.add(event.key)
        return new


@dataclass
class FailingRecorder:
    """A `record` whose store is down; its error message quotes `detail`."""

    detail: str = "disk full"
    calls: int = 0

    async def __call__(self, event: Event) -> bool:
        self.calls += 1
        raise RuntimeError(f"could not store {event.key}: {self.detail}")


@dataclass
class Answer:
    """What came back over HTTP."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """`data` as an async stream, which aiohttp sends with chunked transfer encoding."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Client:
    """A plain aiohttp.ClientSession aimed at one listener."""

    def __init__(self, listener: WebhookListener, session: aiohttp.ClientSession) -> None:
        self.listener = listener
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request; `params` as given (no token is added)."""
        async with self.session.request(
            method,
            self.listener.url + path,
            params=params,
            data=data,
            headers=headers,
        ) as response:
            return Answer(response.status, await response.read(), dict(response.headers))

    async def hook(
        self, provider: str, data: Any, *, token: str | None = TOKEN, **kwargs: Any
    ) -> Answer:
        """POST `data` to the provider's hook, with `token` (None: no token at all)."""
        params = {"token": token} if token is not None else None
        return await self.request("POST", f"/hooks/{provider}", params=params, data=data, **kwargs)


class ThreadedListener:
    """A listener and a client session on their own event loop in a background thread.

    Hypothesis drives plain functions: each example calls `request()`, which
    hands a coroutine to the background loop with `run_coroutine_threadsafe`
    and waits for it with a timeout. One server serves the whole property
    run, a hung example fails with a timeout instead of blocking the suite,
    and the test never nests event loops or depends on how pytest-asyncio
    scopes its loop.
    """

    def __init__(self, listener: WebhookListener) -> None:
        self.listener = listener
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> ThreadedListener:
        self._thread.start()
        self.run(self._open())
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.run(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    async def _open(self) -> None:
        await self.listener.start()
        self._session = aiohttp.ClientSession()

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.listener.stop()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coroutine` on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        """One request to the listener, synchronously."""
        assert self._session is not None
        return self.run(Client(self.listener, self._session).request(method, path, **kwargs))
