"""Fixtures of the CLI tests: a fast poll schedule, a clean environment, a CLI runner."""

from __future__ import annotations

import pytest
from ft_cli_support import Cli

from connector.cli import tracks
from connector.sandbox import SandboxHandle


@pytest.fixture(autouse=True)
def _fast_and_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every few ms instead of 3-15 s, and keep the caller's environment out of the runs."""
    monkeypatch.setattr(tracks, "POLL_FIRST_DELAY", 0.02)
    monkeypatch.setattr(tracks, "POLL_MAX_DELAY", 0.05)
    for name in ("FINETUNING_API_KEY", "FINETUNING_BASE_URL", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(sandbox: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`await cli("me", "--json")` runs ftconnect against the sandbox with Demo User's key."""
    return Cli(sandbox, capsys)
