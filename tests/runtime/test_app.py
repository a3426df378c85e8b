"""`connector.app` builds and runs a connector from a config, with no command line.

What the HTTP API, a web page or a Home Assistant integration will do: open a
connector from a file, watch a completed track fire an automation, stop. Every
HTTP request of the running connector goes through one aiohttp session.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.app import open_connector
from connector.dispatch.records import RunRecord
from connector.endpoint import EndpointError
from connector.errors import MissingApiKeyError
from connector.providers.finetuning.models import GenerationRequest
from connector.sandbox import SandboxConfig

FAST = SandboxConfig(pending_delay=0.05, processing_delay=0.1)
FILE_IT = """
poll:
  idle_interval: 1
  active_interval: 0.1
automations:
  - id: file_it
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: download_track
        library: {library}
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{{{ trigger.generation.id }}}}"
"""

# The whole job through `connector.app` alone, in a process of its own: which modules
# it loaded is then what building a connector needs.
SCRIPT = """
import asyncio, json, sys
from pathlib import Path

import aiohttp

from connector.app import open_connector
from connector.providers.finetuning.models import GenerationRequest

made = []
original = aiohttp.ClientSession.__init__

def counting(self, *args, **kwargs):
    made.append(sys._getframe(1).f_globals.get("__name__", ""))
    original(self, *args, **kwargs)

aiohttp.ClientSession.__init__ = counting

async def main():
    runs = []
    finished = asyncio.Event()
    async with open_connector(Path(sys.argv[1])) as connector:
        connector.runtime.run_listeners.append(lambda run: (runs.append(run), finished.set()))
        await connector.start()
        request = GenerationRequest(tags="lofi piano", duration=10)
        generation = await connector.finetuning.create_generation(request)
        connector.runtime.note_submission(generation)
        await asyncio.wait_for(finished.wait(), 60)
        playlist = next(
            p for p in connector.sandbox.sandbox.playlists("Demo User") if p.name == "Focus Beats"
        )
    print(json.dumps({
        "on_sandbox": connector.sandbox is not None,
        "run": [runs[0].automation_id, runs[0].status, runs[0].error],
        "filed": generation.id in playlist.track_ids,
        "sessions": [m for m in made if not m.startswith("connector.sandbox")],
        "closed": connector.session.closed,
        "cli_loaded": sorted(m for m in sys.modules if m.startswith("connector.cli")),
    }))

asyncio.run(main())
"""


def _automations(tmp_path: Path) -> Path:
    library = tmp_path / "music"
    library.mkdir(exist_ok=True)
    path = tmp_path / "automations.yaml"
    path.write_text(FILE_IT.format(library=library), encoding="utf-8")
    return path


def test_a_connector_built_from_a_file_runs_without_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNING_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(_automations(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["on_sandbox"]  # no key anywhere: the embedded sandbox, as `ftconnect run`
    assert seen["run"] == ["file_it", "succeeded", None]
    assert seen["filed"]
    assert seen["sessions"] == ["connector.app"]  # one, made by the connector
    assert seen["closed"]
    assert seen["cli_loaded"] == []


def _count_sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every ClientSession made from now on outside the sandbox's own server side."""
    made: list[aiohttp.ClientSession] = []
    original: Callable[..., None] = aiohttp.ClientSession.__init__

    def counting(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        if not sys._getframe(1).f_globals.get("__name__", "").startswith("connector.sandbox"):
            made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", counting)
    return made


async def test_clients_runtime_and_actions_share_one_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_sessions(monkeypatch)
    runs: list[RunRecord] = []
    finished = asyncio.Event()
    async with open_connector(_automations(tmp_path), sandbox=FAST) as connector:
        connector.runtime.run_listeners.append(lambda run: (runs.append(run), finished.set()))
        await connector.start()
        assert connector.running
        request = GenerationRequest(tags="lofi piano", duration=10)
        generation = await connector.finetuning.create_generation(request)
        connector.runtime.note_submission(generation)
        await asyncio.wait_for(finished.wait(), 60)
        assert connector.tempolor is not None  # the sandbox serves TemPolor too
        shared = {
            id(connector.finetuning.session),
            id(connector.tempolor.session),
            id(connector.runtime.session),
        }
    assert made == [connector.session]
    assert shared == {id(connector.session)}
    assert connector.session.closed
    assert not connector.running
    run = runs[0]
    assert (run.automation_id, run.status) == ("file_it", "succeeded"), run.error
    saved = run.steps[0].output
    assert saved is not None
    assert await asyncio.to_thread(Path(saved["path"]).is_file)  # through the shared session


async def test_a_session_passed_in_is_used_and_left_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aiohttp.ClientSession() as session:
        made = _count_sessions(monkeypatch)
        async with open_connector(
            _automations(tmp_path), sandbox=FAST, session=session
        ) as connector:
            await connector.start()
            account = await connector.finetuning.get_account()
        assert made == []
        assert connector.session is session
        assert connector.finetuning.session is session
        assert not session.closed
    assert account.name == "Demo User"


async def test_without_a_key_never_means_no_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINETUNING_API_KEY", raising=False)
    monkeypatch.delenv("FINETUNING_BASE_URL", raising=False)
    with pytest.raises(MissingApiKeyError, match=r"no API key from --api-key"):
        async with open_connector(_automations(tmp_path), sandbox="never"):
            pass
    with pytest.raises(EndpointError, match=r"a server is named \(http://127\.0\.0\.1:9"):
        async with open_connector(_automations(tmp_path), base_url="http://127.0.0.1:9"):
            pass


async def test_an_unknown_sandbox_choice_is_refused_by_name(tmp_path: Path) -> None:
    """A typo ("sometimes") must not silently mean the default."""
    from connector.app import open_connector

    with pytest.raises(ValueError, match="sandbox='sometimes': one of 'when-no-key', 'never'"):
        async with open_connector(tmp_path / "missing.yaml", sandbox="sometimes"):  # type: ignore[arg-type]
            pass


async def test_the_journal_is_opened_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's loop (Home Assistant's) must not wait on the disk while the journal's
    folder, file and migrations are made: found by the integration's review."""
    import threading

    from connector.journal.store import Store

    opened_on: list[bool] = []
    original = Store.open

    def spy(*args: Any, **kwargs: Any) -> Store:
        opened_on.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(Store, "open", spy)
    async with aiohttp.ClientSession() as session:
        from connector.sandbox import run_sandbox

        async with run_sandbox(FAST) as handle:
            config = _automations(tmp_path)
            async with open_connector(
                config, api_key=handle.api_key, base_url=handle.url, sandbox="never",
                session=session,
            ) as connector:  # fmt: skip
                assert connector.store is not None
    assert opened_on == [False]
