"""The pydantic models: the decisions of docs/providers.md, on the documented payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from ft_client_support import PLAYLIST, TRACK_A, TRACK_B, load_fixture

from connector.errors import RequestValidationError, ValidationError
from connector.providers.finetuning.ids import chunked, validate_ids
from connector.providers.finetuning.models import (
    Account,
    BulkResult,
    Generation,
    GenerationPage,
    GenerationParameters,
    GenerationRequest,
    GenerationStatus,
    ItemError,
    Playlist,
    PlaylistDetail,
    parse_timestamp,
)

WEBHOOK_PREFIX = "https://hooks.example.com/ft?token="
WEBHOOK_2048 = WEBHOOK_PREFIX + "a" * (2048 - len(WEBHOOK_PREFIX))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- the documented responses -------------------------------------------------------------


def test_create_response_example_parses() -> None:
    generation = Generation.model_validate(load_fixture("create_generation")["data"])

    assert generation.id == "gen_xyz789"
    assert generation.status is GenerationStatus.PROCESSING
    assert generation.prompt == "lofi chill piano night"
    # The echoed token is dropped as the response is parsed: it must never be kept.
    assert generation.webhook == "https://your-app.com/finetuning-callback"
    assert generation.credits_remaining == 1952
    assert generation.created_at == utc(2025, 1, 15, 10, 30, 0)
    params = generation.parameters
    assert params is not None
    assert (params.bpm, params.duration, params.language, params.seed) == (85, 120.0, "en", 1234567)
    assert params.keyscale == "C minor"
    assert (params.key, params.scale) == ("C", "minor")
    assert generation.is_terminal is False


def test_create_response_without_webhook_has_null_webhook() -> None:
    generation = Generation.model_validate(load_fixture("create_generation_no_webhook")["data"])

    assert generation.webhook is None
    assert generation.audio_url is None  # documented optional fields default to None
    assert generation.title is None
    assert generation.completed_at is None


def test_get_detail_example_parses() -> None:
    generation = Generation.model_validate(load_fixture("get_generation")["data"])

    assert generation.id == "gen_abc123"
    assert generation.title == "modern country instrumental"
    assert generation.status is GenerationStatus.COMPLETED
    assert generation.audio_url == "https://media.finetuning.ai/audio/gen_abc123.mp3"
    assert generation.duration == 120.0
    assert generation.file_size is None
    assert generation.is_public is False
    assert (generation.play_count, generation.download_count, generation.like_count) == (0, 0, 0)
    assert generation.error_message is None
    assert generation.generation_time == 17
    assert generation.parameters is not None
    assert generation.parameters.timesignature == 4
    assert generation.parameters.language is None  # absent from the GET example
    assert generation.is_terminal is True


def test_overview_detail_example_keeps_float_generation_time_and_file_size() -> None:
    generation = Generation.model_validate(load_fixture("get_generation_overview")["data"])

    assert generation.generation_time == pytest.approx(7.2)
    assert generation.file_size == 1920000
    assert generation.completed_at == utc(2025, 1, 15, 10, 30, 8)


def test_list_page_example_parses() -> None:
    page = GenerationPage.model_validate(load_fixture("list_generations")["data"])

    assert page.has_more is True
    assert page.next_offset == 20
    assert [g.id for g in page.generations] == ["gen_xyz789"]
    assert page.generations[0].parameters is not None
    assert page.generations[0].parameters.bpm == 85


def test_list_page_without_paging_fields_defaults_to_last_page() -> None:
    page = GenerationPage.model_validate({"generations": []})

    assert (page.generations, page.has_more, page.next_offset) == ([], False, None)


def test_webhook_completed_payload_parses_unwrapped() -> None:
    generation = Generation.model_validate(load_fixture("webhook_completed"))

    assert generation.status is GenerationStatus.COMPLETED
    assert generation.duration == pytest.approx(90.3)  # the real length, a float
    assert generation.parameters is not None
    assert generation.parameters.duration == 90  # the requested length
    assert generation.parameters.timesignature == 4
    assert generation.audio_url == "https://media.finetuning.ai/abc123def456.mp3"
    assert generation.created_at == utc(2026, 5, 15, 8, 24, 11)
    assert generation.completed_at == utc(2026, 5, 15, 8, 25, 47)


def test_webhook_failed_payload_parses_with_error_message() -> None:
    generation = Generation.model_validate(load_fixture("webhook_failed"))

    assert generation.status is GenerationStatus.FAILED
    assert generation.is_terminal is True
    assert generation.audio_url is None
    assert generation.duration is None
    assert generation.error_message == "GPU job timed out after 240s"


def test_me_example_parses() -> None:
    account = Account.model_validate(load_fixture("me")["data"])

    assert account.id == "usr_abc123"  # ids are opaque: not checked for a UUID shape
    assert (account.email, account.name, account.tier) == ("you@example.com", "Your Name", "pro")
    limits = account.limits
    assert limits.monthly_generations == 2000
    assert limits.generations_used == 47
    assert limits.monthly_remaining == 1953
    assert limits.pack_credits == 0
    assert limits.total_remaining == 1953
    assert limits.queue_depth == 5


def test_playlists_list_example_parses() -> None:
    (playlist,) = [
        Playlist.model_validate(p) for p in load_fixture("playlists")["data"]["playlists"]
    ]

    assert playlist.id == PLAYLIST
    assert playlist.name == "Late Night Lofi"
    assert playlist.description is None
    assert playlist.track_count == 14
    assert playlist.total_duration == 2520
    assert playlist.is_public is False
    assert playlist.created_at == utc(2025, 1, 10, 9, 0, 0)
    assert playlist.updated_at == utc(2025, 1, 15, 10, 30, 0)


def test_playlist_detail_example_parses_with_tracks() -> None:
    detail = PlaylistDetail.model_validate(load_fixture("playlist_detail")["data"])

    assert detail.is_owner is True
    assert detail.track_count == 2
    assert detail.track_ids == [TRACK_A, TRACK_B]
    track = detail.tracks[0]
    assert track.status == "completed"
    assert track.duration == 120.0
    assert track.audio_url == f"https://media.finetuning.ai/audio/{TRACK_A}.mp3"
    assert track.created_at == utc(2025, 1, 15, 10, 30, 0)


# -- timesignature, durations, timestamps -------------------------------------------------


@pytest.mark.parametrize("wire", ["4", 4, 4.0, " 4 ", "4/4"])
def test_timesignature_string_or_number_becomes_int(wire: Any) -> None:
    params = GenerationParameters.model_validate({"timesignature": wire})

    assert params.timesignature == 4
    assert type(params.timesignature) is int


def test_timesignature_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        GenerationParameters.model_validate({"timesignature": "waltz"})


def test_durations_are_floats_everywhere() -> None:
    generation = Generation.model_validate(
        {"id": "g", "status": "completed", "duration": 120, "parameters": {"duration": 90}}
    )

    assert type(generation.duration) is float
    assert generation.parameters is not None
    assert type(generation.parameters.duration) is float
    real_length = Generation.model_validate({"id": "g", "status": "completed", "duration": 90.3})
    assert real_length.duration == pytest.approx(90.3)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2025-01-15T10:30:00Z", utc(2025, 1, 15, 10, 30, 0)),  # create
        ("2025-01-15 10:30:00", utc(2025, 1, 15, 10, 30, 0)),  # detail createdAt, playlists
        ("2025-01-15T10:30:17.623Z", utc(2025, 1, 15, 10, 30, 17, 623000)),  # completedAt
        ("2026-05-15T08:24:11.000Z", utc(2026, 5, 15, 8, 24, 11)),  # webhook
        ("2025-01-15T12:30:00+02:00", utc(2025, 1, 15, 10, 30, 0)),  # an offset: to UTC
    ],
)
def test_timestamps_in_every_format_become_aware_utc(wire: str, expected: datetime) -> None:
    generation = Generation.model_validate({"id": "g", "status": "pending", "createdAt": wire})

    assert generation.created_at == expected
    assert generation.created_at is not None
    assert generation.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_timestamp_is_none(empty: str | None) -> None:
    assert parse_timestamp(empty) is None


def test_garbage_timestamp_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="not a timestamp"):
        Generation.model_validate({"id": "g", "status": "pending", "createdAt": "yesterday"})


# -- tolerance: unknown fields kept, camelCase and snake_case -----------------------------


def test_unknown_fields_are_kept_top_level_and_nested() -> None:
    generation = Generation.model_validate(
        {
            "id": "g",
            "status": "completed",
            "energy": "high",
            "parameters": {"bpm": 90, "mood": "calm"},
        }
    )

    assert generation.model_extra == {"energy": "high"}
    assert generation.parameters is not None
    assert generation.parameters.model_extra == {"mood": "calm"}
    wire = generation.to_wire()
    assert wire["energy"] == "high"
    assert wire["parameters"]["mood"] == "calm"


def test_unknown_fields_are_kept_on_playlists_and_accounts() -> None:
    playlist = Playlist.model_validate({"id": PLAYLIST, "name": "x", "coverUrl": "https://c"})
    account = Account.model_validate({"id": "u", "referralCode": "abc"})

    assert playlist.model_extra == {"coverUrl": "https://c"}
    assert account.model_extra == {"referralCode": "abc"}


def test_models_accept_camel_case_wire_names_and_snake_case_names() -> None:
    wire = Generation.model_validate({"id": "g", "status": "completed", "audioUrl": "https://a"})
    python = Generation.model_validate({"id": "g", "status": "completed", "audio_url": "https://a"})

    assert wire.audio_url == python.audio_url == "https://a"
    assert wire.to_wire()["audioUrl"] == "https://a"


def test_generation_without_id_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Generation.model_validate({"status": "completed"})


def test_only_completed_and_failed_are_terminal() -> None:
    terminal = {s for s in GenerationStatus if s.is_terminal}

    assert terminal == {GenerationStatus.COMPLETED, GenerationStatus.FAILED}


@pytest.mark.parametrize(
    ("keyscale", "key", "scale"),
    [("C minor", "C", "minor"), ("C# Major", "C#", "major"), ("G", "G", None), (None, None, None)],
)
def test_keyscale_splits_into_key_and_scale(
    keyscale: str | None, key: str | None, scale: str | None
) -> None:
    params = GenerationParameters(keyscale=keyscale)

    assert (params.key, params.scale) == (key, scale)


# -- bulk results -------------------------------------------------------------------------


def test_bulk_delete_partial_example_reads_id_and_error() -> None:
    result = BulkResult.from_wire(load_fixture("bulk_delete_partial")["data"], "deleted")

    assert result.succeeded == [TRACK_A]
    assert result.errors == [ItemError(id=TRACK_B, reason="Track not found or not owned by you")]
    assert result.failed_ids == [TRACK_B]
    assert result.ok is True
    assert result.requests == 1


def test_missing_errors_list_is_empty() -> None:
    result = BulkResult.from_wire(load_fixture("bulk_delete_all")["data"], "deleted")

    assert result.succeeded == [TRACK_A, TRACK_B]
    assert result.errors == []


@pytest.mark.parametrize(
    ("fixture", "key", "reason"),
    [
        ("add_tracks_partial", "added", "Track already in playlist"),
        ("remove_tracks", "removed", "Track not found in playlist or not authorized"),
        ("move_tracks", "moved", "Track already in playlist"),
    ],
)
def test_playlist_bulk_examples_read_track_id_and_error(
    fixture: str, key: str, reason: str
) -> None:
    result = BulkResult.from_wire(load_fixture(fixture)["data"], key)

    assert result.succeeded == [TRACK_A]
    assert result.errors == [ItemError(id=TRACK_B, reason=reason)]


def test_bulk_answer_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="not an object"):
        BulkResult.from_wire(["a"], "deleted")


def test_bulk_results_merge_in_order_and_count_requests() -> None:
    first = BulkResult(succeeded=["a"], errors=[ItemError(id="b", reason="x")], requests=1)
    second = BulkResult(succeeded=["c"], errors=[ItemError(id="d", reason="y")], requests=1)

    merged = first.merge(second)

    assert merged.succeeded == ["a", "c"]
    assert merged.failed_ids == ["b", "d"]
    assert merged.requests == 2


def test_all_failed_uses_details_and_the_message_for_ids_not_itemised() -> None:
    details = load_fixture("add_failed")["error"]["details"][:1]

    result = BulkResult.all_failed([TRACK_A, TRACK_B], details, "Playlist not found")

    assert result.succeeded == []
    assert result.ok is False
    assert result.errors == [
        ItemError(id=TRACK_A, reason="Cannot add private track to public playlist"),
        ItemError(id=TRACK_B, reason="Playlist not found"),
    ]


def test_all_failed_with_details_that_are_not_a_list_blames_every_id() -> None:
    result = BulkResult.all_failed(["a", "b"], {"max": 100}, "Track not found")

    assert result.errors == [
        ItemError(id="a", reason="Track not found"),
        ItemError(id="b", reason="Track not found"),
    ]


def test_validate_ids_drops_repeats_and_keeps_order() -> None:
    assert validate_ids(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("ids", "field"),
    [([], "ids"), ("abc", "ids"), (["a", ""], "ids[1]"), (["a", 3], "ids[1]"), (["  "], "ids[0]")],
)
def test_validate_ids_refuses_bad_lists(ids: Any, field: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        validate_ids(ids)

    assert caught.value.fields == [field]


def test_chunked_splits_into_hundreds() -> None:
    ids = [f"id{i}" for i in range(250)]

    chunks = chunked(ids)

    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [i for c in chunks for i in c] == ids
    assert chunked(ids[:100]) == [ids[:100]]


# -- the generation request ---------------------------------------------------------------


def test_documented_request_example_is_sent_exactly_as_documented() -> None:
    documented = load_fixture("create_generation_request")

    request = GenerationRequest(**{**documented, "timesignature": 4})

    assert request.to_payload() == documented


def test_minimal_request_sends_only_tags() -> None:
    assert GenerationRequest(tags="lofi piano").to_payload() == {"tags": "lofi piano"}


def test_timesignature_is_sent_as_a_string() -> None:
    payload = GenerationRequest(tags="x", timesignature="3").to_payload()

    assert payload["timesignature"] == "3"


def test_whole_float_duration_and_bpm_are_sent_as_ints() -> None:
    payload = GenerationRequest(tags="x", duration=90.0, bpm=100.0).to_payload()

    assert payload == {"tags": "x", "duration": 90, "bpm": 100}
    assert type(payload["duration"]) is int


def test_request_normalises_case_and_flats() -> None:
    request = GenerationRequest(tags="x", language="EN", key="Db", scale="Minor")

    assert (request.language, request.key, request.scale) == ("en", "C#", "minor")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tags", "t" * 700),
        ("lyrics", "l" * 2000),
        ("duration", 5),
        ("duration", 210),
        ("duration", 90.5),
        ("bpm", 60),
        ("bpm", 200),
        ("timesignature", 2),
        ("timesignature", "7"),
        ("webhook", WEBHOOK_2048),
        ("webhook", "https://93.184.215.14/hook"),
    ],
)
def test_request_accepts_the_bounds(field: str, value: Any) -> None:
    payload = GenerationRequest(**{"tags": "x", field: value}).to_payload()

    assert payload[field] == (str(value) if field == "timesignature" else value)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("tags", "t" * 701, "at most 700 characters"),
        ("tags", "   ", "must not be empty"),
        ("lyrics", "l" * 2001, "at most 2000 characters"),
        ("duration", 4, "between 5 and 210 seconds"),
        ("duration", 210.5, "between 5 and 210 seconds"),
        ("duration", float("nan"), "between 5 and 210 seconds"),
        ("duration", "long", "from 5 to 210 seconds"),
        ("bpm", 59, "between 60 and 200"),
        ("bpm", 201, "between 60 and 200"),
        ("bpm", True, "from 60 to 200"),
        ("language", "xx", "one of en, ja, de, fr, es, zh, ko, pt, it, ru"),
        ("key", "H", "one of C, C#, D, D#, E, F, F#, G, G#, A, A#, B"),
        ("scale", "dorian", "one of major, minor"),
        ("timesignature", 1, "from 2 to 7"),
        ("timesignature", "8", "from 2 to 7"),
        ("timesignature", 4.5, "from 2 to 7"),
        ("seed", "lucky", "whole number"),
        ("webhook", "http://hooks.example.com/ft", "https"),
        ("webhook", "ftp://hooks.example.com/ft", "https://"),
        ("webhook", "https://localhost/hook", "publicly reachable"),
        ("webhook", "https://api.localhost/hook", "publicly reachable"),
        ("webhook", "https://127.0.0.1/hook", "publicly reachable"),
        ("webhook", "https://10.1.2.3/hook", "publicly reachable"),
        ("webhook", "https://192.168.1.20/hook", "publicly reachable"),
        ("webhook", "https://172.16.0.1/hook", "publicly reachable"),
        ("webhook", "https://169.254.169.254/hook", "publicly reachable"),
        ("webhook", "https://[::1]/hook", "publicly reachable"),
        ("webhook", "https://[fd00::1]/hook", "publicly reachable"),
    ],
)
def test_request_refuses_values_naming_field_and_allowed_range(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        GenerationRequest(**{"tags": "x", field: value})

    error = caught.value
    assert error.fields == [field]
    assert f"{field}: " in str(error)
    assert allowed in str(error)
    assert error.code == "VALIDATION_ERROR"
    assert error.status is None  # refused locally: nothing was answered


def test_webhook_of_exactly_2049_characters_is_refused() -> None:
    url = WEBHOOK_2048 + "a"
    assert len(url) == 2049

    with pytest.raises(RequestValidationError, match="2048"):
        GenerationRequest(tags="x", webhook=url)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(RequestValidationError) as caught:
        GenerationRequest(tags="x", duration=1, bpm=500, key="Z")

    assert sorted(caught.value.fields) == ["bpm", "duration", "key"]
    assert len(caught.value.details) == 3


def test_missing_tags_is_required() -> None:
    with pytest.raises(RequestValidationError) as caught:
        GenerationRequest(duration=60)

    assert caught.value.fields == ["tags"]
    assert "is required" in str(caught.value)


def test_misspelled_option_suggests_the_right_one() -> None:
    with pytest.raises(RequestValidationError, match="did you mean 'duration'"):
        GenerationRequest(tags="x", durration=60)


def test_request_validation_error_is_a_validation_error_and_a_value_error() -> None:
    with pytest.raises(RequestValidationError) as caught:
        GenerationRequest(tags="x", bpm=10)

    assert isinstance(caught.value, ValidationError)
    assert isinstance(caught.value, ValueError)


def test_local_webhook_is_allowed_only_on_loopback_for_the_sandbox() -> None:
    request = GenerationRequest.build(
        allow_local_webhook=True, tags="x", webhook="http://127.0.0.1:8123/hook"
    )

    assert request.webhook == "http://127.0.0.1:8123/hook"
    with pytest.raises(RequestValidationError, match="https"):
        GenerationRequest.build(allow_local_webhook=True, tags="x", webhook="http://10.0.0.5/h")
    with pytest.raises(RequestValidationError, match="publicly reachable"):
        GenerationRequest(tags="x", webhook="https://127.0.0.1:8123/hook")  # flag not leaked


def test_request_is_frozen() -> None:
    request = GenerationRequest(tags="x")

    with pytest.raises(pydantic.ValidationError):
        request.tags = "y"  # type: ignore[misc]
