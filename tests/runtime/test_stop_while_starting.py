"""SIGTERM while `ftconnect run` is still starting stops it promptly (and frees the lock)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from connector.journal.lock import holder

pytestmark = pytest.mark.e2e


def _unreachable_api_file(folder: Path, state: Path) -> Path:
    """An automations file whose API nothing answers (port 9, the discard port)."""
    config = folder / "a.yaml"
    config.write_text(
        f"""
finetuning:
  api_key: ft_live_0123456789abcdef0123456789abcdef
  base_url: http://127.0.0.1:9
state_dir: {state}
automations:
  - id: a
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: add_to_playlist
        playlist: X
        tracks: "{{{{ trigger.generation.id }}}}"
""",
        encoding="utf-8",
    )
    return config


async def test_sigterm_during_a_start_that_cannot_reach_the_api_stops_at_once(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = _unreachable_api_file(tmp_path, state)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector.cli",
        "run",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # Let it get as far as retrying its first poll against nothing.
        async with asyncio.timeout(20):
            while True:
                if holder(state) is not None:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        # Before, the signal waited for the client's retries against nothing (17 s and
        # more) and a rate-limited start never ended: a generous bound, not a benchmark.
        code = await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    output = (await process.stdout.read()).decode()
    assert code == 0, output
    assert "Stopping while starting" in output
    assert holder(state) is None


async def test_the_daemon_says_what_it_waits_for(tmp_path: Path) -> None:
    """A wait over 2 s (here, retrying an API that does not answer) is an INFO line."""
    state = tmp_path / "state"
    config = _unreachable_api_file(tmp_path, state)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector.cli",
        "run",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    said = ""
    try:
        async with asyncio.timeout(30):
            while "waiting" not in said:
                line = await process.stderr.readline()
                if not line:
                    break
                said = line.decode()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    assert "waiting" in said
    assert "to retry GET /v1/generations" in said
    assert "http://127.0.0.1:9" in said
