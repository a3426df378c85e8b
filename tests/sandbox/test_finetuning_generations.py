"""The Finetuning.ai sandbox: creating, validating, reading, listing and finishing generations."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from ft_sandbox_support import Api

from connector.sandbox import ManualClock, SandboxConfig, SandboxHandle, run_sandbox
from connector.sandbox.generations import FAILURE_MESSAGES
from connector.sandbox.records import KEYS

DETAIL_KEYS = {
    "id",
    "title",
    "prompt",
    "status",
    "type",
    "audioUrl",
    "duration",
    "fileSize",
    "isPublic",
    "playCount",
    "downloadCount",
    "likeCount",
    "parameters",
    "errorMessage",
    "generationTime",
    "createdAt",
    "completedAt",
}


def fast(**overrides: Any) -> Any:
    """Parametrize the `config` fixture."""
    return pytest.mark.parametrize("config", [SandboxConfig(**overrides)], ids=["config"])


# --------------------------------------------------------------------------- create


async def test_create_answers_202_with_the_documented_shape(api: Api) -> None:
    reply = await api.create(
        tags="lofi chill piano night",
        duration=120,
        bpm=85,
        key="C",
        scale="minor",
        language="en",
        timesignature="4",
        seed=1234567,
        webhook="http://127.0.0.1:9/finetuning-callback?token=YOUR_SECRET",
    )
    assert reply.status == 202
    data = reply.data
    assert re.fullmatch(r"[0-9a-f-]{36}", data["id"])
    assert data == {
        "id": data["id"],
        "status": "pending",
        "prompt": "lofi chill piano night",
        "parameters": {
            "bpm": 85,
            "duration": 120,
            "timesignature": "4",
            "language": "en",
            "keyscale": "C minor",
            "seed": 1234567,
        },
        "webhook": "http://127.0.0.1:9/finetuning-callback?token=YOUR_SECRET",
        "creditsRemaining": 1999,
        "createdAt": "2025-01-15T10:30:00Z",
    }


async def test_create_defaults_and_model_decided_key_and_scale(api: Api) -> None:
    data = (await api.create(tags="ambient")).data
    params = data["parameters"]
    assert (params["bpm"], params["duration"], params["timesignature"]) == (120, 60, "4")
    assert params["language"] == "en"
    assert data["webhook"] is None
    key, scale = params["keyscale"].split(" ")
    assert key in KEYS
    assert scale in ("major", "minor")
    assert isinstance(params["seed"], int)
    # Only the key given: the scale is still decided from the seed, and vice versa.
    assert (await api.create(key="F#", seed=7)).data["parameters"]["keyscale"].startswith("F# ")
    assert (
        (await api.create(scale="minor", seed=7)).data["parameters"]["keyscale"].endswith(" minor")
    )


async def test_the_same_seed_decides_the_same_key_and_scale(api: Api) -> None:
    first = (await api.create(seed=42)).data["parameters"]["keyscale"]
    second = (await api.create(seed=42)).data["parameters"]["keyscale"]
    assert first == second


@fast(pending_delay=0)
async def test_with_no_pending_delay_a_creation_is_processing_at_once(api: Api) -> None:
    assert (await api.create()).data["status"] == "processing"


async def test_integer_timesignature_and_float_numbers_are_accepted(api: Api) -> None:
    data = (await api.create(timesignature=7, duration=90.5, bpm=60.0)).data
    assert data["parameters"]["timesignature"] == "7"
    assert data["parameters"]["duration"] == 90.5
    assert data["parameters"]["bpm"] == 60


async def test_unknown_fields_and_nulls_are_ignored(api: Api) -> None:
    reply = await api.create(energy="high", lyrics=None, webhook=None, foo={"bar": 1})
    assert reply.status == 202


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"tags": None}, "tags", "tags is required"),
        ({"tags": 5}, "tags", "tags must be a string"),
        ({"tags": "   "}, "tags", "tags must not be empty"),
        ({"tags": "x" * 701}, "tags", "tags must be at most 700 characters"),
        ({"lyrics": "x" * 2001}, "lyrics", "lyrics must be at most 2000 characters"),
        ({"lyrics": ["la"]}, "lyrics", "lyrics must be a string"),
        ({"duration": 4.9}, "duration", "duration must be between 5 and 210 seconds"),
        ({"duration": 211}, "duration", "duration must be between 5 and 210 seconds"),
        ({"duration": "60"}, "duration", "duration must be a number between 5 and 210 seconds"),
        ({"duration": True}, "duration", "duration must be a number between 5 and 210 seconds"),
        ({"bpm": 59}, "bpm", "bpm must be between 60 and 200"),
        ({"bpm": 201}, "bpm", "bpm must be between 60 and 200"),
        ({"bpm": "fast"}, "bpm", "bpm must be a number between 60 and 200"),
        ({"language": "xx"}, "language", "language must be one of: en, ja, de, fr, es, zh, ko"),
        ({"language": "EN"}, "language", "language must be one of"),
        ({"key": "H"}, "key", "key must be one of: C, C#, D, D#, E, F, F#, G, G#, A, A#, B"),
        ({"key": "Db"}, "key", "key must be one of"),
        ({"scale": "dorian"}, "scale", "scale must be one of: major, minor"),
        ({"scale": "Major"}, "scale", "scale must be one of"),
        ({"timesignature": "8"}, "timesignature", "timesignature must be between 2 and 7"),
        ({"timesignature": "1"}, "timesignature", "timesignature must be between 2 and 7"),
        ({"timesignature": "4/4"}, "timesignature", "timesignature must be between 2 and 7"),
        ({"timesignature": 4.5}, "timesignature", "timesignature must be between 2 and 7"),
        ({"timesignature": False}, "timesignature", "timesignature must be between 2 and 7"),
        ({"seed": "123"}, "seed", "seed must be an integer"),
        ({"seed": 1.5}, "seed", "seed must be an integer"),
        ({"webhook": 42}, "webhook", "webhook must be a string"),
        ({"webhook": "https://x.com/" + "a" * 2040}, "webhook", "webhook must be at most 2048"),
        ({"webhook": "ftp://example.com/hook"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "not a url"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "http://example.com/hook"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "https://10.0.0.5/hook"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "https://192.168.1.2/h"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "https://169.254.169.254/"}, "webhook", "webhook must be a valid HTTPS"),
        ({"webhook": "http://10.1.2.3:8080/h"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "https://intranet/hook"}, "webhook", "webhook must be a valid HTTPS URL"),
        ({"webhook": "http://evil.com\\@127.0.0.1/"}, "webhook", "webhook must be a valid HTTPS"),
        ({"webhook": "http://evil.com#@127.0.0.1"}, "webhook", "webhook must be a valid HTTPS"),
        ({"webhook": "http://127.0.0.1\t/hook"}, "webhook", "webhook must be a valid HTTPS"),
    ],
)
async def test_invalid_fields_are_validation_errors_naming_field_and_range(
    api: Api, sb: SandboxHandle, fields: dict[str, Any], field: str, message: str
) -> None:
    reply = await api.create(**fields)
    assert reply.status == 400
    error = reply.error
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(message)
    assert error["details"] == {"field": field}
    assert sb.sandbox.credits_spent("Demo User") == 0


async def test_missing_tags_is_a_validation_error(api: Api) -> None:
    reply = await api.post("/v1/generations", {"duration": 60})
    assert reply.error == {
        "code": "VALIDATION_ERROR",
        "message": "tags is required",
        "details": {"field": "tags"},
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"tags": "x" * 700, "duration": 5, "bpm": 60, "timesignature": "2"},
        {"lyrics": "x" * 2000, "duration": 210, "bpm": 200, "timesignature": "7"},
        {"language": "ru", "key": "A#", "scale": "major", "seed": 0},
        {"webhook": "http://localhost:1/h"},
        {"webhook": "http://[::1]:1/h"},
        {"webhook": "https://127.0.0.1/h"},
        {"webhook": "http://127.5.6.7:80/h"},
        {"webhook": "https://hooks.example.com/ft?token=1"},
        {"webhook": "https://8.8.8.8/hook"},
    ],
)
async def test_values_at_the_limits_are_accepted(api: Api, fields: dict[str, Any]) -> None:
    reply = await api.create(**fields)
    assert reply.status == 202, reply.body


@fast(strict_webhooks=True)
@pytest.mark.parametrize(
    "webhook",
    [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://127.1/hook",
        "https://0x7f.1/hook",
        "https://app.localhost/hook",
        "https://printer.local/hook",
        "https://[fe80::1]/hook",
        "https://100.64.0.1/hook",
        "http://hooks.example.com/hook",
    ],
)
async def test_strict_mode_rejects_loopback_private_and_plain_http(api: Api, webhook: str) -> None:
    reply = await api.create(webhook=webhook)
    assert reply.status == 400
    assert reply.error["message"] == (
        "webhook must be a valid HTTPS URL on a public host (no localhost or private IPs)"
    )


@fast(strict_webhooks=True)
async def test_strict_mode_accepts_public_https(api: Api) -> None:
    reply = await api.create(webhook="https://your-app.com/finetuning-callback?token=S")
    assert reply.status == 202


async def test_credits_are_spent_monthly_first_then_pack(api: Api, sb: SandboxHandle) -> None:
    sb.sandbox.set_credits("Demo User", monthly_generations=10, generations_used=9, pack_credits=1)
    assert (await api.create()).data["creditsRemaining"] == 1
    me = (await api.get("/v1/me")).data["limits"]
    assert (me["generationsUsed"], me["monthlyRemaining"], me["packCredits"]) == (10, 0, 1)
    assert (await api.create()).data["creditsRemaining"] == 0
    me = (await api.get("/v1/me")).data["limits"]
    assert (me["packCredits"], me["totalRemaining"], me["queueDepth"]) == (0, 0, 2)
    refused = await api.create()
    assert refused.status == 402
    assert refused.error == {
        "code": "MONTHLY_LIMIT_REACHED",
        "message": "No generations remaining this month",
    }
    assert sb.sandbox.credits_spent("Demo User") == 2
    assert len(sb.sandbox.generations("Demo User", include_deleted=True)) == 6 + 2


@fast(pending_delay=1.0, processing_delay=2.0, max_in_progress=2)
async def test_queue_full_is_a_429_with_retry_after_and_no_credit_spent(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    assert (await api.create()).status == 202
    clock.advance(1.0)
    assert (await api.create()).status == 202
    refused = await api.create()
    assert refused.status == 429
    assert refused.error == {"code": "QUEUE_FULL", "message": "Too many generations in progress"}
    assert refused.headers["Retry-After"] == "2"  # the first one finishes 2 s from now
    # A refused creation gives its rate-limit slot back.
    assert refused.headers["X-RateLimit-Remaining"] == "8"
    assert sb.sandbox.credits_spent("Demo User") == 2
    clock.advance(2.0)
    await sb.sandbox.settle()
    assert (await api.create()).status == 202


async def test_the_order_of_checks_on_create(
    api: Api, sb: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    free = Api(http, sb.url, sb.api_keys["Free User"])
    # Plan before validation.
    assert (await free.create(duration=1)).error["code"] == "PRO_PLAN_REQUIRED"
    # Validation before credits.
    sb.sandbox.set_credits("Demo User", generations_used=2000)
    assert (await api.create(duration=1)).error["code"] == "VALIDATION_ERROR"
    # Credits before the queue.
    sb.sandbox.config.max_in_progress = 0
    assert (await api.create()).error["code"] == "MONTHLY_LIMIT_REACHED"
    sb.sandbox.set_credits("Demo User", generations_used=0)
    assert (await api.create()).error["code"] == "QUEUE_FULL"
    # The generation rate limit comes before validation. Two attempts counted so far:
    # the 400 and the 402 (the QUEUE_FULL refusal gave its slot back).
    assert (await api.create()).headers["X-RateLimit-Remaining"] == "8"
    sb.sandbox.config.generation_limit = 2
    limited = await api.create(duration=1)
    assert limited.error["code"] == "GENERATION_RATE_LIMITED"


# --------------------------------------------------------------------------- read


async def test_detail_shape_and_quirks_through_the_lifecycle(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    created = (await api.create(tags="modern country instrumental, pedal steel", bpm=110)).data
    path = f"/v1/generations/{created['id']}"
    pending = (await api.get(path)).data
    assert set(pending) == DETAIL_KEYS
    assert pending["status"] == "pending"
    assert pending["title"] == "Modern Country Instrumental"
    assert pending["createdAt"] == "2025-01-15 10:30:00"
    assert pending["completedAt"] is None
    assert (pending["audioUrl"], pending["duration"], pending["fileSize"]) == (None, None, None)
    assert pending["isPublic"] is False
    assert pending["type"] == "music"
    assert pending["parameters"] == {
        "bpm": 110,
        "duration": 60,
        "keyscale": created["parameters"]["keyscale"],
        "timesignature": 4,
        "seed": created["parameters"]["seed"],
    }

    clock.advance(1.0)
    await sb.sandbox.settle()
    assert (await api.get(path)).data["status"] == "processing"
    assert (await api.get("/v1/me")).data["limits"]["queueDepth"] == 1

    clock.advance(2.25)
    await sb.sandbox.settle()
    done = (await api.get(path)).data
    assert done["status"] == "completed"
    assert done["completedAt"] == "2025-01-15T10:30:03.000Z"
    assert done["createdAt"] == "2025-01-15 10:30:00"
    assert done["audioUrl"] == f"{sb.url}/audio/{created['id']}.mp3"
    assert isinstance(done["duration"], float)
    assert abs(done["duration"] - 60) <= 0.52
    assert done["fileSize"] > 0
    assert done["generationTime"] == 3.0
    assert done["errorMessage"] is None
    assert (await api.get("/v1/me")).data["limits"]["queueDepth"] == 0


async def test_generations_are_private_to_their_owner(
    api: Api, second: Api, sb: SandboxHandle
) -> None:
    public = next(g for g in sb.sandbox.generations("Second User") if g.is_public)
    for path in (f"/v1/generations/{public.id}", "/v1/generations/nope"):
        reply = await api.get(path)
        assert reply.status == 404
        assert reply.error["code"] == "NOT_FOUND"
    assert (await second.get(f"/v1/generations/{public.id}")).status == 200


@fast(failure_rate=1.0, pending_delay=0.0, processing_delay=1.0)
async def test_failed_generations_report_an_error_and_no_audio(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    gid = (await api.create()).data["id"]
    clock.advance(1.0)
    await sb.sandbox.settle()
    failed = (await api.get(f"/v1/generations/{gid}")).data
    assert failed["status"] == "failed"
    assert failed["errorMessage"] in FAILURE_MESSAGES
    assert (failed["audioUrl"], failed["duration"], failed["fileSize"]) == (None, None, None)
    assert failed["completedAt"] == "2025-01-15T10:30:01.000Z"
    assert (await api.get(f"/audio/{gid}.mp3", key=None)).status == 404


async def test_the_fail_marker_always_fails(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    gid = (await api.create(tags="glitchy ambient #fail")).data["id"]
    ok = (await api.create(tags="glitchy ambient")).data["id"]
    clock.advance(3.0)
    await sb.sandbox.settle()
    assert sb.sandbox.generation(gid).status == "failed"  # type: ignore[union-attr]
    assert sb.sandbox.generation(gid).error_message == "GPU job timed out after 240s"  # type: ignore[union-attr]
    assert sb.sandbox.generation(ok).status == "completed"  # type: ignore[union-attr]


async def test_complete_now_and_fail_now_drive_outcomes_without_waiting(
    api: Api, sb: SandboxHandle
) -> None:
    first = (await api.create(duration=30)).data["id"]
    second = (await api.create()).data["id"]
    sb.sandbox.complete_now(first)
    sb.sandbox.fail_now(second, "Model exploded")
    assert (await api.get(f"/v1/generations/{first}")).data["status"] == "completed"
    detail = (await api.get(f"/v1/generations/{second}")).data
    assert (detail["status"], detail["errorMessage"]) == ("failed", "Model exploded")
    with pytest.raises(ValueError, match="already completed"):
        sb.sandbox.complete_now(first)
    third = (await api.create()).data["id"]
    with pytest.raises(ValueError, match="duration must be in"):
        sb.sandbox.complete_now(third, duration=0)
    assert sb.sandbox.generation(third).status == "pending"  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        sb.sandbox.fail_now("nope")


@fast(failure_rate=0.5, pending_delay=0.0, processing_delay=1.0)
async def test_outcomes_ids_seeds_and_durations_are_deterministic(config: SandboxConfig) -> None:
    async def run_once() -> list[tuple[Any, ...]]:
        clock = ManualClock()
        async with run_sandbox(config, clock=clock) as sb, aiohttp.ClientSession() as session:
            api = Api(session, sb.url, sb.api_key)
            ids = [(await api.create(duration=30 + i)).data["id"] for i in range(8)]
            clock.advance(1.0)
            await sb.sandbox.settle()
            rows = []
            for gid in ids:
                data = (await api.get(f"/v1/generations/{gid}")).data
                rows.append(
                    (
                        gid,
                        data["status"],
                        data["duration"],
                        data["parameters"]["seed"],
                        data["parameters"]["keyscale"],
                        data["errorMessage"],
                    )
                )
            return rows

    first, again = await run_once(), await run_once()
    assert first == again
    assert {row[1] for row in first} == {"completed", "failed"}


# --------------------------------------------------------------------------- list


async def test_list_is_newest_first_with_offset_pagination(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    made = []
    for i in range(5):
        clock.advance(1.0)
        made.append(sb.sandbox.add_track("Demo User", prompt=f"track {i}").id)
    newest_first = list(reversed(made))
    page = (await api.get("/v1/generations?limit=2")).data
    assert [g["id"] for g in page["generations"]] == newest_first[:2]
    assert (page["hasMore"], page["nextOffset"]) == (True, 2)
    page = (await api.get("/v1/generations?limit=2&offset=2")).data
    assert [g["id"] for g in page["generations"]] == newest_first[2:4]
    everything = (await api.get("/v1/generations?limit=100")).data
    assert len(everything["generations"]) == 11  # 6 seeded + 5
    assert (everything["hasMore"], everything["nextOffset"]) == (False, None)
    assert set(everything["generations"][0]) == DETAIL_KEYS
    default = (await api.get("/v1/generations")).data
    assert len(default["generations"]) == 11
    beyond = (await api.get("/v1/generations?offset=50")).data
    assert beyond == {"generations": [], "hasMore": False, "nextOffset": None}


async def test_list_ties_on_created_at_keep_creation_order_reversed(api: Api) -> None:
    ids = [(await api.create()).data["id"] for _ in range(3)]
    listed = (await api.get("/v1/generations?limit=3")).data["generations"]
    assert [g["id"] for g in listed] == list(reversed(ids))


async def test_list_filters_by_status_and_type(api: Api, sb: SandboxHandle) -> None:
    pending = (await api.create()).data["id"]
    failed = sb.sandbox.add_track("Demo User", status="failed")
    instrumental = sb.sandbox.add_track("Demo User", type_="instrumental")
    by_status = (await api.get("/v1/generations?status=pending")).data["generations"]
    assert [g["id"] for g in by_status] == [pending]
    by_status = (await api.get("/v1/generations?status=failed")).data["generations"]
    assert [g["id"] for g in by_status] == [failed.id]
    completed = (await api.get("/v1/generations?status=completed&limit=20")).data
    assert len(completed["generations"]) == 7
    by_type = (await api.get("/v1/generations?type=instrumental")).data["generations"]
    assert [(g["id"], g["type"]) for g in by_type] == [(instrumental.id, "instrumental")]
    music = (await api.get("/v1/generations?type=music")).data["generations"]
    assert instrumental.id not in {g["id"] for g in music}
    assert len(music) == 8


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("status=done", "status"),
        ("status=COMPLETED", "status"),
        ("type=sfx", "type"),
    ],
)
async def test_invalid_list_queries_are_validation_errors(api: Api, query: str, name: str) -> None:
    reply = await api.get(f"/v1/generations?{query}")
    assert reply.status == 400
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["message"].startswith(f"{name} must be")
    assert reply.error["details"] == {"field": name}
