"""`ftconnect demo`: the main job end to end, on the embedded sandbox.

Starts the sandbox and the runtime in-process with the automations of
`examples/demo.yaml` (no account, no network, no credits), submits a few
generations (one set to fail), prints each trigger as it fires and each
action's result as it happens, and exits once every generation has been
handled.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from connector.app import watch
from connector.automation.config import ConfigError, load_config
from connector.dispatch.runtime import RunRecord, Runtime
from connector.errors import FinetuningError
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import GenerationRequest
from connector.sandbox import SandboxConfig, run_sandbox

DEMO_FILE = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
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
    async with run_sandbox(sandbox_config) as sandbox:
        _say(f"sandbox: Finetuning.ai stand-in on {sandbox.url} (no account, no credits spent)")
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            state_dir = tempfile.TemporaryDirectory(prefix="ftconnect-demo-")
            store = Store.open(state_dir.name)
            runtime = Runtime(config, client, store=store)
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
                await runtime.start()
                _say(f"runtime: {len(config.automations)} automations from {config_file.name}")
                for fields in DEMO_REQUESTS:
                    generation = await client.create_generation(GenerationRequest(**fields))
                    runtime.note_submission(generation)
                    _say(f"submitted {generation.id}: {generation.prompt!r}")
                async with asyncio.timeout(TIMEOUT):
                    await everything_fired.wait()
                await runtime.idle()
            except (FinetuningError, TimeoutError) as err:
                print(f"demo: failed: {err or 'timed out'}", file=sys.stderr)
                return 1
            finally:
                await runtime.stop()
                store.close()
                state_dir.cleanup()
            after = await client.get_account()
    spent = account.limits.total_remaining - after.limits.total_remaining
    failed_runs = [r for r in finished if r.status == "failed"]
    _say(
        f"done in {time.monotonic() - started:.1f} s: {len(fired)} triggers fired, "
        f"{len(finished)} runs ({len(failed_runs)} failed), {spent} credits spent"
    )
    return 1 if failed_runs else 0
