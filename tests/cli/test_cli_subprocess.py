"""The real `ftconnect` console script, in its own process: help, a call, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

SCRIPT = Path(sys.executable).with_name("ftconnect")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "connector.cli"]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNING_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _interruptible() -> None:
    # A shell may start children with SIGINT ignored; Ctrl-C must reach this one.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_console_script_help() -> None:
    done = subprocess.run(
        [*COMMAND, "--help"], capture_output=True, text=True, env=_environment(), timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: ftconnect")
    assert "generate" in done.stdout
    assert done.stderr == ""


HEAVY = (
    "aiohttp",
    "asyncio",
    "pydantic",
    "yaml",
    "connector.providers.finetuning.client",
    "connector.app",
    "connector.dispatch.runtime",
)


def test_help_imports_neither_aiohttp_nor_pydantic() -> None:
    probe = (
        "import sys, connector.cli.main as c; c.build_parser().format_help(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=30,
    )
    assert done.stdout.strip() == "[]"


async def test_console_script_me_against_the_sandbox(sandbox: SandboxHandle) -> None:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--base-url",
        sandbox.url,
        "--api-key",
        sandbox.api_key,
        "me",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    assert b'"email": "demo@sandbox.local"' in out


async def test_ctrl_c_while_waiting_leaves_the_generation_running() -> None:
    config = SandboxConfig(pending_delay=0.01, processing_delay=60)
    async with run_sandbox(config) as slow:
        process = await asyncio.create_subprocess_exec(
            *COMMAND,
            "--base-url",
            slow.url,
            "--api-key",
            slow.api_key,
            "generate",
            "slow",
            "ambient",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(),
            preexec_fn=_interruptible,
        )
        assert process.stderr is not None
        submitted = await asyncio.wait_for(process.stderr.readline(), 30)
        assert submitted.startswith(b"submitted ")
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        made = slow.sandbox.generations("Demo User")[-1]
        assert made.in_progress  # still running on the server
    assert process.returncode == 130
    assert out.decode().strip() == made.id
    assert b"keeps running on the server" in err
    assert b"credit is spent" in err
