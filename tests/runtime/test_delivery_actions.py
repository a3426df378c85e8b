"""notify_webhook and download_track as automation steps, end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connector.automation.loader import parse_config
from connector.automation.problems import ConfigError
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.05)) as handle:
        yield handle


def expected_signature(msg_id: str, timestamp: str, body: bytes) -> str:
    # Independent of connector/delivery/webhooks.py: the Standard Webhooks recipe, by hand.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


async def test_a_completed_track_is_downloaded_and_announced_signed(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/n8n", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    library = tmp_path / "music"
    library.mkdir()
    config = parse_config(
        f"""
automations:
  - id: deliver
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: download_track
        id: saved
        library: {library}
        album: "{{{{ automation.id }}}}"
        also_write: [json]
      - action: notify_webhook
        url: http://127.0.0.1:{port}/n8n
        secret: {SECRET}
"""
    )
    track = sandbox.sandbox.add_track("Demo User", prompt="lofi piano, rain", duration=12)
    try:
        with Store.open(tmp_path / "state") as store:
            async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
                runtime = Runtime(config, client, store=store)
                generation = await client.get_generation(track.id)
                await runtime.submit_event(Event.for_generation(generation, source="webhook"))
                await runtime.idle()
    finally:
        await runner.cleanup()
    run = runtime.runs[0]
    assert run.status == "succeeded", run.error
    saved = run.steps[0].output
    assert saved is not None
    path = Path(saved["path"])
    assert path.parent == library / "Finetuning" / "deliver"
    assert path.with_suffix(".json").is_file()
    assert len(received) == 1
    headers, body = received[0]
    assert headers["webhook-signature"] == expected_signature(
        headers["webhook-id"], headers["webhook-timestamp"], body
    )
    payload: dict[str, Any] = json.loads(body)
    assert payload["type"] == "ftconnect.track_completed"
    assert payload["trigger"]["generation"]["id"] == track.id
    assert payload["steps"]["saved"]["path"] == str(path)


async def test_both_actions_use_the_connectors_one_session(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The download and the webhook go through the client's session: no session of their own."""
    sent: list[tuple[str, str]] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append((params.method, params.url.path))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/n8n", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    library = tmp_path / "music"
    library.mkdir()
    config = parse_config(
        f"""
automations:
  - id: deliver
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: download_track
        library: {library}
      - action: notify_webhook
        url: http://127.0.0.1:{port}/n8n
"""
    )
    track = sandbox.sandbox.add_track("Demo User", prompt="lofi piano, rain", duration=12)
    try:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            with Store.open(tmp_path / "state") as store:
                client = FinetuningClient(sandbox.api_key, base_url=sandbox.url, session=session)
                async with client:
                    runtime = Runtime(config, client, store=store)
                    assert runtime.session is session
                    generation = await client.get_generation(track.id)
                    await runtime.submit_event(Event.for_generation(generation, source="webhook"))
                    await runtime.idle()
            assert not session.closed  # the actions used it and left it open
    finally:
        await runner.cleanup()
    assert runtime.runs[0].status == "succeeded", runtime.runs[0].error
    assert any(method == "GET" and path.endswith(f"/{track.id}.mp3") for method, path in sent)
    assert ("POST", "/n8n") in sent


def test_a_missing_library_folder_is_refused_at_load_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(
            f"""
automations:
  - id: deliver
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: download_track
        library: {tmp_path / "not-mounted"}
"""
        )


def test_a_bad_signing_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            """
automations:
  - id: tell
    triggers: [{trigger: track_completed}]
    actions:
      - action: notify_webhook
        url: https://example.net/hook
        secret: not-a-whsec-secret-value
"""
        )
    assert "not-a-whsec-secret-value" not in str(caught.value)
    assert "secret" in str(caught.value)
