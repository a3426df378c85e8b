"""What a client breaks stays out of the ERROR log; what breaks on our side stays in it.

Before: a body with a broken `Content-Encoding` got its answer, then aiohttp
drained the rest of the body to reuse the connection, failed to decode it once
more and logged "Unhandled exception" at ERROR with a thirty-line traceback. No
token was needed (the 401 comes first, the drain after), so anyone could fill
the log. The API listener has the same server under it
(tests/api/test_api_protocol_errors.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from ft_listener_support import TOKEN

from connector.ingress.server import GuardedServer
from connector.ingress.webhooks import WebhookListener

ENCODED = quote(TOKEN, safe="")

# Bodies no decoder accepts, each under a header that says it is encoded.
BROKEN = [
    pytest.param(
        "Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\n0123456789", id="gzip-garbage"
    ),
    pytest.param(
        "Content-Encoding: deflate\r\nContent-Length: 10\r\n\r\n0123456789", id="deflate-garbage"
    ),
    pytest.param(
        "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        id="chunked-gzip-garbage",
    ),
]


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a raw connection; everything the server says until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


def errors(caplog: pytest.LogCaptureFixture, prefix: str = "connector.") -> list[str]:
    """ERROR records of the listener's loggers (asyncio may log, when the garbage
    collector runs, about a task an earlier test left behind: not the listener's)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(prefix)
    ]


@pytest.mark.parametrize("query", ["", f"?token={ENCODED}"], ids=["no-token", "token"])
@pytest.mark.parametrize("rest", BROKEN)
async def test_a_broken_body_is_answered_and_logs_no_error(
    listener: WebhookListener, caplog: pytest.LogCaptureFixture, query: str, rest: str
) -> None:
    caplog.set_level(logging.DEBUG)
    head = f"POST /hooks/finetuning{query} HTTP/1.1\r\nHost: x\r\n"
    reply = b""
    for _ in range(3):  # a burst, as a flood would send
        reply = await exchange(listener.port, (head + rest).encode())
        assert reply.startswith(b"HTTP/1.1 4"), reply

    assert errors(caplog) == []
    dropped = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert dropped  # still there for whoever debugs, one line each, no traceback
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in dropped)
    assert all(TOKEN not in r.getMessage() and ENCODED not in r.getMessage() for r in dropped)


async def test_a_broken_body_logs_no_error_with_aiohttp_debug_on(
    listener: WebhookListener, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp says more when the loop runs in debug mode; none of it at ERROR."""
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    was = loop.get_debug()
    loop.set_debug(True)
    try:
        request = (
            "POST /hooks/finetuning HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            "Content-Length: 10\r\n\r\n0123456789"
        )
        reply = await exchange(listener.port, request.encode())
    finally:
        loop.set_debug(was)
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert errors(caplog) == []


# -- what fails on our side is still an ERROR ------------------------------------------------


@asynccontextmanager
async def guarded(handler: Any) -> AsyncIterator[int]:
    """A bare GuardedServer serving `handler` at /, on a free loopback port."""
    logger = logging.getLogger("tests.guarded.server")
    server = GuardedServer(
        name="test listener",
        log=logging.LoggerAdapter(logging.getLogger("tests.guarded")),
        server_options=lambda: {"logger": logger},
    )
    app = web.Application(middlewares=[server.in_request])
    app.router.add_post("/", handler)
    port = await server.start(app, host="127.0.0.1", port=0, header_timeout=5.0, max_connections=8)
    try:
        yield port
    finally:
        await server.stop()


async def test_an_exception_of_our_own_is_still_logged_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    async with guarded(broken) as port:
        reply = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    assert reply.startswith(b"HTTP/1.1 503 ")
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"error": "internal error, retry later"}
    logged = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "tests.guarded.server"
    ]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "a bug of ours" in str(logged[0].exc_info[1])


async def test_a_handler_that_answers_nothing_is_still_logged_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp logs this one through `log_exception` too, with no exception of the client's."""
    caplog.set_level(logging.DEBUG)

    async def silent(request: web.Request) -> web.Response:
        return None  # type: ignore[return-value]

    async with guarded(silent) as port:
        reply = await exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )

    assert reply.startswith(b"HTTP/1.1 500 ")
    logged = errors(caplog, "tests.guarded")
    assert any("Missing return statement" in message for message in logged)


async def test_a_payload_error_our_handler_lets_through_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler reading a broken body the plain way: the client's doing, logged at DEBUG."""
    caplog.set_level(logging.DEBUG)

    async def careless(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="read")

    async with guarded(careless) as port:
        reply = await exchange(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 10\r\n\r\n0123456789",
        )

    assert reply.startswith(b"HTTP/1.1 400 ")  # not a 503: nothing failed on our side
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"error": "bad request"}
    assert errors(caplog, "tests.guarded") == []
