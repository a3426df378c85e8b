"""The token never reaches a log record, whoever writes it: the listener or aiohttp."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from ft_listener_support import TOKEN, Client, FailingRecorder, Recorder, body_of, fixture

from connector.ingress.logs import REDACTED
from connector.ingress.webhooks import WebhookListener

NON_ASCII_TOKEN = "geheim-ключ-✓"


def spellings(token: str) -> set[str]:
    """Every way the token may be written: raw, URL-encoded, inside a bytes repr."""
    return {
        token,
        quote(token, safe=""),
        quote(token, safe="/"),
        quote_plus(token),
        repr(token.encode())[2:-1],
    }


def rendered(record: logging.LogRecord) -> str:
    """A record as a handler would write it, traceback, stack and extras included."""
    text = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return f"{text} {record.__dict__!r}"


@pytest.fixture
async def loop_debug() -> AsyncIterator[None]:
    """aiohttp's server logs some lines only when the event loop runs in debug mode."""
    loop = asyncio.get_running_loop()
    was = loop.get_debug()
    loop.set_debug(True)
    try:
        yield
    finally:
        loop.set_debug(was)


async def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes no HTTP client would, and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return reply


async def exercise(token: str) -> list[int]:
    """Every kind of answer, with the token in the URL and in error messages."""
    recorder = Recorder()
    # A store whose error quotes the hook URL, token and all.
    failing = FailingRecorder(detail=f"while handling /hooks/finetuning?token={token}")

    def health() -> dict[str, float]:
        raise RuntimeError(f"health of ?token={token} unavailable")

    good = WebhookListener(token=token, record=recorder)
    bad = WebhookListener(token=token, record=failing, health=health)
    statuses: list[int] = []
    await good.start()
    await bad.start()
    try:
        async with aiohttp.ClientSession() as session:
            completed = body_of(fixture("webhook_completed.json"))
            for listener in (good, bad):
                client = Client(listener, session)
                for provider in ("finetuning", "tempolor"):
                    answers = [
                        await client.hook(provider, completed, token=token),
                        await client.hook(provider, completed, token=token + "x"),
                        await client.hook(provider, completed, token=None),
                        await client.hook(provider, b"{not json", token=token),
                        await client.hook(provider, b"x" * (64 * 1024 + 1), token=token),
                        await client.hook(
                            provider, completed, token=token, headers={"Content-Encoding": "gzip"}
                        ),
                    ]
                    statuses += [answer.status for answer in answers]
                for method, path in (("GET", "/healthz"), ("GET", "/nope"), ("GET", "/hooks/x")):
                    answer = await client.request(method, path, params={"token": token})
                    statuses.append(answer.status)
                url = listener.hook_url("finetuning")
                async with session.get(url) as response:  # 405, token in the URL
                    statuses.append(response.status)
            # Malformed HTTP: aiohttp's parser logs the request line in its error.
            encoded = quote(token, safe="").encode()
            for request in (
                b"GET /hooks/finetuning?token=" + encoded + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /hooks/finetuning?token=" + encoded + b" HTTP/9.1\r\nHost: x\r\n\r\n",
                b"GET /hooks/finetuning?token="
                + token.encode()
                + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"BLAH\x00 /hooks/finetuning?token=" + encoded + b" HTTP/1.1\r\n\r\n",
                b"POST /hooks/finetuning?token=" + encoded + b" HTTP/1.1\r\nHost: x\r\n"
                b"Bad Header\r\n\r\n",
            ):
                reply = await raw_request(good.port, request)
                statuses.append(int(reply.split(b" ", 2)[1]))
    finally:
        await good.stop()
        await bad.stop()
    return statuses


@pytest.mark.usefixtures("loop_debug")
@pytest.mark.parametrize("token", [TOKEN, NON_ASCII_TOKEN], ids=["ascii", "non-ascii"])
async def test_token_never_reaches_a_log_record(
    caplog: pytest.LogCaptureFixture, token: str
) -> None:
    caplog.set_level(logging.DEBUG)

    statuses = await exercise(token)

    assert 500 not in statuses
    assert {200, 400, 401, 404, 405, 413, 503} <= set(statuses)
    records = caplog.records
    texts = [rendered(record) for record in records]
    for text in texts:
        for spelling in spellings(token):
            assert spelling not in text
    # The redaction did work, and on the loggers that mattered.
    redacted = {
        record.name for record, text in zip(records, texts, strict=True) if REDACTED in text
    }
    assert "connector.ingress.webhooks" in redacted  # record()'s and health()'s errors
    assert "connector.ingress.webhooks.server" in redacted  # aiohttp's parser errors
    access = [record.getMessage() for record in records if record.name.endswith(".access")]
    assert "POST /hooks/finetuning 200" in " ".join(access)
    assert any(message.startswith("GET /healthz 503") for message in access)


async def test_access_log_line_has_no_query_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector.ingress.webhooks.access")
    listener = WebhookListener(token=TOKEN, record=Recorder())
    await listener.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(listener.hook_url("tempolor"), data=b"[]") as response,
        ):
            assert response.status == 400
    finally:
        await listener.stop()

    lines = [
        r.getMessage() for r in caplog.records if r.name == "connector.ingress.webhooks.access"
    ]
    assert len(lines) == 1
    assert lines[0].startswith("POST /hooks/tempolor 400 ")
    assert "?" not in lines[0]
