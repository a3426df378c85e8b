"""What a hostile review of the API found, each reproduced here before it was fixed.

Nesting deep enough to blow the validators' recursion (a 503 and a traceback per
request), an `Idempotent-Replayed` on a call that really started its run (after a
first try that claimed its key and died), a `?wait` caller dropped without an answer
when the daemon stops, hooks without number, and `limit=1_0` read as 10.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from ft_api_support import BUTTON, HELD, OpenApi, Started, auth

from connector.api.params import body_hash
from connector.api.routes import MAX_HOOKS
from connector.journal.idempotency import IDEMPOTENCY_TTL

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deep_nesting_is_a_400_not_a_503_with_a_traceback(
    api: Started, caplog: pytest.LogCaptureFixture
) -> None:
    body = f'{{"url": "http://127.0.0.1:9/x", "body": {_nested(500)}}}'.encode()
    answer = await api.client.post("/api/v1/actions/notify_webhook", data=body, headers=JSON)
    assert "nested deeper than" in answer.error(400, "invalid_request")["message"]
    hook = (
        '{"trigger": "track_completed", "target_url": "http://127.0.0.1:9/x",'
        f' "filter": {{"tags_contain": {_nested(900)}}}}}'
    ).encode()
    refused = await api.client.post("/api/v1/hooks", data=hook, headers=JSON)
    refused.error(400, "invalid_request")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Still deep enough for any real body.
    fine = f'{{"url": "http://127.0.0.1:9/x", "body": {_nested(20)}, "max_attempts": 1}}'
    ok = await api.client.post("/api/v1/actions/notify_webhook", data=fine.encode(), headers=JSON)
    assert ok.status in (200, 202)


async def test_a_call_that_starts_its_run_is_never_called_a_replay(api: Started) -> None:
    """The first try claimed the key and died before its call was recorded: the retry
    is the one that starts the run, and must not say it only replayed one."""
    options = {"tags": "claimed then crashed", "duration": 5}
    validated_hash = body_hash("generate", options)
    api.connector.store.claim_idempotency(
        "full", "died-once", validated_hash, "api:idem:never-recorded", ttl=IDEMPOTENCY_TTL
    )
    answer = await api.client.post(
        "/api/v1/actions/generate", json=options, headers={"Idempotency-Key": "died-once"}
    )
    assert answer.status == 202
    assert "Idempotent-Replayed" not in answer.headers
    assert answer.body["run"]["event_key"] == "api:idem:never-recorded"
    again = await api.client.post(
        "/api/v1/actions/generate", json=options, headers={"Idempotency-Key": "died-once"}
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.body["run"]["id"] == answer.body["run"]["id"]


async def test_a_waiting_caller_is_answered_when_the_daemon_stops(open_api: OpenApi) -> None:
    async with open_api(sandbox=HELD) as api:
        call = asyncio.create_task(
            api.client.post(
                "/api/v1/actions/generate",
                params={"wait": "120"},
                json={"tags": "never finishes", "duration": 5, "wait": True},
            )
        )
        for _ in range(200):
            if api.ours():
                break
            await asyncio.sleep(0.02)
        assert api.ours(), "the call did not reach the sandbox"
        assert api.connector.api is not None
        await api.connector.api.stop()
        answer = await asyncio.wait_for(call, 10)
        assert answer.status == 202
        assert answer.headers["Location"] == f"/api/v1/runs/{answer.body['run']['id']}"
        assert answer.body["run"]["status"] == "running"


async def test_hooks_have_a_most(api: Started) -> None:
    for n in range(MAX_HOOKS):
        made = await api.client.post(
            "/api/v1/hooks",
            json={"trigger": "run_failed", "target_url": f"http://127.0.0.1:9/{n}"},
        )
        assert made.status == 201
    over = await api.client.post(
        "/api/v1/hooks", json={"trigger": "run_failed", "target_url": "http://127.0.0.1:9/x"}
    )
    assert f"{MAX_HOOKS} hooks already" in over.error(422, "validation_failed")["message"]


@pytest.mark.parametrize("value", ["1_0", " 1", "1e1", "+5", "0x10"])
async def test_numbers_in_the_query_are_plain_digits(api: Started, value: str) -> None:
    answer = await api.client.get("/api/v1/runs", params={"limit": value})
    assert "whole number" in answer.error(400, "invalid_request")["message"]


async def test_the_automation_filter_reads_an_index_not_the_whole_table(api: Started) -> None:
    db = api.connector.store._connection()
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT run_id FROM runs WHERE automation_id = ?"
        " ORDER BY started_at DESC, run_id DESC LIMIT 5",
        ("api.generate",),
    ).fetchall()
    assert any("runs_by_automation" in str(tuple(row)) for row in plan), plan


async def test_a_token_limited_to_some_actions_calls_and_replays_only_those(
    api: Started,
) -> None:
    """An `act` token has the actions' reach; `actions:` narrows it (a button: generate)."""
    button = auth(BUTTON)
    refused = await api.client.post(
        "/api/v1/actions/bulk_delete",
        json={"tracks": ["x"], "confirm": True},
        headers=button,
    )
    message = refused.error(403, "forbidden")["message"]
    assert "may not call 'bulk_delete'" in message
    assert "generate" in message
    made = await api.client.post(
        "/api/v1/actions/generate", json={"tags": "a button's lofi", "duration": 5}, headers=button
    )
    assert made.status == 202
    # A run of another action, called with the full token, may not be replayed with it.
    moved = await api.client.call(
        "notify_webhook", {"url": "http://127.0.0.1:9/x", "max_attempts": 1, "timeout": 1}
    )
    run = await api.client.finished(moved.body["run"]["id"])
    replay = await api.client.post(f"/api/v1/runs/{run['id']}/replay", headers=button)
    assert "may not call 'notify_webhook'" in replay.error(403, "forbidden")["message"]
    mine = await api.client.finished(made.body["run"]["id"])
    again = await api.client.post(f"/api/v1/runs/{mine['id']}/replay", headers=button)
    assert again.status in (200, 202)


async def test_a_token_limited_to_some_actions_replays_no_automation_beyond_them(
    open_api: OpenApi,
) -> None:
    """Replaying a run of the file's automations runs its steps again: a token limited
    to `generate` may not replay one that adds to a playlist (found for the web page)."""
    automations = """
  - id: file_it
    triggers:
      - trigger: track_completed
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.generation.id }}"
"""
    async with open_api(automations=automations) as api:
        made = await api.client.call("generate", {"tags": "lofi", "duration": 5, "wait": True})
        await api.client.finished(made.body["run"]["id"])
        store = api.connector.runtime.store
        filed: list[str] = []
        for _ in range(400):
            filed = [r.run_id for r in store.runs(limit=20) if r.automation_id == "file_it"]
            if filed and store.run(filed[0]).status != "running":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        assert filed
        refused = await api.client.post(f"/api/v1/runs/{filed[0]}/replay", headers=auth(BUTTON))
        message = refused.error(403, "forbidden")["message"]
        assert "may not call 'add_to_playlist'" in message
        replayed = await api.client.post(f"/api/v1/runs/{filed[0]}/replay")
        assert replayed.status in (200, 202)
