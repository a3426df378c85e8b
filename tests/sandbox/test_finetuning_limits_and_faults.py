"""The Finetuning.ai sandbox: rate limits (windows, headers, Retry-After) and fault injection."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from ft_sandbox_support import Api, Receiver

from connector.sandbox import FaultRule, ManualClock, SandboxConfig, SandboxHandle, run_sandbox


def configured(**overrides: Any) -> Any:
    """Parametrize the `config` fixture."""
    return pytest.mark.parametrize("config", [SandboxConfig(**overrides)], ids=["config"])


# --------------------------------------------------------------------------- rate limits


@configured(read_limit=3, rate_window=60.0)
async def test_reads_are_limited_with_an_accurate_retry_after(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    remaining = []
    for _ in range(3):
        reply = await api.get("/v1/me")
        assert reply.status == 200
        assert reply.headers["X-RateLimit-Limit"] == "3"
        remaining.append(reply.headers["X-RateLimit-Remaining"])
        clock.advance(10.0)
    assert remaining == ["2", "1", "0"]
    refused = await api.get("/v1/playlists")
    assert refused.status == 429
    assert refused.error == {
        "code": "RATE_LIMITED",
        "message": "Too many requests on a read endpoint — wait and retry",
    }
    # The first request (t=0) leaves the window at t=60; it is now t=30.
    assert refused.headers["Retry-After"] == "30"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    clock.advance(29.5)
    again = await api.get("/v1/me")
    assert again.headers["Retry-After"] == "1"  # 0.5 s, rounded up
    clock.advance(0.5)
    # Refused requests took no slot: exactly one is free now.
    assert (await api.get("/v1/me")).status == 200
    assert (await api.get("/v1/me")).status == 429
    records = [r for r in sb.sandbox.requests if r.account == "Demo User"]
    assert [r.status for r in records] == [200, 200, 200, 429, 429, 200, 429]
    assert {r.bucket for r in records} == {"read"}


@configured(read_limit=2)
async def test_bulk_and_playlist_posts_share_the_read_bucket_and_count_once(
    api: Api, sb: SandboxHandle
) -> None:
    many = [f"id{i}" for i in range(100)]
    first = await api.post("/v1/generations/bulk-delete", {"ids": many})
    assert first.headers["X-RateLimit-Remaining"] == "1"
    second = await api.post("/v1/playlists/x/tracks/bulk-remove", {"trackIds": many})
    assert second.headers["X-RateLimit-Remaining"] == "0"
    third = await api.post("/v1/playlists/x/tracks", {"trackIds": many})
    assert (third.status, third.error["code"]) == (429, "RATE_LIMITED")


@configured(generation_limit=2, read_limit=5)
async def test_creations_have_their_own_limit(api: Api, sb: SandboxHandle) -> None:
    first = await api.create()
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "2",
        "1",
    )
    await api.create()
    refused = await api.create()
    assert refused.status == 429
    assert refused.error == {
        "code": "GENERATION_RATE_LIMITED",
        "message": "Too many POST /v1/generations calls — wait and retry",
    }
    assert refused.headers["Retry-After"] == "60"
    assert sb.sandbox.credits_spent("Demo User") == 2
    # Reads are counted separately.
    me = await api.get("/v1/me")
    assert (me.headers["X-RateLimit-Limit"], me.headers["X-RateLimit-Remaining"]) == ("5", "4")


@configured(read_limit=1)
async def test_accounts_are_limited_separately_and_limits_can_be_reset(
    api: Api, second: Api
) -> None:
    assert (await api.get("/v1/me")).status == 200
    assert (await api.get("/v1/me")).status == 429
    assert (await second.get("/v1/me")).status == 200
    reset = await api.post("/_sandbox/reset-rate-limits", key=None)
    assert reset.status == 200
    assert (await api.get("/v1/me")).status == 200


@configured(read_limit=1)
async def test_unauthenticated_and_control_requests_are_never_limited(api: Api) -> None:
    for _ in range(3):
        assert (await api.get("/v1/me", key=None)).status == 401
        assert (await api.get("/health", key=None)).status == 200
        assert (await api.get("/_sandbox/state", key=None)).status == 200
    assert (await api.get("/v1/me")).status == 200


# --------------------------------------------------------------------------- faults


@configured(faults=[FaultRule(route="GET /v1/me", error_rate=1.0)])
async def test_error_faults_alternate_500_and_503_in_the_envelope(
    api: Api, sb: SandboxHandle
) -> None:
    statuses = []
    for _ in range(3):
        reply = await api.get("/v1/me")
        assert reply.error["code"] == "INTERNAL_ERROR"
        assert "X-RateLimit-Limit" in reply.headers
        statuses.append(reply.status)
    assert statuses == [500, 503, 500]
    assert (await api.get("/v1/playlists")).status == 200  # another route
    faults = [r.fault for r in sb.sandbox.requests if r.path == "/v1/me"]
    assert faults == ["error_500", "error_503", "error_500"]


@configured(faults=[FaultRule(route="*", error_rate=1.0, drop_rate=0.0)])
async def test_faults_never_touch_health_or_the_control_surface(api: Api) -> None:
    assert (await api.get("/health", key=None)).status == 200
    assert (await api.get("/_sandbox/state", key=None)).status == 200
    assert (await api.get("/v1/me")).status == 500


@configured(faults=[FaultRule(route="GET /v1/playlists", latency=0.2)])
async def test_latency_faults_delay_the_answer(api: Api) -> None:
    started = time.monotonic()
    assert (await api.get("/v1/playlists")).status == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert (await api.get("/v1/me")).status == 200
    assert time.monotonic() - started < 0.2


@configured(faults=[FaultRule(route="POST /v1/generations", drop_rate=1.0)])
async def test_dropped_connections_get_no_http_answer(api: Api, sb: SandboxHandle) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create()
    dropped = [r for r in sb.sandbox.requests if r.path == "/v1/generations"]
    assert [(r.status, r.fault) for r in dropped] == [(None, "drop")]
    assert sb.sandbox.credits_spent("Demo User") == 0
    assert (await api.get("/v1/me")).status == 200


async def test_fault_draws_are_deterministic_from_the_seed() -> None:
    async def outcomes(seed: int) -> list[int]:
        config = SandboxConfig(seed=seed, faults=[FaultRule(route="GET /v1/*", error_rate=0.5)])
        async with run_sandbox(config) as sb, aiohttp.ClientSession() as session:
            api = Api(session, sb.url, sb.api_key)
            return [(await api.get("/v1/playlists")).status for _ in range(12)]

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert {200, 500} <= set(first)


@configured(
    pending_delay=0.0,
    processing_delay=1.0,
    faults=[FaultRule(route="POST /v1/generations", commit_then_fail=1)],
)
async def test_commit_then_fail_creates_for_real_but_answers_500(
    api: Api, sb: SandboxHandle, clock: ManualClock, receiver: Receiver
) -> None:
    reply = await api.create(tags="committed anyway", webhook=receiver.url())
    assert reply.status == 500
    assert reply.error == {"code": "INTERNAL_ERROR", "message": "Unexpected server error"}
    [generation] = [g for g in sb.sandbox.generations("Demo User") if not g.seeded]
    assert generation.commit_failed
    assert sb.sandbox.credits_spent("Demo User") == 1
    [commit] = sb.sandbox.failed_commits
    assert (commit.generation_id, commit.account, commit.status) == (
        generation.id,
        "Demo User",
        500,
    )
    assert sb.sandbox.requests[-1].fault == "commit_then_fail"
    # Visible through the API, it runs, and its webhook fires.
    listed = (await api.get("/v1/generations?status=processing")).data["generations"]
    assert [g["id"] for g in listed] == [generation.id]
    clock.advance(1.0)
    await sb.sandbox.settle()
    assert generation.status == "completed"
    assert [hit.body["id"] for hit in receiver.hits] == [generation.id]
    # Only the next N creations: the following one answers normally.
    assert (await api.create()).status == 202


async def test_faults_can_be_replaced_at_runtime_over_http(api: Api, sb: SandboxHandle) -> None:
    rules = {"faults": [{"route": "GET /v1/me", "errorRate": 1.0}]}
    reply = await api.post("/_sandbox/faults", rules, key=None)
    assert reply.status == 200
    assert reply.body["faults"][0]["error_rate"] == 1.0
    assert (await api.get("/v1/me")).status == 500
    listed = await api.get("/_sandbox/faults", key=None)
    assert listed.body["faults"][0]["route"] == "GET /v1/me"
    assert (await api.post("/_sandbox/faults", {"faults": []}, key=None)).status == 200
    assert (await api.get("/v1/me")).status == 200
    for bad in (
        {"faults": [{"route": "*", "error_rate": 2}]},
        {"faults": [{"bogus": 1}]},
        {"faults": "x"},
    ):
        assert (await api.post("/_sandbox/faults", bad, key=None)).status == 400
    sb.sandbox.set_faults([FaultRule(route="GET /v1/playlists/*", error_rate=1.0)])
    assert (await api.get("/v1/playlists")).status == 200
    assert (await api.get("/v1/playlists/x")).status == 500


async def test_fault_rules_are_validated(sb: SandboxHandle) -> None:
    for rule in (
        FaultRule(error_rate=1.5),
        FaultRule(drop_rate=-0.1),
        FaultRule(latency=-1),
        FaultRule(commit_then_fail=-1),
    ):
        with pytest.raises(ValueError, match="must"):
            sb.sandbox.set_faults([rule])
