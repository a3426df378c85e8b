"""Secrets stay secret through the whole API: the API tokens never appear in the logs,
the journal's bytes or any answer; a hook's whsec_ secret appears in its 201 and
nowhere else (its own 0600 file aside). Found by searching bytes after a session
that uses every operation, errors included, and delivers a signed hook."""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from ft_api_support import ACTOR, FULL, OTHER, READER, TOKENS, Answer, OpenApi, eventually
from standardwebhooks import Webhook

pytestmark = pytest.mark.e2e

HOOKS = {"backoff_base": 0.05, "backoff_cap": 0.2, "max_attempts": 3}


@pytest.fixture
async def catcher() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A loopback receiver of hook deliveries: its URL, and what it got."""
    got: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/in", got
    finally:
        await runner.cleanup()


def _answer_bytes(answer: Answer) -> str:
    return answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers.items())


async def test_tokens_and_hook_secrets_appear_nowhere_they_should_not(
    open_api: OpenApi,
    catcher: tuple[str, list[tuple[dict[str, str], bytes]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    target, got = catcher
    async with open_api(hooks=HOOKS) as api:
        client = api.client
        created = await client.post(
            "/api/v1/hooks",
            json={"trigger": "track_completed", "target_url": target},
            token=ACTOR,
        )
        assert created.status == 201
        secret = created.body["secret"]
        hook_id = created.body["id"]

        # Every operation, with each token, and the errors a careless client makes.
        call = await client.call(
            "generate",
            {"tags": "secret lofi", "duration": 10},
            headers={"Idempotency-Key": "secret-test-1"},
            token=OTHER,
        )
        assert call.status == 202
        run_id = call.body["run"]["id"]
        await client.finished(run_id)
        await eventually(lambda: len(got) == 1)
        Webhook(secret).verify(got[0][1], got[0][0])
        await client.post(f"/api/v1/runs/{run_id}/replay")
        for token in (FULL, READER, OTHER):
            for path in (
                "/api/v1/actions",
                "/api/v1/runs",
                f"/api/v1/runs/{run_id}",
                "/api/v1/events",
                "/api/v1/triggers",
                "/api/v1/triggers/track_completed/samples",
                "/api/v1/hooks",
                f"/api/v1/hooks/{hook_id}",
            ):
                assert (await client.get(path, token=token)).status == 200
        await client.get("/api/v1/runs", token=ACTOR)  # 403
        await client.call("generate", {"tags": "x"}, token=READER)  # 403
        await client.get("/api/v1/runs", token=f"{FULL}x")  # 401, a near miss
        await client.get("/api/v1/runs", token=None, headers={"Authorization": f"Basic {FULL}"})
        await client.get("/api/v1/runs", params={"cursor": FULL})  # a token where it is not
        await client.get("/api/v1/runs", params={"status": READER})
        await client.get(f"/api/v1/runs/{OTHER}")
        await client.get(f"/api/v1/hooks/{secret}")
        await client.get(f"/api/v1/triggers/{FULL}/samples")
        await client.call(FULL, {"tags": "x"})
        await client.call("notify_webhook", {"url": f"http://127.0.0.1:9/{FULL}", "secret": secret})
        await client.call("generate", {"tags": READER, "duration": 10, ACTOR: 1})
        await client.post(
            "/api/v1/hooks", json={"trigger": FULL, "target_url": f"http://x/{ACTOR}"}
        )
        await client.post(
            "/api/v1/hooks",
            json={"trigger": "track_completed", "target_url": target, "filter": {OTHER: 1}},
        )
        await client.request("PATCH", f"/api/v1/hooks/{hook_id}?t={FULL}")
        await client.get(f"/api/v1/nothing/{FULL}?t={READER}")

        # The journal as it is on disk now, the write-ahead log included.
        journal = b"".join(
            path.read_bytes()
            for path in sorted(api.state_dir.iterdir())
            if path.is_file() and not path.name.startswith("hook-")
        )
        assert any(p.suffix == ".db" for p in api.state_dir.iterdir())
        secret_file = api.state_dir / f"hook-{hook_id}"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        delivered = b"".join(body + repr(headers).encode() for headers, body in got)
        reprs = repr(api.connector.config) + repr(api.connector.api) + repr(api.connector)
        answers = list(client.answers)

    logs = caplog.text
    assert "HTTP API on" in logs  # the logs were captured
    for token in TOKENS:
        assert token not in logs, "an API token in the logs"
        assert token.encode() not in journal, "an API token in the journal"
        assert token not in reprs
        for answer in answers:
            assert token not in _answer_bytes(answer), f"an API token in an answer: {answer}"
    assert secret not in logs, "a hook secret in the logs"
    assert secret.encode() not in journal, "a hook secret in the journal"
    assert secret.encode() not in delivered, "a hook secret in a delivery"
    assert secret not in reprs
    showing = [answer for answer in answers if secret in _answer_bytes(answer)]
    assert showing == [created]  # the 201 that made it, alone
