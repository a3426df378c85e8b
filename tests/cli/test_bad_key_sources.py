"""A malformed key from the environment or the command line: one clear line, exit 2,
for `run` and `check` alike, and the key never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FILE = """
automations:
  - id: a
    triggers: [{trigger: track_completed}]
    actions:
      - action: add_to_playlist
        playlist: X
        tracks: "{{ trigger.generation.id }}"
"""
BAD = "sk-123456789-not-a-key"


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("source", ["env", "flag"])
def test_a_malformed_key_from_outside_the_file_is_one_line_exit_2(
    tmp_path: Path, command: str, source: str
) -> None:
    (tmp_path / "a.yaml").write_text(FILE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNING_")}
    args = [sys.executable, "-m", "connector.cli"]
    if source == "env":
        env["FINETUNING_API_KEY"] = BAD
    else:
        args += ["--api-key", BAD]
    result = subprocess.run(
        [*args, command, "a.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert BAD not in result.stdout + result.stderr
    origin = "$FINETUNING_API_KEY" if source == "env" else "--api-key"
    assert f"a.yaml: {origin}: must be a Finetuning.ai API key" in result.stderr
