"""The listener against hostile clients: deadlines, the connection cap, error bodies, strict JSON.

Before the hardening: connections idle or trickling forever, a flood of them
exhausting descriptors, aiohttp's 400 echoing the request line (token and
all), lone surrogates reaching the journal (which answered 503) and `1e400`
accepted, `Infinity` in our own answers. (`NaN` and `Infinity` in a body were
refused already; they sit with `1e400` for the reason now given.) The daemon-level helpers
(`raise_file_limit`, `install_quiet_accept_errors`) are checked at the end;
tests/listener/test_listener_slowloris_e2e.py runs the flood against `ftconnect run`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from ft_listener_support import TOKEN, Recorder, body_of, fixture

from connector.events import Event
from connector.ingress import connections as connections_module
from connector.ingress.descriptors import install_quiet_accept_errors, raise_file_limit
from connector.ingress.webhooks import WebhookListener

DEADLINE = 1.0  # the header deadline these tests run with, in seconds
BAD_REQUEST = b'{"error": "bad request"}'

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[WebhookListener]:
    """A started listener on a free loopback port, recording into a fresh Recorder."""
    options.setdefault("record", Recorder())
    served = WebhookListener(token=TOKEN, **options)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def connect(listener: WebhookListener) -> Streams:
    """A raw connection, returned once the listener counts it (so arrival order is known)."""
    before = listener.open_connections
    streams = await asyncio.open_connection("127.0.0.1", listener.port)
    assert await eventually(lambda: listener.open_connections > before)
    return streams


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server closed the connection (EOF or reset) within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()


def hook_head(length: int, provider: str = "finetuning") -> bytes:
    """A delivery's request line and headers, Content-Length `length`, token right."""
    return (
        f"POST /hooks/{provider}?token={quote(TOKEN, safe='')} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def read_answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of one answer (with Content-Length) read off a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await asyncio.wait_for(reader.readexactly(length), timeout)


# -- the header deadline ------------------------------------------------------------------


async def test_a_silent_connection_is_closed_at_the_header_deadline() -> None:
    async with serving(header_timeout=DEADLINE) as listener:
        reader, writer = await connect(listener)
        opened = time.monotonic()

        closed = await closed_within(reader, DEADLINE + 2)

        waited = time.monotonic() - opened
        await close(writer)
        assert closed
        assert waited > DEADLINE * 0.8  # the deadline, not at once
        assert await eventually(lambda: listener.open_connections == 0)


async def test_headers_trickled_slower_than_the_deadline_are_cut_off() -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    async with serving(header_timeout=DEADLINE) as listener:
        reader, writer = await connect(listener)
        opened = time.monotonic()

        async def trickle() -> None:
            # A byte every 50 ms: always sending, never finishing the headers.
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        try:
            closed = await closed_within(reader, DEADLINE + 3)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await close(writer)
        assert closed
        assert time.monotonic() - opened < DEADLINE + 2


async def test_the_deadline_restarts_after_each_answer_on_a_keep_alive_connection() -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async with serving(header_timeout=DEADLINE) as listener:
        reader, writer = await connect(listener)
        for _ in range(3):  # three requests, together longer than one deadline
            await asyncio.sleep(DEADLINE * 0.5)
            writer.write(healthz)
            assert (await read_answer(reader))[0] == 200
        answered = time.monotonic()

        closed = await closed_within(reader, DEADLINE + 2)

        await close(writer)
        assert closed
        assert time.monotonic() - answered > DEADLINE * 0.8


async def test_a_request_handled_longer_than_the_deadline_is_not_cut_off() -> None:
    slow = Recorder()

    async def record(event: Event) -> bool:
        await asyncio.sleep(DEADLINE * 1.5)
        return await slow(event)

    body = body_of(fixture("webhook_completed.json"))
    async with serving(header_timeout=DEADLINE, record=record) as listener:
        reader, writer = await connect(listener)
        writer.write(hook_head(len(body)) + body)

        status, answer = await read_answer(reader, timeout=DEADLINE * 4)

        await close(writer)
    assert status == 200
    assert json.loads(answer) == {"ok": True, "new": True}
    assert len(slow.events) == 1


async def test_a_body_slower_than_the_body_deadline_is_408() -> None:
    async with serving(header_timeout=5, body_timeout=0.3) as listener:
        reader, writer = await connect(listener)
        writer.write(hook_head(100) + b"{")

        status, _ = await read_answer(reader)

        await close(writer)
    assert status == 408


# -- the connection cap -------------------------------------------------------------------


async def test_at_the_cap_the_connection_idle_the_longest_is_closed() -> None:
    async with serving(max_connections=3, header_timeout=30) as listener:
        oldest = await connect(listener)
        middle = await connect(listener)
        # A keep-alive connection that just had an answer is idle since then, not since it opened.
        served = await connect(listener)
        served[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_answer(served[0]))[0] == 200

        newcomer = await asyncio.open_connection("127.0.0.1", listener.port)

        assert await closed_within(oldest[0], 2)
        assert listener.open_connections == 3
        assert not await closed_within(middle[0], 0.2)
        # The survivors still work, the newcomer included.
        for reader, writer in (served, newcomer, middle):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_answer(reader))[0] == 200
        for _, writer in (oldest, middle, served, newcomer):
            await close(writer)


async def test_a_request_in_progress_is_not_evicted() -> None:
    body = body_of(fixture("webhook_completed.json"))
    recorder = Recorder()
    async with serving(max_connections=2, header_timeout=30, record=recorder) as listener:
        busy = await connect(listener)
        # Headers and half the body: the handler is now reading (busy), the oldest connection.
        busy[1].write(hook_head(len(body)) + body[: len(body) // 2])
        await asyncio.sleep(0.1)
        idle = await connect(listener)

        first = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await closed_within(idle[0], 2)  # the only idle one
        second = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await closed_within(first[0], 2)

        busy[1].write(body[len(body) // 2 :])
        status, answer = await read_answer(busy[0])
        for _, writer in (busy, idle, first, second):
            await close(writer)
    assert status == 200
    assert json.loads(answer) == {"ok": True, "new": True}
    assert len(recorder.events) == 1


async def test_when_every_connection_is_busy_a_newcomer_gets_503() -> None:
    body = body_of(fixture("webhook_completed.json"))
    async with serving(max_connections=1, header_timeout=30) as listener:
        busy = await connect(listener)
        busy[1].write(hook_head(len(body)) + body[:10])
        await asyncio.sleep(0.1)

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        status, answer = await read_answer(reader)

        assert await closed_within(reader, 2)
        await close(writer)
        busy[1].write(body[10:])
        assert (await read_answer(busy[0]))[0] == 200
        await close(busy[1])
    assert status == 503
    assert json.loads(answer) == {"error": "too busy, retry later"}


async def test_a_flood_of_idle_connections_leaves_room_for_real_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector.ingress.webhooks")
    body = body_of(fixture("webhook_completed.json"))
    recorder = Recorder()
    async with serving(max_connections=20, header_timeout=30, record=recorder) as listener:
        flood = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(100)]
        assert await eventually(lambda: listener.open_connections == 20)

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(hook_head(len(body)) + body)
        status, _ = await asyncio.wait_for(read_answer(reader), 2)

        assert listener.open_connections <= 20
        for _, flooder in flood:
            await close(flooder)
        await close(writer)
    assert status == 200
    assert len(recorder.events) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 2  # the overload is reported, not each connection
    assert any("listener full (20 connections)" in r.getMessage() for r in warnings)


async def test_bad_limits_are_refused() -> None:
    for options in ({"header_timeout": 0}, {"body_timeout": -1}, {"max_connections": 0}):
        with pytest.raises(ValueError, match="must be"):
            WebhookListener(token=TOKEN, record=Recorder(), **options)


# -- protocol errors quote nothing ----------------------------------------------------------


ENCODED = quote(TOKEN, safe="").encode()
GARBAGE = [
    pytest.param(
        b"GET /hooks/finetuning?token=" + ENCODED + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        id="control-byte-in-target",
    ),
    pytest.param(
        b"GET /hooks/finetuning?token=" + TOKEN.encode() + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        id="raw-token",
    ),
    pytest.param(
        b"GET /hooks/finetuning?token=" + ENCODED + b" HTTP/9.1\r\nHost: x\r\n\r\n",
        id="bad-version",
    ),
    pytest.param(
        b"BLAH\x00 /hooks/finetuning?token=" + ENCODED + b" HTTP/1.1\r\n\r\n", id="bad-method"
    ),
    pytest.param(
        b"POST /hooks/finetuning?token=" + ENCODED + b" HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        id="bad-header",
    ),
    pytest.param(
        b"POST /hooks/finetuning?token=" + ENCODED + b" HTTP/1.1\r\nHost: x\r\n"
        b"X-Token: " + TOKEN.encode() + b"\x00\r\n\r\n",
        id="nul-in-header-value",
    ),
    pytest.param(
        b"GET /hooks/finetuning?token=" + ENCODED + b"&pad=" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n",
        id="line-too-long",
    ),
    pytest.param(
        b"POST /hooks/finetuning?token=" + ENCODED + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: nope-" + ENCODED + b"\r\n\r\n",
        id="bad-content-length",
    ),
]


@pytest.mark.parametrize("request_bytes", GARBAGE)
async def test_a_malformed_request_is_answered_without_quoting_it(request_bytes: bytes) -> None:
    async with serving() as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(request_bytes)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        assert length is not None
        body = await asyncio.wait_for(reader.readexactly(int(length[1])), 5)
        await close(writer)

    reply = head + body
    forbidden = [
        TOKEN,
        quote(TOKEN, safe=""),
        quote_plus(TOKEN),
        repr(TOKEN.encode())[2:-1],
        "hooks",
        "finetuning",
        "token",
        "BLAH",
        "Bad Header",
        "nope",
    ]
    if re.match(rb"HTTP/1\.[01] 400 ", head):  # aiohttp's answer to a protocol error
        assert body == BAD_REQUEST
        forbidden.append("9.1")
    else:
        # aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) lets some of these
        # through to the routes: the answer is then one of the listener's own.
        assert json.loads(body)["error"] in ("method not allowed", "unauthorized", "not found")
    for part in forbidden:
        assert part.encode() not in reply


# -- strict JSON in ------------------------------------------------------------------------


def _completed_text(**replace: str) -> bytes:
    """The completed payload as JSON text, with raw JSON substituted for some values."""
    text = json.dumps({**fixture("webhook_completed.json"), **dict.fromkeys(replace, "@")})
    for key, raw in replace.items():
        text = text.replace(f'"{key}": "@"', f'"{key}": {raw}', 1)
    return text.encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_completed_text(id=r'"\ud800"'), id="lone-high-surrogate-id"),
        pytest.param(_completed_text(id=r'"gen_\udfff_x"'), id="lone-low-surrogate-id"),
        pytest.param(_completed_text(prompt=r'"\ud83d"'), id="surrogate-prompt"),
        pytest.param(_completed_text(extra=r'{"\ud800": 1}'), id="surrogate-key"),
        pytest.param(_completed_text(extra=r'[[1, ["\udc00"]]]'), id="surrogate-nested"),
    ],
)
async def test_a_lone_surrogate_anywhere_is_400(body: bytes) -> None:
    recorder = Recorder()
    async with serving(record=recorder) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(hook_head(len(body)) + body)
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 400
    assert json.loads(answer) == {"error": "not JSON: a string is not valid Unicode"}
    assert recorder.events == []


async def test_surrogates_as_utf8_bytes_are_400_and_valid_pairs_pass() -> None:
    recorder = Recorder()
    raw = _completed_text(id='"gen_@@"').replace(b"@@", b"\xed\xa0\x80")
    pair = _completed_text(id=r'"gen_\ud83d\ude00"')
    async with serving(record=recorder) as listener:
        answers = []
        for body in (raw, pair):
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(hook_head(len(body)) + body)
            answers.append(await read_answer(reader))
            await close(writer)
    assert [status for status, _ in answers] == [400, 200]
    assert [event.generation.id for event in recorder.events if event.generation] == ["gen_😀"]


@pytest.mark.parametrize(
    "raw",
    ["1e400", "-1e400", "1E+400", "NaN", "Infinity", "-Infinity", "[1, 2.5e999]"],
)
@pytest.mark.parametrize("provider", ["finetuning", "tempolor"])
async def test_non_finite_numbers_are_400(raw: str, provider: str) -> None:
    base = fixture(
        "webhook_completed.json" if provider == "finetuning" else "tempolor_job_completed.json"
    )
    body = json.dumps({**base, "duration": "@"}).replace('"@"', raw).encode()
    recorder = Recorder()
    async with serving(record=recorder) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(hook_head(len(body), provider) + body)
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 400
    assert json.loads(answer) == {"error": "not JSON: numbers must be finite"}
    assert recorder.events == []


# -- strict JSON out -----------------------------------------------------------------------


def _strict(text: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in an answer")

    return json.loads(text, parse_constant=refuse)


async def test_healthz_answers_strict_json_with_non_finite_values_as_null() -> None:
    def health() -> dict[str, Any]:
        return {
            "age": math.inf,
            "ratio": -math.inf,
            "mean": math.nan,
            "nested": {"a": [1.5, math.inf, (math.nan, 2)]},
        }

    async with serving(health=health) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 200
    body = _strict(answer)
    assert body.pop("open_connections") == 1
    assert body == {
        "status": "ok",
        "age": None,
        "ratio": None,
        "mean": None,
        "nested": {"a": [1.5, None, [None, 2]]},
    }


# -- the daemon's side: the descriptor limit and quiet accept errors -------------------------


def test_raise_file_limit_raises_the_soft_limit_to_the_hard_one() -> None:
    import resource

    original = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = original
    lowered = min(soft, 512) if soft != resource.RLIM_INFINITY else 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        result = raise_file_limit()
        now = resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, original)
    assert result == now
    if hard != resource.RLIM_INFINITY:
        assert now == (hard, hard)
    else:
        assert now[0] > lowered


def test_raise_file_limit_with_an_unlimited_hard_limit_and_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    limits = [100, resource.RLIM_INFINITY]
    tried: list[int] = []

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        tried.append(value[0])
        if value[0] > 10240:  # what macOS says to more than OPEN_MAX
            raise ValueError("not allowed")
        limits[0] = value[0]

    monkeypatch.setattr(resource, "getrlimit", lambda which: tuple(limits))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)

    assert raise_file_limit() == (10240, resource.RLIM_INFINITY)
    assert tried == [1 << 20, 1 << 16, 10240]

    def refuse(which: int, value: tuple[int, int]) -> None:
        raise OSError(errno.EPERM, "no")

    limits[0] = 100
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert raise_file_limit() == (100, resource.RLIM_INFINITY)  # left as it was, no error

    # Never lowered: an unlimited soft limit, or one above every fallback, stays.
    for soft in (resource.RLIM_INFINITY, 1 << 21):
        limits[0] = soft
        assert raise_file_limit() == (soft, resource.RLIM_INFINITY)


def test_raise_file_limit_is_none_without_rlimits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert raise_file_limit() is None


def _accept_failed(code: int = errno.EMFILE) -> dict[str, Any]:
    """The context asyncio's accept loop reports when it runs out of descriptors."""
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(code, "Too many open files"),
    }


async def test_accept_errors_are_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    others: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()

    def mine(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        others.append(context)

    loop.set_exception_handler(mine)
    undo = install_quiet_accept_errors(loop, interval=0.3)
    try:
        for _ in range(1000):
            loop.call_exception_handler(_accept_failed())
        for code in (errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            loop.call_exception_handler(_accept_failed(code))
        # A retry asyncio scheduled after EMFILE, firing once the server has closed.
        retry = "Exception in callback BaseSelectorEventLoop._start_serving(<...>, 128)"
        loop.call_exception_handler(
            {"message": retry, "exception": ValueError("Invalid file descriptor: -1")}
        )
        loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        first = [
            r.getMessage() for r in caplog.records if r.name == "connector.ingress.descriptors"
        ]

        await asyncio.sleep(0.45)  # one interval: one more line, with the count

        lines = [
            r.getMessage() for r in caplog.records if r.name == "connector.ingress.descriptors"
        ]
    finally:
        undo()
        restored = loop.get_exception_handler()
        loop.set_exception_handler(previous)
    assert len(first) == 1
    assert "socket.accept() out of system resource" in first[0]
    assert "Too many open files" in first[0]
    assert len(lines) == 2
    assert "1003 time(s)" in lines[1]
    assert [context["message"] for context in others] == ["something else"]
    assert restored is mine  # the previous handler is back
    assert not any(r.exc_info for r in caplog.records)  # no tracebacks


async def test_other_errors_go_to_asyncios_default_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(None)
    undo = install_quiet_accept_errors(loop, interval=10)
    try:
        loop.call_exception_handler({"message": "unrelated", "exception": RuntimeError("boom")})
        loop.call_exception_handler(_accept_failed())
        loop.call_exception_handler(_accept_failed())
    finally:
        undo()  # reports what was counted since the last line
        loop.set_exception_handler(previous)
    by_asyncio = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    ours = [r.getMessage() for r in caplog.records if r.name == "connector.ingress.descriptors"]
    assert by_asyncio == ["unrelated"]
    assert len(ours) == 2
    assert "1 time(s)" in ours[0]
    assert "1 time(s)" in ours[1]


async def test_overload_throttle_reports_counts() -> None:
    reports: list[int] = []
    loop = asyncio.get_running_loop()
    throttle = connections_module.Throttle(loop, 0.2, reports.append)
    for _ in range(5):
        throttle.hit()
    await asyncio.sleep(0.3)
    throttle.hit()
    await asyncio.sleep(0.5)  # the window that had no hits closes quietly
    throttle.hit()
    throttle.hit()
    throttle.close()
    # First at once; the burst's other 4 after a window; the later one after the next
    # window; then nothing, so the next hit is reported at once and close() adds the rest.
    assert reports == [1, 4, 1, 1, 1]


QUIET_SCRIPT = """
import asyncio, logging, resource, sys
from connector.ingress.descriptors import install_quiet_accept_errors

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")


async def main() -> None:
    loop = asyncio.get_running_loop()
    undo = install_quiet_accept_errors(loop, interval=60) if sys.argv[1] == "quiet" else None
    held = []

    async def hold(reader, writer):
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    await loop.run_in_executor(None, lambda: None)  # start the executor thread first
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    server.close()
    for writer in held:
        writer.close()
    await asyncio.sleep(1.5)  # asyncio's accept retries fire against the closed server
    if undo is not None:
        undo()


asyncio.run(main())
"""


@pytest.mark.e2e
async def test_a_real_accept_storm_is_a_few_lines() -> None:
    """asyncio's real contexts, from a process that runs out of descriptors while accepting."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        QUIET_SCRIPT,
        "quiet",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    clients: list[Streams] = []
    try:
        port = int(await asyncio.wait_for(process.stdout.readline(), 20))
        for _ in range(80):  # past the 48 descriptors the server process may hold
            clients.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(2.5)  # accept() fails, is retried a second later, fails again
        process.stdin.write(b"\n")
        await process.stdin.drain()
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        for _, writer in clients:
            writer.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = err.decode(errors="replace").splitlines()
    assert process.returncode == 0, "\n".join(lines[-20:])
    assert any("Too many open files" in line for line in lines)
    assert "Traceback" not in err.decode(errors="replace")
    assert len(lines) <= 3, "\n".join(lines[:20])


async def test_healthz_answers_503_while_health_reports_degraded() -> None:
    def health() -> dict[str, Any]:
        return {"status": "degraded", "journal": "cannot finish a step: disk is full"}

    async with serving(health=health) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 503
    body = _strict(answer)
    assert body["status"] == "degraded"
    assert "disk is full" in body["journal"]


# -- Expect: aiohttp handles it before any middleware ------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/hooks/finetuning", "/nowhere"])
async def test_an_unknown_expectation_is_refused_without_echoing_it(path: str) -> None:
    async with serving() as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: <h1>echo-me</h1>\r\n"
            "Content-Length: 2\r\n\r\n{}".encode()
        )
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 417
    assert b"echo-me" not in answer
    assert json.loads(answer) == {"error": "expectation failed"}


async def test_100_continue_is_said_only_to_a_sender_with_the_right_token() -> None:
    async with serving() as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(
            b"POST /hooks/finetuning?token=wrong HTTP/1.1\r\nHost: x\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        status, answer = await read_answer(reader)
        await close(writer)
        assert status == 401
        assert json.loads(answer) == {"error": "unauthorized"}

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        body = body_of(fixture("webhook_completed.json"))
        head = hook_head(len(body)).replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        status, answer = await read_answer(reader)
        await close(writer)
    assert status == 200, answer
