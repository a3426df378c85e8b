"""Retries: reads and bulk calls retry what is safe; a create never risks a second credit."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from ft_client_support import (
    API,
    API_KEY,
    PLAYLIST,
    TRACK_A,
    FakeClock,
    error_fixture,
    load_fixture,
    request_count,
    sent,
    sent_bodies,
)

from connector.errors import (
    GenerationOutcomeUnknownError,
    GenerationRateLimitedError,
    InternalServerError,
    InvalidApiKeyError,
    MonthlyLimitReachedError,
    NotFoundError,
    ProPlanRequiredError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QueueFullError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)
from connector.providers.finetuning.client import FinetuningClient

ME = f"{API}/v1/me"
GENERATIONS = f"{API}/v1/generations"
BULK_DELETE = f"{API}/v1/generations/bulk-delete"
ADD = f"{API}/v1/playlists/{PLAYLIST}/tracks"


def connector_error() -> aiohttp.ClientConnectorError:
    """The connection never opened: refused before any byte of the request was sent."""
    key = aiohttp.client_reqrep.ConnectionKey(
        "pub.finetuning.ai", 443, True, True, None, None, None
    )
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


def answer(code: str) -> dict[str, Any]:
    """aioresponses keyword arguments for the documented error answer `code`."""
    entry = error_fixture(code)
    return {"status": entry["status"], "payload": entry["body"], "headers": entry.get("headers")}


def server_error(status: int) -> dict[str, Any]:
    return {"status": status, "payload": error_fixture("INTERNAL_ERROR")["body"]}


TRANSIENT_FAILURES: list[Any] = [
    pytest.param({"status": 500, "payload": error_fixture("INTERNAL_ERROR")["body"]}, id="500"),
    pytest.param({"status": 502, "body": "Bad Gateway", "content_type": "text/plain"}, id="502"),
    pytest.param({"status": 503, "body": "", "content_type": "text/html"}, id="503"),
    pytest.param(
        {"status": 504, "body": "Gateway Timeout", "content_type": "text/plain"}, id="504"
    ),
    pytest.param({"exception": TimeoutError()}, id="timeout"),
    pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
    pytest.param({"exception": aiohttp.ClientOSError(104, "Connection reset by peer")}, id="reset"),
    pytest.param({"exception": connector_error()}, id="refused"),
]


# -- reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", TRANSIENT_FAILURES)
async def test_read_is_retried_after_a_transient_failure(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock, failure: dict[str, Any]
) -> None:
    mocked.get(ME, **failure)
    mocked.get(ME, payload=load_fixture("me"))

    account = await client.get_account()

    assert account.id == "usr_abc123"
    assert len(sent(mocked, "GET", ME)) == 2
    assert clock.sleeps == [1.0]  # the first backoff step (jitter is 0 in these tests)
    assert client.requests_sent == 2


async def test_read_backoff_doubles_between_attempts(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    for _ in range(4):
        mocked.get(ME, **server_error(503))
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]


async def test_read_gives_up_after_max_retries_with_the_last_error(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, **server_error(500), repeat=True)

    with pytest.raises(InternalServerError) as caught:
        await client.get_account()

    assert caught.value.status == 500
    assert len(sent(mocked, "GET", ME)) == 1 + client.max_retries == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]


async def test_backoff_is_capped_at_30_seconds(mocked: aioresponses, clock: FakeClock) -> None:
    mocked.get(ME, **server_error(502), repeat=True)

    async with FinetuningClient(API_KEY, max_retries=7, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ServerError):
            await api.get_account()

    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_backoff_adds_up_to_one_second_of_jitter(
    client: FinetuningClient,
    mocked: aioresponses,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return 0.25

    monkeypatch.setattr(random, "uniform", uniform)
    mocked.get(ME, **server_error(503))
    mocked.get(ME, **server_error(503))
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    assert asked == [(0, 1), (0, 1)]
    assert clock.sleeps == [1.25, 2.25]


async def test_max_retries_zero_disables_retries(mocked: aioresponses, clock: FakeClock) -> None:
    mocked.get(ME, exception=aiohttp.ServerDisconnectedError())

    async with FinetuningClient(API_KEY, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderConnectionError):
            await api.get_account()

    assert request_count(mocked) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("failure", "cls"),
    [
        ({"exception": TimeoutError()}, ProviderTimeoutError),
        ({"exception": aiohttp.ServerDisconnectedError()}, ProviderConnectionError),
        ({"exception": connector_error()}, ProviderConnectionError),
    ],
)
async def test_transport_failures_become_library_errors_with_the_cause_chained(
    mocked: aioresponses, clock: FakeClock, failure: dict[str, Any], cls: type[Exception]
) -> None:
    mocked.get(ME, **failure)

    async with FinetuningClient(API_KEY, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(cls) as caught:
            await api.get_account()

    assert caught.value.__cause__ is failure["exception"]
    assert caught.value.status is None
    assert "pub.finetuning.ai" in str(caught.value)


async def test_real_request_timeout_is_enforced(mocked: aioresponses, clock: FakeClock) -> None:
    async def hang(*_args: Any, **_kwargs: Any) -> None:
        await asyncio.sleep(5)

    mocked.get(ME, callback=hang)

    async with FinetuningClient(
        API_KEY, request_timeout=0.01, max_retries=0, clock=clock, sleep=clock.sleep
    ) as api:
        with pytest.raises(ProviderTimeoutError, match=r"0\.01 s"):
            await api.get_account()


async def test_read_429_waits_exactly_retry_after(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(
        ME,
        status=429,
        payload=error_fixture("RATE_LIMITED")["body"],
        headers={"Retry-After": "7"},
    )
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    assert clock.sleeps == [7.0]
    assert len(sent(mocked, "GET", ME)) == 2


async def test_read_429_without_retry_after_backs_off(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, status=429, payload=error_fixture("RATE_LIMITED")["body"])
    mocked.get(ME, status=429, payload=error_fixture("RATE_LIMITED")["body"])
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    assert clock.sleeps == [1.0, 2.0]


async def test_read_429_that_never_ends_raises_rate_limited_with_retry_after(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(
        ME,
        status=429,
        payload=error_fixture("RATE_LIMITED")["body"],
        headers={"Retry-After": "3"},
        repeat=True,
    )

    with pytest.raises(RateLimitedError) as caught:
        await client.get_account()

    assert caught.value.retry_after == 3.0
    assert clock.sleeps == [3.0, 3.0, 3.0, 3.0]


async def test_503_with_retry_after_waits_that_long(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, **server_error(503), headers={"Retry-After": "20"})
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    assert clock.sleeps == [20.0]


@pytest.mark.parametrize(
    ("failure", "cls"),
    [
        (answer("VALIDATION_ERROR"), ValidationError),
        (answer("INVALID_API_KEY"), InvalidApiKeyError),
        (answer("MONTHLY_LIMIT_REACHED"), MonthlyLimitReachedError),
        (answer("PRO_PLAN_REQUIRED"), ProPlanRequiredError),
        (answer("NOT_FOUND"), NotFoundError),
        ({"status": 501, "body": "Not Implemented", "content_type": "text/plain"}, ServerError),
        ({"status": 200, "body": "<html>", "content_type": "text/html"}, UnexpectedResponseError),
    ],
)
async def test_read_is_not_retried_after_a_final_answer(
    client: FinetuningClient,
    mocked: aioresponses,
    clock: FakeClock,
    failure: dict[str, Any],
    cls: type[ProviderError],
) -> None:
    mocked.get(ME, **failure)

    with pytest.raises(cls):
        await client.get_account()

    assert request_count(mocked) == 1
    assert clock.sleeps == []


# -- bulk calls ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", TRANSIENT_FAILURES)
async def test_bulk_delete_is_retried_with_the_same_body(
    client: FinetuningClient, mocked: aioresponses, failure: dict[str, Any]
) -> None:
    mocked.post(BULK_DELETE, **failure)
    mocked.post(BULK_DELETE, payload=load_fixture("bulk_delete_all"))

    result = await client.delete_generations(["a", "b"])

    assert sent_bodies(mocked, "POST", BULK_DELETE) == [{"ids": ["a", "b"]}] * 2
    assert result.requests == 1  # one chunk, whatever it took to get it through


async def test_bulk_add_is_retried_after_a_429(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    body = error_fixture("RATE_LIMITED")["body"]
    mocked.post(ADD, status=429, payload=body, headers={"Retry-After": "42"})
    mocked.post(ADD, payload=load_fixture("add_tracks_partial"))

    result = await client.add_tracks(PLAYLIST, [TRACK_A])

    assert result.succeeded == [TRACK_A]
    assert clock.sleeps == [42.0]
    assert len(sent(mocked, "POST", ADD)) == 2


# -- create: never a second credit --------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(server_error(500), 500, id="500"),
        pytest.param(answer("GENERATION_FAILED"), 500, id="GENERATION_FAILED"),
        pytest.param(
            {"status": 502, "body": "Bad Gateway", "content_type": "text/plain"}, 502, id="502"
        ),
        pytest.param(server_error(503), 503, id="503"),
        pytest.param(server_error(504), 504, id="504"),
    ],
)
async def test_create_is_not_retried_after_a_server_error(
    client: FinetuningClient,
    mocked: aioresponses,
    clock: FakeClock,
    failure: dict[str, Any],
    status: int,
) -> None:
    mocked.post(GENERATIONS, **failure)
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    with pytest.raises(GenerationOutcomeUnknownError) as caught:
        await client.create_generation(tags="lofi")

    error = caught.value
    assert len(sent(mocked, "POST", GENERATIONS)) == 1
    assert clock.sleeps == []
    assert error.code == "GENERATION_OUTCOME_UNKNOWN"
    assert error.status == status
    assert isinstance(error.__cause__, ServerError)
    assert error.__cause__.status == status
    assert "not resubmitted" in error.message


async def test_create_is_not_retried_after_a_503_even_with_retry_after(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, **server_error(503), headers={"Retry-After": "1"})

    with pytest.raises(GenerationOutcomeUnknownError):
        await client.create_generation(tags="lofi")

    assert request_count(mocked) == 1


@pytest.mark.parametrize(
    ("exception", "cause"),
    [
        pytest.param(TimeoutError(), ProviderTimeoutError, id="timeout"),
        pytest.param(aiohttp.ServerDisconnectedError(), ProviderConnectionError, id="disconnect"),
        pytest.param(
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            ProviderConnectionError,
            id="reset",
        ),
        pytest.param(
            aiohttp.ClientPayloadError("Response payload is not completed"),
            ProviderConnectionError,
            id="truncated",
        ),
    ],
)
async def test_create_is_not_retried_after_a_timeout_or_disconnect(
    client: FinetuningClient,
    mocked: aioresponses,
    clock: FakeClock,
    exception: Exception,
    cause: type[Exception],
) -> None:
    mocked.post(GENERATIONS, exception=exception)
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    with pytest.raises(GenerationOutcomeUnknownError) as caught:
        await client.create_generation(tags="lofi")

    assert len(sent(mocked, "POST", GENERATIONS)) == 1
    assert clock.sleeps == []
    assert type(caught.value.__cause__) is cause
    assert caught.value.__cause__.__cause__ is exception  # the transport error, still chained
    assert caught.value.status is None


async def test_garbled_create_answer_is_an_unknown_outcome(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, status=202, body="<html>", content_type="text/html")

    with pytest.raises(GenerationOutcomeUnknownError) as caught:
        await client.create_generation(tags="lofi")

    assert isinstance(caught.value.__cause__, UnexpectedResponseError)
    assert request_count(mocked) == 1


@pytest.mark.parametrize("code", ["GENERATION_RATE_LIMITED", "QUEUE_FULL"])
async def test_create_is_retried_after_a_429_that_spent_nothing(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock, code: str
) -> None:
    mocked.post(
        GENERATIONS, status=429, payload=error_fixture(code)["body"], headers={"Retry-After": "9"}
    )
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    created = await client.create_generation(tags="lofi chill piano night")

    assert created.id == "gen_xyz789"
    assert sent_bodies(mocked, "POST", GENERATIONS) == [{"tags": "lofi chill piano night"}] * 2
    assert clock.sleeps == [9.0]


async def test_create_queue_full_without_retry_after_backs_off(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(GENERATIONS, **answer("QUEUE_FULL"))
    mocked.post(GENERATIONS, **answer("QUEUE_FULL"))
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    await client.create_generation(tags="lofi")

    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("code", "cls"),
    [("GENERATION_RATE_LIMITED", GenerationRateLimitedError), ("QUEUE_FULL", QueueFullError)],
)
async def test_create_429_that_never_ends_raises_the_429_not_an_unknown_outcome(
    client: FinetuningClient,
    mocked: aioresponses,
    code: str,
    cls: type[ProviderError],
) -> None:
    mocked.post(GENERATIONS, **answer(code), repeat=True)

    with pytest.raises(cls):
        await client.create_generation(tags="lofi")

    assert request_count(mocked) == 1 + client.max_retries


async def test_create_is_retried_when_the_connection_never_opened(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(GENERATIONS, exception=connector_error())
    mocked.post(GENERATIONS, exception=connector_error())
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    created = await client.create_generation(tags="lofi")

    assert created.id == "gen_xyz789"
    assert len(sent(mocked, "POST", GENERATIONS)) == 3
    assert clock.sleeps == [1.0, 2.0]


async def test_create_dns_failure_is_retried_like_a_refused_connection(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    key = aiohttp.client_reqrep.ConnectionKey(
        "pub.finetuning.ai", 443, True, True, None, None, None
    )
    dns = aiohttp.ClientConnectorDNSError(key, socket.gaierror(-3, "Temporary failure"))
    mocked.post(GENERATIONS, exception=dns)
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    await client.create_generation(tags="lofi")

    assert request_count(mocked) == 2


async def test_create_that_can_never_connect_is_a_connection_error_not_unknown(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, exception=connector_error(), repeat=True)

    with pytest.raises(ProviderConnectionError) as caught:
        await client.create_generation(tags="lofi")

    assert not isinstance(caught.value, GenerationOutcomeUnknownError)
    assert request_count(mocked) == 1 + client.max_retries


async def test_create_refused_then_server_error_is_still_an_unknown_outcome(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, exception=connector_error())
    mocked.post(GENERATIONS, **server_error(500))

    with pytest.raises(GenerationOutcomeUnknownError):
        await client.create_generation(tags="lofi")

    assert request_count(mocked) == 2


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("VALIDATION_ERROR", ValidationError),
        ("INVALID_API_KEY", InvalidApiKeyError),
        ("MONTHLY_LIMIT_REACHED", MonthlyLimitReachedError),
        ("PRO_PLAN_REQUIRED", ProPlanRequiredError),
    ],
)
async def test_create_client_errors_are_raised_as_they_are(
    client: FinetuningClient,
    mocked: aioresponses,
    code: str,
    cls: type[ProviderError],
) -> None:
    mocked.post(GENERATIONS, **answer(code))

    with pytest.raises(cls) as caught:
        await client.create_generation(tags="lofi")

    assert not isinstance(caught.value, GenerationOutcomeUnknownError)
    assert request_count(mocked) == 1
