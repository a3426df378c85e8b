"""The front door: `ftconnect demo` and `ftconnect run` as real processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_example_automations_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("sandbox: Finetuning.ai stand-in on http://127.0.0.1:")
    assert "trigger generation_failed:" in out
    assert out.count("trigger track_completed:") == 3  # two submitted, one reprise
    assert "clean_up_failures/step_1 bulk_delete: ok" in out
    assert "lofi_reprise/reprise generate: ok" in out
    assert "0 failed), 4 credits spent" in out


async def test_run_without_a_key_uses_the_embedded_sandbox_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector.cli",
        "run",
        str(ROOT / "examples" / "demo.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    assert first.startswith("No Finetuning.ai API key configured: running against the embedded")
    lines = [first]
    for _ in range(10):
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        lines.append(line)
        if line.startswith("Running 3 automation(s)"):
            break
    assert any(line.startswith("Running 3 automation(s)") for line in lines)
    process.send_signal(signal.SIGTERM)
    out, _err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"Stopping: finishing runs in flight" in out


def test_check_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "automations.yaml"
    broken.write_text(
        """automations:
  - id: one
    triggers: [{trigger: track_completed}]
    actions:
      - action: generate
        tags: lofi
        durration: 90
  - id: one
    triggers: [{trigger: track_complete}]
    actions:
      - action: bulk_delete
        tracks: "{{ trigger.generation.id }}"
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    err = result.stderr
    assert (
        "automations.yaml, line 7: automations[0].actions[0].durration is not a valid option "
        "for 'generate' (did you mean 'duration'?)"
    ) in err
    assert "line 8" in err  # the duplicate id
    assert "track_complete" in err
    assert "confirm: true" in err
