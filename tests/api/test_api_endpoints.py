"""Every operation of the HTTP API, end to end: a started connector on the embedded
sandbox, real requests over loopback, answers checked for their content and against
the OpenAPI document the server serves (see `ft_api_support.ApiClient`)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from ft_api_support import HELD, ISO_Z, OpenApi, Started, eventually

from connector.api.openapi import OPERATIONS
from connector.api.schemas import call_options_schema
from connector.automation.jsonschema import spec_schema

pytestmark = pytest.mark.e2e


def _time(value: str) -> datetime:
    assert ISO_Z.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _dry_run(api: Started, tracks: list[str], **params: str) -> dict[str, Any]:
    """A cheap call that succeeds: bulk_delete's dry run reports, deletes nothing."""
    options = {"tracks": tracks, "confirm": True, "dry_run": True}
    answer = await api.client.call("bulk_delete", options, params={"wait": "30", **params})
    assert answer.status == 200, answer.text
    run: dict[str, Any] = answer.body["run"]
    assert run["status"] == "succeeded", run
    return run


async def _failing(api: Started) -> dict[str, Any]:
    """A call that fails cleanly: the sandbox has no such playlists."""
    options = {"tracks": api.seeded()[:1], "from": "No Such A", "to": "No Such B"}
    answer = await api.client.call("move_tracks", options, params={"wait": "30"})
    assert answer.status == 200, answer.text
    run: dict[str, Any] = answer.body["run"]
    assert run["status"] == "failed", run
    return run


# -- meta ---------------------------------------------------------------------------------


async def test_the_document_and_health_need_no_token(api: Started) -> None:
    document = await api.client.get("/api/v1/openapi.json", token=None)
    assert document.status == 200
    assert document.body["openapi"].startswith("3.1")
    served = {
        (method.upper(), path, op["operationId"])
        for path, item in document.body["paths"].items()
        for method, op in item.items()
    }
    for operation in OPERATIONS:
        assert (operation.method, operation.path, operation.operation_id) in served
    for key in api.connector.runtime.registry.actions:
        assert ("POST", f"/api/v1/actions/{key}", f"call_{key}") in served
    health = await api.client.get("/api/v1/health", token=None)
    assert (health.status, health.body) == (200, {"status": "ok"})


# -- actions ------------------------------------------------------------------------------


async def test_actions_lists_every_action_with_its_options_schema(api: Started) -> None:
    answer = await api.client.get("/api/v1/actions")
    assert answer.status == 200
    registry = api.connector.runtime.registry
    items = answer.body["items"]
    assert [item["key"] for item in items] == sorted(registry.actions)
    for item in items:
        spec = registry.actions[item["key"]]
        assert item == {
            "key": spec.key,
            "title": spec.title,
            "description": spec.description,
            "options_schema": call_options_schema(spec),  # as the document has them
        }
    generate = next(item for item in items if item["key"] == "generate")
    assert {"tags", "duration", "wait"} <= set(generate["options_schema"]["properties"])
    notify = next(item for item in items if item["key"] == "notify_webhook")
    assert "secret" not in notify["options_schema"]["properties"]  # a call may not give one


async def test_a_call_answers_202_with_the_running_run_and_its_location(api: Started) -> None:
    answer = await api.client.call("generate", {"tags": "lofi piano", "duration": 10})
    assert answer.status == 202, answer.text
    run = answer.body["run"]
    assert answer.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert "Idempotent-Replayed" not in answer.headers
    assert run["automation"] == "api.generate"
    assert run["status"] == "running"
    assert run["event_key"].startswith("api:")
    assert run["finished_at"] is None
    assert run["replay_of"] is None
    followed = await api.client.get(answer.headers["Location"])
    assert followed.status == 200
    assert followed.body["run"]["id"] == run["id"]
    ended = await api.client.finished(run["id"])
    assert ended["status"] == "succeeded", ended
    (step,) = ended["steps"]
    assert step["options"]["tags"] == "lofi piano"
    assert step["options"]["wait"] is False  # the schema's default, filled in
    made = api.ours()
    assert [g.id for g in made] == [step["output"]["id"]]  # one credit, this track


async def test_wait_answers_200_with_the_finished_run_and_the_finished_track(
    api: Started,
) -> None:
    options = {"tags": "lofi rain", "duration": 12, "wait": True}
    answer = await api.client.call("generate", options, params={"wait": "60"})
    assert answer.status == 200, answer.text
    run = answer.body["run"]
    assert answer.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert run["status"] == "succeeded"
    assert run["error"] is None
    (step,) = run["steps"]
    assert (step["index"], step["id"], step["action"], step["status"]) == (
        0,
        "generate",
        "generate",
        "succeeded",
    )
    assert step["attempt"] == 1
    assert step["options"] == {
        "tags": "lofi rain",
        "duration": 12,
        "wait": True,
        "instrumental": False,
        "wait_timeout": 600,
        "continue_on_error": False,
        "provider": "finetuning",
    }
    output = step["output"]
    (made,) = api.ours()
    assert output["id"] == made.id
    assert output["status"] == "completed"
    assert output["generation"]["id"] == made.id
    assert output["generation"]["status"] == "completed"
    assert output["generation"]["prompt"] == "lofi rain"
    assert output["generation"]["audioUrl"].endswith(f"{made.id}.mp3")
    assert made.status == "completed"
    assert _time(run["started_at"]) <= _time(step["started_at"])
    assert _time(step["started_at"]) <= _time(step["finished_at"])
    assert _time(step["finished_at"]) <= _time(run["finished_at"])


# -- runs ---------------------------------------------------------------------------------


async def test_runs_filter_by_status_and_automation_and_page_through_all(
    api: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = api.seeded()[:2]
    succeeded = [(await _dry_run(api, tracks))["id"] for _ in range(3)]
    failed = [(await _failing(api))["id"] for _ in range(2)]
    # Five more started in the same instant (the journal's clock held still): pages
    # must then be ordered, and cut, by run id among equal times.
    instant = time.time()
    with monkeypatch.context() as held:
        held.setattr(api.connector.store, "_clock", lambda: instant)
        answers = await asyncio.gather(
            *(
                api.client.call("bulk_delete", {"tracks": tracks, "confirm": True, "dry_run": True})
                for _ in range(5)
            )
        )
        together = [a.body["run"]["id"] for a in answers]
        assert len({a.body["run"]["started_at"] for a in answers}) == 1
        for run_id in together:
            await api.client.finished(run_id)
    everything = {*succeeded, *failed, *together}
    assert len(everything) == 10

    whole = await api.client.get("/api/v1/runs", params={"limit": "200"})
    assert whole.body["next_cursor"] is None
    order = [run["id"] for run in whole.body["items"]]
    assert set(order) == everything
    times = [_time(r["started_at"]) for r in whole.body["items"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert order[:5] == sorted(together, reverse=True)  # at one instant: by id, descending

    pages = await api.client.all_pages("/api/v1/runs", limit="3")
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [run["id"] for page in pages for run in page] == order

    failing = await api.client.all_pages("/api/v1/runs", status="failed", limit="1")
    assert [[run["id"] for run in page] for page in failing] == [[failed[1]], [failed[0]]]
    for page in failing:
        assert page[0]["automation"] == "api.move_tracks"
        assert "PLAYLIST_NOT_FOUND" in page[0]["error"]

    deleting = await api.client.all_pages("/api/v1/runs", automation="api.bulk_delete", limit="2")
    assert {run["id"] for page in deleting for run in page} == {*succeeded, *together}
    assert sum(len(page) for page in deleting) == 8

    both = await api.client.get(
        "/api/v1/runs", params={"status": "failed", "automation": "api.bulk_delete"}
    )
    assert both.body == {"items": [], "next_cursor": None}
    running = await api.client.get("/api/v1/runs", params={"status": "running"})
    assert running.body == {"items": [], "next_cursor": None}


async def test_a_run_shows_its_steps_options_output_and_times(api: Started) -> None:
    tracks = api.seeded()[:2]
    made = await _dry_run(api, [*tracks, "no-such-track"])
    answer = await api.client.get(f"/api/v1/runs/{made['id']}")
    assert answer.status == 200
    run = answer.body["run"]
    assert run == made  # the same as the call's answer: the run had ended
    assert set(run) == {
        "id",
        "automation",
        "status",
        "error",
        "event_key",
        "replay_of",
        "started_at",
        "finished_at",
        "steps",
    }
    (step,) = run["steps"]
    assert set(step) == {
        "index",
        "id",
        "action",
        "status",
        "attempt",
        "options",
        "output",
        "error",
        "started_at",
        "finished_at",
    }
    assert step["options"] == {
        "tracks": [*tracks, "no-such-track"],
        "confirm": True,
        "dry_run": True,
    }
    assert step["output"] == {
        "dry_run": True,
        "would_delete": tracks,
        "not_found": ["no-such-track"],
        "checked": True,
    }
    assert step["error"] is None
    assert _time(run["started_at"]) <= _time(step["started_at"])
    assert _time(step["finished_at"]) <= _time(run["finished_at"])
    # The event of the call says what was asked, and by which token.
    events = await api.client.get("/api/v1/events", params={"kind": "action_called"})
    (event,) = events.body["items"]
    assert event["id"] == run["event_key"]
    assert event["data"] == {
        "action": "bulk_delete",
        "options": step["options"],
        "requested_by": "full",
    }
    assert (event["provider"], event["source"], event["generation"]) == ("connector", "api", None)


async def test_replay_of_a_finished_run_answers_202_and_the_old_run_is_replayed(
    api: Started,
) -> None:
    first = await _dry_run(api, api.seeded()[:1])
    answer = await api.client.post(f"/api/v1/runs/{first['id']}/replay")
    assert answer.status == 202, answer.text
    again = answer.body["run"]
    assert answer.headers["Location"] == f"/api/v1/runs/{again['id']}"
    assert again["id"] != first["id"]
    assert again["replay_of"] == first["id"]
    assert again["event_key"] == first["event_key"]
    assert again["automation"] == "api.bulk_delete"
    assert again["status"] == "running"
    ended = await api.client.finished(again["id"])
    assert ended["status"] == "succeeded"
    assert ended["steps"][0]["output"] == first["steps"][0]["output"]
    old = await api.client.run(first["id"])
    assert old["status"] == "replayed"
    assert old["steps"] == first["steps"]  # kept, for the record
    twice = await api.client.post(f"/api/v1/runs/{first['id']}/replay")
    error = twice.error(409, "conflict")
    assert "already replayed" in error["message"]
    assert again["id"] in error["message"]  # which run to replay instead
    unknown = await api.client.post("/api/v1/runs/nosuchrun/replay")
    unknown.error(404, "not_found")


async def test_a_running_run_cannot_be_replayed_and_wait_gives_202_until_it_ends(
    open_api: OpenApi,
) -> None:
    async with open_api(sandbox=HELD) as api:
        options = {"tags": "held track", "duration": 10, "wait": True}
        answer = await api.client.call("generate", options, params={"wait": "0.2"})
        assert answer.status == 202, answer.text  # the track is held: not over in 0.2 s
        run = answer.body["run"]
        assert run["status"] == "running"
        conflict = await api.client.post(f"/api/v1/runs/{run['id']}/replay")
        assert "still running" in conflict.error(409, "conflict")["message"]
        await eventually(lambda: len(api.ours()) == 1)
        (held,) = api.ours()
        api.truth.complete_now(held.id)
        ended = await api.client.finished(run["id"])
        assert ended["status"] == "succeeded"
        assert ended["steps"][0]["output"]["generation"]["status"] == "completed"


# -- events, triggers, samples ------------------------------------------------------------


async def test_events_filter_by_kind_and_page_newest_first(api: Started) -> None:
    called = [(await _dry_run(api, api.seeded()[:1]))["event_key"] for _ in range(3)]
    failed = await _failing(api)
    called.append(failed["event_key"])

    calls = await api.client.all_pages("/api/v1/events", kind="action_called", limit="1")
    assert [[event["id"] for event in page] for page in calls] == [[k] for k in reversed(called)]
    for (event,) in calls:
        assert event["kind"] == "action_called"
        assert event["provider"] == "connector"

    alarms = await api.client.get("/api/v1/events", params={"kind": "run_failed"})
    (alarm,) = alarms.body["items"]
    assert alarm["id"] == f"run_failed:{failed['id']}"
    assert alarm["data"]["run_id"] == failed["id"]

    whole = await api.client.get("/api/v1/events", params={"limit": "200"})
    assert whole.body["next_cursor"] is None
    every = whole.body["items"]
    kinds = {event["kind"] for event in every}
    assert kinds == {"action_called", "run_failed", "track_completed"}  # the seeded tracks
    times = [_time(e["received_at"]) for e in every]
    assert times == sorted(times, reverse=True)
    pages = await api.client.all_pages("/api/v1/events", limit="2")
    assert [event["id"] for page in pages for event in page] == [e["id"] for e in every]
    assert all(len(page) == 2 for page in pages[:-1])
    none = await api.client.get("/api/v1/events", params={"kind": "credits_low"})
    assert none.body == {"items": [], "next_cursor": None}  # a kind, with no events yet


async def test_triggers_say_which_can_be_subscribed(api: Started) -> None:
    answer = await api.client.get("/api/v1/triggers")
    assert answer.status == 200
    registry = api.connector.runtime.registry
    items = {item["key"]: item for item in answer.body["items"]}
    assert list(items) == sorted(registry.triggers)
    for key, item in items.items():
        spec = registry.triggers[key]
        assert item["title"] == spec.title
        assert item["options_schema"] == spec_schema(spec)
        assert item["subscribable"] is (spec.matches is not None)
    assert items["track_completed"]["subscribable"] is True
    assert items["run_failed"]["subscribable"] is True
    assert items["schedule"]["subscribable"] is False


async def test_samples_are_a_triggers_events_newest_first_with_stable_ids(api: Started) -> None:
    answer = await api.client.call("generate", {"tags": "sample me", "duration": 10})
    assert answer.status == 202

    async def completed() -> bool:
        events = await api.client.get("/api/v1/events", params={"kind": "track_completed"})
        return any(e["source"] != "seed" for e in events.body["items"])

    await eventually(completed)
    (made,) = api.ours()
    first = await api.client.get("/api/v1/triggers/track_completed/samples")
    assert first.status == 200
    items = first.body["items"]
    newest = items[0]
    assert newest["id"] == f"finetuning:{made.id}:completed"
    assert newest["trigger"] == "track_completed"
    assert newest["kind"] == "track_completed"
    assert newest["data"]["key"] == newest["id"]
    assert newest["data"]["generation"]["id"] == made.id
    assert newest["data"]["submitted_by_connector"] is True
    assert newest["occurred_at"] == newest["data"]["occurred_at"]
    # Every completed track of the account: the seeded ones too, as examples.
    seeded = {f"finetuning:{track}:completed" for track in api.seeded()}
    assert {item["id"] for item in items[1:]} <= seeded
    assert len(items) == min(10, 1 + len(seeded))
    again = await api.client.get("/api/v1/triggers/track_completed/samples")
    assert [item["id"] for item in again.body["items"]] == [item["id"] for item in items]
    two = await api.client.get("/api/v1/triggers/track_completed/samples", params={"limit": "2"})
    assert [item["id"] for item in two.body["items"]] == [item["id"] for item in items[:2]]
    events = await api.client.get("/api/v1/events", params={"kind": "track_completed"})
    assert [e["id"] for e in events.body["items"]][: len(items)] == [i["id"] for i in items]
    nothing = await api.client.get("/api/v1/triggers/run_failed/samples")
    assert nothing.body == {"items": []}


# -- hooks --------------------------------------------------------------------------------


async def test_hooks_are_created_listed_read_and_deleted(api: Started) -> None:
    target = "http://127.0.0.1:9/catch"
    body = {"trigger": "track_completed", "target_url": target, "filter": {"tags_contain": "lofi"}}
    created = await api.client.post("/api/v1/hooks", json=body)
    assert created.status == 201, created.text
    hook = created.body
    assert created.headers["Location"] == f"/api/v1/hooks/{hook['id']}"
    secret = hook.pop("secret")
    assert secret.startswith("whsec_")
    assert len(secret) > len("whsec_") + 20
    assert hook["trigger"] == "track_completed"
    assert hook["target_url"] == target
    assert hook["filter"] == {"tags_contain": ["lofi"], "only_submitted_by_connector": False}
    assert (hook["pending"], hook["delivered"], hook["failed"]) == (0, 0, 0)
    assert (hook["last_status"], hook["last_error"], hook["last_attempt_at"]) == (None,) * 3
    _time(hook["created_at"])
    assert (api.state_dir / f"hook-{hook['id']}").read_text().strip() == secret

    other = await api.client.post(
        "/api/v1/hooks", json={"trigger": "run_failed", "target_url": "https://example.com/x"}
    )
    assert other.status == 201
    other_id = other.body["id"]
    listed = await api.client.get("/api/v1/hooks")
    assert [item["id"] for item in listed.body["items"]] == [hook["id"], other_id]
    # No secret, and the target without its path or query: only the 201 has them (a
    # catch URL's path is often its credential, and a read token lists the hooks).
    shown = {**hook, "target_url": "http://127.0.0.1:9/…"}
    assert listed.body["items"][0] == shown
    one = await api.client.get(f"/api/v1/hooks/{hook['id']}")
    assert one.body == shown

    gone = await api.client.delete(f"/api/v1/hooks/{hook['id']}")
    assert (gone.status, gone.text) == (204, "")
    assert not (api.state_dir / f"hook-{hook['id']}").exists()
    (await api.client.get(f"/api/v1/hooks/{hook['id']}")).error(404, "not_found")
    (await api.client.delete(f"/api/v1/hooks/{hook['id']}")).error(404, "not_found")
    left = await api.client.get("/api/v1/hooks")
    assert [item["id"] for item in left.body["items"]] == [other_id]
