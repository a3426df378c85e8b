"""`move_tracks` resumed after a crash counts as moved only what the earlier attempt moved.

A track the target held before the step (and still in the source) is an error
on every attempt; a track the crashed attempt moved counts as moved.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.automation.loader import parse_config
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.runs import RunRow
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e

CONFIG = """
poll: {idle_interval: 60, active_interval: 60}
automations:
  - id: mover
    triggers: [{trigger: schedule, interval: 3600}]
    actions:
      - action: move_tracks
        from: Triage
        to: Keepers
        tracks: "{{ trigger.data.tracks }}"
"""


def _setup(sandbox: SandboxHandle) -> tuple[str, str, str, str]:
    state = sandbox.sandbox
    before = state.add_track("Demo User", prompt="in both from the start", status="completed").id
    moved = state.add_track("Demo User", prompt="moved by the crashed try", status="completed").id
    inbox = state.add_playlist("Demo User", "Triage", track_ids=[before]).id
    keepers = state.add_playlist("Demo User", "Keepers", track_ids=[before, moved]).id
    return before, moved, inbox, keepers


async def _resume(sandbox: SandboxHandle, store: Store) -> RunRow:
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
        runtime = Runtime(parse_config(CONFIG, filename="move.yaml"), client, store=store)
        await runtime.start()
        try:
            await runtime.idle()
        finally:
            await runtime.stop()
    run = store.runs(limit=1)[0]
    assert run.steps[0].attempt == 2
    return run


def _crashed_run(store: Store, before: str, moved: str) -> str:
    event = Event(kind="schedule", key="move:1", source="test", data={"tracks": [before, moved]})
    store.record_event(event, runs=[("run-move", "mover")])
    store.step_started("run-move", 0, "step_1", "move_tracks")
    return "run-move"


async def test_a_resumed_move_does_not_count_a_track_that_was_in_the_target_before(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    before, moved, _inbox, _keepers = _setup(sandbox)
    with Store.open(tmp_path / "state") as store:
        run_id = _crashed_run(store, before, moved)
        # What the first attempt saw and journaled before it moved anything.
        store.record_intent(run_id, 0, {"in_target_before": [before]})
        run = await _resume(sandbox, store)
    assert run.status == "succeeded", run.error
    output = run.steps[0].output
    assert isinstance(output, dict)
    assert output["succeeded"] == [moved]
    assert [e["id"] for e in output["errors"]] == [before]  # type: ignore[index, union-attr]


async def test_a_move_journals_what_the_target_held_before_it_moves(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    before, moved, _inbox, _keepers = _setup(sandbox)
    with Store.open(tmp_path / "state") as store:
        run_id = _crashed_run(store, before, moved)
        # The crash came before the intent: nothing was sent, so what the target
        # holds now is what it held before (the "moved" track included).
        run = await _resume(sandbox, store)
        intent = store.intent(run_id, 0)
    assert intent == {"in_target_before": [before, moved]}
    # Neither moves (both already in the target): no item succeeded, and neither is
    # taken for one the crashed attempt moved.
    assert run.status == "failed"
    assert run.error is not None
    assert "no item succeeded" in run.error
