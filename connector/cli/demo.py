"""`ftconnect demo`: the main job end to end, on the embedded sandbox.

Builds the connector on an embedded sandbox (`connector.app.open_connector`) with
the automations of `examples/demo.yaml` (no account, no network, no credits),
whatever key the environment holds, submits a few
generations (one set to fail), prints each trigger as it fires and each
action's result as it happens, and exits once every generation has been
handled.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from connector.app import open_connector
from connector.automation.loader import load_config
from connector.automation.problems import ConfigError
from connector.cli.watch import watch
from connector.dispatch.records import RunRecord
from connector.errors import ProviderError
from connector.events import Event
from connector.providers.finetuning.models import GenerationRequest
from connector.sandbox import SandboxConfig

# examples/ is installed as the package `connector.examples`: found in a wheel too.
DEMO_FILE = Path(str(resources.files("connector.examples") / "demo.yaml"))
DEMO_REQUESTS = (
    {"tags": "lofi chill piano, vinyl crackle, rainy night", "duration": 30, "bpm": 80},
    {"tags": "epic orchestral trailer, big drums", "duration": 15, "bpm": 140, "key": "D"},
    # The sandbox fails every generation whose tags carry its fail marker.
    {"tags": "glitchy ambient #fail", "duration": 20},
)
TIMEOUT = 60.0


def _say(message: str) -> None:
    print(message, flush=True)


async def run_demo(*, seed: int = 1, config_file: Path = DEMO_FILE) -> int:
    """Run the demo; returns the process exit code."""
    started = time.monotonic()
    try:
        config = load_config(config_file)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    config = replace(config, poll=replace(config.poll, active_interval=0.3, idle_interval=2.0))
    sandbox_config = SandboxConfig(seed=seed, pending_delay=0.2, processing_delay=1.0)
    async with open_connector(config, sandbox=sandbox_config) as connector:
        assert connector.sandbox is not None  # a SandboxConfig: always on the sandbox
        _say(
            f"sandbox: Finetuning.ai stand-in on {connector.sandbox.url} "
            "(no account, no credits spent)"
        )
        client, runtime = connector.finetuning, connector.runtime
        fired: list[Event] = []
        finished: list[RunRecord] = []
        watch(runtime, sys.stdout)
        everything_fired = asyncio.Event()
        expected = len(DEMO_REQUESTS) + 1  # lofi_reprise generates one more track

        def on_event(event: Event) -> None:
            fired.append(event)
            if len(fired) >= expected:
                everything_fired.set()

        runtime.event_listeners.append(on_event)
        runtime.run_listeners.append(finished.append)
        try:
            account = await client.get_account()
            _say(f"account: {account.name}, {account.limits.total_remaining} credits")
            await connector.start()
            _say(f"runtime: {len(config.automations)} automations from {config_file.name}")
            for fields in DEMO_REQUESTS:
                generation = await client.create_generation(GenerationRequest(**fields))
                runtime.note_submission(generation)
                _say(f"submitted {generation.id}: {generation.prompt!r}")
            async with asyncio.timeout(TIMEOUT):
                await everything_fired.wait()
            await runtime.idle()
        except (ProviderError, TimeoutError) as err:
            print(f"demo: failed: {err or 'timed out'}", file=sys.stderr)
            return 1
        finally:
            await connector.stop()
        after = await client.get_account()
    spent = account.limits.total_remaining - after.limits.total_remaining
    failed_runs = [r for r in finished if r.status == "failed"]
    _say(
        f"done in {time.monotonic() - started:.1f} s: {len(fired)} triggers fired, "
        f"{len(finished)} runs ({len(failed_runs)} failed), {spent} credits spent"
    )
    return 1 if failed_runs else 0
