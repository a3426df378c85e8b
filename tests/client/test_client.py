"""FinetuningClient against aioresponses: every endpoint, headers, key, session, bulk, polling."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from ft_client_support import (
    API,
    API_KEY,
    OTHER_PLAYLIST,
    PLAYLIST,
    TRACK_A,
    TRACK_B,
    FakeClock,
    error_fixture,
    load_fixture,
    request_count,
    sent,
    sent_bodies,
)

import connector.providers.finetuning.client as client_module
from connector.errors import (
    AddFailedError,
    AmbiguousPlaylistError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    NotFoundError,
    PlaylistNotFoundError,
    ProviderConnectionError,
    ProviderError,
    RequestValidationError,
    UnexpectedResponseError,
    ValidationError,
)
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.credentials import check_api_key
from connector.providers.finetuning.models import (
    BulkResult,
    GenerationRequest,
    GenerationStatus,
    ItemError,
)
from connector.version import USER_AGENT, __version__

ME = f"{API}/v1/me"
GENERATIONS = f"{API}/v1/generations"
BULK_DELETE = f"{API}/v1/generations/bulk-delete"
PLAYLISTS = f"{API}/v1/playlists"
ADD = f"{API}/v1/playlists/{PLAYLIST}/tracks"
REMOVE = f"{API}/v1/playlists/{PLAYLIST}/tracks/bulk-remove"
MOVE = f"{API}/v1/playlists/{PLAYLIST}/tracks/move"


def ids(count: int, prefix: str = "trk") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(count)]


def generation(gid: str, status: str = "processing") -> dict[str, Any]:
    return {"id": gid, "status": status, "prompt": "lofi"}


def page(gids: list[str], *, has_more: bool, next_offset: int | None) -> dict[str, Any]:
    return {
        "data": {
            "generations": [generation(g, "completed") for g in gids],
            "hasMore": has_more,
            "nextOffset": next_offset,
        }
    }


# -- headers and the API key --------------------------------------------------------------


async def test_every_request_sends_the_api_key_user_agent_and_accept(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    (call,) = sent(mocked, "GET", ME)
    headers = call.kwargs["headers"]
    assert headers["X-API-Key"] == API_KEY
    assert "Authorization" not in headers  # the documented mistake
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT


def test_user_agent_names_the_project_and_its_version() -> None:
    assert USER_AGENT.startswith(f"finetuning-connector/{__version__}")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


async def test_posts_send_a_json_body(client: FinetuningClient, mocked: aioresponses) -> None:
    mocked.post(BULK_DELETE, payload=load_fixture("bulk_delete_all"))

    await client.delete_generations([TRACK_A, TRACK_B])

    (call,) = sent(mocked, "POST", BULK_DELETE)
    assert call.kwargs["json"] == {"ids": [TRACK_A, TRACK_B]}  # aiohttp sets application/json
    assert call.kwargs["headers"]["X-API-Key"] == API_KEY


def test_key_with_surrounding_whitespace_is_trimmed() -> None:
    assert check_api_key(f"  {API_KEY}\n") == API_KEY


async def test_trimmed_key_is_what_is_sent(mocked: aioresponses, clock: FakeClock) -> None:
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(f"{API_KEY}\n", clock=clock, sleep=clock.sleep) as api:
        await api.get_account()

    assert sent(mocked, "GET", ME)[0].kwargs["headers"]["X-API-Key"] == API_KEY


def test_uppercase_hex_key_is_accepted() -> None:
    key = "ft_live_" + "ABCDEF0123456789" * 2

    assert check_api_key(key) == key


@pytest.mark.parametrize(
    ("bad_key", "hint"),
    [
        ("", "no API key given"),
        ("   ", "no API key given"),
        ("ft_test_0123456789abcdef0123456789abcdef", "lacks 'ft_live_'"),
        ("ft_live_0123456789abcdef0123456789abcde", "has 39 characters"),
        ("ft_live_0123456789abcdef0123456789abcdef0", "has 41 characters"),
        ("ft_live_0123456789abcdef0123456789abcdeg", "32 hex characters"),
        ("Bearer ft_live_0123456789abcdef0123456789abcdef", "lacks 'ft_live_'"),
    ],
)
def test_malformed_key_is_refused_with_a_clear_error(bad_key: str, hint: str) -> None:
    with pytest.raises(InvalidApiKeyError) as caught:
        FinetuningClient(bad_key)

    message = str(caught.value)
    assert hint in message
    assert "ft_live_" in message
    assert "32 hex" in message
    if bad_key.strip():
        assert bad_key.strip() not in message
        assert bad_key.strip() not in repr(caught.value)


def test_client_repr_and_str_never_show_the_key() -> None:
    api = FinetuningClient(API_KEY)

    for text in (repr(api), str(api), api.api_key_hint):
        assert API_KEY not in text
        assert "0123456789abcdef" not in text
    assert "ft_live_…" in repr(api)
    assert "pub.finetuning.ai" in repr(api)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        FinetuningClient(API_KEY, base_url="ftp://example.com")


async def test_custom_base_url_is_used(mocked: aioresponses, clock: FakeClock) -> None:
    mocked.get("http://127.0.0.1:8765/v1/me", payload=load_fixture("me"))

    async with FinetuningClient(
        API_KEY, base_url="http://127.0.0.1:8765/", clock=clock, sleep=clock.sleep
    ) as api:
        account = await api.get_account()

    assert account.id == "usr_abc123"


# -- session ownership --------------------------------------------------------------------


async def test_passed_session_is_used_and_never_closed(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, payload=load_fixture("me"))

    async with aiohttp.ClientSession(headers={"X-Probe": "caller-session"}) as session:
        async with FinetuningClient(
            API_KEY, session=session, clock=clock, sleep=clock.sleep
        ) as api:
            await api.get_account()
        await api.close()  # an explicit close too

        assert not session.closed
        (call,) = sent(mocked, "GET", ME)
        assert call.kwargs["headers"]["X-Probe"] == "caller-session"


@pytest.fixture
def made_sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every session the client makes for itself."""
    made: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def recording(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(client_module.aiohttp, "ClientSession", recording)
    return made


async def test_own_session_is_closed_by_async_with(
    mocked: aioresponses, clock: FakeClock, made_sessions: list[aiohttp.ClientSession]
) -> None:
    made = made_sessions
    mocked.get(ME, payload=load_fixture("me"), repeat=True)

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as api:
        await api.get_account()
        await api.get_account()
        assert len(made) == 1  # one session, reused
        assert not made[0].closed

    assert made[0].closed


async def test_own_session_is_closed_by_close(
    mocked: aioresponses, clock: FakeClock, made_sessions: list[aiohttp.ClientSession]
) -> None:
    mocked.get(ME, payload=load_fixture("me"))
    api = FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep)

    await api.get_account()
    await api.close()

    assert [s.closed for s in made_sessions] == [True]


async def test_client_that_sent_nothing_makes_no_session(
    made_sessions: list[aiohttp.ClientSession],
) -> None:
    async with FinetuningClient(API_KEY):
        pass

    assert made_sessions == []


async def test_closed_passed_session_fails_at_once_and_is_not_replaced(
    mocked: aioresponses, clock: FakeClock
) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    api = FinetuningClient(API_KEY, session=session, clock=clock, sleep=clock.sleep)

    with pytest.raises(ProviderError, match="closed") as caught:
        await api.get_account()

    assert caught.value.code == "SESSION_CLOSED"
    assert not isinstance(caught.value, ProviderConnectionError)  # not retried
    assert clock.sleeps == []
    assert request_count(mocked) == 0


# -- account and health -------------------------------------------------------------------


async def test_get_account_returns_the_documented_account(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(ME, payload=load_fixture("me"))

    account = await client.get_account()

    assert account.tier == "pro"
    assert account.limits.total_remaining == 1953
    assert account.limits.queue_depth == 5


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (404, False)])
async def test_health_reports_the_status_without_sending_the_key(
    client: FinetuningClient, mocked: aioresponses, status: int, healthy: bool
) -> None:
    mocked.get(f"{API}/health", status=status, body="ok")

    assert await client.health() is healthy

    (call,) = sent(mocked, "GET", f"{API}/health")
    assert "X-API-Key" not in call.kwargs["headers"]
    assert call.kwargs["headers"]["User-Agent"] == USER_AGENT


async def test_health_is_false_when_the_server_is_unreachable(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(f"{API}/health", exception=aiohttp.ServerDisconnectedError())

    assert await client.health() is False


# -- create -------------------------------------------------------------------------------


async def test_create_generation_posts_the_documented_body_and_parses_the_202(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    documented = load_fixture("create_generation_request")
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"))

    created = await client.create_generation(GenerationRequest(**documented))

    assert sent_bodies(mocked, "POST", GENERATIONS) == [documented]
    assert created.id == "gen_xyz789"
    assert created.status is GenerationStatus.PROCESSING
    assert created.credits_remaining == 1952
    assert created.parameters is not None
    assert created.parameters.timesignature == 4
    # The echoed webhook URL loses its query string: the token in it must never be kept.
    assert documented["webhook"].endswith("?token=YOUR_SECRET")
    assert created.webhook == documented["webhook"].split("?")[0]
    assert "YOUR_SECRET" not in created.model_dump_json()


async def test_create_accepts_keywords_or_a_dict(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"), repeat=True)

    await client.create_generation(tags="lofi", duration=120, timesignature=3)
    await client.create_generation({"tags": "lofi", "duration": 120}, timesignature=3)

    expected = {"tags": "lofi", "duration": 120, "timesignature": "3"}
    assert sent_bodies(mocked, "POST", GENERATIONS) == [expected, expected]


async def test_create_with_a_request_and_keywords_is_refused_without_a_request(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    with pytest.raises(TypeError):
        await client.create_generation(GenerationRequest(tags="x"), bpm=100)

    assert request_count(mocked) == 0


async def test_create_accepts_the_old_201_created(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(GENERATIONS, status=201, payload=load_fixture("create_generation_no_webhook"))

    created = await client.create_generation(tags="lofi chill piano night")

    assert created.webhook is None


@pytest.mark.parametrize(
    ("fields", "bad_field", "allowed"),
    [
        ({"tags": "t" * 701}, "tags", "700"),
        ({"tags": "x", "lyrics": "l" * 2001}, "lyrics", "2000"),
        ({"tags": "x", "duration": 211}, "duration", "between 5 and 210"),
        ({"tags": "x", "duration": 4}, "duration", "between 5 and 210"),
        ({"tags": "x", "bpm": 201}, "bpm", "between 60 and 200"),
        ({"tags": "x", "language": "nl"}, "language", "one of en, ja"),
        ({"tags": "x", "key": "Cb"}, "key", "one of C, C#"),
        ({"tags": "x", "scale": "blues"}, "scale", "one of major, minor"),
        ({"tags": "x", "timesignature": "9"}, "timesignature", "from 2 to 7"),
        ({"tags": "x", "webhook": "http://example.com/h"}, "webhook", "https"),
        ({"tags": "x", "webhook": "https://192.168.0.2/h"}, "webhook", "publicly reachable"),
        ({"tags": "x", "webhook": "https://e.com/" + "a" * 2040}, "webhook", "2048"),
        ({"duration": 60}, "tags", "is required"),
    ],
)
async def test_invalid_generation_request_is_refused_before_any_http_request(
    client: FinetuningClient,
    mocked: aioresponses,
    fields: dict[str, Any],
    bad_field: str,
    allowed: str,
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await client.create_generation(**fields)

    assert caught.value.fields == [bad_field]
    assert bad_field in str(caught.value)
    assert allowed in str(caught.value)
    assert request_count(mocked) == 0
    assert client.requests_sent == 0
    assert client.generation_budget.used == 0


# -- list, iterate, get -------------------------------------------------------------------


async def test_list_generations_sends_paging_query_and_parses_the_page(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    url = f"{GENERATIONS}?limit=20&offset=0"
    mocked.get(url, payload=load_fixture("list_generations"))

    result = await client.list_generations()

    assert len(sent(mocked, "GET", url)) == 1
    assert result.has_more is True
    assert result.next_offset == 20
    assert result.generations[0].id == "gen_xyz789"


async def test_list_generations_filters_by_status_and_type(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    url = f"{GENERATIONS}?limit=10&offset=40&status=completed&type=instrumental"
    mocked.get(url, payload={"data": {"generations": [], "hasMore": False}})

    result = await client.list_generations(
        limit=10, offset=40, status=GenerationStatus.COMPLETED, type="instrumental"
    )

    assert len(sent(mocked, "GET", url)) == 1
    assert result.generations == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "done"}, "status"),
    ],
)
async def test_list_generations_refuses_bad_arguments_without_a_request(
    client: FinetuningClient, mocked: aioresponses, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await client.list_generations(**kwargs)

    assert caught.value.fields == [field]
    assert request_count(mocked) == 0


async def test_iter_generations_follows_next_offset_and_dedupes_ids(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    # A new generation arrived between pages, shifting "c" onto the second page too.
    mocked.get(
        f"{GENERATIONS}?limit=3&offset=0",
        payload=page(["a", "b", "c"], has_more=True, next_offset=3),
    )
    mocked.get(
        f"{GENERATIONS}?limit=3&offset=3",
        payload=page(["c", "d", "e"], has_more=True, next_offset=6),
    )
    mocked.get(
        f"{GENERATIONS}?limit=3&offset=6", payload=page(["f"], has_more=False, next_offset=None)
    )

    seen = [g.id async for g in client.iter_generations(page_size=3)]

    assert seen == ["a", "b", "c", "d", "e", "f"]
    assert request_count(mocked) == 3


async def test_iter_generations_uses_the_server_next_offset_not_its_own_arithmetic(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        f"{GENERATIONS}?limit=2&offset=0", payload=page(["a", "b"], has_more=True, next_offset=5)
    )
    mocked.get(
        f"{GENERATIONS}?limit=2&offset=5", payload=page(["c"], has_more=False, next_offset=None)
    )

    seen = [g.id async for g in client.iter_generations(page_size=2)]

    assert seen == ["a", "b", "c"]


async def test_iter_generations_without_next_offset_advances_by_page_size(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        f"{GENERATIONS}?limit=2&offset=0", payload=page(["a", "b"], has_more=True, next_offset=None)
    )
    mocked.get(
        f"{GENERATIONS}?limit=2&offset=2", payload=page(["c"], has_more=False, next_offset=None)
    )

    seen = [g.id async for g in client.iter_generations(page_size=2)]

    assert seen == ["a", "b", "c"]


async def test_iter_generations_stops_on_an_empty_page_even_if_has_more(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(f"{GENERATIONS}?limit=2&offset=0", payload=page([], has_more=True, next_offset=2))

    seen = [g.id async for g in client.iter_generations(page_size=2)]

    assert seen == []
    assert request_count(mocked) == 1


async def test_iter_generations_passes_the_status_filter_on_every_page(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    first = f"{GENERATIONS}?limit=1&offset=0&status=failed"
    second = f"{GENERATIONS}?limit=1&offset=1&status=failed"
    mocked.get(first, payload=page(["a"], has_more=True, next_offset=1))
    mocked.get(second, payload=page(["b"], has_more=False, next_offset=None))

    seen = [g.id async for g in client.iter_generations(page_size=1, status="failed")]

    assert seen == ["a", "b"]
    assert len(sent(mocked, "GET", first)) == len(sent(mocked, "GET", second)) == 1


async def test_get_generation_returns_the_documented_detail(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(f"{GENERATIONS}/gen_abc123", payload=load_fixture("get_generation"))

    result = await client.get_generation("gen_abc123")

    assert result.audio_url == "https://media.finetuning.ai/audio/gen_abc123.mp3"
    assert result.parameters is not None
    assert result.parameters.keyscale == "G major"


async def test_unknown_generation_is_not_found(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    entry = error_fixture("NOT_FOUND")
    mocked.get(f"{GENERATIONS}/gen_missing", status=entry["status"], payload=entry["body"])

    with pytest.raises(NotFoundError) as caught:
        await client.get_generation("gen_missing")

    assert caught.value.status == 404
    assert request_count(mocked) == 1  # a 404 is final


@pytest.mark.parametrize("bad_id", ["", "  ", "a/b", "..", "."])
async def test_generation_id_that_would_change_the_path_is_refused(
    client: FinetuningClient, mocked: aioresponses, bad_id: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await client.get_generation(bad_id)

    assert caught.value.fields == ["generation_id"]
    assert request_count(mocked) == 0


async def test_answer_that_breaks_the_model_is_an_unexpected_response(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(f"{GENERATIONS}/g1", payload={"data": {"status": "completed"}})

    with pytest.raises(UnexpectedResponseError, match="Generation"):
        await client.get_generation("g1")


async def test_an_account_answer_that_breaks_the_model_is_an_unexpected_response(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    # A ProviderError like every other broken answer, never pydantic's own error: callers
    # (credits_low, doctor) catch ProviderError.
    mocked.get(ME, payload={"data": {}})

    with pytest.raises(UnexpectedResponseError, match="Account"):
        await client.get_account()


# -- wait_for_generation ------------------------------------------------------------------


async def test_wait_for_generation_polls_3s_growing_by_1_3_capped_at_15s(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    url = f"{GENERATIONS}/gen_1"
    for _ in range(9):
        mocked.get(url, payload={"data": generation("gen_1", "processing")})
    mocked.get(url, payload={"data": generation("gen_1", "completed")})

    done = await client.wait_for_generation("gen_1")

    assert done.status is GenerationStatus.COMPLETED
    assert len(sent(mocked, "GET", url)) == 10
    assert clock.sleeps == pytest.approx(
        [3.0, 3.9, 5.07, 6.591, 8.5683, 11.13879, 14.480427, 15.0, 15.0]
    )


async def test_wait_for_generation_returns_a_failed_generation_at_once(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(f"{GENERATIONS}/gen_1", payload={"data": load_fixture("webhook_failed")})

    done = await client.wait_for_generation("gen_1")

    assert done.status is GenerationStatus.FAILED
    assert done.error_message == "GPU job timed out after 240s"
    assert clock.sleeps == []


async def test_wait_for_generation_calls_a_plain_on_progress_for_every_poll(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    url = f"{GENERATIONS}/gen_1"
    for status in ("pending", "processing", "completed"):
        mocked.get(url, payload={"data": generation("gen_1", status)})
    seen: list[str] = []

    await client.wait_for_generation("gen_1", on_progress=lambda g: seen.append(g.status.value))

    assert seen == ["pending", "processing", "completed"]


async def test_wait_for_generation_awaits_an_async_on_progress(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    url = f"{GENERATIONS}/gen_1"
    for status in ("processing", "completed"):
        mocked.get(url, payload={"data": generation("gen_1", status)})
    seen: list[str] = []

    async def on_progress(current: Any) -> None:
        seen.append(current.status.value)

    await client.wait_for_generation("gen_1", on_progress=on_progress)

    assert seen == ["processing", "completed"]


async def test_wait_for_generation_times_out_with_the_last_status(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    url = f"{GENERATIONS}/gen_1"
    mocked.get(url, payload={"data": generation("gen_1", "processing")}, repeat=True)

    with pytest.raises(GenerationTimeoutError) as caught:
        await client.wait_for_generation("gen_1", timeout=10)

    # Sleeps never overshoot the deadline; one last poll happens at it.
    assert clock.sleeps == pytest.approx([3.0, 3.9, 3.1])
    assert len(sent(mocked, "GET", url)) == 4
    error = caught.value
    assert error.generation_id == "gen_1"
    assert error.last_status == "processing"
    assert "keeps running" in str(error)
    assert error.code == "GENERATION_TIMEOUT"


async def test_wait_for_generation_default_timeout_is_five_minutes(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    start = clock.now
    mocked.get(f"{GENERATIONS}/gen_1", payload={"data": generation("gen_1")}, repeat=True)

    with pytest.raises(GenerationTimeoutError):
        await client.wait_for_generation("gen_1")

    assert clock.now - start == pytest.approx(300.0)


# -- bulk delete --------------------------------------------------------------------------


async def test_delete_generations_returns_the_documented_partial_result(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(BULK_DELETE, payload=load_fixture("bulk_delete_partial"))

    result = await client.delete_generations([TRACK_A, TRACK_B])

    assert result == BulkResult(
        succeeded=[TRACK_A],
        errors=[ItemError(id=TRACK_B, reason="Track not found or not owned by you")],
        requests=1,
    )


async def test_delete_of_more_than_100_ids_is_split_into_chunks_and_merged(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    wanted = ids(250)
    chunks = [wanted[:100], wanted[100:200], wanted[200:]]
    for chunk in chunks:
        mocked.post(
            BULK_DELETE,
            payload={
                "data": {"deleted": chunk[:-1], "errors": [{"id": chunk[-1], "error": "gone"}]}
            },
        )

    result = await client.delete_generations(wanted)

    assert sent_bodies(mocked, "POST", BULK_DELETE) == [{"ids": c} for c in chunks]
    assert result.succeeded == [i for c in chunks for i in c[:-1]]
    assert result.errors == [ItemError(id=c[-1], reason="gone") for c in chunks]
    assert result.requests == 3


async def test_exactly_100_ids_take_one_request_and_101_take_two(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(BULK_DELETE, payload={"data": {"deleted": []}}, repeat=True)

    one = await client.delete_generations(ids(100))
    two = await client.delete_generations(ids(101))

    bodies = sent_bodies(mocked, "POST", BULK_DELETE)
    assert [len(b["ids"]) for b in bodies] == [100, 100, 1]
    assert (one.requests, two.requests) == (1, 2)


async def test_repeated_ids_are_sent_once(client: FinetuningClient, mocked: aioresponses) -> None:
    mocked.post(BULK_DELETE, payload={"data": {"deleted": ["a", "b"]}})

    await client.delete_generations(["a", "b", "a", "b", "a"])

    assert sent_bodies(mocked, "POST", BULK_DELETE) == [{"ids": ["a", "b"]}]


async def test_delete_where_nothing_was_deleted_is_still_a_result(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(
        BULK_DELETE,
        payload={
            "data": {
                "deleted": [],
                "errors": [{"id": "a", "error": "Track not found or not owned by you"}],
            }
        },
    )

    result = await client.delete_generations(["a"])

    assert result.ok is False
    assert result.failed_ids == ["a"]


@pytest.mark.parametrize("bad", [[], "gen_1", [""], [None]])
async def test_delete_refuses_bad_id_lists_without_a_request(
    client: FinetuningClient, mocked: aioresponses, bad: Any
) -> None:
    with pytest.raises(RequestValidationError):
        await client.delete_generations(bad)

    assert request_count(mocked) == 0


async def test_malformed_bulk_answer_is_an_unexpected_response(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(BULK_DELETE, payload={"data": ["a"]})

    with pytest.raises(UnexpectedResponseError, match="bulk"):
        await client.delete_generations(["a"])


# -- playlists: list, get, resolve --------------------------------------------------------


async def test_list_playlists_returns_the_documented_playlists(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(PLAYLISTS, payload=load_fixture("playlists"))

    playlists = await client.list_playlists()

    assert [(p.id, p.name, p.track_count) for p in playlists] == [(PLAYLIST, "Late Night Lofi", 14)]


async def test_playlists_answer_without_a_list_is_an_unexpected_response(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(PLAYLISTS, payload={"data": {"items": []}})

    with pytest.raises(UnexpectedResponseError, match="playlists"):
        await client.list_playlists()


async def test_get_playlist_returns_it_with_its_tracks(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(f"{PLAYLISTS}/{PLAYLIST}", payload=load_fixture("playlist_detail"))

    detail = await client.get_playlist(PLAYLIST)

    assert detail.is_owner is True
    assert detail.track_ids == [TRACK_A, TRACK_B]


def playlists_payload(*entries: tuple[str, str]) -> dict[str, Any]:
    return {"data": {"playlists": [{"id": pid, "name": name} for pid, name in entries]}}


@pytest.mark.parametrize(
    "reference",
    [PLAYLIST, PLAYLIST.upper(), "pl_123", f"  {PLAYLIST} "],
)
async def test_resolve_playlist_passes_ids_through_without_a_request(
    client: FinetuningClient, mocked: aioresponses, reference: str
) -> None:
    assert await client.resolve_playlist(reference) == reference.strip()
    assert request_count(mocked) == 0


@pytest.mark.parametrize("reference", ["Late Night Lofi", "late night lofi", "LATE NIGHT LOFI"])
async def test_resolve_playlist_matches_names_case_insensitively(
    client: FinetuningClient, mocked: aioresponses, reference: str
) -> None:
    mocked.get(
        PLAYLISTS, payload=playlists_payload((PLAYLIST, "Late Night Lofi"), (OTHER_PLAYLIST, "Gym"))
    )

    assert await client.resolve_playlist(reference) == PLAYLIST


async def test_resolve_playlist_matches_names_exactly_not_by_prefix(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        PLAYLISTS, payload=playlists_payload((PLAYLIST, "Late Night Lofi"), (OTHER_PLAYLIST, "Gym"))
    )

    with pytest.raises(PlaylistNotFoundError) as caught:
        await client.resolve_playlist("Late Night")

    error = caught.value
    assert error.candidates == ["Late Night Lofi", "Gym"]
    assert "'Late Night Lofi'" in str(error)
    assert "'Gym'" in str(error)
    assert isinstance(error, NotFoundError)


async def test_resolve_playlist_with_no_playlists_says_so(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(PLAYLISTS, payload={"data": {"playlists": []}})

    with pytest.raises(PlaylistNotFoundError, match="none"):
        await client.resolve_playlist("Gym")


async def test_resolve_playlist_with_several_matches_lists_their_ids(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        PLAYLISTS,
        payload=playlists_payload((PLAYLIST, "Gym"), (OTHER_PLAYLIST, "gym"), ("x", "Run")),
    )

    with pytest.raises(AmbiguousPlaylistError) as caught:
        await client.resolve_playlist("GYM")

    error = caught.value
    assert error.details == [PLAYLIST, OTHER_PLAYLIST]
    assert PLAYLIST in str(error)
    assert OTHER_PLAYLIST in str(error)
    assert "x" not in error.details


async def test_resolve_playlist_accepts_an_id_of_another_shape_that_exists(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(PLAYLISTS, payload=playlists_payload(("12345", "Gym")))

    assert await client.resolve_playlist("12345") == "12345"


async def test_resolve_playlist_refuses_an_empty_reference(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    with pytest.raises(RequestValidationError):
        await client.resolve_playlist("  ")

    assert request_count(mocked) == 0


# -- playlists: add, remove, move ---------------------------------------------------------


async def test_add_tracks_returns_the_documented_partial_result(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(ADD, payload=load_fixture("add_tracks_partial"))

    result = await client.add_tracks(PLAYLIST, [TRACK_A, TRACK_B])

    assert sent_bodies(mocked, "POST", ADD) == [{"trackIds": [TRACK_A, TRACK_B]}]
    assert result.succeeded == [TRACK_A]
    assert result.errors == [ItemError(id=TRACK_B, reason="Track already in playlist")]


async def test_add_failed_becomes_per_item_errors_not_an_exception(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(ADD, status=400, payload=load_fixture("add_failed"))

    result = await client.add_tracks(PLAYLIST, [TRACK_A, TRACK_B])

    assert result.succeeded == []
    assert result.ok is False
    assert result.errors == [
        ItemError(id=TRACK_A, reason="Cannot add private track to public playlist"),
        ItemError(id=TRACK_B, reason="Track not found"),
    ]
    assert request_count(mocked) == 1  # not retried


async def test_add_failed_in_one_chunk_merges_with_the_chunks_that_succeeded(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    wanted = ids(150)
    mocked.post(ADD, payload={"data": {"added": wanted[:100]}})
    mocked.post(
        ADD,
        status=400,
        payload={
            "error": {
                "code": "ADD_FAILED",
                "message": "Cannot add private track to public playlist",
                "details": [{"trackId": wanted[100], "error": "Track not found"}],
            }
        },
    )

    result = await client.add_tracks(PLAYLIST, wanted)

    assert sent_bodies(mocked, "POST", ADD) == [
        {"trackIds": wanted[:100]},
        {"trackIds": wanted[100:]},
    ]
    assert result.succeeded == wanted[:100]
    assert result.failed_ids == wanted[100:]  # every id of the failed chunk, once
    assert result.errors[0] == ItemError(id=wanted[100], reason="Track not found")
    # Ids the server did not itemise get the error's message as their reason.
    assert {e.reason for e in result.errors[1:]} == {"Cannot add private track to public playlist"}
    assert result.requests == 2


async def test_add_tracks_still_raises_other_errors(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    entry = error_fixture("VALIDATION_ERROR")
    mocked.post(ADD, status=entry["status"], payload=entry["body"])

    with pytest.raises(ValidationError):
        await client.add_tracks(PLAYLIST, [TRACK_A])


async def test_remove_tracks_returns_the_documented_result(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(REMOVE, payload=load_fixture("remove_tracks"))

    result = await client.remove_tracks(PLAYLIST, [TRACK_A, TRACK_B])

    assert sent_bodies(mocked, "POST", REMOVE) == [{"trackIds": [TRACK_A, TRACK_B]}]
    assert result.succeeded == [TRACK_A]
    assert result.errors == [
        ItemError(id=TRACK_B, reason="Track not found in playlist or not authorized")
    ]


async def test_remove_of_250_tracks_is_three_requests(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    wanted = ids(250)
    for start in (0, 100, 200):
        mocked.post(REMOVE, payload={"data": {"removed": wanted[start : start + 100]}})

    result = await client.remove_tracks(PLAYLIST, wanted)

    assert [len(b["trackIds"]) for b in sent_bodies(mocked, "POST", REMOVE)] == [100, 100, 50]
    assert result.succeeded == wanted
    assert result.errors == []


async def test_a_stray_add_failed_on_remove_is_raised(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(REMOVE, status=400, payload=load_fixture("add_failed"))

    with pytest.raises(AddFailedError):
        await client.remove_tracks(PLAYLIST, [TRACK_A])


async def test_move_tracks_sends_the_target_and_returns_the_documented_result(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(MOVE, payload=load_fixture("move_tracks"))

    result = await client.move_tracks(PLAYLIST, OTHER_PLAYLIST, [TRACK_A, TRACK_B])

    assert sent_bodies(mocked, "POST", MOVE) == [
        {"trackIds": [TRACK_A, TRACK_B], "targetPlaylistId": OTHER_PLAYLIST}
    ]
    assert result.succeeded == [TRACK_A]
    assert result.errors == [ItemError(id=TRACK_B, reason="Track already in playlist")]


async def test_move_failed_becomes_per_item_errors_not_an_exception(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(MOVE, status=400, payload=load_fixture("move_failed"))

    result = await client.move_tracks(PLAYLIST, OTHER_PLAYLIST, [TRACK_A, TRACK_B])

    assert result.succeeded == []
    assert result.errors == [
        ItemError(id=TRACK_A, reason="Cannot add private track to public playlist"),
        ItemError(id=TRACK_B, reason="Track already in playlist"),
    ]


async def test_move_of_more_than_100_sends_the_target_with_every_chunk(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    wanted = ids(120)
    mocked.post(MOVE, payload={"data": {"moved": wanted[:100]}})
    mocked.post(MOVE, payload={"data": {"moved": wanted[100:]}})

    result = await client.move_tracks(PLAYLIST, OTHER_PLAYLIST, wanted)

    bodies = sent_bodies(mocked, "POST", MOVE)
    assert [b["targetPlaylistId"] for b in bodies] == [OTHER_PLAYLIST, OTHER_PLAYLIST]
    assert [b["trackIds"] for b in bodies] == [wanted[:100], wanted[100:]]
    assert result.succeeded == wanted


@pytest.mark.parametrize("target", [PLAYLIST, f" {PLAYLIST} "])
async def test_move_with_source_equal_to_target_is_refused_before_sending(
    client: FinetuningClient, mocked: aioresponses, target: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await client.move_tracks(PLAYLIST, target, [TRACK_A])

    assert caught.value.fields == ["target_id"]
    assert request_count(mocked) == 0


@pytest.mark.parametrize("method", ["add_tracks", "remove_tracks"])
async def test_playlist_bulk_refuses_empty_track_lists_without_a_request(
    client: FinetuningClient, mocked: aioresponses, method: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await getattr(client, method)(PLAYLIST, [])

    assert caught.value.fields == ["track_ids"]
    assert request_count(mocked) == 0
