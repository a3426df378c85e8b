"""The `run_failed` trigger, end to end: an action called over the API fails on the
sandbox, an automation of the file hears of it, and an alarm that fails itself does
not raise another alarm (counted from the journal's events, read over the API)."""

from __future__ import annotations

from typing import Any

import pytest
from ft_api_support import OpenApi, Started

pytestmark = pytest.mark.e2e

# `alarm` hears every failed run and fails itself (the sandbox has no such playlists);
# `generate_alarm` hears only failed calls of generate.
AUTOMATIONS = """
  - id: alarm
    triggers: {trigger: run_failed}
    actions:
      - action: move_tracks
        from: No Such Alarm Playlist
        to: Nor This One
        tracks: "{{ trigger.data.run_id }}"
  - id: generate_alarm
    triggers: {trigger: run_failed, automation: api.generate}
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.data.run_id }}"
        confirm: true
        dry_run: true
"""


async def _events(api: Started, kind: str) -> list[dict[str, Any]]:
    answer = await api.client.get("/api/v1/events", params={"kind": kind, "limit": "200"})
    assert answer.body["next_cursor"] is None
    items: list[dict[str, Any]] = answer.body["items"]
    return items


async def _runs(api: Started, automation: str) -> list[dict[str, Any]]:
    answer = await api.client.get("/api/v1/runs", params={"automation": automation})
    items: list[dict[str, Any]] = answer.body["items"]
    return items


async def test_a_failed_call_fires_run_failed_and_a_failing_alarm_fires_nothing_more(
    open_api: OpenApi,
) -> None:
    async with open_api(automations=AUTOMATIONS) as api:
        options = {"tracks": api.seeded()[:1], "from": "Nowhere", "to": "Elsewhere"}
        answer = await api.client.call("move_tracks", options, params={"wait": "30"})
        assert answer.status == 200, answer.text
        failed = answer.body["run"]
        assert failed["status"] == "failed"
        assert "PLAYLIST_NOT_FOUND" in failed["error"]
        assert failed["steps"][0]["status"] == "failed"
        assert failed["steps"][0]["error"] == failed["error"]

        (event,) = await _events(api, "run_failed")
        assert event["id"] == f"run_failed:{failed['id']}"
        assert (event["provider"], event["source"]) == ("connector", "runtime")
        assert event["data"] == {
            "run_id": failed["id"],
            "automation": "api.move_tracks",
            "error": failed["error"],
            "event_key": failed["event_key"],
            "event_kind": "action_called",
        }

        (alarm,) = await _runs(api, "alarm")
        assert alarm["event_key"] == event["id"]
        alarm = await api.client.finished(alarm["id"])
        assert alarm["status"] == "failed"
        assert "PLAYLIST_NOT_FOUND" in alarm["error"]
        # The template read the trigger's data: the failed run's id.
        assert alarm["steps"][0]["options"]["tracks"] == [failed["id"]]
        # The alarm failed too, but a run started by run_failed raises no run_failed: the
        # event would have been recorded before the alarm's run was journaled finished.
        assert [e["id"] for e in await _events(api, "run_failed")] == [event["id"]]
        assert await _runs(api, "generate_alarm") == []  # filtered: not api.generate
        every = await api.client.get("/api/v1/runs", params={"limit": "200"})
        assert sorted(run["automation"] for run in every.body["items"]) == [
            "alarm",
            "api.move_tracks",
        ]


async def test_the_automation_filter_and_a_run_that_succeeds(open_api: OpenApi) -> None:
    async with open_api(automations=AUTOMATIONS) as api:
        fine = await api.client.call(
            "bulk_delete",
            {"tracks": api.seeded()[:1], "confirm": True, "dry_run": True},
            params={"wait": "30"},
        )
        assert fine.body["run"]["status"] == "succeeded"
        assert await _events(api, "run_failed") == []

        options = {"tags": "doomed #fail", "duration": 10, "wait": True}
        answer = await api.client.call("generate", options, params={"wait": "60"})
        assert answer.status == 200, answer.text
        failed = answer.body["run"]
        assert failed["status"] == "failed"
        assert "failed" in failed["error"]
        (made,) = api.ours()
        assert made.status == "failed"

        (event,) = await _events(api, "run_failed")
        assert event["data"]["automation"] == "api.generate"
        assert event["data"]["run_id"] == failed["id"]
        for automation in ("alarm", "generate_alarm"):
            (run,) = await _runs(api, automation)
            assert run["event_key"] == event["id"]
            await api.client.finished(run["id"])
        (checked,) = await _runs(api, "generate_alarm")
        assert checked["status"] == "succeeded"
        assert checked["steps"][0]["options"]["tracks"] == [failed["id"]]
        # Only the alarm that failed; still one run_failed.
        assert [e["id"] for e in await _events(api, "run_failed")] == [event["id"]]
