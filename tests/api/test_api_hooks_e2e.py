"""REST hooks through the whole connector: subscribed over the API, fed by a real track
completing on the sandbox, delivered to a real aiohttp receiver on loopback and
verified with the Standard Webhooks reference library and the secret of the 201."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from ft_api_support import OpenApi, Started, eventually
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

pytestmark = pytest.mark.e2e

# Retries come quickly, and give up after the third attempt.
HOOKS = {"backoff_base": 0.05, "backoff_cap": 0.2, "max_attempts": 3}
QUERY = "?token=receiver-query-secret"


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes


@dataclass
class HookReceiver:
    """Answers per path: /ok 204, /gone 410, /broken 500 (its second attempt held until
    `release` is set, so a test can look at the hook between attempts)."""

    url: str = ""
    hits: dict[str, list[Hit]] = field(default_factory=dict)
    second_attempt: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        hits = self.hits.setdefault(request.path, [])
        hits.append(Hit(dict(request.headers), await request.read()))
        if request.path == "/gone":
            return web.Response(status=410)
        if request.path == "/broken":
            if len(hits) == 2:
                self.second_attempt.set()
                await self.release.wait()
            return web.Response(status=500)
        return web.Response(status=204)

    def count(self, path: str) -> int:
        return len(self.hits.get(path, []))


@pytest.fixture
async def hook_receiver() -> AsyncIterator[HookReceiver]:
    receiver = HookReceiver()
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}"
    try:
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


async def _subscribe(api: Started, target: str, **filter: Any) -> dict[str, Any]:
    body = {"trigger": "track_completed", "target_url": target, "filter": filter}
    created = await api.client.post("/api/v1/hooks", json=body)
    assert created.status == 201, created.text
    hook: dict[str, Any] = created.body
    return hook


async def _hook(api: Started, hook_id: str) -> dict[str, Any]:
    answer = await api.client.get(f"/api/v1/hooks/{hook_id}")
    assert answer.status == 200, answer.text
    hook: dict[str, Any] = answer.body
    return hook


async def _generate(api: Started, tags: str) -> str:
    """Call generate; the id of the generation the sandbox made for it."""
    answer = await api.client.call("generate", {"tags": tags, "duration": 10})
    assert answer.status == 202, answer.text
    ended = await api.client.finished(answer.body["run"]["id"])
    assert ended["status"] == "succeeded", ended
    generation_id: str = ended["steps"][0]["output"]["id"]
    return generation_id


async def test_a_completed_track_is_posted_once_signed_to_its_subscriber(
    open_api: OpenApi, hook_receiver: HookReceiver
) -> None:
    async with open_api(hooks=HOOKS) as api:
        hook = await _subscribe(api, f"{hook_receiver.url}/ok{QUERY}", tags_contain="hooked")
        other = await _subscribe(api, f"{hook_receiver.url}/other", tags_contain="elsewhere")
        track = await _generate(api, "hooked lofi piano")

        async def delivered() -> bool:
            return bool((await _hook(api, hook["id"]))["delivered"] == 1)

        await eventually(delivered)
        (hit,) = hook_receiver.hits["/ok"]
        payload = Webhook(hook["secret"]).verify(hit.body, hit.headers)
        key = f"finetuning:{track}:completed"
        assert set(payload) == {"id", "trigger", "kind", "occurred_at", "data"}
        assert payload["id"] == key
        assert payload["trigger"] == "track_completed"
        assert payload["kind"] == "track_completed"
        data = payload["data"]
        assert data["key"] == key
        assert data["kind"] == "track_completed"
        assert data["generation"]["id"] == track
        assert data["generation"]["status"] == "completed"
        assert data["generation"]["prompt"] == "hooked lofi piano"
        assert data["submitted_by_connector"] is True
        assert payload["occurred_at"] == data["occurred_at"]
        # What the trigger's samples show is what a subscriber receives.
        samples = await api.client.get("/api/v1/triggers/track_completed/samples")
        assert samples.body["items"][0] == payload
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["webhook-id"].startswith(f"msg_{hook['id']}_")
        with pytest.raises(WebhookVerificationError):
            Webhook(other["secret"]).verify(hit.body, hit.headers)  # signed with its own

        shown = await _hook(api, hook["id"])
        assert (shown["pending"], shown["delivered"], shown["failed"]) == (0, 1, 0)
        assert shown["last_status"] == 204
        assert shown["last_error"] is None
        assert shown["last_attempt_at"] is not None
        untouched = await _hook(api, other["id"])
        assert (untouched["pending"], untouched["delivered"], untouched["failed"]) == (0, 0, 0)
        assert hook_receiver.count("/other") == 0
        # One POST: the seeded tracks (recorded before the subscription), the call's own
        # event and a second look at the journal send nothing more.
        assert await api.connector.hooks.deliver_due() == 0  # type: ignore[union-attr]
        assert hook_receiver.count("/ok") == 1


async def test_a_receiver_answering_410_ends_the_subscription(
    open_api: OpenApi, hook_receiver: HookReceiver
) -> None:
    async with open_api(hooks=HOOKS) as api:
        hook = await _subscribe(api, f"{hook_receiver.url}/gone")
        await _generate(api, "gone lofi")

        async def removed() -> bool:
            listed = await api.client.get("/api/v1/hooks")
            return hook["id"] not in [item["id"] for item in listed.body["items"]]

        await eventually(removed)
        assert hook_receiver.count("/gone") == 1
        (await api.client.get(f"/api/v1/hooks/{hook['id']}")).error(404, "not_found")
        assert not (api.state_dir / f"hook-{hook['id']}").exists()


async def test_a_receiver_answering_500_shows_in_the_hook_until_it_is_given_up(
    open_api: OpenApi, hook_receiver: HookReceiver
) -> None:
    async with open_api(hooks=HOOKS) as api:
        hook = await _subscribe(api, f"{hook_receiver.url}/broken{QUERY}")
        await _generate(api, "broken lofi")
        # The first attempt was answered 500; the second is held by the receiver.
        await asyncio.wait_for(hook_receiver.second_attempt.wait(), 60)
        waiting = await _hook(api, hook["id"])
        assert (waiting["pending"], waiting["delivered"], waiting["failed"]) == (1, 0, 0)
        assert waiting["last_status"] == 500
        assert waiting["last_error"] == "HTTP 500 Internal Server Error"
        assert waiting["last_attempt_at"] is not None
        hook_receiver.release.set()

        async def given_up() -> bool:
            return bool((await _hook(api, hook["id"]))["failed"] == 1)

        await eventually(given_up)
        failed = await _hook(api, hook["id"])
        assert (failed["pending"], failed["delivered"], failed["failed"]) == (0, 0, 1)
        assert failed["last_status"] == 500
        assert "HTTP 500" in failed["last_error"]
        assert "receiver-query-secret" not in failed["last_error"]
        assert hook_receiver.count("/broken") == HOOKS["max_attempts"]
        ids = {hit.headers["webhook-id"] for hit in hook_receiver.hits["/broken"]}
        assert len(ids) == 1  # the same message each time: receivers can drop repeats
        for hit in hook_receiver.hits["/broken"]:
            Webhook(hook["secret"]).verify(hit.body, hit.headers)
