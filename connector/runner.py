"""`ftconnect run`, `check` and `schema`: the automations file, from the command line.

`run` starts the runtime for a file and keeps it running until SIGINT or
SIGTERM, then stops gracefully (no new work; runs in flight finish). With no
API key configured it starts the embedded sandbox in-process and says so on
its first line, so the examples work offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .client import DEFAULT_BASE_URL, FinetuningClient
from .config import ConfigError, ConnectorConfig, load_config
from .events import Event
from .exceptions import FinetuningError, PlaylistNotFoundError
from .ratelimit import RateBudget
from .redaction import dumps, scrub_text
from .registry import Registry, default_registry
from .runtime import RunRecord, Runtime, StepRecord
from .statelock import StateDirLocked, holder
from .store import Store, StoreError
from .templates import Template

if TYPE_CHECKING:
    from .tempolor import TempolorClient

EXIT_OK, EXIT_ERROR, EXIT_INVALID = 0, 1, 2


def describe_event(event: Event) -> str:
    """One human line for an event."""
    generation = event.generation
    if generation is None:
        return f"trigger {event.kind}: {dumps(event.data)}"
    if event.kind == "generation_failed":
        return f"trigger {event.kind}: {generation.id} ({generation.error_message})"
    length = f", {generation.duration:.1f} s" if generation.duration is not None else ""
    return (
        f"trigger {event.kind}: {generation.id} {generation.title or generation.prompt!r}{length}"
    )


def describe_step(run: RunRecord, step: StepRecord) -> str:
    """One human line for a finished action step."""
    where = f"  {run.automation_id}/{step.step_id} {step.action}"
    if step.status == "succeeded":
        return f"{where}: ok {_summarise(dict(step.output or {}))}"
    return f"{where}: FAILED {step.error}"


def describe_run(run: RunRecord) -> str:
    """One human line for the outcome of a run (its steps are printed as they finish)."""
    if run.status == "succeeded":
        return f"  {run.automation_id}: done ({len(run.steps)} step(s))"
    if run.status == "skipped":
        return f"  {run.automation_id}: skipped ({run.error})"
    return f"  {run.automation_id}: {run.status}" + (f" ({run.error})" if run.error else "")


def watch(runtime: Runtime, out: TextIO) -> None:
    """Print each trigger as it fires, each step as it finishes, each run's outcome."""

    # Scrubbed as the journal is: a provider's error text or a title may quote a secret.
    def say(line: str) -> None:
        print(scrub_text(line), file=out, flush=True)

    runtime.event_listeners.append(lambda e: say(describe_event(e)))
    runtime.step_listeners.append(lambda r, s: say(describe_step(r, s)))
    runtime.run_listeners.append(lambda r: say(describe_run(r)))


def _summarise(output: dict[str, object]) -> str:
    keep = {k: v for k, v in output.items() if k not in ("generation",) and v not in ([], None)}
    text = dumps(keep)
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class Connections:
    """What a runtime needs: the clients and the journal."""

    finetuning: FinetuningClient
    store: Store
    tempolor: TempolorClient | None = None


@contextlib.asynccontextmanager
async def _tempolor(
    token: str | None, base_url: str | None
) -> AsyncIterator[TempolorClient | None]:
    if not token:
        yield None
        return
    from .tempolor import TempolorClient

    if base_url:
        async with TempolorClient(token, base_url=base_url) as client:
            yield client
    else:
        async with TempolorClient(token) as client:
            yield client


def finetuning_client(config: ConnectorConfig, api_key: str, base_url: str) -> FinetuningClient:
    """The client with the budgets and backoff the file sets (defaults: the documented)."""
    settings = config.finetuning
    return FinetuningClient(
        api_key,
        base_url=base_url,
        backoff_base=settings.retry_backoff,
        read_budget=RateBudget(settings.reads_per_window, settings.rate_window, name="reads"),
        generation_budget=RateBudget(
            settings.generations_per_window, settings.rate_window, name="generations"
        ),
    )


@contextlib.asynccontextmanager
async def open_client(config: ConnectorConfig, out: TextIO) -> AsyncIterator[Connections]:
    """The configured client and journal, or the embedded sandbox's when no key is set.

    The embedded sandbox starts empty every time, so its journal is a fresh
    temporary one too: a journal kept from an earlier sandbox would describe
    generations that no longer exist.
    """
    api_key = config.finetuning.api_key
    if api_key:
        base_url = config.finetuning.base_url or DEFAULT_BASE_URL
        token = config.tempolor.api_key if config.tempolor else None
        tempolor_url = config.tempolor.base_url if config.tempolor else None
        with Store.open(config.state_dir) as store:
            async with (
                finetuning_client(config, api_key, base_url) as client,
                _tempolor(token, tempolor_url) as tempolor_client,
            ):
                yield Connections(client, store, tempolor_client)
        return
    from .sandbox import SandboxConfig, run_sandbox

    async with run_sandbox(SandboxConfig(pending_delay=0.5, processing_delay=2.0)) as sandbox:
        print(
            f"No Finetuning.ai API key configured: running against the embedded sandbox at "
            f"{sandbox.url} (no account, no credits; a temporary journal).",
            file=out,
            flush=True,
        )
        with (
            tempfile.TemporaryDirectory(prefix="ftconnect-") as state_dir,
            Store.open(state_dir) as store,
        ):
            async with (
                FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client,
                _tempolor(sandbox.tempolor_token, sandbox.tempolor_url) as tempolor_client,
            ):
                yield Connections(client, store, tempolor_client)


async def run_file(path: Path, *, backfill: bool = False, out: TextIO = sys.stdout) -> int:
    """`ftconnect run FILE`."""
    try:
        config = load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    if backfill:
        from dataclasses import replace

        config = replace(config, poll=replace(config.poll, backfill=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    from .listener import install_quiet_accept_errors, raise_file_limit

    # A listener facing the internet: room for many sockets, and if they run out
    # anyway, one log line a minute about it instead of a traceback per accept().
    raise_file_limit()
    quiet = install_quiet_accept_errors(loop)
    try:
        return await _run(config, stop, out)
    finally:
        quiet()


async def _run(config: ConnectorConfig, stop: asyncio.Event, out: TextIO) -> int:
    async with open_client(config, out) as connections:
        runtime = Runtime(
            config,
            connections.finetuning,
            store=connections.store,
            tempolor=connections.tempolor,
        )
        watch(runtime, out)
        if (
            config.webhook is not None
            and config.webhook.public_url is None
            and config.finetuning.api_key
            # A server on this machine (a sandbox) is told the local hook URL.
            and not runtime.api_is_local
        ):
            print(
                "webhook.public_url is not set: the listener runs, but providers are not told "
                "about it (the service only calls public https URLs); relying on polling.",
                file=out,
                flush=True,
            )
        if config.webhook is None:
            print(
                "No webhook section: relying on polling alone "
                f"(every {config.poll.active_interval:g} s while our generations run, "
                f"{config.poll.idle_interval:g} s otherwise).",
                file=out,
                flush=True,
            )
        # A signal while starting (the first poll waiting on an unreachable API or a
        # rate limit) stops the start too, instead of being noticed only after it.
        starting = asyncio.create_task(runtime.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            print(
                "Stopping while starting (runs in flight resume at the next start).",
                file=out,
                flush=True,
            )
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting  # start() stops what it had started before it re-raises
            return EXIT_OK
        try:
            starting.result()
        except (FinetuningError, StoreError, StateDirLocked) as err:
            print(f"ftconnect: cannot start: {err}", file=sys.stderr)
            return EXIT_ERROR
        enabled = [a.id for a in config.automations if a.enabled]
        print(f"Running {len(enabled)} automation(s): {', '.join(enabled)}", file=out, flush=True)
        await stop.wait()
        print("Stopping: finishing runs in flight...", file=out, flush=True)
        await runtime.stop()
    return EXIT_OK


async def check_file(path: Path, *, offline: bool = False, out: TextIO = sys.stdout) -> int:
    """`ftconnect check FILE`: schemas, templates, duplicate ids and referenced playlists."""
    try:
        config = load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    problems: list[str] = []
    if not offline and config.finetuning.api_key:
        problems = await _check_playlists(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_INVALID
    count = len(config.automations)
    print(f"{path}: {count} automation(s), all valid", file=out)
    return EXIT_OK


async def _check_playlists(config: ConnectorConfig) -> list[str]:
    assert config.finetuning.api_key is not None
    problems: list[str] = []
    base_url = config.finetuning.base_url or DEFAULT_BASE_URL
    async with FinetuningClient(config.finetuning.api_key, base_url=base_url) as client:
        for automation in config.automations:
            for step in automation.actions:
                for option in ("playlist", "from", "to"):
                    reference = step.options.get(option)
                    if not isinstance(reference, str) or isinstance(reference, Template):
                        continue
                    try:
                        await client.resolve_playlist(reference)
                    except PlaylistNotFoundError as err:
                        problems.append(f"{_where(config, step.line)}: {step.path}.{option}: {err}")
                    except FinetuningError as err:
                        problems.append(f"{_where(config, step.line)}: {step.path}.{option}: {err}")
    return problems


def _where(config: ConnectorConfig, line: int | None) -> str:
    name = config.source.name if config.source else "automations.yaml"
    return f"{name}, line {line}" if line else name


def schema_document(registry: Registry | None = None) -> str:
    """`ftconnect schema`: every trigger and action as one JSON Schema document."""
    from .jsonschema import registry_document

    return json.dumps(registry_document(registry or default_registry()), indent=2)


def state_dir_for(file: str | None, state_dir: str | None) -> Path:
    """The journal's folder: --state-dir, else the file's `state_dir`, else ./.ftconnect."""
    if state_dir:
        return Path(state_dir)
    if file:
        return load_config(Path(file)).state_dir
    return Path(".ftconnect")


def _no_journal(state: Path) -> bool:
    """Say so when there is no journal to read (rather than creating an empty one)."""
    if (state / "state.db").exists():
        return False
    print(f"ftconnect: error: no journal in {state} (has `ftconnect run` run?)", file=sys.stderr)
    return True


def show_events(state: Path, *, limit: int, kind: str | None, as_json: bool) -> int:
    """`ftconnect events`: what fired, newest first."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        rows = store.events(limit=limit, kind=kind)
    if as_json:
        print(dumps([row.to_dict() for row in rows], indent=2))
        return EXIT_OK
    for row in rows:
        generation = row.generation or {}
        what = generation.get("title") or generation.get("prompt") or dumps(row.data)
        print(f"{row.received_at:%Y-%m-%d %H:%M:%S}  {row.kind:<18} {row.key}  {what}")
    return EXIT_OK


def show_runs(
    state: Path, *, limit: int, status: str | None, automation: str | None, as_json: bool
) -> int:
    """`ftconnect runs`: what ran, what failed and why."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        rows = store.runs(limit=limit, status=status, automation_id=automation)
    if as_json:
        print(dumps([row.to_dict() for row in rows], indent=2))
        return EXIT_OK
    daemon = holder(state)
    for row in rows:
        started = f"{row.started_at:%Y-%m-%d %H:%M:%S}"
        status = row.status
        if status == "running" and daemon is None:
            # Nothing runs it now: say when it will, rather than "running".
            status = "queued (runs at the next start of `ftconnect run`)"
        print(f"{started}  {row.run_id}  {row.automation_id:<24} {status}")
        for step in row.steps:
            detail = step.error or ""
            print(f"    {step.step_index}: {step.step_id} ({step.action}) {step.status} {detail}")
        if row.error and row.status != "failed":
            print(f"    {row.error}")
    return EXIT_OK


def replay(state: Path, run_id: str) -> int:
    """`ftconnect replay RUN_ID`: run a finished or failed run again, on purpose."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        try:
            new_id = store.reset_run_for_replay(run_id)
        except (ValueError, KeyError) as err:
            print(f"ftconnect: error: {err}", file=sys.stderr)
            return EXIT_ERROR
    pid = holder(state)
    if pid is not None:
        daemon = f"process {pid}" if pid else "the running daemon"
        print(f"run {run_id} runs again as {new_id} now, in `ftconnect run` ({daemon})")
    else:
        print(f"run {run_id} will run again as {new_id} at the next start of `ftconnect run`")
    return EXIT_OK
