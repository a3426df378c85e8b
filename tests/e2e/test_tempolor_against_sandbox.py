"""The TemPolor client against the sandbox over real loopback sockets.

The unit tests in tests/client mock HTTP; these check that the client and the
sandbox's TemPolor sub-application agree on the wire, with the sandbox's
recorder as ground truth (jobs created, requests seen, files served).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mutagen.mp3 import MP3

from connector.errors import (
    InvalidApiKeyError,
    NotFoundError,
    RateLimitedError,
    RequestValidationError,
    ValidationError,
)
from connector.providers.finetuning.models import GenerationStatus
from connector.providers.tempolor.client import TempolorClient
from connector.providers.tempolor.models import TempolorJob
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox
from connector.sandbox.tempolor_state import TempolorRecorder

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.05)) as handle:
        yield handle


@pytest.fixture
async def client(sandbox: SandboxHandle) -> AsyncIterator[TempolorClient]:
    async with TempolorClient(sandbox.tempolor_token, base_url=sandbox.tempolor_url) as api:
        yield api


def recorder(sandbox: SandboxHandle) -> TempolorRecorder:
    return sandbox.sandbox.tempolor


async def wait(client: TempolorClient, job_id: str, **kwargs: Any) -> TempolorJob:
    return await client.wait_for_job(job_id, first_delay=0.02, max_delay=0.05, timeout=10, **kwargs)


async def test_a_song_is_created_waited_for_and_mapped(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    [created] = await client.create_song(
        prompt="Epic orchestral with choir", lyrics="Rise up", model_song="v3"
    )
    assert created.job_id is not None
    assert created.generation_status is GenerationStatus.PROCESSING
    progress: list[float | None] = []

    done = await wait(client, created.job_id, on_progress=lambda job: progress.append(job.progress))
    generation = done.to_generation()

    truth = recorder(sandbox).job(created.job_id)
    assert truth.kind == "song"
    assert truth.params["lyrics"] == "Rise up"
    assert progress[-1] == 100
    assert generation.id == created.job_id
    assert generation.provider == "tempolor"
    assert generation.status is GenerationStatus.COMPLETED
    assert generation.title == truth.title
    assert generation.prompt == "Epic orchestral with choir"
    assert generation.duration == float(truth.duration)
    assert generation.type == "song"
    assert generation.parameters is not None
    assert generation.parameters.keyscale == truth.key.replace(":", " ")
    assert generation.parameters.bpm == truth.bpm
    assert generation.parameters.seed == truth.seed
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert generation.created_at == epoch + timedelta(milliseconds=int(truth.created_at * 1000))
    assert generation.completed_at is not None
    assert generation.completed_at >= generation.created_at
    assert generation.audio_url is None


async def test_an_instrumental_keeps_its_tonality_and_tempo(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    [created] = await client.create_instrumental(
        prompt="Lo-fi beat", model_instrumental="i3", tonality="bb minor", bpm=84, chords="Am F"
    )
    assert created.job_id is not None

    generation = (await wait(client, created.job_id)).to_generation()

    assert recorder(sandbox).job(created.job_id).params["tonality"] == "Bb:minor"
    assert generation.status is GenerationStatus.COMPLETED
    assert generation.type == "instrumental"
    assert generation.parameters is not None
    assert generation.parameters.key == "Bb"
    assert generation.parameters.scale == "minor"
    assert generation.parameters.bpm == 84


async def test_the_download_link_serves_a_valid_mp3_and_expires(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    [created] = await client.create_song(prompt="Synthwave drive")
    assert created.job_id is not None
    done = await wait(client, created.job_id)
    assert done.job_id is not None
    before = datetime.now(UTC)

    link = await client.get_download_url(done.job_id)

    assert link.remain_seconds == sandbox.config.download_link_ttl
    assert link.expires_at - link.fetched_at == timedelta(seconds=link.remain_seconds)
    assert before - timedelta(seconds=1) <= link.fetched_at <= datetime.now(UTC)
    assert not link.is_expired()
    async with aiohttp.ClientSession() as session, session.get(link.url) as response:
        assert response.status == 200
        data = await response.read()
    audio = MP3(io.BytesIO(data))
    truth = recorder(sandbox).job(done.job_id)
    assert audio.info.length == pytest.approx(truth.duration, abs=1.0)


async def test_download_before_completion_is_a_validation_error(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    [created] = await client.create_song(prompt="Slow ballad")
    assert created.job_id is not None

    with pytest.raises(ValidationError, match="not completed yet"):
        await client.get_download_url(created.job_id)


async def test_a_job_with_the_fail_marker_maps_to_failed(client: TempolorClient) -> None:
    [created] = await client.create_song(prompt="Doomed #fail")
    assert created.job_id is not None

    generation = (await wait(client, created.job_id)).to_generation()

    assert generation.status is GenerationStatus.FAILED
    assert generation.error_message is not None
    assert "#fail" in generation.error_message
    assert generation.completed_at is not None


async def test_the_list_pages_with_the_cursor(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    recorder(sandbox).page_size = 2
    created = [(await client.create_song(prompt=f"Song {n}"))[0].job_id for n in range(5)]
    [instrumental] = await client.create_instrumental(prompt="Only instrumental")

    first = await client.list_jobs(type="song")
    second = await client.list_jobs(type="song", cursor=first.cursor)
    everything = [job.job_id async for job in client.iter_jobs(type="song")]
    instrumentals = [job.job_id async for job in client.iter_jobs(type="instrumental")]

    assert [job.job_id for job in first.records] == created[::-1][:2]
    assert first.has_next
    assert [job.job_id for job in second.records] == created[::-1][2:4]
    assert everything == created[::-1]
    assert instrumentals == [instrumental.job_id]


async def test_an_unknown_job_is_not_found(client: TempolorClient, sandbox: SandboxHandle) -> None:
    [created] = await client.create_song(prompt="Exists")
    assert created.job_id is not None
    missing = created.job_id[:-4] + "ffff"

    with pytest.raises(NotFoundError, match="No record found"):
        await client.get_job(missing)

    assert client.requests_sent == 2  # a 404 is final


async def test_a_malformed_job_id_is_a_validation_error(client: TempolorClient) -> None:
    with pytest.raises(ValidationError, match="incorrect format"):
        await client.get_job("not-a-job-id")


async def test_a_bad_token_is_refused(sandbox: SandboxHandle) -> None:
    async with TempolorClient("user:0-wrong", base_url=sandbox.tempolor_url) as api:
        with pytest.raises(InvalidApiKeyError, match="Unauthorized"):
            await api.list_jobs()

    assert api.requests_sent == 1


async def test_an_invalid_request_reaches_nothing(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    with pytest.raises(RequestValidationError):
        await client.create_instrumental(prompt="x", bpm=200)

    assert recorder(sandbox).requests == []
    assert recorder(sandbox).jobs == {}


async def test_max_jobs_reached_is_rate_limited() -> None:
    config = SandboxConfig(pending_delay=5.0, processing_delay=5.0)
    async with (
        run_sandbox(config) as slow,
        TempolorClient(slow.tempolor_token, base_url=slow.tempolor_url, max_retries=0) as api,
    ):
        await api.create_song(prompt="first", maxJobs=1)
        with pytest.raises(RateLimitedError, match="running 1 of 1 jobs"):
            await api.create_song(prompt="second", maxJobs=1)

        assert len(slow.sandbox.tempolor.jobs) == 1


async def test_the_reply_url_callback_body_maps_like_a_polled_job(
    client: TempolorClient, sandbox: SandboxHandle
) -> None:
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(json.loads(await request.text()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        [created] = await client.create_song(
            prompt="Called back", replyUrl=f"http://127.0.0.1:{port}/hook", replyRef="r1"
        )
        assert created.job_id is not None
        polled = (await wait(client, created.job_id)).to_generation()
        await recorder(sandbox).settle()
    finally:
        await runner.cleanup()

    [body] = received
    pushed = TempolorJob.model_validate(body)
    assert pushed.reply_ref == "r1"
    assert pushed.to_generation().status is polled.status
    assert pushed.to_generation().id == polled.id
