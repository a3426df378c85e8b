"""The API against requests its routes never see: protocol errors, `Expect:`, the cap.

Before: aiohttp's parser errors, an unknown expectation on a path with no
route and the 503 at the connection cap were answered `{"error": "bad
request"}`-style, not in the API's `{"error": {"code", "message", "details"}}`;
`Expect: 100-continue` was answered `100 Continue` before the token check, so a
client without a token was invited to upload; and a body with a broken
`Content-Encoding`, drained by aiohttp after the answer, was logged at ERROR
with a traceback, by anyone, no token needed. Everything here goes over raw
loopback sockets: an HTTP client would not send most of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from ft_api_support import ACTOR, FAST, FULL, READER, TOKENS, Started, config_text, eventually

from connector.api.errors import ERROR_CODES
from connector.api.server import ApiListener
from connector.app import open_connector
from connector.automation.loader import parse_config

pytestmark = pytest.mark.e2e

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# Put in each request where a careless answer would quote it.
MARK = "echo-me-3f9a"
CALL = "/api/v1/actions/bulk_delete"
CALL_BODY = json.dumps({"tracks": ["x"], "confirm": True, "dry_run": True}).encode()


async def exchange(port: int, data: bytes, *, until_closed: bool = False) -> bytes:
    """Send `data` on a raw connection; the answer (or, `until_closed`, everything the
    server says until it closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        if until_closed:
            return await asyncio.wait_for(reader.read(), 10)
        head, body = await read_answer(reader)
        return head + body
    finally:
        writer.close()
        await writer.wait_closed()


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and body of one answer (with Content-Length) off a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert found is not None, head
    return head, await asyncio.wait_for(reader.readexactly(int(found[1])), 10)


def api_error(reply: bytes, status: int) -> dict[str, Any]:
    """The `error` of a whole reply: this status, JSON in the API's shape, a code of the
    document's list that fits the status, and nothing of the request in it."""
    head, _, body = reply.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] %d " % status, head), reply
    assert re.search(rb"(?i)\r\ncontent-type: application/json", head), head
    parsed = json.loads(body)
    assert set(parsed) == {"error"}, parsed
    error: dict[str, Any] = parsed["error"]
    assert isinstance(error, dict), parsed
    assert set(error) == {"code", "message", "details"}, error
    assert ERROR_CODES.get(error["code"]) == status, error
    assert isinstance(error["message"], str)
    assert error["message"].strip()
    assert error["details"] is None
    assert MARK.encode() not in reply
    for token in TOKENS:
        assert token.encode() not in reply
    return error


def request(
    head: str = f"POST {CALL}?{MARK}=1 HTTP/1.1", *headers: str, body: bytes = b""
) -> bytes:
    lines = [head, "Host: x", f"X-Mark: {MARK}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- aiohttp's parser errors, in the API's shape ---------------------------------------------


PARSER_ERRORS = [
    pytest.param(request(f"POST {CALL} HTTP/1.1", "Content-Encoding: br"), id="brotli"),
    pytest.param(request(f"POST {CALL} HTTP/1.1", f"X-Big: {MARK}{'x' * 9000}"), id="long-header"),
    pytest.param(request(f"GET /api/v1/runs?{MARK}={'x' * 9000} HTTP/1.1"), id="long-line"),
    pytest.param(
        request(f"POST {CALL} HTTP/1.1", *(f"X-{i}: {MARK}" for i in range(200))),
        id="many-headers",
    ),
    pytest.param(request(f"POST {CALL} HTTP/1.1", f"X-Ctl: {MARK}\x01"), id="control-char"),
    pytest.param(request(f"POST {CALL} HTTP/1.1", f"Bad {MARK}"), id="bad-header-line"),
    pytest.param(request(f"GET /api/v1/runs?{MARK} HTTP/9.1"), id="bad-version"),
    pytest.param(
        request(f"POST {CALL} HTTP/1.1", "Transfer-Encoding: chunked") + b"zz\r\n",
        id="bad-chunk",
    ),
]


@pytest.mark.parametrize("data", PARSER_ERRORS)
async def test_a_request_aiohttp_cannot_parse_is_answered_in_the_api_shape(
    api: Started, data: bytes
) -> None:
    assert api.connector.api is not None
    reply = await exchange(api.connector.api.port, data)
    status = int(reply.split(b" ", 2)[1])
    if status == 400:
        assert api_error(reply, 400)["code"] == "invalid_request"
    else:
        # aiohttp 3.11's parser takes more headers than 3.14's: a route answered it.
        api_error(reply, status)


@pytest.mark.parametrize("path", ["/nowhere", "/api/v1/nowhere", CALL])
async def test_an_unknown_expectation_is_417_in_the_api_shape(api: Started, path: str) -> None:
    assert api.connector.api is not None
    data = request(f"POST {path} HTTP/1.1", f"Expect: 200-ok-{MARK}", body=b"{}")
    reply = await exchange(api.connector.api.port, data)
    assert api_error(reply, 417)["code"] == "expectation_failed"


@asynccontextmanager
async def capped_api(tmp_path: Path) -> AsyncIterator[ApiListener]:
    """A started connector whose API serves one connection at a time; its listener."""
    config = parse_config(config_text(), base_dir=tmp_path)
    assert config.api is not None
    api = dataclasses.replace(config.api, port=0, max_connections=1, header_timeout=30.0)
    async with open_connector(dataclasses.replace(config, api=api), sandbox=FAST) as connector:
        await connector.start()
        assert connector.api is not None
        yield connector.api


async def test_the_503_at_the_connection_cap_is_in_the_api_shape(tmp_path: Path) -> None:
    async with capped_api(tmp_path) as listener:
        port = listener.port
        busy_reader, busy = await asyncio.open_connection("127.0.0.1", port)
        call = request(f"POST {CALL} HTTP/1.1", f"Authorization: Bearer {FULL}", body=CALL_BODY)
        busy.write(call[:-5])  # the handler waits for the rest of the body
        # Busy once its handler runs: then it is no longer idle, so not evicted.
        connections = listener._server._connections
        assert connections is not None
        await eventually(lambda: len(connections) == 1 and not connections._idle, timeout=10)

        reply = await exchange(port, request(f"GET /api/v1/runs?{MARK}=1 HTTP/1.1"))

        busy.write(call[-5:])
        answered, _ = await read_answer(busy_reader)
        busy.close()
        await busy.wait_closed()
    assert api_error(reply, 503)["code"] == "unavailable"
    assert answered.startswith(b"HTTP/1.1 202 ")


# -- Expect: 100-continue only for a caller the operation would serve ---------------------------


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        pytest.param(None, 401, id="no-token"),
        pytest.param(f"Bearer {MARK}-not-a-token-at-all", 401, id="wrong-token"),
        pytest.param(f"Basic {FULL}", 401, id="wrong-scheme"),
        pytest.param(f"Bearer {READER}", 403, id="read-token-acting"),
    ],
)
async def test_100_continue_is_not_said_to_a_caller_the_operation_refuses(
    api: Started, authorization: str | None, status: int
) -> None:
    assert api.connector.api is not None
    headers = ["Expect: 100-continue", "Content-Type: application/json"]
    if authorization is not None:
        headers.append(f"Authorization: {authorization}")
    # The head only: a client that waits for 100 Continue sends no body before it.
    data = request(f"POST {CALL} HTTP/1.1", *headers)
    data = data.replace(b"Content-Length: 0", f"Content-Length: {len(CALL_BODY)}".encode())
    reply = await exchange(api.connector.api.port, data)

    assert b"100 Continue" not in reply
    error = api_error(reply, status)
    assert error["code"] == ("unauthorized" if status == 401 else "forbidden")
    assert re.search(rb"(?i)\r\nconnection: close", reply)
    runs = await api.client.get("/api/v1/runs")
    assert runs.body["items"] == []


async def test_an_act_token_cannot_read_through_expect_either(api: Started) -> None:
    assert api.connector.api is not None
    data = request(
        "GET /api/v1/runs HTTP/1.1", "Expect: 100-continue", f"Authorization: Bearer {ACTOR}"
    )
    reply = await exchange(api.connector.api.port, data)
    assert b"100 Continue" not in reply
    assert api_error(reply, 403)["code"] == "forbidden"


async def test_100_continue_is_said_to_the_right_token_and_the_call_goes_through(
    api: Started,
) -> None:
    assert api.connector.api is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", api.connector.api.port)
    head = (
        f"POST {CALL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\n"
        f"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(CALL_BODY)}\r\n\r\n"
    )
    writer.write(head.encode())
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(CALL_BODY)
    answered, body = await read_answer(reader)
    writer.close()
    await writer.wait_closed()
    assert answered.startswith(b"HTTP/1.1 202 "), answered + body
    assert json.loads(body)["run"]["automation"] == "api.bulk_delete"


async def test_a_public_operation_says_100_continue_without_a_token(api: Started) -> None:
    assert api.connector.api is not None
    data = request("GET /api/v1/health HTTP/1.1", "Expect: 100-continue", "Connection: close")
    reply = await exchange(api.connector.api.port, data, until_closed=True)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), reply


# -- a broken body: answered, and no ERROR in the log ----------------------------------------


@pytest.mark.parametrize("token", [None, FULL], ids=["no-token", "token"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_broken_body_is_answered_and_logs_no_error(
    api: Started, caplog: pytest.LogCaptureFixture, token: str | None, encoding: str
) -> None:
    assert api.connector.api is not None
    caplog.set_level(logging.DEBUG)
    headers = [f"Content-Encoding: {encoding}", "Content-Type: application/json"]
    if token is not None:
        headers.append(f"Authorization: Bearer {token}")
    data = request(f"POST {CALL} HTTP/1.1", *headers, body=b"0123456789")
    for _ in range(3):  # a burst, as a flood would send
        # Until closed: aiohttp drains the body after the answer, then drops the connection.
        reply = await exchange(api.connector.api.port, data, until_closed=True)
        api_error(reply, 401 if token is None else 400)

    # The listener's loggers: asyncio may log, when the garbage collector runs, about a
    # task an earlier test left behind (aiohttp 3.11's handlers), which is not this.
    ours = [r for r in caplog.records if r.name.startswith("connector.")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.ERROR] == []
    dropped = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert dropped
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in dropped)
