"""The client against the sandbox over real loopback sockets.

Unit tests in tests/client mock HTTP; these check that the client and the
sandbox agree on the wire, and use the sandbox as ground truth (credits spent,
requests seen, webhooks delivered).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mutagen.mp3 import MP3

from connector.errors import (
    GenerationOutcomeUnknownError,
    InvalidApiKeyError,
    MissingApiKeyError,
    MonthlyLimitReachedError,
    NotFoundError,
    PlaylistNotFoundError,
    ProPlanRequiredError,
    QueueFullError,
    RequestValidationError,
    ValidationError,
)
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import GenerationRequest, GenerationStatus
from connector.sandbox import AccountConfig, FaultRule, SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e

FAST = {"pending_delay": 0.01, "processing_delay": 0.05}


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(**FAST)) as handle:
        yield handle


@pytest.fixture
async def client(sandbox: SandboxHandle) -> AsyncIterator[FinetuningClient]:
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as api:
        yield api


def fast_wait(client: FinetuningClient, generation_id: str) -> Any:
    return client.wait_for_generation(generation_id, first_delay=0.02, max_delay=0.05, timeout=10)


def requests_to(sandbox: SandboxHandle, method: str, path: str) -> list[Any]:
    return [r for r in sandbox.sandbox.requests if r.method == method and r.path == path]


async def test_account_reports_credits_and_queue(client: FinetuningClient) -> None:
    account = await client.get_account()
    assert account.tier == "pro"
    limits = account.limits
    assert limits.total_remaining == limits.monthly_remaining + limits.pack_credits
    assert limits.queue_depth == 0


async def test_a_generation_completes_with_playable_audio_and_spends_one_credit(
    sandbox: SandboxHandle, client: FinetuningClient
) -> None:
    before = (await client.get_account()).limits.total_remaining
    created = await client.create_generation(
        GenerationRequest(tags="lofi chill piano", duration=12, bpm=80, timesignature=3)
    )
    assert created.status in (GenerationStatus.PENDING, GenerationStatus.PROCESSING)
    assert created.credits_remaining == before - 1
    assert created.parameters is not None
    assert created.parameters.timesignature == 3
    assert created.created_at is not None
    assert created.created_at.tzinfo is not None

    done = await fast_wait(client, created.id)
    assert done.status is GenerationStatus.COMPLETED
    assert done.audio_url is not None
    assert done.duration is not None
    assert abs(done.duration - 12) <= 0.5
    assert done.completed_at is not None
    assert done.completed_at >= done.created_at

    async with aiohttp.ClientSession() as session, session.get(done.audio_url) as response:
        assert response.status == 200
        audio = await response.read()
    assert done.file_size == len(audio)
    assert abs(MP3(io.BytesIO(audio)).info.length - done.duration) < 0.1
    assert (await client.get_account()).limits.total_remaining == before - 1


async def test_a_failing_generation_ends_failed_with_a_reason(client: FinetuningClient) -> None:
    created = await client.create_generation(tags="broken ambient #fail")
    done = await fast_wait(client, created.id)
    assert done.status is GenerationStatus.FAILED
    assert done.error_message
    assert done.audio_url is None


async def test_listing_is_newest_first_and_iterates_every_page(client: FinetuningClient) -> None:
    for n in range(5):
        await client.create_generation(tags=f"test track {n}", seed=n)
    page = await client.list_generations(limit=3)
    assert len(page.generations) == 3
    assert page.has_more
    assert page.next_offset == 3
    created = [g.created_at for g in page.generations]
    assert created == sorted(created, reverse=True)
    everything = [g.id async for g in client.iter_generations(page_size=2)]
    assert len(everything) == len(set(everything))
    total = 0
    offset = 0
    while True:
        chunk = await client.list_generations(limit=100, offset=offset)
        total += len(chunk.generations)
        if not chunk.has_more:
            break
        offset = chunk.next_offset or 0
    assert len(everything) == total


async def test_status_filter_returns_only_that_status(client: FinetuningClient) -> None:
    page = await client.list_generations(status="completed", limit=100)
    assert page.generations
    assert all(g.status is GenerationStatus.COMPLETED for g in page.generations)


async def test_unknown_generation_is_not_found(client: FinetuningClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.get_generation("0b7a4c1e-0000-4000-8000-000000000000")
    assert caught.value.status == 404
    assert caught.value.code == "NOT_FOUND"


async def test_unknown_key_and_plan_without_api_access_are_refused(
    sandbox: SandboxHandle,
) -> None:
    async with FinetuningClient("ft_live_" + "0" * 32, base_url=sandbox.url) as stranger:
        with pytest.raises(InvalidApiKeyError) as caught:
            await stranger.get_account()
    assert "ft_live_0000" not in str(caught.value)
    async with FinetuningClient(sandbox.api_keys["Free User"], base_url=sandbox.url) as free:
        with pytest.raises(ProPlanRequiredError):
            await free.get_account()


async def test_missing_key_is_reported_by_the_server(sandbox: SandboxHandle) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{sandbox.url}/v1/me") as response:
        body = await response.json()
    assert response.status == 401
    assert body["error"]["code"] == MissingApiKeyError.default_code


async def test_server_side_validation_maps_to_validation_error(
    client: FinetuningClient,
) -> None:
    # Bypass the client's own checks to see the server's answer.
    with pytest.raises(ValidationError) as caught:
        await client._request(
            "POST",
            "/v1/generations",
            body={"tags": "x", "duration": 999},
            budget=client.generation_budget,
        )
    assert caught.value.code == "VALIDATION_ERROR"
    assert "duration" in caught.value.message


async def test_invalid_request_is_refused_before_any_credit_is_spent(
    sandbox: SandboxHandle, client: FinetuningClient
) -> None:
    before = len(sandbox.sandbox.requests)
    with pytest.raises(RequestValidationError) as caught:
        await client.create_generation(tags="x", duration=300, bpm=20)
    assert caught.value.fields == ["duration", "bpm"]
    assert len(sandbox.sandbox.requests) == before


async def test_out_of_credits_is_monthly_limit_reached_and_spends_nothing_more() -> None:
    config = SandboxConfig(
        **FAST,
        accounts=[AccountConfig(name="Tight", email="t@x", monthly_generations=1, seed_tracks=0)],
    )
    async with (
        run_sandbox(config) as sandbox,
        FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client,
    ):
        await client.create_generation(tags="only one")
        with pytest.raises(MonthlyLimitReachedError) as caught:
            await client.create_generation(tags="one too many")
        assert caught.value.status == 402
        assert (await client.get_account()).limits.total_remaining == 0


async def test_bulk_delete_chunks_and_merges_partial_results(
    sandbox: SandboxHandle, client: FinetuningClient
) -> None:
    own = [g.id async for g in client.iter_generations()]
    unknown = [f"missing-{n}" for n in range(150)]
    result = await client.delete_generations([*own, *unknown])
    assert sorted(result.succeeded) == sorted(own)
    assert sorted(result.failed_ids) == sorted(unknown)
    assert {e.reason for e in result.errors} == {"Track not found or not owned by you"}
    assert result.requests == 2
    assert len(requests_to(sandbox, "POST", "/v1/generations/bulk-delete")) == 2
    assert [g async for g in client.iter_generations()] == []


async def test_playlists_resolve_add_remove_and_move_with_privacy_rules(
    client: FinetuningClient,
) -> None:
    focus = await client.resolve_playlist("FOCUS BEATS")
    public = await client.resolve_playlist("public picks")
    with pytest.raises(PlaylistNotFoundError) as caught:
        await client.resolve_playlist("Nope")
    assert "Focus Beats" in str(caught.value)

    track = (await client.create_generation(tags="private new track")).id
    await fast_wait(client, track)
    added = await client.add_tracks(focus, [track])
    assert added.succeeded == [track]
    assert added.errors == []

    again = await client.add_tracks(focus, [track])  # ADD_FAILED: folded into item errors
    assert again.succeeded == []
    assert [(e.id, e.reason) for e in again.errors] == [(track, "Track already in playlist")]

    refused = await client.move_tracks(focus, public, [track])  # MOVE_FAILED
    assert refused.succeeded == []
    assert refused.errors[0].reason == "Cannot add private track to public playlist"
    assert track in (await client.get_playlist(focus)).track_ids

    with pytest.raises(RequestValidationError):
        await client.move_tracks(focus, focus, [track])

    removed = await client.remove_tracks(focus, [track, "not-there"])
    assert removed.succeeded == [track]
    assert removed.failed_ids == ["not-there"]
    assert track not in (await client.get_playlist(focus)).track_ids


async def test_generation_budget_keeps_the_server_from_ever_answering_429() -> None:
    config = SandboxConfig(**FAST, generation_limit=3, rate_window=0.5, max_in_progress=100)
    async with run_sandbox(config) as sandbox:
        from connector.providers.ratelimit import RateBudget

        async with FinetuningClient(
            sandbox.api_key,
            base_url=sandbox.url,
            generation_budget=RateBudget(3, 0.5, name="generations"),
        ) as client:
            made = await asyncio.gather(
                *(client.create_generation(tags=f"burst {n}") for n in range(8))
            )
        assert len({g.id for g in made}) == 8
        statuses = [r.status for r in requests_to(sandbox, "POST", "/v1/generations")]
        assert statuses == [202] * 8


async def test_read_429_from_a_shared_key_is_waited_out_and_retried() -> None:
    config = SandboxConfig(**FAST, read_limit=2, rate_window=0.3)
    async with run_sandbox(config) as sandbox:
        headers = {"X-API-Key": sandbox.api_key}
        async with aiohttp.ClientSession() as other_program:
            for _ in range(2):  # another program uses up the shared budget
                async with other_program.get(f"{sandbox.url}/v1/me", headers=headers):
                    pass
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            account = await client.get_account()
        assert account.tier == "pro"
        statuses = [r.status for r in requests_to(sandbox, "GET", "/v1/me")]
        assert statuses[:2] == [200, 200]
        assert statuses[-1] == 200
        assert 429 in statuses


async def test_reads_survive_injected_server_errors_and_dropped_connections() -> None:
    config = SandboxConfig(
        **FAST,
        faults=[FaultRule(route="GET /v1/me", error_rate=0.3, drop_rate=0.3)],
    )
    async with (
        run_sandbox(config) as sandbox,
        FinetuningClient(
            sandbox.api_key, base_url=sandbox.url, max_retries=12, backoff_base=0.01
        ) as c,
    ):
        for _ in range(5):
            assert (await c.get_account()).tier == "pro"


async def test_commit_then_fail_is_reported_as_unknown_outcome_and_never_resubmitted() -> None:
    config = SandboxConfig(
        **FAST, faults=[FaultRule(route="POST /v1/generations", commit_then_fail=1)]
    )
    async with run_sandbox(config) as sandbox:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            before = (await client.get_account()).limits.total_remaining
            with pytest.raises(GenerationOutcomeUnknownError) as caught:
                await client.create_generation(tags="committed but unanswered")
            assert caught.value.__cause__ is not None
            after = (await client.get_account()).limits.total_remaining
        assert before - after == 1  # the server did spend the credit
        assert len(requests_to(sandbox, "POST", "/v1/generations")) == 1


async def test_queue_full_spends_nothing() -> None:
    config = SandboxConfig(pending_delay=5, processing_delay=5, max_in_progress=1)
    async with (
        run_sandbox(config) as sandbox,
        FinetuningClient(sandbox.api_key, base_url=sandbox.url, max_retries=0) as c,
    ):
        before = (await c.get_account()).limits.total_remaining
        await c.create_generation(tags="fills the queue")
        with pytest.raises(QueueFullError) as caught:
            await c.create_generation(tags="one too many")
        assert caught.value.retry_after is not None
        assert (await c.get_account()).limits.total_remaining == before - 1


async def test_webhook_is_delivered_once_and_parses_as_a_generation(
    sandbox: SandboxHandle, client: FinetuningClient
) -> None:
    received: list[tuple[dict[str, Any], str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("User-Agent", "")))
        return web.Response(status=500)  # fire-once: no retry even on failure

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        request = GenerationRequest.build(
            tags="hooked track",
            webhook=f"http://127.0.0.1:{port}/hook?token=s3cret",
            allow_local_webhook=True,
        )
        created = await client.create_generation(request)
        # The service echoes the URL token and all; the client keeps it without the token.
        assert request.webhook is not None
        assert created.webhook == request.webhook.split("?")[0]
        await fast_wait(client, created.id)
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    assert len(received) == 1
    payload, agent = received[0]
    assert agent == "finetuning-webhook/1.0"
    assert "data" not in payload
    from connector.providers.finetuning.models import Generation

    generation = Generation.model_validate(payload)
    assert generation.id == created.id
    assert generation.is_terminal
    assert json.dumps(payload)  # plain JSON
