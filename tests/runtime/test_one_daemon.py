"""One daemon per state_dir: a second `ftconnect run` is refused at once; readers and
`ftconnect replay` keep working while the daemon runs, and a replay runs now."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.journal.lock import StateDirLock, StateDirLocked, holder
from connector.journal.store import Store
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

CLI = [sys.executable, "-m", "connector.cli"]


# -- the lock itself ------------------------------------------------------------------------


def test_a_second_lock_on_the_same_state_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = StateDirLock(tmp_path)
    first.acquire()
    try:
        assert holder(tmp_path) == os.getpid()
        with pytest.raises(StateDirLocked) as caught:
            StateDirLock(tmp_path).acquire()
        assert caught.value.pid == os.getpid()
        assert str(tmp_path) in str(caught.value)
        assert str(os.getpid()) in str(caught.value)
    finally:
        first.release()
    assert holder(tmp_path) is None
    with StateDirLock(tmp_path) as again:
        assert again.held


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from connector.journal.lock import StateDirLock\n"
        f"StateDirLock({str(tmp_path)!r}).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"locked"
        assert holder(tmp_path) == child.pid
        with pytest.raises(StateDirLocked):
            StateDirLock(tmp_path).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert holder(tmp_path) is None
    with StateDirLock(tmp_path):
        pass


def test_no_state_dir_means_no_holder(tmp_path: Path) -> None:
    assert holder(tmp_path / "missing") is None


# -- real processes -------------------------------------------------------------------------


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.05, processing_delay=0.2)) as handle:
        yield handle


def _write_config(path: Path, sandbox: SandboxHandle) -> None:
    path.write_text(
        f"""
finetuning:
  api_key: {sandbox.api_key}
  base_url: {sandbox.url}
poll: {{idle_interval: 0.2, active_interval: 0.1}}
state_dir: {path.parent / "state"}
automations:
  - id: file_it
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{{{ trigger.generation.id }}}}"
""",
        encoding="utf-8",
    )


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
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


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _until_a_run_succeeded(config: Path) -> None:
    async with asyncio.timeout(20):
        while True:
            if any(r["status"] == "succeeded" for r in await _runs(config)):
                return
            await asyncio.sleep(0.2)


async def _runs(config: Path) -> list[dict[str, object]]:
    code, out, err = await _cli("runs", str(config), "--json", "--limit", "100")
    assert code == 0, err
    runs: list[dict[str, object]] = json.loads(out)
    return runs


@pytest.mark.e2e
async def test_a_second_daemon_on_one_state_dir_exits_at_once_and_replay_runs_now(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = tmp_path / "automations.yaml"
    _write_config(config, sandbox)
    first = await _start(config)
    try:
        await _wait_for_line(first, "Running 1 automation")
        track = sandbox.sandbox.add_track("Demo User", prompt="lock test", status="processing")
        sandbox.sandbox.complete_now(track.id)
        await _until_a_run_succeeded(config)

        # A second daemon: refused at once, naming the state_dir and the holder's pid.
        started = time.monotonic()
        code, out, err = await _cli("run", str(config))
        assert code == 1, out + err
        assert time.monotonic() - started < 15
        assert str(tmp_path / "state") in err
        assert str(first.pid) in err
        assert first.returncode is None  # the first one is untouched

        # Readers work while the daemon runs.
        code, out, err = await _cli("events", str(config))
        assert code == 0, err
        assert track.id in out

        # A replay takes effect in the running daemon, now.
        original = next(r for r in await _runs(config) if r["status"] == "succeeded")
        code, out, err = await _cli("replay", str(original["run_id"]), str(config))
        assert code == 0, err
        assert "now" in out
        assert str(first.pid) in out
        new_id = out.split(" as ", 1)[1].split()[0]
        async with asyncio.timeout(20):
            while True:
                runs = {r["run_id"]: r for r in await _runs(config)}
                if runs.get(new_id, {}).get("status") == "succeeded":
                    break
                await asyncio.sleep(0.2)
        assert runs[str(original["run_id"])]["status"] == "replayed"
    finally:
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
    assert holder(tmp_path / "state") is None


@pytest.mark.e2e
async def test_a_replay_without_a_daemon_is_shown_queued(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = tmp_path / "automations.yaml"
    _write_config(config, sandbox)
    first = await _start(config)
    try:
        await _wait_for_line(first, "Running 1 automation")
        track = sandbox.sandbox.add_track("Demo User", prompt="queued", status="processing")
        sandbox.sandbox.complete_now(track.id)
        await _until_a_run_succeeded(config)
    finally:
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
    with Store.open(tmp_path / "state") as store:
        run_id = store.runs(limit=1)[0].run_id
    code, out, _err = await _cli("replay", run_id, str(config))
    assert code == 0
    assert "next start" in out
    code, out, _err = await _cli("runs", str(config))
    assert code == 0
    assert "running (queued: no daemon runs it" in out


def test_deleting_the_pid_file_does_not_let_a_second_daemon_in(tmp_path: Path) -> None:
    with StateDirLock(tmp_path):
        (tmp_path / "daemon.lock").unlink()
        with pytest.raises(StateDirLocked):
            StateDirLock(tmp_path).acquire()
        assert holder(tmp_path) == 0  # held, though the pid cannot be told any more
