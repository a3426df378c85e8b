"""Helpers of the CLI tests: run `connector.cli.main.main` in-process; capture what it printed."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from connector.cli.main import main
from connector.sandbox import SandboxHandle


@dataclass
class CliResult:
    """What one `ftconnect` run returned and printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON (fails the test when it is not)."""
        return json.loads(self.out)


class Cli:
    """Runs `ftconnect --base-url <sandbox> --api-key <key> ARGS...` in a worker thread.

    `main()` calls `asyncio.run`, and the sandbox serves on the test's own loop,
    so the CLI must run on another thread while the test's loop keeps serving.
    """

    def __init__(self, handle: SandboxHandle, capsys: pytest.CaptureFixture[str]) -> None:
        self.handle = handle
        self.capsys = capsys

    async def __call__(self, *argv: str, key: str | None = None, auth: bool = True) -> CliResult:
        prefix = ["--base-url", self.handle.url]
        if auth:
            prefix += ["--api-key", key or self.handle.api_key]
        return await run_main(self.capsys, *prefix, *argv)


async def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """`main(argv)` in a worker thread, with its stdout and stderr."""
    capsys.readouterr()  # start from a clean capture
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


class Terminal(io.StringIO):
    """A stdin that claims to be a terminal, with the answers a person would type."""

    def isatty(self) -> bool:
        return True
