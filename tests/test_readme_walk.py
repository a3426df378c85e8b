"""The README's commands, run in order as written, against the sandbox: every one works.

Each `ftconnect` line of the README's shell blocks runs as a real process
(`python -m connector.cli`, the console script's own entry point) through
bash, so `~`, quotes and the `| jq` pipe behave as in a terminal, in a fresh
folder with its own HOME. Placeholders are filled with what earlier steps
made: `ft_live_...` and `<key>` with the sandbox's key, `<id>` with the track
`generate` made, `RUN_ID` with a run the daemon journaled. The first YAML
block is the `automations.yaml` the commands name.

What the walk adds, and why:
- `FINETUNING_BASE_URL` points at a sandbox in this test (the README's own
  way to aim commands at one), so nothing leaves the machine.
- The daemon's file gets `poll: {idle_interval: 1}`, so a track completed
  while it runs fires within a second instead of the default minute; and the
  test completes a 90 s lofi track in the sandbox then, so `RUN_ID` exists.
- The two set-up commands' install steps are what `.ci/run` itself does; of
  them, `ftconnect demo` runs here, and the suite is this suite.
- Without `jq` on the machine, the pipe's filter (`.generations[].id`) is
  applied in Python to the command's output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parent.parent / "README.md"
FTCONNECT = f"{sys.executable} -m connector.cli"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _text(), re.DOTALL)


def _commands() -> list[str]:
    """Every line of a shell block that runs ftconnect, comments stripped, in order."""
    found = []
    for block in _blocks("sh"):
        for raw in block.splitlines():
            line = raw.strip()
            if "ftconnect" not in line or line.startswith("#"):
                continue
            found.append(re.sub(r"\s+#.*$", "", line))
    return found


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    config = SandboxConfig(pending_delay=0.05, processing_delay=0.3)
    async with run_sandbox(config) as handle:
        yield handle


class Walk:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.values: dict[str, str] = {}
        self.ran: list[str] = []

    def fill(self, command: str) -> str:
        text = command.replace("<id>...", "<id>")  # "any number of ids": one here
        for placeholder, value in self.values.items():
            text = text.replace(placeholder, value)
        assert not re.search(r"<[a-z]+>|RUN_ID|ft_live_\.\.\.", text), f"unfilled: {text}"
        return text

    def shell(self, command: str) -> str:
        """The README line as bash would run it, `ftconnect` being this checkout's."""
        line = command.replace(".venv/bin/ftconnect", "ftconnect")
        return re.sub(r"(?<![\w/.-])ftconnect\b", FTCONNECT, line)

    async def run(self, command: str, *, expect: int = 0) -> str:
        filled = self.fill(command)
        script = self.shell(filled)
        if "| jq" in script and shutil.which("jq") is None:
            script, _, jq = script.partition("| jq")
            assert jq.strip() == "-r '.generations[].id'", jq
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=self.home,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        output = out.decode()
        problems = err.decode()
        assert process.returncode == expect, f"{filled}\nexit {process.returncode}\n{problems}"
        assert "Traceback" not in problems, f"{filled}\n{problems}"
        if "| jq" in command and shutil.which("jq") is None:
            output = "".join(f"{g['id']}\n" for g in json.loads(output)["generations"])
        self.ran.append(command)
        return output


async def test_the_readme_commands_work_as_written_in_order(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    commands = _commands()
    home = tmp_path / "home"
    (home / "Music").mkdir(parents=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FINETUNING_", "PYTEST_"))
    }
    env.update(
        HOME=str(home),
        PYTHONPATH=str(README.parent),
        FINETUNING_BASE_URL=sandbox.url,
        NO_COLOR="1",
    )
    walk = Walk(home, env)
    walk.values.update({"ft_live_...": sandbox.api_key, "<key>": sandbox.api_key})

    # Two commands: the main job (the install steps are .ci/run's own).
    (main_job,) = [c for c in commands if c.endswith("ftconnect demo")]
    await walk.run("ftconnect demo")
    walk.ran[-1] = main_job

    # Automations: the README's file, then its commands.
    automations = _blocks("yaml")[0]
    (home / "automations.yaml").write_text(
        automations + "poll: {idle_interval: 1}\nstate_dir: ./.ftconnect\n", encoding="utf-8"
    )
    env["FINETUNING_API_KEY"] = sandbox.api_key  # the file reads it with !env
    section = [c for c in commands if "automations.yaml" in c and "doctor" not in c]
    for command in section:
        if " run " in f" {command} ":
            await _run_daemon(walk, command, sandbox)
            continue
        if "RUN_ID" in command:
            runs = json.loads(await walk.run("ftconnect runs automations.yaml --json"))
            walk.ran.pop()
            walk.values["RUN_ID"] = next(r["run_id"] for r in runs if r["status"] == "succeeded")
        output = await walk.run(command)
        if command.startswith("ftconnect events"):
            assert "Lofi Walk" in output  # the track completed while the daemon ran

    # The CLI, in order.
    for command in [c for c in commands if c not in walk.ran and c not in section]:
        if command.startswith("export "):
            name, _, value = walk.fill(command).removeprefix("export ").partition("=")
            env[name] = value
            walk.ran.append(command)
        elif command.startswith("ftconnect sandbox"):
            await _sandbox_server(walk, command)
        elif command.startswith("ftconnect generate"):
            await walk.run(command)
            generated = [g for g in sandbox.sandbox.generations("Demo User") if g.prompt]
            newest = max(generated, key=lambda g: g.created_at)
            assert newest.prompt == "lofi chill piano"
            walk.values["<id>"] = newest.id
            assert list((home / "Music").rglob("*.mp3"))
        else:
            output = await walk.run(command)
            if "| jq" in command:
                assert walk.values["<id>"] in output.split()
    playlists = {p.name: p for p in sandbox.sandbox.playlists("Demo User")}
    assert walk.values["<id>"] not in playlists["Inbox"].track_ids  # moved...
    assert sandbox.sandbox.generation(walk.values["<id>"]).deleted  # ...then deleted

    assert [c for c in commands if c not in walk.ran] == [], "README commands not walked"


async def _start(walk: Walk, command: str) -> asyncio.subprocess.Process:
    """A README command that runs until stopped, its output read as it comes."""
    return await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"exec {walk.shell(walk.fill(command))}",
        cwd=walk.home,
        env=walk.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _run_daemon(walk: Walk, command: str, sandbox: SandboxHandle) -> None:
    """`ftconnect run automations.yaml`: until SIGINT, as the README says."""
    process = await _start(walk, command)
    assert process.stdout is not None
    seen = ""
    try:
        async with asyncio.timeout(60):
            while "Running 1 automation" not in seen:
                line = (await process.stdout.readline()).decode()
                assert line, f"the daemon ended:\n{seen}"
                seen += line
            track = sandbox.sandbox.add_track(
                "Demo User", prompt="lofi walk", status="processing", duration=90
            )
            sandbox.sandbox.complete_now(track.id)
            while "file_new_lofi: done" not in seen:
                line = (await process.stdout.readline()).decode()
                assert line, f"the daemon ended:\n{seen}"
                seen += line
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0, seen
    assert "Traceback" not in seen
    assert list((walk.home / "Music").rglob("*.mp3"))
    walk.ran.append(command)


async def _sandbox_server(walk: Walk, command: str) -> None:
    """`ftconnect sandbox --port 8787 ...`, then the README's `me` against it."""
    process = await _start(walk, command)
    assert process.stdout is not None
    banner = ""
    try:
        async with asyncio.timeout(30):
            while "ft_live_" not in banner:
                line = (await process.stdout.readline()).decode()
                assert line, f"the sandbox ended:\n{banner}"
                banner += line
        key = re.search(r"ft_live_[0-9a-f]{32}", banner)
        assert key is not None
        walk.values["<key>"] = key.group(0)
        walk.ran.append(command)
        # The prose's "point any client at it" command, in inline code.
        me = re.findall(r"`(ftconnect --base-url http://127\.0\.0\.1:8787 [^`]*)`", _text())
        assert len(me) == 1
        output = await walk.run(me[0])
        assert "Demo User" in output
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
