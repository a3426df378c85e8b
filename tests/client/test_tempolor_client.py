"""The TemPolor (useapi.net) client: every method, validation, errors, retries, mapping.

HTTP is mocked with aioresponses; the job fixture is the example of useapi.net's
TemPolor job-status page, copied as written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from ft_client_support import FakeClock, load_fixture, request_count, sent, sent_bodies

from connector.errors import (
    AuthenticationError,
    GenerationOutcomeUnknownError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    MonthlyLimitReachedError,
    NotFoundError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestValidationError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)
from connector.providers.finetuning.models import GenerationStatus
from connector.providers.tempolor.client import TempolorClient, TempolorJobTimeoutError
from connector.providers.tempolor.credentials import DEFAULT_BASE_URL, check_api_token
from connector.providers.tempolor.models import (
    TONALITIES,
    InstrumentalRequest,
    SongRequest,
    TempolorJob,
    tonality_to_keyscale,
)
from connector.sandbox.tempolor_records import TONALITIES as SANDBOX_TONALITIES

API = DEFAULT_BASE_URL
TOKEN = "user:4821-0123456789abcdef0123456789abcdef"
JOB_ID = "user:12345-tempolor:user_id-job:abcdef123456789"
SONG = f"{API}/music/song"
INSTRUMENTAL = f"{API}/music/instrumental"
JOB = f"{API}/music/{JOB_ID}"
LIST = f"{API}/music/"
EPOCH_START = 1_750_000_000.0


def download_url(file_format: str = "mp3") -> str:
    return f"{API}/music/download/{JOB_ID}?file_format={file_format}"


def job_body(**changes: Any) -> dict[str, Any]:
    """The documented example job, with top-level fields changed."""
    body: dict[str, Any] = copy.deepcopy(load_fixture("tempolor_job_completed"))
    body.update(changes)
    return body


def generating_body(**changes: Any) -> dict[str, Any]:
    """The example job as it looks while still generating."""
    body = job_body(status=0, status_name="GENERATING", status_final=False, progress=40)
    body["musicMaterial"]["dur"] = 0
    body.update(changes)
    return body


def connector_error() -> aiohttp.ClientConnectorError:
    """The connection never opened: nothing of the request reached the server."""
    key = aiohttp.client_reqrep.ConnectionKey("api.useapi.net", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


def useapi_error(status: int, text: str) -> dict[str, Any]:
    """aioresponses arguments for a useapi.net error answer."""
    return {"status": status, "payload": {"error": text, "code": status}}


@pytest.fixture
def clock() -> FakeClock:
    # Wall-clock epoch seconds: the TemPolor client's clock dates download links.
    return FakeClock(start=EPOCH_START)


@pytest.fixture
async def tempolor(clock: FakeClock) -> AsyncIterator[TempolorClient]:
    """A client on the fake clock: retries and polling never really sleep."""
    async with TempolorClient(TOKEN, clock=clock, sleep=clock.sleep) as api:
        yield api


def nothing_sent(mocked: aioresponses, client: TempolorClient) -> bool:
    return request_count(mocked) == 0 and client.requests_sent == 0


# -- construction, token and session ---------------------------------------------------


def test_token_never_appears_in_repr() -> None:
    client = TempolorClient(TOKEN)

    for text in (repr(client), str(client), client.api_token_hint):
        assert TOKEN not in text
    assert "user:…" in repr(client)
    assert "api.useapi.net" in repr(client)


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_missing_token_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidApiKeyError, match=r"no useapi\.net API token"):
        TempolorClient(bad)


def test_token_with_a_line_break_is_refused_without_echoing_it() -> None:
    bad = "user:1-secret\r\nX-Injected: 1"

    with pytest.raises(InvalidApiKeyError) as caught:
        check_api_token(bad)

    assert "secret" not in str(caught.value)


def test_token_is_stripped() -> None:
    assert check_api_token(f"  {TOKEN}\n") == TOKEN


def test_base_url_accepts_a_trailing_slash_and_refuses_non_http() -> None:
    assert str(TempolorClient(TOKEN, base_url=API + "/").base_url) == API
    with pytest.raises(ValueError, match="http"):
        TempolorClient(TOKEN, base_url="ftp://api.useapi.net/v1/tempolor")


async def test_a_session_passed_in_is_used_and_never_closed(mocked: aioresponses) -> None:
    mocked.get(JOB, payload=job_body())

    async with aiohttp.ClientSession() as session:
        async with TempolorClient(TOKEN, session=session) as api:
            await api.get_job(JOB_ID)
        assert not session.closed


async def test_a_session_the_client_made_is_closed_on_exit(mocked: aioresponses) -> None:
    mocked.get(JOB, payload=job_body())

    async with TempolorClient(TOKEN) as api:
        await api.get_job(JOB_ID)
        session = api._session
        assert session is not None

    assert session.closed
    assert api._session is None


async def test_a_closed_session_passed_in_is_a_clear_error() -> None:
    session = aiohttp.ClientSession()
    await session.close()
    api = TempolorClient(TOKEN, session=session, sleep=FakeClock().sleep)

    with pytest.raises(ProviderError, match="session passed to the client is closed"):
        await api.get_job(JOB_ID)
    assert api.requests_sent == 0


# -- create ----------------------------------------------------------------------------


async def test_create_song_sends_bearer_json_and_returns_the_jobs(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.post(SONG, payload={"jobs": [generating_body()]})

    jobs = await tempolor.create_song(
        prompt="epic orchestral",
        lyrics="Sample lyrics here",
        model_song="v3",
        user_id="user_id",
        reply_url="https://hooks.example.com/tempolor",
        reply_ref="order-7",
        max_jobs=3,
    )

    assert [job.job_id for job in jobs] == [JOB_ID]
    assert jobs[0].generation_status is GenerationStatus.PROCESSING
    [call] = sent(mocked, "POST", SONG)
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert call.kwargs["json"] == {
        "prompt": "epic orchestral",
        "lyrics": "Sample lyrics here",
        "model_song": "v3",
        "user_id": "user_id",
        "replyUrl": "https://hooks.example.com/tempolor",
        "replyRef": "order-7",
        "maxJobs": 3,
    }


async def test_create_song_accepts_a_prompt_a_mapping_or_a_request(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.post(SONG, payload={"jobs": [generating_body()]}, repeat=True)

    await tempolor.create_song("lofi piano", midiItemId="m1")
    await tempolor.create_song({"prompt": "lofi piano", "artistVoiceItemId": 77})
    await tempolor.create_song(SongRequest(prompt="lofi piano", cloned_voice_item_id="c9"))

    assert sent_bodies(mocked, "POST", SONG) == [
        {"prompt": "lofi piano", "midiItemId": "m1"},
        {"prompt": "lofi piano", "artistVoiceItemId": "77"},
        {"prompt": "lofi piano", "clonedVoiceItemId": "c9"},
    ]


async def test_create_song_refuses_a_request_and_fields_together(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    with pytest.raises(TypeError):
        await tempolor.create_song(SongRequest(prompt="a"), lyrics="b")
    with pytest.raises(TypeError):
        await tempolor.create_song("a", prompt="b")
    with pytest.raises(TypeError):
        await tempolor.create_song(InstrumentalRequest(prompt="a"))  # type: ignore[arg-type]

    assert nothing_sent(mocked, tempolor)


async def test_create_instrumental_sends_the_api_spelling(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.post(INSTRUMENTAL, payload={"jobs": [generating_body()]})

    [job] = await tempolor.create_instrumental(
        prompt="ambient pads",
        model_instrumental="i3.5 beta",
        tonality="g# minor",
        bpm="96",
        chords="Am F C G",
        maxJobs=2,
    )

    assert job.job_id == JOB_ID
    assert sent_bodies(mocked, "POST", INSTRUMENTAL) == [
        {
            "prompt": "ambient pads",
            "model_instrumental": "i3.5 beta",
            "tonality": "Ab:minor",
            "bpm": 96,
            "chords": "Am F C G",
            "maxJobs": 2,
        }
    ]


@pytest.mark.parametrize("shape", ["bare-job", "bare-list"])
async def test_create_accepts_a_bare_job_body_or_list_too(
    tempolor: TempolorClient, mocked: aioresponses, shape: str
) -> None:
    body = generating_body()
    mocked.post(SONG, payload=body if shape == "bare-job" else [body])

    [job] = await tempolor.create_song(prompt="x")

    assert job.job_id == JOB_ID


async def test_create_with_several_jobs_returns_them_all(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    second = generating_body(job_id=JOB_ID.replace("abcdef", "fedcba"))
    mocked.post(INSTRUMENTAL, payload={"jobs": [generating_body(), second]})

    jobs = await tempolor.create_instrumental(prompt="x")

    assert [job.job_id for job in jobs] == [JOB_ID, second["job_id"]]


# -- validation before sending ----------------------------------------------------------

SONG_PROBLEMS: list[Any] = [
    pytest.param({}, "prompt", "is required", id="prompt-missing"),
    pytest.param({"prompt": "  "}, "prompt", "must not be empty", id="prompt-blank"),
    pytest.param({"prompt": "x" * 2001}, "prompt", "at most 2000", id="prompt-long"),
    pytest.param({"prompt": 5}, "prompt", "must be text", id="prompt-not-text"),
    pytest.param({"prompt": "a", "lyrics": "x" * 3001}, "lyrics", "at most 3000", id="lyrics"),
    pytest.param({"prompt": "a", "model_song": "v4"}, "model_song", "v3, v3.5", id="model"),
    pytest.param({"prompt": "a", "user_id": ""}, "user_id", "non-empty id", id="user-id"),
    pytest.param(
        {"prompt": "a", "replyUrl": "https://x/" + "a" * 1015}, "replyUrl", "1024", id="url-long"
    ),
    pytest.param({"prompt": "a", "replyUrl": "ftp://x"}, "replyUrl", "http(s)", id="url-scheme"),
    pytest.param({"prompt": "a", "replyRef": "r" * 1025}, "replyRef", "1024", id="ref-long"),
    pytest.param({"prompt": "a", "maxJobs": 0}, "maxJobs", "between 1 and 10", id="maxjobs-0"),
    pytest.param({"prompt": "a", "maxJobs": 11}, "maxJobs", "between 1 and 10", id="maxjobs-11"),
    pytest.param({"prompt": "a", "maxJobs": 2.5}, "maxJobs", "whole number", id="maxjobs-frac"),
    pytest.param({"prompt": "a", "midiItemId": "  "}, "midiItemId", "non-empty id", id="midi-item"),
    pytest.param({"promt": "a", "prompt": "a"}, "promt", "did you mean 'prompt'", id="typo"),
    pytest.param({"prompt": "a", "tonality": "F:minor"}, "tonality", "not a valid", id="no-key"),
]

INSTRUMENTAL_PROBLEMS: list[Any] = [
    pytest.param({}, "prompt", "is required", id="prompt-missing"),
    pytest.param({"prompt": "x" * 2001}, "prompt", "at most 2000", id="prompt-long"),
    pytest.param(
        {"prompt": "a", "model_instrumental": "i4"},
        "model_instrumental",
        "i3, i3.5 beta",
        id="model",
    ),
    pytest.param({"prompt": "a", "tonality": "H:major"}, "tonality", "A:major", id="tonality"),
    pytest.param({"prompt": "a", "tonality": "F"}, "tonality", "G:minor", id="tonality-no-mode"),
    pytest.param({"prompt": "a", "bpm": 49}, "bpm", "between 50 and 190", id="bpm-low"),
    pytest.param({"prompt": "a", "bpm": 191}, "bpm", "between 50 and 190", id="bpm-high"),
    pytest.param({"prompt": "a", "bpm": 120.5}, "bpm", "whole number from 50 to 190", id="frac"),
    pytest.param({"prompt": "a", "bpm": "fast"}, "bpm", "from 50 to 190", id="bpm-text"),
    pytest.param({"prompt": "a", "chords": "C" * 201}, "chords", "at most 200", id="chords"),
    pytest.param({"prompt": "a", "maxJobs": 11}, "maxJobs", "between 1 and 10", id="maxjobs"),
    pytest.param({"prompt": "a", "replyRef": "r" * 1025}, "replyRef", "1024", id="ref-long"),
    pytest.param({"prompt": "a", "lyrics": "la"}, "lyrics", "not a valid option", id="no-lyrics"),
]


@pytest.mark.parametrize(("fields", "field", "problem"), SONG_PROBLEMS)
async def test_invalid_song_is_refused_before_sending(
    tempolor: TempolorClient,
    mocked: aioresponses,
    fields: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await tempolor.create_song(**fields)

    assert field in caught.value.fields
    assert problem in str(caught.value)
    assert nothing_sent(mocked, tempolor)


@pytest.mark.parametrize(("fields", "field", "problem"), INSTRUMENTAL_PROBLEMS)
async def test_invalid_instrumental_is_refused_before_sending(
    tempolor: TempolorClient,
    mocked: aioresponses,
    fields: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await tempolor.create_instrumental(**fields)

    assert field in caught.value.fields
    assert problem in str(caught.value)
    assert nothing_sent(mocked, tempolor)


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(RequestValidationError) as caught:
        InstrumentalRequest(prompt="", bpm=300, tonality="Z:minor", chords="c" * 201, colour=1)

    assert sorted(caught.value.fields) == ["bpm", "chords", "colour", "prompt", "tonality"]
    assert isinstance(caught.value, ValidationError)  # the same tree as Finetuning's


def test_the_limits_themselves_are_accepted() -> None:
    song = SongRequest(
        prompt="p" * 2000,
        lyrics="l" * 3000,
        model_song="v3.5",
        replyUrl="https://x/" + "a" * 1014,
        replyRef="r" * 1024,
        maxJobs=10,
    )
    low = InstrumentalRequest(prompt="p", bpm=50, chords="c" * 200, maxJobs=1)
    high = InstrumentalRequest(prompt="p", bpm=190.0, model_instrumental="i3")

    assert len(song.to_payload()["replyUrl"]) == 1024
    assert low.to_payload()["bpm"] == 50
    assert high.to_payload()["bpm"] == 190


def test_tonalities_are_exactly_the_sandboxs() -> None:
    assert set(TONALITIES) == set(SANDBOX_TONALITIES)
    assert len(TONALITIES) == 24
    for tonality in TONALITIES:
        assert InstrumentalRequest(prompt="p", tonality=tonality).tonality == tonality


@pytest.mark.parametrize(
    ("given", "sent_as"),
    [
        ("f:minor", "F:minor"),
        ("F minor", "F:minor"),
        ("bb:Major", "Bb:major"),
        ("D#:minor", "Eb:minor"),
        ("Db:major", "C#:major"),
        ("Gb:minor", "F#:minor"),
    ],
)
def test_other_spellings_of_a_tonality_are_sent_as_the_api_spells_it(
    given: str, sent_as: str
) -> None:
    assert InstrumentalRequest(prompt="p", tonality=given).tonality == sent_as


# -- get_job and the mapping ------------------------------------------------------------


async def test_get_job_returns_the_full_job(tempolor: TempolorClient, mocked: aioresponses) -> None:
    mocked.get(JOB, payload=job_body(newField="kept"))

    job = await tempolor.get_job(JOB_ID)

    assert job.job_id == JOB_ID
    assert job.item_id == "abcdef123456789"
    assert job.title_en == "Epic Orchestral"
    assert job.is_completed
    assert job.music_material is not None
    assert job.music_material.key == "F:minor"
    assert job.ltm_material_extend_dto is not None
    assert job.ltm_material_extend_dto.model_show_name == "v3.5"
    assert job.model_extra is not None
    assert job.can_fix_vocals is True
    assert job.model_extra["newField"] == "kept"  # unknown fields are kept
    [call] = sent(mocked, "GET", JOB)
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("bad", ["", "  ", "a/b", ".."])
async def test_get_job_refuses_a_bad_id_before_sending(
    tempolor: TempolorClient, mocked: aioresponses, bad: str
) -> None:
    with pytest.raises(RequestValidationError, match="job_id"):
        await tempolor.get_job(bad)

    assert nothing_sent(mocked, tempolor)


def test_the_documented_job_maps_onto_a_generation() -> None:
    generation = TempolorJob.model_validate(load_fixture("tempolor_job_completed")).to_generation()

    assert generation.id == JOB_ID
    assert generation.provider == "tempolor"
    assert generation.status is GenerationStatus.COMPLETED
    assert generation.title == "Epic Orchestral"
    assert generation.prompt == "A cinematic orchestral piece with dramatic string sections"
    assert generation.duration == 180.0
    assert generation.audio_url is None  # links expire: fetched when needed
    assert generation.error_message is None
    assert generation.type == "song"
    assert generation.created_at == datetime(2024, 5, 24, 15, 43, 45, tzinfo=UTC)
    assert generation.completed_at == datetime(2024, 5, 24, 15, 48, 20, tzinfo=UTC)


def test_the_key_is_split_from_the_scale() -> None:
    generation = TempolorJob.model_validate(load_fixture("tempolor_job_completed")).to_generation()

    assert generation.parameters is not None
    assert generation.parameters.keyscale == "F minor"
    assert generation.parameters.key == "F"
    assert generation.parameters.scale == "minor"
    assert generation.parameters.bpm == 130
    assert generation.parameters.seed == 1234567890


@pytest.mark.parametrize(
    ("tonality", "keyscale"),
    [("F:minor", "F minor"), ("Bb:major", "Bb major"), ("C#:Minor", "C# minor"), ("", None)],
)
def test_tonality_becomes_keyscale(tonality: str, keyscale: str | None) -> None:
    assert tonality_to_keyscale(tonality) == keyscale


def test_epoch_milliseconds_become_aware_utc_datetimes() -> None:
    job = TempolorJob.model_validate(job_body(createTime=1716565425123))

    assert job.created_at == datetime(2024, 5, 24, 15, 43, 45, 123000, tzinfo=UTC)
    assert job.created_at is not None
    assert job.created_at.tzinfo is UTC


def test_a_generating_job_maps_to_processing_without_duration_or_completion() -> None:
    generation = TempolorJob.model_validate(generating_body()).to_generation()

    assert generation.status is GenerationStatus.PROCESSING
    assert generation.duration is None
    assert generation.completed_at is None
    assert generation.created_at is not None


def test_a_failed_job_maps_to_failed_with_its_error() -> None:
    body = generating_body(status=10, status_name="FAILED", status_final=True, error="Boom")

    generation = TempolorJob.model_validate(body).to_generation()

    assert generation.status is GenerationStatus.FAILED
    assert generation.error_message == "Boom"
    assert generation.completed_at == datetime(2024, 5, 24, 15, 48, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"status": 20}, GenerationStatus.PROCESSING),
        ({"status": None, "status_name": "COMPLETED"}, GenerationStatus.COMPLETED),
        ({"status": None, "status_name": None}, GenerationStatus.PROCESSING),
        ({"status": "10"}, GenerationStatus.FAILED),
    ],
)
def test_status_mapping_edges(changes: dict[str, Any], status: GenerationStatus) -> None:
    assert TempolorJob.model_validate(job_body(**changes)).to_generation().status is status


def test_the_raw_job_stays_reachable_on_the_generation() -> None:
    body = job_body(somethingNew={"a": 1})

    generation = TempolorJob.model_validate(body).to_generation()
    raw = (generation.model_extra or {})["tempolor"]

    assert raw["musicMaterial"]["style"] == "Orchestral"
    assert raw["somethingNew"] == {"a": 1}
    assert raw["canReplaced"] is False
    assert "replyUrl" not in raw  # only what came over the wire


def test_an_empty_job_parses_and_a_job_without_id_cannot_become_a_generation() -> None:
    job = TempolorJob.model_validate({})

    assert job.generation_status is GenerationStatus.PROCESSING
    with pytest.raises(ValueError, match="job_id"):
        job.to_generation()


def test_prompt_falls_back_to_the_description() -> None:
    body = job_body()
    body["ltmMaterialExtendDto"]["prompt"] = ""

    job = TempolorJob.model_validate(body)

    assert job.prompt == "A cinematic orchestral piece with dramatic string sections"


# -- download links ----------------------------------------------------------------------


async def test_download_url_expires_by_the_client_clock(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    link_url = "https://cdn.example.com/abc.mp3?auth_key=1-0-0-x"
    mocked.get(download_url(), payload={"url": link_url, "remainSeconds": 600})

    link = await tempolor.get_download_url(JOB_ID)

    fetched = datetime.fromtimestamp(EPOCH_START, UTC)
    assert link.url == link_url
    assert link.remain_seconds == 600
    assert link.fetched_at == fetched
    assert link.expires_at == fetched + timedelta(seconds=600)
    assert link.file_format == "mp3"
    assert link.job_id == JOB_ID
    assert not link.is_expired(fetched + timedelta(seconds=599))
    assert link.is_expired(fetched + timedelta(seconds=600))


@pytest.mark.parametrize("file_format", ["wav", "stems"])
async def test_download_url_in_other_formats(
    tempolor: TempolorClient, mocked: aioresponses, file_format: str
) -> None:
    mocked.get(download_url(file_format), payload={"url": "https://x/y", "remainSeconds": 30})

    link = await tempolor.get_download_url(JOB_ID, file_format)

    assert link.file_format == file_format
    assert len(sent(mocked, "GET", download_url(file_format))) == 1


async def test_download_url_refuses_an_unknown_format_before_sending(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await tempolor.get_download_url(JOB_ID, "flac")

    assert caught.value.fields == ["file_format"]
    assert "mp3, wav, stems" in str(caught.value)
    assert nothing_sent(mocked, tempolor)


async def test_download_before_completion_is_a_validation_error(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.get(download_url(), **useapi_error(400, "Generation is not completed yet (0)"))

    with pytest.raises(ValidationError, match=r"not completed yet \(0\)"):
        await tempolor.get_download_url(JOB_ID)

    assert tempolor.requests_sent == 1  # a 400 is final


@pytest.mark.parametrize(
    "payload",
    [{"remainSeconds": 600}, {"url": "https://x/y"}, {"url": "https://x/y", "remainSeconds": -1}],
)
async def test_download_answer_without_url_or_lifetime_is_unexpected(
    tempolor: TempolorClient, mocked: aioresponses, payload: dict[str, Any]
) -> None:
    mocked.get(download_url(), payload=payload)

    with pytest.raises(UnexpectedResponseError):
        await tempolor.get_download_url(JOB_ID)


# -- listing -----------------------------------------------------------------------------


async def test_list_jobs_sends_the_filters_and_reads_one_page(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    url = f"{LIST}?user_id=user_id&type=instrumental&cursor=abc"
    mocked.get(url, payload={"records": [job_body()], "hasNext": True, "cursor": "def"})

    page = await tempolor.list_jobs(user_id="user_id", type="instrumental", cursor="abc")

    assert [job.job_id for job in page.records] == [JOB_ID]
    assert page.has_next
    assert page.cursor == "def"
    [[call]] = mocked.requests.values()
    assert call.kwargs["params"] == {"user_id": "user_id", "type": "instrumental", "cursor": "abc"}


async def test_list_jobs_without_filters_sends_no_query(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.get(LIST, payload={"records": [], "hasNext": False, "cursor": ""})

    page = await tempolor.list_jobs()

    assert page.records == []
    assert not page.has_next


async def test_list_jobs_refuses_an_unknown_type_before_sending(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    with pytest.raises(RequestValidationError, match="song, instrumental"):
        await tempolor.list_jobs(type="music")

    assert nothing_sent(mocked, tempolor)


async def test_iter_jobs_follows_the_cursor_and_skips_repeats(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    ids = [JOB_ID.replace("abcdef", f"{n:06d}") for n in range(3)]
    mocked.get(
        f"{LIST}?type=song",
        payload={
            "records": [job_body(job_id=ids[0]), job_body(job_id=ids[1])],
            "hasNext": True,
            "cursor": "c1",
        },
    )
    mocked.get(
        f"{LIST}?type=song&cursor=c1",
        payload={
            "records": [job_body(job_id=ids[1]), job_body(job_id=ids[2])],
            "hasNext": False,
            "cursor": "",
        },
    )

    seen = [job.job_id async for job in tempolor.iter_jobs(type="song")]

    assert seen == ids


async def test_iter_jobs_stops_on_a_cursor_that_does_not_advance(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.get(
        f"{LIST}?cursor=same", payload={"records": [job_body()], "hasNext": True, "cursor": "same"}
    )
    mocked.get(LIST, payload={"records": [job_body()], "hasNext": True, "cursor": "same"})

    with pytest.raises(UnexpectedResponseError, match="does not advance"):
        async for _ in tempolor.iter_jobs():
            pass


# -- waiting -----------------------------------------------------------------------------


async def test_wait_for_job_polls_until_final_and_reports_progress(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, payload=generating_body(progress=10))
    mocked.get(JOB, payload=generating_body(progress=60))
    mocked.get(JOB, payload=job_body())
    seen: list[float | None] = []

    async def on_progress(job: TempolorJob) -> None:
        seen.append(job.progress)

    job = await tempolor.wait_for_job(JOB_ID, on_progress=on_progress)

    assert job.is_completed
    assert seen == [10, 60, 100]
    assert clock.sleeps == [3.0, pytest.approx(3.9)]


async def test_wait_for_job_accepts_a_plain_callback_and_returns_a_failed_job(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.get(JOB, payload=generating_body(status=10, status_final=True, error="Boom"))
    seen: list[str | None] = []

    job = await tempolor.wait_for_job(JOB_ID, on_progress=lambda j: seen.append(j.error))

    assert job.generation_status is GenerationStatus.FAILED
    assert seen == ["Boom"]


async def test_wait_for_job_gives_up_after_the_timeout(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, payload=generating_body(), repeat=True)

    with pytest.raises(TempolorJobTimeoutError) as caught:
        await tempolor.wait_for_job(JOB_ID, timeout=20)

    assert isinstance(caught.value, GenerationTimeoutError)
    assert caught.value.generation_id == JOB_ID
    assert caught.value.last_status == "processing"
    assert "get_job" in str(caught.value)
    assert sum(clock.sleeps) == pytest.approx(20)


# -- error mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "cls", "code"),
    [
        (400, "job_id has incorrect format", ValidationError, "VALIDATION_ERROR"),
        (401, "Unauthorized", InvalidApiKeyError, "INVALID_API_KEY"),
        (402, "Subscription expired", MonthlyLimitReachedError, "PAYMENT_REQUIRED"),
        (403, "Forbidden", AuthenticationError, "FORBIDDEN"),
        (404, f"No record found for {JOB_ID}", NotFoundError, "NOT_FOUND"),
        (429, "Too many requests", RateLimitedError, "RATE_LIMITED"),
        (500, "Internal error", ServerError, "HTTP_500"),
        (503, "Unavailable", ServerError, "HTTP_503"),
        (418, "I'm a teapot", UnexpectedResponseError, "HTTP_418"),
    ],
)
async def test_error_answers_map_onto_the_shared_exception_tree(
    mocked: aioresponses,
    clock: FakeClock,
    status: int,
    text: str,
    cls: type[ProviderError],
    code: str,
) -> None:
    mocked.get(JOB, **useapi_error(status, text))

    async with TempolorClient(TOKEN, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(cls) as caught:
            await api.get_job(JOB_ID)

    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.message == text
    assert caught.value.details == {"error": text, "code": status}


async def test_401_is_an_authentication_error(
    tempolor: TempolorClient, mocked: aioresponses
) -> None:
    mocked.get(JOB, **useapi_error(401, "Unauthorized"))

    with pytest.raises(AuthenticationError):
        await tempolor.get_job(JOB_ID)

    assert tempolor.requests_sent == 1  # never retried


async def test_a_non_json_error_answer_is_a_clear_error(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, status=502, body="<html>Bad Gateway</html>", content_type="text/html")

    async with TempolorClient(TOKEN, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ServerError) as caught:
            await api.get_job(JOB_ID)

    assert caught.value.status == 502
    assert "non-JSON answer" in str(caught.value)
    assert "Bad Gateway" in str(caught.value)


async def test_a_json_error_without_text_still_names_the_status(
    mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, status=404, payload={"message": "gone"})

    async with TempolorClient(TOKEN, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(NotFoundError, match="HTTP 404 with an answer without an error text"):
            await api.get_job(JOB_ID)


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "OK", "content_type": "text/plain"},
        {"body": ""},
        {"payload": ["not", "a", "job"]},
    ],
)
async def test_a_success_answer_that_is_not_a_job_is_unexpected(
    tempolor: TempolorClient, mocked: aioresponses, answer: dict[str, Any]
) -> None:
    mocked.get(JOB, status=200, **answer)

    with pytest.raises(UnexpectedResponseError):
        await tempolor.get_job(JOB_ID)


# -- retries: reads ----------------------------------------------------------------------

TRANSIENT: list[Any] = [
    pytest.param(useapi_error(500, "Internal"), id="500"),
    pytest.param({"status": 502, "body": "Bad Gateway", "content_type": "text/plain"}, id="502"),
    pytest.param(useapi_error(503, "Unavailable"), id="503"),
    pytest.param(useapi_error(429, "Too many requests"), id="429"),
    pytest.param({"exception": TimeoutError()}, id="timeout"),
    pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
    pytest.param({"exception": connector_error()}, id="refused"),
]


@pytest.mark.parametrize("failure", TRANSIENT)
async def test_reads_are_retried_after_a_transient_failure(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock, failure: dict[str, Any]
) -> None:
    mocked.get(JOB, **failure)
    mocked.get(JOB, payload=job_body(newField="kept"))

    job = await tempolor.get_job(JOB_ID)

    assert job.job_id == JOB_ID
    assert tempolor.requests_sent == 2
    assert clock.sleeps == [1.0]


async def test_reads_back_off_exponentially_and_give_up(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, **useapi_error(503, "Unavailable"), repeat=True)

    with pytest.raises(ServerError):
        await tempolor.get_job(JOB_ID)

    assert tempolor.requests_sent == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]


async def test_retry_after_is_obeyed_on_429(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(JOB, **useapi_error(429, "slow down"), headers={"Retry-After": "7"})
    mocked.get(JOB, payload=job_body())

    await tempolor.get_job(JOB_ID)

    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("status", [400, 404])
async def test_client_errors_are_not_retried(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock, status: int
) -> None:
    mocked.get(JOB, **useapi_error(status, "no"), repeat=True)

    with pytest.raises(ProviderError):
        await tempolor.get_job(JOB_ID)

    assert tempolor.requests_sent == 1
    assert clock.sleeps == []


async def test_transport_errors_keep_their_cause(mocked: aioresponses, clock: FakeClock) -> None:
    failure = TimeoutError()
    mocked.get(JOB, exception=failure)

    async with TempolorClient(TOKEN, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ProviderTimeoutError) as caught:
            await api.get_job(JOB_ID)

    assert caught.value.__cause__ is failure
    assert "api.useapi.net" in str(caught.value)


# -- retries: creates spend credit -----------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(useapi_error(429, "Account is running 10 of 10 jobs"), id="429"),
        pytest.param({"exception": connector_error()}, id="never-connected"),
    ],
)
async def test_create_is_retried_when_no_job_can_have_started(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock, failure: dict[str, Any]
) -> None:
    mocked.post(SONG, **failure)
    mocked.post(SONG, payload={"jobs": [generating_body()]})

    [job] = await tempolor.create_song(prompt="x")

    assert job.job_id == JOB_ID
    assert len(sent(mocked, "POST", SONG)) == 2
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(useapi_error(500, "Internal"), id="500"),
        pytest.param(useapi_error(503, "Unavailable"), id="503"),
        pytest.param(
            {"status": 502, "body": "Bad Gateway", "content_type": "text/plain"}, id="502"
        ),
        pytest.param({"exception": TimeoutError()}, id="timeout"),
        pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
        pytest.param({"status": 200, "body": "<html>", "content_type": "text/html"}, id="not-json"),
        pytest.param({"status": 200, "payload": {"jobs": []}}, id="no-jobs"),
        pytest.param({"status": 200, "payload": {"jobs": [{"status": 0}]}}, id="no-job-id"),
    ],
)
async def test_create_is_never_retried_once_it_may_have_reached_the_server(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock, failure: dict[str, Any]
) -> None:
    mocked.post(INSTRUMENTAL, **failure)
    mocked.post(INSTRUMENTAL, payload={"jobs": [generating_body()]})

    with pytest.raises(GenerationOutcomeUnknownError, match="not resubmitted") as caught:
        await tempolor.create_instrumental(prompt="x")

    assert len(sent(mocked, "POST", INSTRUMENTAL)) == 1
    assert clock.sleeps == []
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("status", "cls"), [(400, ValidationError), (401, InvalidApiKeyError), (404, NotFoundError)]
)
async def test_create_refused_by_the_server_raises_the_plain_error(
    tempolor: TempolorClient, mocked: aioresponses, status: int, cls: type[ProviderError]
) -> None:
    mocked.post(SONG, **useapi_error(status, "refused"))

    with pytest.raises(cls) as caught:
        await tempolor.create_song(prompt="x")

    assert not isinstance(caught.value, GenerationOutcomeUnknownError)
    assert tempolor.requests_sent == 1


async def test_create_gives_up_on_429_after_max_retries(
    tempolor: TempolorClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(SONG, **useapi_error(429, "busy"), repeat=True)

    with pytest.raises(RateLimitedError):
        await tempolor.create_song(prompt="x")

    assert tempolor.requests_sent == 5


# -- the token is never shown ------------------------------------------------------------


async def test_the_token_is_redacted_from_server_echoes_and_logs(
    mocked: aioresponses, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector.providers.tempolor.client")
    mocked.get(JOB, **useapi_error(401, f"Unauthorized: Bearer {TOKEN}"))
    mocked.get(JOB, status=500, body=f"proxy saw {TOKEN}", content_type="text/plain")
    mocked.get(JOB, status=500, body=f"proxy saw {TOKEN}", content_type="text/plain")
    mocked.post(SONG, status=200, body=f"echo {TOKEN}", content_type="text/plain")
    errors: list[ProviderError] = []

    async with TempolorClient(TOKEN, max_retries=1, clock=clock, sleep=clock.sleep) as api:
        for call in (lambda: api.get_job(JOB_ID), lambda: api.get_job(JOB_ID)):
            with pytest.raises(ProviderError) as caught:
                await call()
            errors.append(caught.value)
        with pytest.raises(GenerationOutcomeUnknownError) as unknown:
            await api.create_song(prompt="x")
        errors.append(unknown.value)

    assert [type(e) for e in errors] == [
        InvalidApiKeyError,
        ServerError,
        GenerationOutcomeUnknownError,
    ]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert TOKEN not in caplog.text
    for error in errors:
        for text in (str(error), repr(error), error.message, str(error.details)):
            assert TOKEN not in text
            assert "0123456789abcdef" not in text
    assert "user:…" in errors[0].message


async def test_a_token_echoed_at_the_cut_of_a_long_answer_is_still_redacted(
    mocked: aioresponses, clock: FakeClock
) -> None:
    # The token straddles the 200th character, where the error text is cut.
    mocked.get(JOB, status=500, body="x" * 190 + TOKEN, content_type="text/plain")

    async with TempolorClient(TOKEN, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(ServerError) as caught:
            await api.get_job(JOB_ID)

    assert TOKEN[:10] not in str(caught.value)
