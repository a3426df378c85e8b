"""Idempotency-Key, end to end: a retried call answers the first call's run and spends
no second credit, judged from the sandbox's ground truth (the generations it holds),
whether the retry comes after, during or at the same time as the first call."""

from __future__ import annotations

import asyncio

import pytest
from ft_api_support import ACTOR, HELD, OTHER, OpenApi, Started, eventually

pytestmark = pytest.mark.e2e

TRACK = {"tags": "idempotent lofi", "duration": 10}
WAITING = {**TRACK, "wait": True}


def _key(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def _action_called(api: Started) -> list[str]:
    events = await api.client.get("/api/v1/events", params={"kind": "action_called"})
    return [event["id"] for event in events.body["items"]]


async def test_the_same_key_and_body_twice_is_one_run_and_one_generation(api: Started) -> None:
    first = await api.client.call("generate", TRACK, headers=_key("order-42"))
    assert first.status == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    run_id = first.body["run"]["id"]
    second = await api.client.call("generate", TRACK, headers=_key("order-42"))
    assert second.status in (200, 202), second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.body["run"]["id"] == run_id
    assert second.headers["Location"] == first.headers["Location"] == f"/api/v1/runs/{run_id}"
    ended = await api.client.finished(run_id)
    assert ended["status"] == "succeeded"
    # Once it has ended, a retry answers the ended run: 200, and still no new work.
    third = await api.client.call("generate", TRACK, headers=_key("order-42"))
    assert third.status == 200
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.body["run"] == ended
    (made,) = api.ours()  # the sandbox holds one generation: one credit spent
    assert ended["steps"][0]["output"]["id"] == made.id
    assert await _action_called(api) == [first.body["run"]["event_key"]]
    runs = await api.client.get("/api/v1/runs")
    assert [run["id"] for run in runs.body["items"]] == [run_id]


async def test_without_a_key_the_same_body_twice_is_two_runs(api: Started) -> None:
    first = await api.client.call("generate", TRACK)
    second = await api.client.call("generate", TRACK)
    assert first.body["run"]["id"] != second.body["run"]["id"]
    assert "Idempotent-Replayed" not in second.headers
    for answer in (first, second):
        await api.client.finished(answer.body["run"]["id"])
    assert len(api.ours()) == 2


async def test_five_concurrent_calls_with_one_key_make_one_run_and_one_generation(
    api: Started,
) -> None:
    answers = await asyncio.gather(
        *(api.client.call("generate", TRACK, headers=_key("burst-7")) for _ in range(5))
    )
    assert {answer.status for answer in answers} <= {200, 202}
    run_ids = {answer.body["run"]["id"] for answer in answers}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    replayed = [answer.headers.get("Idempotent-Replayed") for answer in answers]
    assert sorted(replayed, key=str) == [None, "true", "true", "true", "true"]
    ended = await api.client.finished(run_id)
    assert ended["status"] == "succeeded"
    (made,) = api.ours()
    assert ended["steps"][0]["output"]["id"] == made.id
    assert len(await _action_called(api)) == 1


async def test_the_key_is_per_token(api: Started) -> None:
    mine = await api.client.call("generate", TRACK, headers=_key("shared-key"))
    theirs = await api.client.call("generate", TRACK, headers=_key("shared-key"), token=OTHER)
    acting = await api.client.call("generate", TRACK, headers=_key("shared-key"), token=ACTOR)
    answers = (mine, theirs, acting)
    assert all(answer.status == 202 for answer in answers)
    assert all("Idempotent-Replayed" not in answer.headers for answer in answers)
    assert len({answer.body["run"]["id"] for answer in answers}) == 3
    # Each token's retry finds its own run.
    again = await api.client.call("generate", TRACK, headers=_key("shared-key"), token=OTHER)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body["run"]["id"] == theirs.body["run"]["id"]
    for answer in answers:
        await api.client.finished(answer.body["run"]["id"])
    assert len(api.ours()) == 3
    events = await api.client.get("/api/v1/events", params={"kind": "action_called"})
    assert sorted(e["data"]["requested_by"] for e in events.body["items"]) == [
        "actor",
        "full",
        "other",
    ]


async def test_a_key_reused_with_another_body_is_refused_in_flight_and_after(
    open_api: OpenApi,
) -> None:
    async with open_api(sandbox=HELD) as api:  # the track is held: the run waits for it
        first = await api.client.call("generate", WAITING, headers=_key("k-1"))
        assert first.status == 202
        run_id = first.body["run"]["id"]
        await eventually(lambda: len(api.ours()) == 1)
        # In flight: the same body joins the run; another body, or another action, is refused.
        joined = await api.client.call("generate", WAITING, headers=_key("k-1"))
        assert joined.status == 202
        assert joined.headers["Idempotent-Replayed"] == "true"
        assert joined.body["run"]["id"] == run_id
        refusals = [
            await api.client.call("generate", {**WAITING, "duration": 11}, headers=_key("k-1")),
            await api.client.call("generate", {"duration": 10, **WAITING}, headers=_key("k-1")),
            await api.client.call(
                "bulk_delete",
                {"tracks": ["x"], "confirm": True, "dry_run": True},
                headers=_key("k-1"),
            ),
        ]
        # The same options in another order are the same body.
        assert refusals[1].status == 202
        assert refusals[1].body["run"]["id"] == run_id
        for refused in (refusals[0], refusals[2]):
            error = refused.error(422, "idempotency_key_reused")
            assert "Idempotency-Key" in error["message"]
            assert "new key" in error["message"]
        (held,) = api.ours()
        api.truth.complete_now(held.id)
        ended = await api.client.finished(run_id)
        assert ended["status"] == "succeeded"
        after = await api.client.call("generate", {**WAITING, "tags": "other"}, headers=_key("k-1"))
        after.error(422, "idempotency_key_reused")
        assert len(api.ours()) == 1
        runs = await api.client.get("/api/v1/runs")
        assert [run["id"] for run in runs.body["items"]] == [run_id]


async def test_a_refused_call_does_not_use_up_its_key(api: Started) -> None:
    refused = await api.client.call("generate", {"tagz": "x"}, headers=_key("k-2"))
    refused.error(422, "validation_failed")
    accepted = await api.client.call("generate", TRACK, headers=_key("k-2"))
    assert accepted.status == 202
    assert "Idempotent-Replayed" not in accepted.headers
    await api.client.finished(accepted.body["run"]["id"])
    assert len(api.ours()) == 1
