"""The dispatcher: matching, conditions, ordered steps, isolation, limits; against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.automation.loader import parse_config
from connector.automation.model import ConnectorConfig
from connector.automation.problems import ConfigError
from connector.automation.registry import Registry, default_registry
from connector.automation.specs import ActionSpec, RegistryError, TriggerSpec
from connector.dispatch.records import RunRecord
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation, GenerationStatus
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.05)) as handle:
        yield handle


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as journal:
        yield journal


@pytest.fixture
async def client(sandbox: SandboxHandle) -> AsyncIterator[FinetuningClient]:
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as api:
        yield api


def config(text: str) -> ConnectorConfig:
    return parse_config(text, filename="automations.yaml")


def completed(generation_id: str, **fields: Any) -> Event:
    payload = {
        "id": generation_id,
        "status": "completed",
        "prompt": "lofi chill piano",
        "duration": 90.3,
        "parameters": {"bpm": 80, "keyscale": "A minor"},
        **fields,
    }
    return Event.for_generation(Generation.model_validate(payload), source="webhook")


async def runs_of(runtime: Runtime) -> list[RunRecord]:
    await runtime.idle()
    return runtime.runs


def test_registry_discovers_every_shipped_trigger_and_action() -> None:
    registry = default_registry()
    assert set(registry.triggers) == {
        "track_completed",
        "generation_failed",
        "schedule",
        "run_failed",
        "credits_low",
    }
    assert {
        "generate",
        "add_to_playlist",
        "remove_from_playlist",
        "move_tracks",
        "bulk_delete",
    } <= set(registry.actions)
    for spec in [*registry.triggers.values(), *registry.actions.values()]:
        assert spec.title
        assert spec.description
        assert spec.example


def test_a_key_declared_twice_is_refused() -> None:
    registry = Registry()
    spec = default_registry().actions["generate"]
    registry.add_action(spec, "connector.actions.generate")
    with pytest.raises(RegistryError, match="declared twice"):
        registry.add_action(spec, "plugin other.module")


def test_plugins_from_entry_points_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    import voluptuous as vol

    async def perform(_context: Any, _options: Any) -> dict[str, Any]:
        return {}

    plugin = ActionSpec(
        key="say_hello",
        title="Say hello",
        description="A plugin action.",
        schema=vol.Schema({}),
        example={"action": "say_hello"},
        run=perform,
    )

    class Point:
        value = "hello_plugin:ACTION"

        def load(self) -> ActionSpec:
            return plugin

    def fake_entry_points(*, group: str) -> list[Point]:
        return [Point()] if group == "ftconnect.actions" else []

    monkeypatch.setattr("connector.automation.registry.entry_points", fake_entry_points)
    registry = Registry.discover()
    assert registry.actions["say_hello"] is plugin
    assert registry.origins["action:say_hello"] == "plugin hello_plugin:ACTION"


def test_a_plugin_that_cannot_be_loaded_is_a_registry_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Point:
        name = "shout"
        value = "broken_plugin.shout"

        def load(self) -> Any:
            raise ModuleNotFoundError("No module named 'missing_dependency'")

    def fake_entry_points(*, group: str) -> list[Point]:
        return [Point()] if group == "ftconnect.actions" else []

    monkeypatch.setattr("connector.automation.registry.entry_points", fake_entry_points)
    with pytest.raises(RegistryError) as caught:
        Registry.discover()
    message = str(caught.value)
    assert "plugin broken_plugin.shout (entry point 'shout' of ftconnect.actions)" in message
    assert "ModuleNotFoundError: No module named 'missing_dependency'" in message


def test_a_trigger_must_be_an_event_trigger_or_a_source() -> None:
    import voluptuous as vol

    with pytest.raises(RegistryError, match="exactly one"):
        TriggerSpec(key="x", title="x", description="x", schema=vol.Schema({}), example={})


@pytest.mark.parametrize("confirm", ["", "confirm: false"])
def test_bulk_delete_without_confirm_refuses_to_load(confirm: str) -> None:
    with pytest.raises(ConfigError, match=r"line 6: .*add 'confirm: true' to this step"):
        config(
            f"""
automations:
  - id: wipe
    triggers: [{{trigger: generation_failed}}]
    actions:
      - action: bulk_delete
        tracks: "{{{{ trigger.generation.id }}}}"
        {confirm}
"""
        )


async def test_filters_conditions_and_ordered_steps_with_outputs(
    sandbox: SandboxHandle, client: FinetuningClient, store: Store
) -> None:
    runtime = Runtime(
        config(
            """
automations:
  - id: file_lofi
    triggers:
      - trigger: track_completed
        tags_contain: [lofi, piano]
        min_duration: 60
    conditions:
      - "{{ trigger.generation.parameters.bpm < 100 }}"
    actions:
      - action: add_to_playlist
        id: filed
        playlist: focus beats
        tracks: "{{ trigger.generation.id }}"
      - action: remove_from_playlist
        playlist: "{{ steps.filed.playlist_id }}"
        tracks: "{{ steps.filed.succeeded }}"
  - id: never
    triggers:
      - trigger: track_completed
        tags_contain: techno
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
"""
        ),
        client,
        store=store,
    )
    track = (await client.list_generations(status="completed", limit=1)).generations[0]
    event = completed(track.id)
    assert await runtime.submit_event(event)
    runs = await runs_of(runtime)
    assert [r.automation_id for r in runs] == ["file_lofi"]
    run = runs[0]
    assert run.status == "succeeded"
    assert [s.step_id for s in run.steps] == ["filed", "step_2"]
    assert run.steps[1].output is not None
    assert run.steps[1].output["succeeded"] == [track.id]


async def test_the_same_event_is_dispatched_once(client: FinetuningClient, store: Store) -> None:
    runtime = Runtime(
        config(
            """
automations:
  - id: count
    triggers: [{trigger: generation_failed}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )
    failed = Event.for_generation(
        Generation(id="gone", status=GenerationStatus.FAILED, error_message="x"), source="poll"
    )
    assert await runtime.submit_event(failed)
    assert not await runtime.submit_event(failed)
    runs = await runs_of(runtime)
    assert len(runs) == 1
    assert runs[0].steps[0].output == {
        "dry_run": True,
        "would_delete": [],
        "not_found": ["gone"],
        "checked": True,
    }


async def test_a_failing_step_stops_its_run_and_other_runs_carry_on(
    client: FinetuningClient, store: Store
) -> None:
    runtime = Runtime(
        config(
            """
automations:
  - id: broken
    triggers: [{trigger: track_completed}]
    actions:
      - action: add_to_playlist
        playlist: No Such Playlist
        tracks: "{{ trigger.generation.id }}"
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
  - id: bad_template
    triggers: [{trigger: track_completed}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.generation.missing_field }}"
  - id: fine
    triggers: [{trigger: track_completed}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )
    await runtime.submit_event(completed("some-track"))
    runs = {r.automation_id: r for r in await runs_of(runtime)}
    assert runs["broken"].status == "failed"
    assert len(runs["broken"].steps) == 1  # the delete never ran
    assert "No Such Playlist" in (runs["broken"].error or "")
    assert runs["bad_template"].status == "failed"
    assert "missing_field" in (runs["bad_template"].error or "")
    assert runs["fine"].status == "succeeded"


@pytest.mark.parametrize("returned", [None, ["a", "b"], "said it"])
async def test_an_action_returning_no_mapping_fails_its_step_in_the_journal_too(
    client: FinetuningClient, store: Store, returned: Any
) -> None:
    """A plugin's wrong return value fails the step like any bug in an action: the step
    is journaled failed (not left `running`) and the error says what came back."""
    import voluptuous as vol

    async def perform(_context: Any, _options: Any) -> Any:
        return returned

    registry = Registry.discover(with_plugins=False)
    registry.add_action(
        ActionSpec(
            key="odd",
            title="Odd",
            description="Returns no mapping.",
            schema=vol.Schema({}),
            example={"action": "odd"},
            run=perform,
        ),
        "plugin odd_plugin",
    )
    automations = parse_config(
        """
automations:
  - id: odd_one
    triggers: [{trigger: track_completed}]
    actions:
      - action: odd
""",
        registry=registry,
    )
    runtime = Runtime(automations, client, registry=registry, store=store)
    await runtime.submit_event(completed("some-track"))
    (run,) = await runs_of(runtime)
    expected = f"step_1 (odd): action 'odd' returned {type(returned).__name__}, not a mapping"
    assert (run.status, run.error) == ("failed", expected)
    assert [(s.status, s.error) for s in run.steps] == [("failed", expected)]
    row = store.run(run.run_id)
    assert row is not None
    assert [(s.status, s.error) for s in row.steps] == [("failed", expected)]


async def test_a_rendered_value_out_of_range_fails_with_the_field_message(
    client: FinetuningClient, sandbox: SandboxHandle, store: Store
) -> None:
    runtime = Runtime(
        config(
            """
automations:
  - id: too_long
    triggers: [{trigger: track_completed}]
    actions:
      - action: generate
        tags: "more of {{ trigger.generation.prompt }}"
        duration: "{{ trigger.generation.duration * 10 }}"
"""
        ),
        client,
        store=store,
    )
    before = len(sandbox.sandbox.requests)
    await runtime.submit_event(completed("t1"))
    run = (await runs_of(runtime))[0]
    assert run.status == "failed"
    assert "duration" in (run.error or "")
    assert "between 5 and 210" in (run.error or "")
    assert len(sandbox.sandbox.requests) == before  # no credit spent


async def test_concurrent_runs_respect_the_limit(client: FinetuningClient, store: Store) -> None:
    runtime = Runtime(
        config(
            """
runtime:
  max_concurrent_runs: 1
automations:
  - id: slow
    triggers: [{trigger: generation_failed}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )
    active = 0
    peak = 0
    original = runtime._perform

    async def counting(automation: Any, run: RunRecord, done: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        await original(automation, run, done)
        active -= 1

    runtime._perform = counting  # type: ignore[method-assign]
    for n in range(5):
        await runtime.submit_event(
            Event.for_generation(
                Generation(id=f"f{n}", status=GenerationStatus.FAILED), source="poll"
            )
        )
    runs = await runs_of(runtime)
    assert len(runs) == 5
    assert peak == 1


async def test_generate_with_wait_feeds_the_next_step_and_marks_the_track_as_ours(
    sandbox: SandboxHandle, client: FinetuningClient, store: Store
) -> None:
    runtime = Runtime(
        config(
            """
poll: {idle_interval: 0.2, active_interval: 0.05}
automations:
  - id: make
    triggers: [{trigger: generation_failed}]
    actions:
      - action: generate
        id: track
        tags: "a reply to {{ trigger.generation.id }}"
        duration: 10
        wait: true
        wait_timeout: 30
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ steps.track.id }}"
  - id: ours
    triggers:
      - trigger: track_completed
        only_submitted_by_connector: true
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )
    both_done = asyncio.Event()
    runtime.run_listeners.append(
        lambda _run: (
            both_done.set() if sum(r.status != "running" for r in runtime.runs) >= 2 else None
        )
    )
    await runtime.start()
    try:
        await runtime.submit_event(
            Event.for_generation(Generation(id="x", status=GenerationStatus.FAILED), source="poll")
        )
        async with asyncio.timeout(20):
            await both_done.wait()
    finally:
        await runtime.stop()
    runs = {r.automation_id: r for r in runtime.runs}
    assert runs["make"].status == "succeeded"
    made = runs["make"].steps[0].output
    assert made is not None
    assert made["status"] == "completed"
    assert runs["ours"].event.generation is not None
    assert runs["ours"].event.generation.id == made["id"]
    assert runs["ours"].event.submitted_by_connector


async def test_a_failing_listener_neither_stalls_events_nor_stops_runs(
    client: FinetuningClient, store: Store
) -> None:
    runtime = Runtime(
        config(
            """
automations:
  - id: count
    triggers: [{trigger: generation_failed}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )

    def broken(*_args: Any) -> None:
        raise BrokenPipeError("stdout is gone")

    runtime.event_listeners.append(broken)
    runtime.step_listeners.append(broken)
    runtime.run_listeners.append(broken)
    results = await asyncio.gather(
        *(
            runtime.submit_event(
                Event.for_generation(
                    Generation(id=f"g{n}", status=GenerationStatus.FAILED), source="poll"
                )
            )
            for n in range(3)
        )
    )
    assert results == [True, True, True]
    runs = await runs_of(runtime)
    assert [r.status for r in runs] == ["succeeded"] * 3


async def test_an_event_journaled_while_stopping_still_reaches_its_listeners(
    client: FinetuningClient, store: Store
) -> None:
    """Found with the Home Assistant integration, which fires its bus events from the
    listeners: an event whose batch was written just after `stop()` stopped taking work
    was journaled (so never heard again) without its listeners hearing it. Its runs
    wait for the next start, as before."""
    runtime = Runtime(
        config(
            """
automations:
  - id: count
    triggers: [{trigger: generation_failed}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
        confirm: true
        dry_run: true
"""
        ),
        client,
        store=store,
    )
    heard: list[str] = []
    runtime.event_listeners.append(lambda event: heard.append(event.key))
    event = Event.for_generation(
        Generation(id="late", status=GenerationStatus.FAILED), source="poll"
    )
    submitted = asyncio.ensure_future(runtime.submit_event(event))
    await asyncio.sleep(0)  # in the batch, its write scheduled
    runtime._accepting = False  # where stop() is when the write lands
    assert await submitted is True
    assert heard == [event.key]
    assert [r.status for r in store.runs(limit=5)] == ["running"]  # for the next start
