"""No secret in any byte the connector writes or sends.

A real `ftconnect -v run` generates with both providers, notifies a receiver
with the default body (trigger and every step's output), and downloads both
tracks with JSON sidecars. Providers echo the webhook URL they were given,
`?token=...` and all. Afterwards each secret (the Finetuning.ai key, the
TemPolor token, the webhook token, the `whsec_` signing secret), in every
spelling a URL or a repr gives it, is searched for in the bytes of: the whole
state_dir (journal, WAL, lock), the library (MP3 tags and sidecars), every
body and header the receiver got, the daemon's output, and the output of
`ftconnect runs/events` (text and JSON). Zero hits.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from aiohttp import web
from yarl import URL

from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    config = SandboxConfig(pending_delay=0.05, processing_delay=0.3)
    async with run_sandbox(config) as handle:
        yield handle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spellings(secret: str) -> set[bytes]:
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        # How yarl (and so aiohttp) writes it into a query string.
        URL.build(query={"token": secret}).raw_query_string.removeprefix("token="),
    }
    return {form.encode() for form in forms}


def _hits(blob: bytes, secret_values: dict[str, str]) -> list[str]:
    return [
        name
        for name, value in secret_values.items()
        if any(form in blob for form in _spellings(value))
    ]


async def _ftconnect(*args: str) -> tuple[int, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out


async def test_a_full_run_with_both_providers_writes_and_sends_no_secret(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    secret_values = {
        "finetuning api key": sandbox.api_key,
        "tempolor token": sandbox.tempolor_token,
        "webhook token": secrets.token_urlsafe(24) + "/+=~",  # characters URLs encode
        "signing secret": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    }
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(b"".join(f"{k}: {v}\n".encode() for k, v in request.headers.items()))
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    library = tmp_path / "library"
    library.mkdir()
    state = tmp_path / "state"
    (tmp_path / "secrets.yaml").write_text(
        yaml.safe_dump(
            {
                "ft_key": secret_values["finetuning api key"],
                "tp_token": secret_values["tempolor token"],
                "hook_token": secret_values["webhook token"],
                "whsec": secret_values["signing secret"],
            }
        ),
        encoding="utf-8",
    )
    notify = {"action": "notify_webhook", "url": receiver, "secret": "!secret whsec"}
    document = {
        "finetuning": {"api_key": "!secret ft_key", "base_url": sandbox.url},
        "tempolor": {"api_token": "!secret tp_token", "base_url": sandbox.tempolor_url},
        "webhook": {"listen": f"127.0.0.1:{_free_port()}", "token": "!secret hook_token"},
        "poll": {"idle_interval": 0.2, "active_interval": 0.1},
        "state_dir": str(state),
        "automations": [
            {
                "id": "make",
                "triggers": [{"trigger": "track_completed", "tags_match": "^request"}],
                "actions": [
                    {"id": "ft", "action": "generate", "tags": "leak test ft", "duration": 5},
                    {
                        "id": "tp",
                        "action": "generate",
                        "provider": "tempolor",
                        "tags": "leak test tp",
                    },
                    {"id": "notify", **notify},
                ],
            },
            {
                "id": "deliver",
                "triggers": [{"trigger": "track_completed", "only_submitted_by_connector": True}],
                "actions": [
                    {"id": "notify", **notify},
                    {
                        "id": "library",
                        "action": "download_track",
                        "library": str(library),
                        "also_write": ["json"],
                    },
                ],
            },
        ],
    }
    text = yaml.safe_dump(document, sort_keys=False)
    # `!secret name` written as a quoted string by safe_dump: make them tags again.
    for name in ("ft_key", "tp_token", "hook_token", "whsec"):
        text = text.replace(f"'!secret {name}'", f"!secret {name}")
    config = tmp_path / "automations.yaml"
    config.write_text(text, encoding="utf-8")

    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector.cli",
            "-v",
            "run",
            str(config),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(30):
                while b"Running 2 automation" not in log.read_bytes():
                    assert daemon.returncode is None, log.read_text()
                    await asyncio.sleep(0.1)
            request = sandbox.sandbox.add_track(
                "Demo User", prompt="request 1", status="processing"
            )
            sandbox.sandbox.complete_now(request.id)
            async with asyncio.timeout(60):
                while True:
                    if len(list(library.rglob("*.json"))) >= 2 and len(received) >= 6:
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(daemon.wait(), 30)
            await runner.cleanup()
    assert code == 0, log.read_text()

    # The secrets were in play: the providers were told the hook URL with the token.
    hooks = [g.webhook for g in sandbox.sandbox.generations("Demo User") if g.webhook]
    assert hooks
    assert all(_hits(hook.encode(), secret_values) == ["webhook token"] for hook in hooks), hooks

    leaks: dict[str, list[str]] = {}
    for path in [*state.rglob("*"), *library.rglob("*")]:
        if path.is_file():
            found = _hits(path.read_bytes(), secret_values)
            if found:
                leaks[str(path)] = found
    for n, body in enumerate(received):
        found = _hits(body, secret_values)
        if found:
            leaks[f"received #{n}"] = found
    found = _hits(log.read_bytes(), secret_values)
    if found:
        leaks["daemon output"] = found
    for args in (["runs", "--json"], ["events", "--json"], ["runs"], ["events"]):
        code, out = await _ftconnect(*args, str(config))
        assert code == 0, out
        found = _hits(out, secret_values)
        if found:
            leaks[f"ftconnect {' '.join(args)}"] = found
    assert not leaks, leaks

    # And the run did what it should: both providers' tracks delivered, notified.
    assert len(list(library.rglob("*.mp3"))) == 2
    assert len(received) >= 6
