"""An Idempotency-Key holds across a SIGKILL of the daemon: one call, one run, one credit.

The scenario a no-code tool lives: it calls `generate` and waits, its request
times out, and meanwhile the daemon is killed (an OOM, a power cut of the
container). The tool retries with the same key once the daemon is back. The
retry must find the first call's run (`Idempotent-Replayed: true`), let it
finish, and the sandbox's ground truth must show one generation, one credit.
The daemon is the real `python -m connector.cli run FILE`, on a sandbox that
runs in this test's process (so the ground truth outlives the daemon).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
import yaml

from connector.sandbox import AccountConfig, SandboxConfig, SandboxHandle, run_sandbox

ACCOUNT = "Demo User"
TOKEN = "sigkill-test-token-0123456789abcdef"
TAGS = "idempotent lofi after a kill"
BODY = {"tags": TAGS, "duration": 5, "wait": True, "wait_timeout": 120}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(predicate: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


class Daemon:
    """One `ftconnect run` process; its output in a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self._handle: IO[bytes] | None = None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    async def start(self) -> None:
        self._handle = self.log.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector.cli",
            "run",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._handle,
            stderr=asyncio.subprocess.STDOUT,
        )
        process = self.process
        started = await eventually(
            lambda: "Running 0 automation" in self.output() or process.returncode is not None,
            timeout=30,
        )
        assert started, self.output()[-3000:]
        assert process.returncode is None, self.output()[-3000:]

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    # Slow enough that the call is still waiting when the daemon is killed.
    config = SandboxConfig(
        pending_delay=0.2,
        processing_delay=3.0,
        accounts=[AccountConfig(name=ACCOUNT, email="demo@sandbox.local")],
    )
    async with run_sandbox(config) as handle:
        yield handle


def ours(sandbox: SandboxHandle) -> list[Any]:
    return [g for g in sandbox.sandbox.generations(ACCOUNT) if not g.seeded]


async def call(
    session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any], timeout: float
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key}
    async with session.post(
        f"{url}/api/v1/actions/generate?wait={timeout:g}",
        json=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout + 30),
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def test_a_retried_call_after_a_sigkill_spends_one_credit(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "automations.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "finetuning": {"api_key": sandbox.api_key, "base_url": sandbox.url},
                "poll": {"idle_interval": 0.5, "active_interval": 0.2},
                "state_dir": str(tmp_path / "state"),
                "api": {
                    "listen": f"127.0.0.1:{port}",
                    "tokens": [{"name": "n8n", "token": TOKEN, "scopes": ["read", "act"]}],
                },
                "automations": [],
            }
        ),
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}"
    first = Daemon(config, tmp_path / "first.log")
    second = Daemon(config, tmp_path / "second.log")
    spent_before = sandbox.sandbox.credits_spent(ACCOUNT)
    try:
        await first.start()
        async with aiohttp.ClientSession() as session:
            # The tool's call: it gives up after 1 s, while the track is still being made.
            attempt = asyncio.create_task(call(session, url, "tool-retry-1", BODY, 30))
            assert await eventually(lambda: len(ours(sandbox)) == 1, timeout=20), first.output()
            await first.kill()
            with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
                await attempt

            await second.start()
            status, headers, body = await call(session, url, "tool-retry-1", BODY, 60)
            assert status == 200, body
            assert headers.get("Idempotent-Replayed") == "true"
            run = body["run"]
            assert run["status"] == "succeeded", run
            assert run["automation"] == "api.generate"
            [step] = run["steps"]
            assert step["output"]["generation"]["status"] == "completed"
            assert step["attempt"] == 2  # resumed after the kill, reconciled, not resubmitted

            # Once more: the same run again, nothing new.
            status, headers, again = await call(session, url, "tool-retry-1", BODY, 5)
            assert (status, again["run"]["id"]) == (200, run["id"])
            assert headers.get("Idempotent-Replayed") == "true"
            # The same key with another body is refused, across the restart too.
            status, _, refused = await call(
                session, url, "tool-retry-1", {**BODY, "duration": 6}, 5
            )
            assert status == 422
            assert refused["error"]["code"] == "idempotency_key_reused"
    finally:
        for daemon in (first, second):
            if daemon.process is not None and daemon.process.returncode is None:
                daemon.process.kill()
                await daemon.process.wait()
            daemon.close()
    made = ours(sandbox)
    assert [g.prompt for g in made] == [TAGS], json.dumps([g.prompt for g in made])
    assert sandbox.sandbox.credits_spent(ACCOUNT) - spent_before == 1
    log = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert TOKEN not in log
