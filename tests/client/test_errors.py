"""Error mapping: one exception class per documented code, non-JSON bodies, no key leaks."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from ft_client_support import API, API_KEY, FakeClock, error_fixture, load_fixture

from connector.errors import (
    ERRORS_BY_CODE,
    AddFailedError,
    AmbiguousPlaylistError,
    AuthenticationError,
    BulkOperationError,
    GenerationFailedError,
    GenerationRateLimitedError,
    GenerationTimeoutError,
    InternalServerError,
    InvalidApiKeyError,
    MissingApiKeyError,
    MonthlyLimitReachedError,
    MoveFailedError,
    NotFoundError,
    PlaylistNotFoundError,
    ProPlanRequiredError,
    ProviderError,
    QueueFullError,
    RateLimitedError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
    error_for,
)
from connector.providers.finetuning.client import FinetuningClient

ME = f"{API}/v1/me"

DOCUMENTED: dict[str, type[ProviderError]] = {
    "VALIDATION_ERROR": ValidationError,
    "MISSING_API_KEY": MissingApiKeyError,
    "INVALID_API_KEY": InvalidApiKeyError,
    "MONTHLY_LIMIT_REACHED": MonthlyLimitReachedError,
    "PRO_PLAN_REQUIRED": ProPlanRequiredError,
    "NOT_FOUND": NotFoundError,
    "RATE_LIMITED": RateLimitedError,
    "GENERATION_RATE_LIMITED": GenerationRateLimitedError,
    "QUEUE_FULL": QueueFullError,
    "ADD_FAILED": AddFailedError,
    "MOVE_FAILED": MoveFailedError,
    "GENERATION_FAILED": GenerationFailedError,
    "INTERNAL_ERROR": InternalServerError,
}


@pytest.fixture
async def no_retry_client(clock: FakeClock) -> Any:
    """A client that gives every error back at once, so its mapping shows plainly."""
    async with FinetuningClient(API_KEY, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        yield api


def test_there_is_one_exception_class_per_documented_code() -> None:
    assert ERRORS_BY_CODE == DOCUMENTED
    assert len(set(ERRORS_BY_CODE.values())) == 13
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.default_code == code


def test_the_exception_tree_groups_what_a_caller_acts_on() -> None:
    assert issubclass(MissingApiKeyError, AuthenticationError)
    assert issubclass(InvalidApiKeyError, AuthenticationError)
    assert issubclass(ProPlanRequiredError, AuthenticationError)
    for cls in (RateLimitedError, GenerationRateLimitedError, QueueFullError):
        assert issubclass(cls, RateLimitError)
    assert issubclass(AddFailedError, BulkOperationError)
    assert issubclass(MoveFailedError, BulkOperationError)
    assert issubclass(GenerationFailedError, ServerError)
    assert issubclass(InternalServerError, ServerError)
    assert issubclass(PlaylistNotFoundError, NotFoundError)
    assert all(issubclass(cls, ProviderError) for cls in DOCUMENTED.values())


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
async def test_documented_error_answer_raises_its_own_class(
    no_retry_client: FinetuningClient, mocked: aioresponses, code: str
) -> None:
    entry = error_fixture(code)
    mocked.get(ME, status=entry["status"], payload=entry["body"], headers=entry.get("headers"))

    with pytest.raises(ProviderError) as caught:
        await no_retry_client.get_account()

    error = caught.value
    documented = entry["body"]["error"]
    assert type(error) is DOCUMENTED[code]
    assert error.code == code
    assert error.status == entry["status"]
    assert error.message == documented["message"]
    assert error.details == documented.get("details")
    expected_retry = float(entry["headers"]["Retry-After"]) if "headers" in entry else None
    assert error.retry_after == expected_retry
    assert str(error) == f"HTTP {entry['status']} {code}: {documented['message']}"
    assert code in repr(error)


def test_error_for_falls_back_to_the_status_for_an_unknown_code() -> None:
    assert type(error_for(400, "WEIRD", "x")) is ValidationError
    assert type(error_for(401, None, "x")) is InvalidApiKeyError
    assert type(error_for(402, None, "x")) is MonthlyLimitReachedError
    assert type(error_for(403, None, "x")) is ProPlanRequiredError
    assert type(error_for(404, None, "x")) is NotFoundError
    assert type(error_for(429, None, "x")) is RateLimitedError
    assert type(error_for(503, "MAINTENANCE", "x")) is ServerError
    assert type(error_for(418, None, "x")) is UnexpectedResponseError
    assert error_for(418, "TEAPOT", "x").code == "TEAPOT"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "cls"),
    [
        (500, "<html><h1>Internal Server Error</h1></html>", "text/html", ServerError),
        (502, "Bad Gateway", "text/plain", ServerError),
        (503, "", "text/plain", ServerError),
        (404, "Not Found", "text/plain", NotFoundError),
        (401, "", "text/plain", InvalidApiKeyError),
        (429, "slow down", "text/plain", RateLimitedError),
        (418, "I'm a teapot", "text/plain", UnexpectedResponseError),
        (400, '{"message": "no envelope"}', "application/json", ValidationError),
        (500, '{"error": "a string, not an object"}', "application/json", ServerError),
    ],
)
async def test_non_json_error_body_maps_to_http_status_code(
    no_retry_client: FinetuningClient,
    mocked: aioresponses,
    status: int,
    body: str,
    content_type: str,
    cls: type[ProviderError],
) -> None:
    mocked.get(ME, status=status, body=body, content_type=content_type)

    with pytest.raises(ProviderError) as caught:
        await no_retry_client.get_account()

    error = caught.value
    assert type(error) is cls
    assert error.code == f"HTTP_{status}"
    assert error.status == status
    assert f"HTTP {status}" in error.message
    if body and not body.startswith("{"):
        assert "non-JSON" in error.message
        assert body[:20] in error.message  # the start of the body, for diagnosis


async def test_error_envelope_without_a_message_falls_back_to_its_code(
    no_retry_client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(ME, status=404, payload={"error": {"code": "NOT_FOUND"}})

    with pytest.raises(NotFoundError) as caught:
        await no_retry_client.get_account()

    assert caught.value.message == "NOT_FOUND"


async def test_retry_after_falls_back_to_the_body_field(
    no_retry_client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        ME,
        status=429,
        payload={"error": {"code": "RATE_LIMITED", "message": "wait", "retryAfter": 12}},
    )

    with pytest.raises(RateLimitedError) as caught:
        await no_retry_client.get_account()

    assert caught.value.retry_after == 12.0


@pytest.mark.parametrize("header", ["soon", "-3", "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_unusable_retry_after_is_ignored(
    no_retry_client: FinetuningClient, mocked: aioresponses, header: str
) -> None:
    entry = error_fixture("RATE_LIMITED")
    mocked.get(ME, status=429, payload=entry["body"], headers={"Retry-After": header})

    with pytest.raises(RateLimitedError) as caught:
        await no_retry_client.get_account()

    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html>maintenance</html>", "text/html"),
        ('{"generations": []}', "application/json"),
        ("", "application/json"),
    ],
)
async def test_success_without_the_data_envelope_is_an_unexpected_response(
    no_retry_client: FinetuningClient, mocked: aioresponses, body: str, content_type: str
) -> None:
    mocked.get(ME, status=200, body=body, content_type=content_type)

    with pytest.raises(UnexpectedResponseError) as caught:
        await no_retry_client.get_account()

    assert caught.value.status == 200
    assert "data" in caught.value.message


def test_playlist_errors_carry_their_candidates() -> None:
    missing = PlaylistNotFoundError("Gym", ["Lofi", "Run"])
    ambiguous = AmbiguousPlaylistError("gym", [("id-1", "Gym"), ("id-2", "GYM")])

    assert (missing.code, missing.candidates, missing.details) == (
        "PLAYLIST_NOT_FOUND",
        ["Lofi", "Run"],
        ["Lofi", "Run"],
    )
    assert (ambiguous.code, ambiguous.details) == ("PLAYLIST_AMBIGUOUS", ["id-1", "id-2"])
    assert "use an id" in str(ambiguous)


def test_generation_timeout_error_says_the_job_keeps_running() -> None:
    error = GenerationTimeoutError("gen_1", 300, "processing")

    assert error.generation_id == "gen_1"
    assert error.last_status == "processing"
    assert "300 s" in str(error)
    assert "keeps running" in str(error)


# -- the key never leaks ------------------------------------------------------------------


async def test_key_never_appears_in_debug_logs_or_errors_across_a_busy_session(
    mocked: aioresponses, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    mocked.get(ME, status=503, payload=error_fixture("INTERNAL_ERROR")["body"])
    mocked.get(ME, exception=aiohttp.ServerDisconnectedError())
    mocked.get(ME, payload=load_fixture("me"))
    mocked.post(
        f"{API}/v1/generations", status=500, payload=error_fixture("INTERNAL_ERROR")["body"]
    )
    for code in DOCUMENTED:
        entry = error_fixture(code)
        mocked.get(f"{API}/v1/generations/{code}", status=entry["status"], payload=entry["body"])

    async with FinetuningClient(API_KEY, max_retries=2, clock=clock, sleep=clock.sleep) as api:
        await api.get_account()
        try:
            await api.create_generation(tags="lofi")
        except ProviderError as err:
            errors.append(err)
        for code in DOCUMENTED:
            try:
                await api.get_generation(code)
            except ProviderError as err:
                errors.append(err)
        try:
            await api.get_account()  # nothing left registered: a connection error
        except ProviderError as err:
            errors.append(err)

    assert len(errors) == 15
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # debug lines were made
    assert API_KEY not in caplog.text
    for error in errors:
        for text in (str(error), repr(error), error.message, str(error.details)):
            assert API_KEY not in text
    with pytest.raises(InvalidApiKeyError) as bad:
        FinetuningClient(API_KEY[:-1] + "z")
    assert API_KEY[:-1] not in str(bad.value)


@pytest.mark.parametrize(
    ("status", "payload", "body"),
    [
        (
            401,
            {"error": {"code": "INVALID_API_KEY", "message": f"API key {API_KEY} is revoked"}},
            None,
        ),
        (502, None, f"<html>upstream said: X-API-Key: {API_KEY}</html>"),
    ],
    ids=["json-error-message", "non-json-body"],
)
async def test_key_echoed_by_the_server_is_redacted_from_errors(
    no_retry_client: FinetuningClient,
    mocked: aioresponses,
    status: int,
    payload: dict[str, Any] | None,
    body: str | None,
) -> None:
    # A proxy or a verbose server may echo the request's headers back; the key must
    # still not reach the exception text that callers log.
    if payload is not None:
        mocked.get(ME, status=status, payload=payload)
    else:
        mocked.get(ME, status=status, body=body or "", content_type="text/html")

    with pytest.raises(ProviderError) as caught:
        await no_retry_client.get_account()

    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
