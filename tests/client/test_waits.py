"""No silent waits: budget slots, Retry-After and backoff over 2 s are said, once each.

Everything runs on the fake clock of ft_client_support (nothing really sleeps);
what is said is checked by counting `connector.waits` log records and calls of
the `on_wait` callback, never by timing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from ft_client_support import API, API_KEY, FakeClock, error_fixture, load_fixture, sent

from connector.errors import (
    GenerationOutcomeUnknownError,
    InternalServerError,
    ProviderConnectionError,
    ProviderError,
    ServerError,
)
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.ratelimit import ANNOUNCE_AFTER, RateBudget, describe_wait
from connector.providers.tempolor.client import TempolorClient
from connector.providers.tempolor.credentials import DEFAULT_BASE_URL as TEMPOLOR_DEFAULT_URL

ME = f"{API}/v1/me"
GENERATIONS = f"{API}/v1/generations"


class Waits:
    """An `on_wait` that records each announced wait and when each one ended."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []
        self.ended = 0

    def __call__(self, reason: str, seconds: float) -> Callable[[], None]:
        self.started.append((reason, seconds))

        def done() -> None:
            self.ended += 1

        return done

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.started]


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The INFO lines of `connector.waits` logged so far."""
    caplog.set_level(logging.INFO, logger="connector.waits")

    def lines() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "connector.waits" and r.levelno == logging.INFO
        ]

    return lines


def budget(clock: FakeClock, limit: int = 2, window: float = 60.0, **kwargs: Any) -> RateBudget:
    return RateBudget(limit, window, name="reads", clock=clock, sleep=clock.sleep, **kwargs)


def refused(host: str = "pub.finetuning.ai", port: int = 443) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey(host, port, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connect call failed"))


def server_error(status: int) -> dict[str, Any]:
    return {"status": status, "payload": error_fixture("INTERNAL_ERROR")["body"]}


# -- the rate budget ----------------------------------------------------------------------


async def test_a_long_budget_wait_is_said_once_with_what_and_how_long(
    clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    slots = budget(clock, limit=1, window=60.0, on_wait=waits)
    async with slots.slot():
        pass
    clock.advance(36.6)

    await slots.acquire()

    assert clock.sleeps == [pytest.approx(23.4)]
    assert said() == ["waiting 23.4 s for the reads budget (1 requests per 60 s)"]
    [(reason, seconds)] = waits.started
    assert reason == "for the reads budget (1 requests per 60 s)"
    assert seconds == pytest.approx(23.4)
    assert waits.ended == 1


async def test_short_budget_waits_are_silent(
    clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    slots = budget(clock, limit=1, window=ANNOUNCE_AFTER, on_wait=waits)
    for _ in range(3):
        async with slots.slot():
            pass

    assert clock.sleeps == [ANNOUNCE_AFTER, ANNOUNCE_AFTER]  # two waits of exactly 2 s
    assert said() == []
    assert waits.started == []


async def test_a_wait_checked_many_times_is_still_one_line(
    clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    # The only slot is in flight for 10 s: the budget is checked every 50 ms meanwhile,
    # then the answered slot holds it one more window.
    slots = budget(clock, limit=1, window=60.0, on_wait=waits)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    # The fake clock moves only as the waiter checks the budget.
    while clock.now < 1010:  # noqa: ASYNC110
        await asyncio.sleep(0)
    slots.release()
    await waiter

    assert len(clock.sleeps) > 200  # many checks...
    # ...one line while the end was unknown, one when it became known: never one per check.
    assert said() == [
        "waiting for the reads budget: all 1 slots are taken by requests still waiting "
        "for their answers",
        "waiting 60.0 s for the reads budget (1 requests per 60 s)",
    ]
    assert [seconds for _, seconds in waits.started] == [math.inf, pytest.approx(60.0)]
    assert waits.ended == 2


async def test_a_wait_that_grows_while_it_lasts_is_not_said_again(
    clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    slots = budget(clock, limit=2, window=60.0)
    for _ in range(2):
        async with slots.slot():
            pass
    # Another slot is taken behind the waiter's back (a concurrent answer's X-RateLimit view):
    # the wait goes on past what was said, without a second line.
    original = clock.sleep

    async def sleep_and_observe(seconds: float) -> None:
        await original(seconds)
        if len(clock.sleeps) == 1:
            slots.observe(2, 0, used_at_send=0)

    slots._sleep = sleep_and_observe

    await slots.acquire()

    assert len(clock.sleeps) == 2
    assert len(said()) == 1


async def test_a_budget_shared_with_another_program_says_so(
    clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    slots = budget(clock, limit=60)
    async with slots.slot():
        pass
    slots.observe(60, 0, used_at_send=1)  # the server counted 59 requests we did not send

    await slots.acquire()

    [line] = said()
    assert line.startswith("waiting 60.0 s for the reads budget (60 requests per 60 s; ")
    assert "another program may share the key" in line


async def test_a_retry_after_pause_is_said_as_the_servers_request(
    clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    slots = budget(clock, limit=5)
    slots.pause(23)

    await slots.acquire()

    assert said() == [
        "waiting 23.0 s for the reads budget: the server asked for a pause (Retry-After)"
    ]


async def test_the_callback_given_to_acquire_wins_over_the_budgets_own(
    clock: FakeClock, waits: Waits
) -> None:
    own = Waits()
    slots = budget(clock, limit=5, on_wait=own)
    slots.pause(10)

    await slots.acquire(on_wait=waits)

    assert len(waits.started) == 1
    assert own.started == []


async def test_a_failing_callback_never_breaks_the_wait(
    clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    def broken(_reason: str, _seconds: float) -> Callable[[], None]:
        raise RuntimeError("display gone")

    def broken_end(_reason: str, _seconds: float) -> Callable[[], None]:
        def done() -> None:
            raise RuntimeError("display gone")

        return done

    for callback in (broken, broken_end):
        slots = budget(clock, limit=5, on_wait=callback)
        slots.pause(10)
        assert await slots.acquire() == 1

    assert len(said()) == 2


async def test_a_cancelled_wait_still_ends(clock: FakeClock, waits: Waits) -> None:
    async def forever(_seconds: float) -> None:
        await asyncio.Event().wait()

    slots = RateBudget(1, 60.0, name="reads", clock=clock, sleep=forever, on_wait=waits)
    slots.pause(30)
    task = asyncio.create_task(slots.acquire())
    while not waits.started:  # noqa: ASYNC110
        await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task

    assert waits.ended == 1


def test_describe_wait() -> None:
    assert describe_wait("for x", 2.345) == "waiting 2.3 s for x"
    assert describe_wait("for x", math.inf) == "waiting for x"


# -- the client: budget waits and retries ------------------------------------------------------


async def test_the_clients_budget_wait_goes_to_its_on_wait(
    mocked: aioresponses, clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    mocked.get(
        ME,
        payload=load_fixture("me"),
        headers={"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0"},
    )
    mocked.get(ME, payload=load_fixture("me"))
    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        api.on_wait = waits  # settable after construction, as the CLI does
        await api.get_account()
        await api.get_account()

    assert clock.sleeps == [60.0]
    [line] = said()
    assert line.startswith("waiting 60.0 s for the reads budget (60 requests per 60 s; ")
    assert "another program may share the key" in line
    assert len(waits.started) == 1
    assert waits.ended == 1


async def test_only_backoffs_over_two_seconds_are_said(
    mocked: aioresponses, clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    for _ in range(4):
        mocked.get(ME, **server_error(503))
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep, on_wait=waits) as api:
        await api.get_account()

    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert said() == [
        "waiting 4.0 s to retry GET /v1/me (attempt 4 of 5) after HTTP 503 INTERNAL_ERROR",
        "waiting 8.0 s to retry GET /v1/me (attempt 5 of 5) after HTTP 503 INTERNAL_ERROR",
    ]
    assert [seconds for _, seconds in waits.started] == [4.0, 8.0]
    assert waits.ended == 2


async def test_a_429_retry_after_is_said_as_the_servers_request(
    mocked: aioresponses, clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    entry = error_fixture("RATE_LIMITED")
    mocked.get(ME, status=429, payload=entry["body"], headers={"Retry-After": "23"})
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        await api.get_account()

    # One line: the budget's pause ends with the backoff, so acquiring again says nothing.
    assert said() == [
        "waiting 23.0 s to retry GET /v1/me (attempt 2 of 5) after HTTP 429 RATE_LIMITED, "
        "as the server's Retry-After asks"
    ]


async def test_a_short_backoff_after_a_slow_failure_is_said(
    mocked: aioresponses, clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    calls: list[str] = []

    def slow_timeout_then_answer(*_args: Any, **_kwargs: Any) -> CallbackResult:
        calls.append("called")
        if len(calls) == 1:
            clock.advance(10)  # the connect attempt took 10 s before it gave up
            raise aiohttp.ConnectionTimeoutError("Connection timeout to host")
        return CallbackResult(payload=load_fixture("me"))

    mocked.get(ME, callback=slow_timeout_then_answer, repeat=True)

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        await api.get_account()

    assert clock.sleeps == [1.0]
    assert said() == [
        "waiting 1.0 s to retry GET /v1/me (attempt 2 of 5): cannot connect to "
        "https://pub.finetuning.ai:443 (no answer within the 10 s connect timeout)"
    ]


async def test_quick_failures_with_short_backoff_stay_silent(
    mocked: aioresponses, clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    mocked.get(ME, exception=refused())
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep, on_wait=waits) as api:
        await api.get_account()

    assert clock.sleeps == [1.0]
    assert said() == []
    assert waits.started == []


# -- the client: connecting --------------------------------------------------------------------


async def test_connect_timeout_is_short_and_separate_from_the_request_timeout(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, payload=load_fixture("me"))
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as default:
        await default.get_account()
    async with FinetuningClient(
        API_KEY, connect_timeout=2.5, clock=clock, sleep=clock.sleep
    ) as custom:
        await custom.get_account()

    timeouts = [call.kwargs["timeout"] for call in sent(mocked, "GET", ME)]
    assert [(t.connect, t.sock_connect) for t in timeouts] == [(10.0, 10.0), (2.5, 2.5)]
    assert all(t.total is None for t in timeouts)  # the whole request: request_timeout
    assert default.connect_timeout == 10.0
    assert default.request_timeout == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"connect_timeout": -1},
        {"request_timeout": 0},
        {"connect_retries": -1},
        {"max_retries": -1},
    ],
)
def test_nonsense_timeouts_and_retries_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FinetuningClient(API_KEY, **kwargs)


async def test_connect_retries_limit_only_connections_that_never_opened(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, exception=refused(), repeat=True)

    async with FinetuningClient(API_KEY, connect_retries=2, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.get_account()

    assert api.requests_sent == 3
    assert clock.sleeps == [1.0, 2.0]
    assert caught.value.message == (
        "cannot connect to https://pub.finetuning.ai:443 (connection refused); "
        "gave up after 3 attempts in 3.0 s"
    )
    assert str(caught.value).startswith("CONNECTION_ERROR: cannot connect to")


async def test_connect_retries_leave_other_transient_failures_their_retries(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, **server_error(500), repeat=True)

    async with FinetuningClient(API_KEY, connect_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(InternalServerError):
            await api.get_account()

    assert api.requests_sent == 1 + api.max_retries == 5


async def test_connect_retries_default_to_max_retries(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, exception=refused(), repeat=True)

    async with FinetuningClient(API_KEY, max_retries=3, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderConnectionError, match=r"gave up after 4 attempts in 7\.0 s"):
            await api.get_account()

    assert api.connect_retries == 3


async def test_a_single_attempt_names_no_attempt_count(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, exception=refused())

    async with FinetuningClient(API_KEY, connect_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.get_account()

    assert caught.value.message == (
        "cannot connect to https://pub.finetuning.ai:443 (connection refused)"
    )


async def test_a_create_whose_connection_timed_out_is_retried_as_not_sent(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(GENERATIONS, exception=aiohttp.ConnectionTimeoutError("Connection timeout"))
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        created = await api.create_generation(tags="lofi")

    assert created.id == "gen_xyz789"
    assert api.requests_sent == 2


async def test_a_create_that_never_connects_names_the_connect_timeout(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(
        GENERATIONS, exception=aiohttp.ConnectionTimeoutError("Connection timeout"), repeat=True
    )

    async with FinetuningClient(
        API_KEY, connect_timeout=4, connect_retries=1, clock=clock, sleep=clock.sleep
    ) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.create_generation(tags="lofi")

    assert not isinstance(caught.value, GenerationOutcomeUnknownError)
    assert caught.value.message == (
        "cannot connect to https://pub.finetuning.ai:443 (no answer within the 4 s connect "
        "timeout); gave up after 2 attempts in 1.0 s"
    )


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_nothing_listening_names_what_was_tried_and_never_the_key(
    clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    port = _unused_port()
    async with FinetuningClient(
        API_KEY,
        base_url=f"http://user:secret@127.0.0.1:{port}/",
        connect_retries=2,
        backoff_base=1.5,
        clock=clock,
        sleep=clock.sleep,
    ) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.list_generations(limit=5)

    message = caught.value.message
    assert message == (
        f"cannot connect to http://127.0.0.1:{port} (connection refused); "
        "gave up after 3 attempts in 4.5 s"
    )
    assert api.requests_sent == 3
    assert clock.sleeps == [1.5, 3.0]
    # The 3 s backoff was said; the 1.5 s one was not.
    assert said() == [
        f"waiting 3.0 s to retry GET /v1/generations (attempt 3 of 3): cannot connect to "
        f"http://127.0.0.1:{port} (connection refused)"
    ]
    for text in [message, *said()]:
        assert API_KEY not in text
        assert "secret" not in text
        assert "limit" not in text


async def test_a_host_that_does_not_answer_fails_at_the_connect_timeout(
    clock: FakeClock,
) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs unanswered.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            async with FinetuningClient(
                API_KEY,
                base_url=f"http://127.0.0.1:{port}",
                connect_timeout=0.2,
                request_timeout=30,
                connect_retries=0,
                clock=clock,
                sleep=clock.sleep,
            ) as api:
                with pytest.raises(ProviderConnectionError) as caught:
                    await api.get_account()
        finally:
            for filler in fillers:
                filler.close()

    assert caught.value.message == (
        f"cannot connect to http://127.0.0.1:{port} (no answer within the 0.2 s connect timeout)"
    )
    assert caught.value.code == "CONNECTION_ERROR"  # not TIMEOUT: nothing was sent


# -- the TemPolor client ----------------------------------------------------------------------

TEMPOLOR_TOKEN = "user:4821-0123456789abcdef0123456789abcdef"
TEMPOLOR_JOB = f"{TEMPOLOR_DEFAULT_URL}/music/job-1"


async def test_tempolor_backoffs_over_two_seconds_are_said(
    mocked: aioresponses, clock: FakeClock, waits: Waits, said: Callable[[], list[str]]
) -> None:
    mocked.get(TEMPOLOR_JOB, status=503, payload={"error": "Unavailable", "code": 503}, repeat=True)

    async with TempolorClient(TEMPOLOR_TOKEN, clock=clock, sleep=clock.sleep, on_wait=waits) as api:
        with pytest.raises(ServerError):
            await api.get_job("job-1")

    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert said() == [
        "waiting 4.0 s to retry TemPolor GET /v1/tempolor/music/job-1 (attempt 4 of 5) "
        "after HTTP 503",
        "waiting 8.0 s to retry TemPolor GET /v1/tempolor/music/job-1 (attempt 5 of 5) "
        "after HTTP 503",
    ]
    assert waits.ended == 2


async def test_tempolor_retry_after_is_said(
    mocked: aioresponses, clock: FakeClock, said: Callable[[], list[str]]
) -> None:
    mocked.get(
        TEMPOLOR_JOB,
        status=429,
        payload={"error": "slow down", "code": 429},
        headers={"Retry-After": "30"},
    )
    mocked.get(TEMPOLOR_JOB, status=503, payload={"error": "x", "code": 503})
    mocked.get(TEMPOLOR_JOB, status=404, payload={"error": "gone", "code": 404})

    async with TempolorClient(TEMPOLOR_TOKEN, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderError):
            await api.get_job("job-1")

    assert said() == [
        "waiting 30.0 s to retry TemPolor GET /v1/tempolor/music/job-1 (attempt 2 of 5) "
        "after HTTP 429 RATE_LIMITED, as the server's Retry-After asks"
    ]


async def test_tempolor_connect_timeout_and_retries(mocked: aioresponses, clock: FakeClock) -> None:
    mocked.get(TEMPOLOR_JOB, exception=refused("api.useapi.net"), repeat=True)

    async with TempolorClient(
        TEMPOLOR_TOKEN, connect_timeout=3, connect_retries=1, clock=clock, sleep=clock.sleep
    ) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.get_job("job-1")

    assert api.requests_sent == 2
    assert caught.value.message == (
        "cannot connect to https://api.useapi.net:443 (connection refused); "
        "gave up after 2 attempts in 1.0 s"
    )
    [call, _] = sent(mocked, "GET", TEMPOLOR_JOB)
    assert (call.kwargs["timeout"].connect, call.kwargs["timeout"].sock_connect) == (3, 3)
    assert TempolorClient(TEMPOLOR_TOKEN).connect_timeout == 10.0


async def test_tempolor_create_never_connecting_is_a_connection_error(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(
        f"{TEMPOLOR_DEFAULT_URL}/music/song",
        exception=aiohttp.ConnectionTimeoutError("Connection timeout"),
        repeat=True,
    )

    async with TempolorClient(
        TEMPOLOR_TOKEN, connect_retries=2, clock=clock, sleep=clock.sleep
    ) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.create_song(prompt="x")

    assert not isinstance(caught.value, GenerationOutcomeUnknownError)
    assert api.requests_sent == 3
    assert caught.value.message == (
        "cannot connect to https://api.useapi.net:443 (no answer within the 10 s connect "
        "timeout); gave up after 3 attempts in 3.0 s"
    )


async def test_tempolor_nothing_listening(clock: FakeClock) -> None:
    port = _unused_port()
    async with TempolorClient(
        TEMPOLOR_TOKEN,
        base_url=f"http://127.0.0.1:{port}/v1/tempolor",
        connect_retries=0,
        clock=clock,
        sleep=clock.sleep,
    ) as api:
        with pytest.raises(ProviderConnectionError) as caught:
            await api.get_job("job-1")

    assert caught.value.message == f"cannot connect to http://127.0.0.1:{port} (connection refused)"
    assert TEMPOLOR_TOKEN not in str(caught.value)


async def test_a_shared_budget_reports_each_clients_wait_to_that_client(
    mocked: aioresponses, clock: FakeClock
) -> None:
    class OldStyleBudget(RateBudget):
        async def acquire(self) -> int:  # type: ignore[override]  # as subclasses wrote it
            return await super().acquire()

    shared = OldStyleBudget(1, 60.0, name="reads", clock=clock, sleep=clock.sleep)
    mocked.get(ME, payload=load_fixture("me"), repeat=True)
    first_waits, second_waits = Waits(), Waits()
    first = FinetuningClient(
        API_KEY, read_budget=shared, clock=clock, sleep=clock.sleep, on_wait=first_waits
    )
    second = FinetuningClient(
        API_KEY, read_budget=shared, clock=clock, sleep=clock.sleep, on_wait=second_waits
    )
    async with first, second:
        await first.get_account()
        await second.get_account()  # waits a window for the slot the first one used
        await first.get_account()

    assert len(first_waits.started) == 1
    assert len(second_waits.started) == 1
    assert shared.on_wait is None


async def test_waiting_for_an_answer_that_does_not_come_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that takes the connection but never answers: past 2 s the wait is said,
    once, with the time left until the request timeout; the CLI draws it."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    shown: list[tuple[str, float]] = []
    caplog.set_level(logging.INFO, logger="connector.waits")
    try:
        async with FinetuningClient(
            API_KEY,
            base_url=f"http://127.0.0.1:{port}",
            request_timeout=ANNOUNCE_AFTER + 1.0,
            max_retries=0,
            on_wait=lambda reason, seconds: shown.append((reason, seconds)) or None,
        ) as client:
            with pytest.raises(ProviderConnectionError, match="no answer"):
                await client.get_account()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    lines = [r.getMessage() for r in caplog.records if r.name == "connector.waits"]
    assert lines == [f"waiting 1.0 s for an answer from http://127.0.0.1:{port} to GET /v1/me"]
    assert shown == [(f"for an answer from http://127.0.0.1:{port} to GET /v1/me", 1.0)]
