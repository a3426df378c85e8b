"""One shape for a generation everywhere it is written or sent.

The connector's own keys are snake_case; a generation is the API's wire form
(camelCase) plus `provider`; every time is ISO 8601 UTC with milliseconds and
`Z`. The same event reads the same in a notify_webhook body, in `ftconnect
events --json` (the journal) and in a JSON sidecar.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connector.automation.loader import parse_config
from connector.dispatch.runtime import Runtime
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _times(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string under a key that names a time (…_at, …At, scheduled_for)."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if isinstance(item, str) and (key.endswith(("_at", "At")) or key == "scheduled_for"):
                found.append((where, item))
            else:
                found.extend(_times(item, where))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found.extend(_times(item, f"{path}[{n}]"))
    return found


async def test_a_completion_reads_the_same_in_a_body_the_journal_and_a_sidecar(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    library = tmp_path / "library"
    library.mkdir()
    config = parse_config(
        f"""
poll: {{idle_interval: 0.1, active_interval: 0.05}}
automations:
  - id: tell
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: notify_webhook
        url: http://127.0.0.1:{runner.addresses[0][1]}/hook
      - action: download_track
        library: {library}
        also_write: [json]
""",
        filename="shape.yaml",
    )
    try:
        with Store.open(tmp_path / "state") as store:
            async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
                runtime = Runtime(config, client, store=store)
                await runtime.start()
                try:
                    track = sandbox.sandbox.add_track(
                        "Demo User", prompt="shape test", status="processing"
                    )
                    sandbox.sandbox.complete_now(track.id)
                    async with asyncio.timeout(20):
                        while True:
                            if bodies and list(library.rglob("*.json")):
                                break
                            await asyncio.sleep(0.05)
                    await runtime.idle()
                finally:
                    await runtime.stop()
            (event,) = [e for e in store.events(limit=10) if e.source != "seed"]
    finally:
        await runner.cleanup()
    journal = json.loads(json.dumps(event.to_dict()))
    received = bodies[0]["trigger"]
    journal.pop("received_at")
    assert received == journal  # the body's trigger is the journal's event, key for key
    generation = received["generation"]
    assert generation["id"] == track.id
    assert "audioUrl" in generation
    assert "audio_url" not in generation
    assert generation["provider"] == "finetuning"
    sidecar = json.loads(next(library.rglob("*.json")).read_text(encoding="utf-8"))
    # The sidecar leaves out where webhooks go (it sits in a library others can read).
    assert {k: v for k, v in sidecar.items() if k != "file"} == {
        k: v for k, v in generation.items() if k != "webhook"
    }
    times = _times(bodies[0]) + _times(journal) + _times(sidecar)
    assert times
    assert [t for t in times if not TIME.match(t[1])] == []
