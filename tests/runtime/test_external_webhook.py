"""A host's own webhook receiver (Home Assistant's `webhook` component) stands in for
the library's listener: `runtime.external_webhook_urls` is what providers are told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from connector.app import open_connector
from connector.automation.loader import parse_config
from connector.sandbox import SandboxConfig

pytestmark = pytest.mark.e2e

FAST = SandboxConfig(pending_delay=0.05, processing_delay=0.1)


async def test_generate_gives_the_provider_the_hosts_receiver(tmp_path: Path) -> None:
    delivered: list[dict[str, object]] = []
    got = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        assert request.query["token"] == "receiver-token"
        delivered.append(await request.json())
        got.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        config = parse_config("automations: []\n", base_dir=tmp_path)
        async with open_connector(config, sandbox=FAST) as connector:
            runtime = connector.runtime
            await connector.start()
            assert runtime.webhook_url("finetuning") is None  # no listener: polling alone
            url = f"http://127.0.0.1:{port}/hook?token=receiver-token"
            runtime.external_webhook_urls["finetuning"] = url
            assert runtime.webhook_url("finetuning") == url
            assert runtime.webhook_url("tempolor") is None
            run_id, _new = await runtime.call_action(
                "generate", {"tags": "lofi", "duration": 5, "wait": False}
            )
            assert await runtime.wait_for_run(run_id, 30)
            run = runtime.store.run(run_id)
            assert run is not None
            assert run.status == "succeeded"
            generation_id = run.steps[0].output["id"]  # type: ignore[index]
            await asyncio.wait_for(got.wait(), 30)
    finally:
        await runner.cleanup()
    assert delivered
    assert generation_id in str(delivered[0])
