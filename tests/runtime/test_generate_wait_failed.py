"""`generate` with `wait: true` on a generation that fails: the step fails with the provider's
reason (the next steps do not run on a track that does not exist), unless continue_on_error."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.automation.loader import parse_config
from connector.dispatch.records import RunRecord
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e


def _config(extra: str) -> str:
    return f"""
poll: {{idle_interval: 60, active_interval: 0.05}}
automations:
  - id: make
    triggers: [{{trigger: schedule, interval: 3600}}]
    actions:
      - id: make
        action: generate
        tags: "doomed #fail"
        duration: 5
        wait: true
        wait_timeout: 30
{extra}
      - id: file
        action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{{{ steps.make.id }}}}"
"""


async def _run(sandbox: SandboxHandle, tmp_path: Path, extra: str) -> RunRecord:
    config = parse_config(_config(extra), filename="wait.yaml")
    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = Runtime(config, client, store=store)
            await runtime.start()
            try:
                await runtime.submit_event(
                    Event(kind="schedule", key="manual:1", source="test"), only_automation="make"
                )
                await runtime.idle()
            finally:
                await runtime.stop()
    return runtime.runs[-1]


async def test_a_failed_generation_fails_the_step_with_the_providers_reason(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    run = await _run(sandbox, tmp_path, "")
    assert run.status == "failed"
    assert len(run.steps) == 1  # the playlist step never ran
    failed = [g for g in sandbox.sandbox.generations("Demo User") if g.prompt == "doomed #fail"]
    assert len(failed) == 1
    assert run.error is not None
    assert failed[0].id in run.error
    assert str(failed[0].error_message) in run.error
    assert "continue_on_error" in run.error


async def test_continue_on_error_lets_the_run_go_on(sandbox: SandboxHandle, tmp_path: Path) -> None:
    run = await _run(sandbox, tmp_path, "        continue_on_error: true")
    assert run.steps[0].status == "succeeded"
    assert run.steps[0].output is not None
    assert run.steps[0].output["status"] == "failed"
