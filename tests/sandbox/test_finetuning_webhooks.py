"""The Finetuning.ai sandbox: webhook payloads, fire-once delivery and loopback-only safety."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from ft_sandbox_support import Api, Receiver

from connector.sandbox import ManualClock, SandboxConfig, SandboxHandle
from connector.sandbox.webhook_urls import NOT_LOOPBACK_ERROR


def configured(**overrides: Any) -> Any:
    """Parametrize the `config` fixture."""
    return pytest.mark.parametrize("config", [SandboxConfig(**overrides)], ids=["config"])


async def finish(sb: SandboxHandle, clock: ManualClock, seconds: float = 3.0) -> None:
    """Let the lifecycle run to its end and the deliveries complete."""
    clock.advance(seconds)
    await sb.sandbox.settle()


async def test_completed_payload_is_unwrapped_with_documented_fields(
    api: Api, sb: SandboxHandle, clock: ManualClock, receiver: Receiver
) -> None:
    created = (
        await api.create(
            tags="lofi chill, piano, vinyl crackle",
            duration=90,
            bpm=80,
            key="A",
            scale="minor",
            timesignature="3",
            seed=1729384756,
            webhook=receiver.url(),
        )
    ).data
    await finish(sb, clock)
    [hit] = receiver.hits
    assert hit.path_qs == "/hook?token=s3cret"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == "finetuning-webhook/1.0"
    body = hit.body
    gid = created["id"]
    assert body == {
        "id": gid,
        "status": "completed",
        "audioUrl": f"{sb.url}/{gid}.mp3",
        "duration": body["duration"],
        "prompt": "lofi chill, piano, vinyl crackle",
        "parameters": {
            "bpm": 80,
            "duration": 90,
            "keyscale": "A minor",
            "timesignature": 3,
            "seed": 1729384756,
        },
        "createdAt": "2025-01-15T10:30:00.000Z",
        "completedAt": "2025-01-15T10:30:03.000Z",
    }
    assert isinstance(body["duration"], float)
    detail = (await api.get(f"/v1/generations/{gid}")).data
    assert body["duration"] == detail["duration"]
    # The webhook's URL form (no /audio/) serves the same bytes.
    served = await api.get(f"/{gid}.mp3", key=None)
    assert (served.status, len(served.raw)) == (200, detail["fileSize"])
    [attempt] = sb.sandbox.webhook_attempts_for(gid)
    assert (attempt.status, attempt.error, attempt.delivered) == (200, None, True)
    assert attempt.body == body
    assert attempt.url == receiver.url()


@configured(failure_rate=1.0, pending_delay=0.0, processing_delay=1.0)
async def test_failed_payload_has_an_error_and_no_audio(
    api: Api, sb: SandboxHandle, clock: ManualClock, receiver: Receiver
) -> None:
    gid = (await api.create(webhook=receiver.url())).data["id"]
    await finish(sb, clock, 1.0)
    [hit] = receiver.hits
    assert hit.body["status"] == "failed"
    assert (hit.body["audioUrl"], hit.body["duration"]) == (None, None)
    assert hit.body["errorMessage"] == sb.sandbox.generation(gid).error_message  # type: ignore[union-attr]
    assert hit.body["completedAt"] == "2025-01-15T10:30:01.000Z"


async def test_delivered_exactly_once_even_when_the_receiver_answers_500(
    api: Api, sb: SandboxHandle, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.status = 500
    gid = (await api.create(webhook=receiver.url())).data["id"]
    await finish(sb, clock)
    clock.advance(600.0)
    await asyncio.sleep(0.1)
    await sb.sandbox.settle()
    assert len(receiver.hits) == 1
    [attempt] = sb.sandbox.webhook_attempts_for(gid)
    assert attempt.status == 500


async def test_manual_outcomes_fire_the_webhook_too(
    api: Api, sb: SandboxHandle, receiver: Receiver
) -> None:
    first = (await api.create(webhook=receiver.url("/a"))).data["id"]
    second = (await api.create(webhook=receiver.url("/b"))).data["id"]
    plain = (await api.create()).data["id"]
    sb.sandbox.complete_now(first)
    sb.sandbox.fail_now(second, "Stopped by the test")
    sb.sandbox.complete_now(plain)
    await sb.sandbox.settle()
    by_path = {hit.path_qs: hit.body for hit in receiver.hits}
    assert by_path["/a"]["status"] == "completed"
    assert by_path["/b"]["errorMessage"] == "Stopped by the test"
    assert len(sb.sandbox.webhook_attempts) == 2


async def test_a_refused_connection_is_recorded_once(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gid = (await api.create(webhook=f"http://127.0.0.1:{port}/hook")).data["id"]
    await finish(sb, clock)
    [attempt] = sb.sandbox.webhook_attempts_for(gid)
    assert attempt.status is None
    assert attempt.error
    assert attempt.delivered


@configured(pending_delay=1.0, processing_delay=2.0, webhook_timeout=0.2)
async def test_a_slow_receiver_times_out_without_a_retry(
    api: Api, sb: SandboxHandle, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.delay = 1.0
    gid = (await api.create(webhook=receiver.url())).data["id"]
    await finish(sb, clock)
    [attempt] = sb.sandbox.webhook_attempts_for(gid)
    assert attempt.status is None
    assert attempt.error == "timeout after 0.2s"
    assert len(receiver.hits) == 1


@configured(strict_webhooks=True, pending_delay=0.0, processing_delay=1.0)
async def test_public_webhooks_are_recorded_but_never_contacted(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    url = "https://hooks.example.com/finetuning?token=x"
    created = await api.create(webhook=url)
    assert created.data["webhook"] == url
    await finish(sb, clock, 1.0)
    [attempt] = sb.sandbox.webhook_attempts_for(created.data["id"])
    assert (attempt.url, attempt.status, attempt.delivered) == (url, None, False)
    assert attempt.error == NOT_LOOPBACK_ERROR
    assert attempt.body["status"] == "completed"
    state = (await api.get("/_sandbox/webhooks", key=None)).body["webhook_attempts"]
    assert [a["error"] for a in state] == [NOT_LOOPBACK_ERROR]


async def test_no_webhook_no_attempt(api: Api, sb: SandboxHandle, clock: ManualClock) -> None:
    await api.create()
    await finish(sb, clock)
    assert sb.sandbox.webhook_attempts == []
