"""TemPolor behind the same triggers and actions: generate, poll by id, download."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from connector.automation.loader import parse_config
from connector.automation.problems import ConfigError
from connector.dispatch.records import RunRecord
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation, GenerationStatus
from connector.providers.tempolor.client import TempolorClient
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.05)) as handle:
        yield handle


def test_playlist_actions_are_refused_at_check_time_for_tempolor_only_automations() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            """
automations:
  - id: file_tempolor
    triggers:
      - trigger: track_completed
        provider: tempolor
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.generation.id }}"
"""
        )
    message = str(caught.value)
    assert "line 8" in message
    assert "'add_to_playlist' is not available for provider 'tempolor'" in message


def test_finetuning_only_generate_options_are_refused_for_tempolor() -> None:
    with pytest.raises(ConfigError, match="duration: not available for provider 'tempolor'"):
        parse_config(
            """
automations:
  - id: make
    triggers: [{trigger: schedule, interval: 60}]
    actions:
      - action: generate
        provider: tempolor
        tags: epic orchestral
        duration: 60
"""
        )


async def test_tempolor_generation_fires_once_and_lands_in_the_library(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    config = parse_config(
        f"""
poll: {{idle_interval: 30, active_interval: 0.05}}
automations:
  - id: make
    triggers: [{{trigger: generation_failed}}]
    actions:
      - action: generate
        provider: tempolor
        instrumental: true
        tags: "cinematic strings, answer to {{{{ trigger.generation.id }}}}"
        tonality: "F:minor"
        bpm: 120
  - id: deliver
    triggers:
      - trigger: track_completed
        provider: tempolor
    actions:
      - action: download_track
        library: {library}
        album: TemPolor
""",
        filename="tempolor.yaml",
    )
    done = asyncio.Event()
    with Store.open(tmp_path / "state") as store:
        async with (
            FinetuningClient(sandbox.api_key, base_url=sandbox.url) as finetuning,
            TempolorClient(sandbox.tempolor_token, base_url=sandbox.tempolor_url) as tempolor,
        ):
            runtime = Runtime(config, finetuning, store=store, tempolor=tempolor)
            finished: list[RunRecord] = []

            def on_run(run: RunRecord) -> None:
                finished.append(run)
                if any(r.automation_id == "deliver" for r in finished):
                    done.set()

            runtime.run_listeners.append(on_run)
            await runtime.start()
            try:
                await runtime.submit_event(
                    Event.for_generation(
                        Generation(id="seedling", status=GenerationStatus.FAILED), source="poll"
                    )
                )
                async with asyncio.timeout(20):
                    await done.wait()
                await runtime.idle()
            finally:
                await runtime.stop()
    runs = {r.automation_id: r for r in finished}
    assert runs["make"].status == "succeeded"
    delivered = runs["deliver"]
    assert delivered.status == "succeeded", delivered.error
    assert delivered.event.provider == "tempolor"
    assert delivered.event.submitted_by_connector
    output = delivered.steps[0].output
    assert output is not None
    path = Path(output["path"])
    assert path.is_relative_to(library)
    tags = ID3(path)  # opens the file: it exists and carries our tags
    assert tags.getall("TXXX:FINETUNING_PROVIDER")[0].text == ["tempolor"]
    assert len(sandbox.sandbox.tempolor.jobs) == 1  # one job, one credit
    assert [r.automation_id for r in finished].count("deliver") == 1
