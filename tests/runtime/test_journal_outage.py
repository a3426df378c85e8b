"""A journal that fails for a while (a full disk) stalls nothing until a restart.

Events are journaled, then every write fails (SQLite answers "database or disk
is full", as on a full state_dir), then space comes back: the runs in flight
wait in place while `/healthz` says degraded, and all finish in the same
process, each step taking effect once; no task exception goes unlogged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connector.automation.loader import parse_config
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.ratelimit import RateBudget
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e

CONFIG = """
poll: {idle_interval: 60, active_interval: 60}
automations:
  - id: file_it
    triggers: [{trigger: schedule, interval: 3600}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.data.track }}"
      - action: remove_from_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.data.track }}"
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.data.track }}"
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(
        SandboxConfig(pending_delay=0.01, processing_delay=0.05, read_limit=10_000)
    ) as handle:
        yield handle


class DiskFull:
    """Makes every write transaction of one store fail as SQLite does on a full disk."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.full = False
        self.failures = 0
        original = store._transaction

        @contextlib.contextmanager
        def transaction(*, write: bool) -> Iterator[sqlite3.Connection]:
            if write and self.full:
                self.failures += 1
                # Through the store's own translation, as a real SQLITE_FULL would go.
                with original(write=False) as db:
                    raise sqlite3.OperationalError("database or disk is full")
                    yield db  # pragma: no cover
            with original(write=write) as db:
                yield db

        store._transaction = transaction  # type: ignore[method-assign]


async def test_runs_blocked_by_a_full_journal_finish_in_place_once_space_is_back(
    sandbox: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracks = [
        sandbox.sandbox.add_track("Demo User", prompt=f"outage {n}", status="completed").id
        for n in range(20)
    ]
    config = parse_config(CONFIG, filename="outage.yaml")
    caplog.set_level(logging.WARNING)
    with Store.open(tmp_path / "state") as store:
        disk = DiskFull(store)
        budget = RateBudget(10_000, 60.0, name="reads")  # the test is not about budgets
        async with FinetuningClient(
            sandbox.api_key, base_url=sandbox.url, read_budget=budget
        ) as client:
            runtime = Runtime(config, client, store=store)
            await runtime.start()
            try:
                # The events are journaled (in one group commit); the disk fills up
                # right after, before any of their runs wrote its first step.
                runtime.event_listeners.append(lambda _event: setattr(disk, "full", True))
                await asyncio.gather(
                    *(
                        runtime.submit_event(
                            Event(
                                kind="schedule",
                                key=f"outage:{n}",
                                source="test",
                                data={"track": track},
                            ),
                            only_automation="file_it",
                        )
                        for n, track in enumerate(tracks)
                    )
                )
                await asyncio.sleep(1.5)
                assert disk.failures > 0
                health = runtime.health()
                assert health["status"] == "degraded"
                assert "disk is full" in health["journal"]
                assert str(tmp_path) not in health["journal"]  # not where the files are
                assert all(run.status == "running" for run in runtime.runs)
                disk.full = False  # space is back
                async with asyncio.timeout(30):
                    await runtime.idle()
                assert runtime.health()["status"] == "ok"
            finally:
                await runtime.stop()
        runs = store.runs(limit=100)
    assert len(runs) == len(tracks)
    assert all(run.status == "succeeded" for run in runs), [r.error for r in runs]
    assert all(len(run.steps) == 3 and run.steps[0].attempt == 1 for run in runs)
    playlist = next(p for p in sandbox.sandbox.playlists("Demo User") if p.name == "Focus Beats")
    # Each added, removed, added again: in the playlist once.
    assert [t for t in playlist.track_ids if t in tracks].count(tracks[0]) == 1
    assert sorted(t for t in playlist.track_ids if t in tracks) == sorted(tracks)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("never retrieved" in m for m in messages)
    # The outage is said, but not once per failed write.
    outage_lines = [m for m in messages if "journal write failed" in m]
    assert 1 <= len(outage_lines) < disk.failures
