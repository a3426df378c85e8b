"""Ingress: webhook and poller see the same completions, each fires once; a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from connector.automation.loader import parse_config
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.1)) as handle:
        yield handle


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until `predicate()` holds (state that lives in another component: poll it)."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_webhook_and_poller_see_the_same_completions_and_each_fires_once(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = parse_config(
        f"""
webhook:
  listen: 127.0.0.1:{free_port()}
poll: {{idle_interval: 0.1, active_interval: 0.05}}
automations:
  - id: make
    triggers: [{{trigger: schedule, interval: 3600}}]
    actions:
      - action: generate
        tags: "webhook test"
        duration: 10
  - id: count
    triggers: [{{trigger: track_completed, only_submitted_by_connector: true}}]
    actions:
      - action: bulk_delete
        tracks: "{{{{ trigger.generation.id }}}}"
        confirm: true
        dry_run: true
""",
        filename="ingress.yaml",
    )
    fired: list[Event] = []
    with Store.open(tmp_path / "state") as store:
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = Runtime(config, client, store=store)
            runtime.event_listeners.append(fired.append)
            await runtime.start()
            try:
                for n in range(4):
                    await runtime.submit_event(
                        Event(kind="schedule", key=f"manual:{n}", source="test"),
                        only_automation="make",
                    )
                await eventually(lambda: sum(e.kind == "track_completed" for e in fired) >= 4)
                # Let both paths deliver everything they are going to deliver.
                await eventually(lambda: len(sandbox.sandbox.webhook_attempts) >= 4)
                await asyncio.sleep(0.5)
                await runtime.idle()
            finally:
                await runtime.stop()
    completions = [e for e in fired if e.kind == "track_completed"]
    assert len(completions) == 4
    assert len({e.key for e in completions}) == 4
    attempts = sandbox.sandbox.webhook_attempts
    assert len(attempts) == 4
    assert all(a.status == 200 for a in attempts)  # the listener answered every delivery
    assert [r.automation_id for r in runtime.runs].count("count") == 4


def _write_config(path: Path, sandbox: SandboxHandle, library: Path, port: int) -> None:
    path.write_text(
        f"""
finetuning:
  api_key: {sandbox.api_key}
  base_url: {sandbox.url}
webhook:
  listen: 127.0.0.1:{port}
poll: {{idle_interval: 0.2, active_interval: 0.1}}
state_dir: {path.parent / "state"}
automations:
  - id: file_it
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{{{ trigger.generation.id }}}}"
      - action: download_track
        library: {library}
""",
        encoding="utf-8",
    )


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector.cli",
        "run",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_for_line(process: asyncio.subprocess.Process, text: str) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"process ended before printing {text!r}")
            if text in line:
                return


async def test_sigkill_mid_flood_then_restart_fires_every_completion_once(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    config = tmp_path / "automations.yaml"
    _write_config(config, sandbox, library, free_port())
    first = await _start(config)
    await _wait_for_line(first, "Running 1 automation")
    ids = [
        sandbox.sandbox.add_track("Demo User", prompt=f"flood {n}", status="processing").id
        for n in range(12)
    ]
    for n, track_id in enumerate(ids):
        sandbox.sandbox.complete_now(track_id)
        if n == 5:
            await asyncio.sleep(0.3)
            first.send_signal(signal.SIGKILL)  # mid-flood, mid-chain
    await first.wait()
    second = await _start(config)
    try:
        await _wait_for_line(second, "Running 1 automation")
        async with asyncio.timeout(30):
            while True:
                with Store.open(tmp_path / "state") as store:
                    runs = store.runs(limit=500)
                if len([r for r in runs if r.status == "succeeded"]) >= len(ids):
                    break
                await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    with Store.open(tmp_path / "state") as store:
        events = store.events(limit=500, kind="track_completed")
        runs = store.runs(limit=500)
    fired = [e.key.split(":")[1] for e in events]
    assert sorted(set(fired) & set(ids)) == sorted(ids)  # every completion fired...
    assert len(fired) == len(set(fired))  # ...exactly once
    succeeded = [r for r in runs if r.status == "succeeded"]
    assert len(succeeded) == len(ids)
    playlists = {p.name: p for p in sandbox.sandbox.playlists("Demo User")}
    assert set(ids) <= set(playlists["Focus Beats"].track_ids)
    files = [p for p in library.rglob("*") if p.is_file()]
    assert len(files) == len(ids)  # one file per track: no download repeated into a copy
    assert not list(library.rglob("*.part"))
    assert os.listdir(library)
