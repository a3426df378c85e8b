"""A corrupt journal: `ftconnect run`, `events`, `runs` say so in one clear line, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _ftconnect(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "FINETUNING_API_KEY": ""},
    )


@pytest.fixture
def corrupt_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "state.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 32)
    (tmp_path / "a.yaml").write_text(
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
    return state


@pytest.mark.parametrize(
    "args",
    [("events", "a.yaml"), ("runs", "a.yaml"), ("run", "a.yaml"), ("replay", "abc", "a.yaml")],
)
def test_a_corrupt_journal_is_one_clear_line_not_a_traceback(
    corrupt_state: Path, args: tuple[str, ...]
) -> None:
    result = _ftconnect(*args, cwd=corrupt_state.parent)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "corrupt" in errors[0]
    assert str(corrupt_state / "state.db") in errors[0]
