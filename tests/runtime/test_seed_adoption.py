"""A fixed `seed`: an unclear create answer never adopts another run's track.

With the same tags and `seed: 42`, every generation of an automation matches
the same fingerprint. After a create answered 500, the step looks for the
generation its intent describes; it may adopt only one created after its
intent was journaled that no other run holds, and fails with a clear message
when more than one submission could be it. Never a silent adoption of another
run's track, never a blind resubmission.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.automation.loader import parse_config
from connector.dispatch.records import RunRecord
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.intents import GenerationIntent
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import FaultRule, SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e

CONFIG = """
poll: {idle_interval: 60, active_interval: 60}
automations:
  - id: make
    triggers: [{trigger: schedule, interval: 3600}]
    actions:
      - action: generate
        tags: "same tags every time"
        seed: 42
        duration: 10
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.5, processing_delay=0.5)) as handle:
        yield handle


async def _run_once(runtime: Runtime, n: int) -> RunRecord:
    await runtime.submit_event(
        Event(kind="schedule", key=f"manual:{n}", source="test"), only_automation="make"
    )
    await runtime.idle()
    return runtime.runs[-1]


def _credits_spent(sandbox: SandboxHandle) -> int:
    return sum(1 for g in sandbox.sandbox.generations() if g.prompt == "same tags every time")


async def _runtime(sandbox: SandboxHandle, store: Store, client: FinetuningClient) -> Runtime:
    runtime = Runtime(parse_config(CONFIG, filename="seed.yaml"), client, store=store)
    await runtime.start()
    return runtime


async def test_a_failed_create_does_not_adopt_an_earlier_runs_generation(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = await _runtime(sandbox, store, client)
            try:
                first = await _run_once(runtime, 1)
                assert first.status == "succeeded", first.error
                # The next create is answered 500 and nothing is created.
                sandbox.sandbox.set_faults([FaultRule(route="POST /v1/generations", error_rate=1)])
                second = await _run_once(runtime, 2)
            finally:
                await runtime.stop()
    assert first.steps[0].output is not None
    assert second.status == "failed"
    assert second.error is not None
    assert "outcome" in second.error.lower()
    assert second.steps[0].output is None  # no generation id: nothing adopted
    assert _credits_spent(sandbox) == 1


async def test_a_committed_but_failed_create_adopts_its_own_generation_not_the_earlier_one(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = await _runtime(sandbox, store, client)
            try:
                first = await _run_once(runtime, 1)
                sandbox.sandbox.set_faults(
                    [FaultRule(route="POST /v1/generations", commit_then_fail=1)]
                )
                second = await _run_once(runtime, 2)
            finally:
                await runtime.stop()
    assert first.status == "succeeded", first.error
    assert second.status == "succeeded", second.error
    assert first.steps[0].output is not None
    assert second.steps[0].output is not None
    assert first.steps[0].output["id"] != second.steps[0].output["id"]
    assert _credits_spent(sandbox) == 2  # the lost answer's generation, not a resubmission


async def test_an_identical_open_submission_of_another_run_makes_it_a_clear_failure(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = await _runtime(sandbox, store, client)
            try:
                # Another run has the same submission in flight (its answer not back yet).
                rival = GenerationIntent(tags="same tags every time", seed=42, at=time.time())
                runtime.intents.open(rival, "rival-run", 0)
                sandbox.sandbox.set_faults(
                    [FaultRule(route="POST /v1/generations", commit_then_fail=1)]
                )
                run = await _run_once(runtime, 1)
            finally:
                await runtime.stop()
    assert run.status == "failed"
    assert run.error is not None
    assert "rival-run" in run.error
    assert "seed 42" in run.error
    assert "nothing resubmitted" in run.error.lower() or "nothing was adopted" in run.error.lower()
    assert _credits_spent(sandbox) == 1  # the one the lost answer spent; no second credit


async def test_a_generation_held_by_one_run_cannot_be_claimed_by_another(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    from connector.errors import GenerationClaimedError

    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = await _runtime(sandbox, store, client)
            try:
                first = await _run_once(runtime, 1)
                assert first.steps[0].output is not None
                generation = await client.get_generation(first.steps[0].output["id"])
                with pytest.raises(GenerationClaimedError, match=first.run_id):
                    runtime.note_submission(generation, run_id="another-run")
            finally:
                await runtime.stop()


async def test_a_generation_made_outside_with_other_parameters_is_not_adopted(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    from connector.providers.finetuning.models import GenerationRequest

    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = await _runtime(sandbox, store, client)
            try:
                # Made a moment before by another program (the CLI), same tags and seed.
                request = GenerationRequest.build(tags="same tags every time", seed=42, duration=30)
                outside = await client.create_generation(request)
                # The step's own create: the connection drops, the outcome is unknown.
                sandbox.sandbox.set_faults([FaultRule(route="POST /v1/generations", drop_rate=1)])
                run = await _run_once(runtime, 1)
            finally:
                await runtime.stop()
    assert run.status == "failed"
    assert run.steps[0].output is None
    assert outside.id not in (run.error or "")
    assert _credits_spent(sandbox) == 1  # the outside one only
