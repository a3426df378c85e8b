"""`ftconnect run`, `check` and `schema`: the automations file, from the command line.

`run` starts the runtime for a file and keeps it running until SIGINT or
SIGTERM, then stops gracefully (no new work; runs in flight finish). Its first
line says which server and which key it uses and where each came from (one
precedence for every command: `connector.cli.main.resolve_endpoint`). With no API
key anywhere it starts the embedded sandbox in-process and says so, so the
examples work offline.

`events`, `runs` and `replay` only read the journal: they need the file for its
`state_dir` alone, and read it even when its secrets cannot be resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from connector.automation.config import (
    DEFAULT_STATE_DIR,
    SECRETS_FILE,
    ConfigError,
    ConfigProblem,
    ConnectorConfig,
    api_key_problem,
    load_config,
)
from connector.automation.registry import ActionSpec, Registry, default_registry
from connector.automation.validators import PLAYLIST
from connector.cli.main import KEY_VARIABLE, Endpoint, resolve_endpoint
from connector.dispatch.runtime import ListenerStartError, RunRecord, Runtime, StepRecord
from connector.errors import FinetuningError
from connector.events import Event
from connector.journal.lock import StateDirLocked, holder
from connector.journal.store import Store, StoreError
from connector.providers.finetuning.client import DEFAULT_BASE_URL, FinetuningClient
from connector.providers.ratelimit import RateBudget
from connector.redaction import dumps, register_secret, scrub_text

if TYPE_CHECKING:
    from connector.providers.tempolor.client import TempolorClient

EXIT_OK, EXIT_ERROR, EXIT_INVALID = 0, 1, 2

SEEDED = "seed"  # the journal's `source` of an event recorded at first start without firing


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
    from connector.providers.tempolor.client import TempolorClient

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


# -- the file, its key and its server -----------------------------------------------------


# What an unset `!env` variable of a value the command line replaces reads as, so the
# rest of the file can load: a well-formed stand-in per field (never used: replaced).
_STAND_INS = {
    "finetuning.api_key": "ft_live_" + "0" * 32,
    "finetuning.base_url": "http://unset.invalid",
}
_UNSET_VARIABLE = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")


def load_file(
    path: Path, *, api_key: str | None = None, base_url: str | None = None
) -> tuple[ConnectorConfig, Endpoint]:
    """Load and validate FILE and decide its server and key (flag, then file, then env).

    The config returned holds the key and base URL in effect, whatever their source.
    A `finetuning.api_key: !env NAME` (or `base_url`) whose variable is unset is no
    problem when the command line gives that value: it would be replaced anyway.
    Raises ConfigError listing every problem.
    """
    try:
        config = load_config(path)
    except ConfigError as err:
        replaced = {
            name
            for name, flag in (("finetuning.api_key", api_key), ("finetuning.base_url", base_url))
            if flag and flag.strip()
        }
        stand_ins: dict[str, str] = {}
        remaining: list[ConfigProblem] = []
        for problem in err.problems:
            unset = _UNSET_VARIABLE.match(problem.message)
            if problem.path in replaced and unset:
                stand_ins[unset.group(1)] = _STAND_INS[problem.path]
            else:
                remaining.append(problem)
        if remaining:
            if stand_ins:
                raise ConfigError(remaining) from None
            raise
        config = load_config(path, environ={**os.environ, **stand_ins})
    endpoint = resolve_endpoint(
        flag_key=api_key,
        flag_url=base_url,
        file_key=config.finetuning.api_key,
        file_url=config.finetuning.base_url,
        file_name=_file_name(config, path),
    )
    if endpoint.api_key and endpoint.key_source != "file":
        # The file's own key was checked as it loaded; one from the command line or the
        # environment is checked here, so a malformed one is a clear line, not a traceback.
        key_problem = api_key_problem(endpoint.api_key)
        if key_problem is not None:
            raise ConfigError(
                [ConfigProblem(_file_name(config, path), None, endpoint.key_origin, key_problem)]
            )
    finetuning = replace(config.finetuning, api_key=endpoint.api_key, base_url=endpoint.base_url)
    return replace(config, finetuning=finetuning), endpoint


def _file_name(config: ConnectorConfig | None, path: Path) -> str:
    return config.source.name if config is not None and config.source else path.name


def _http_url_problem(endpoint: Endpoint) -> str | None:
    """Why the base URL in effect is unusable (a flag or variable is not validated by the
    file's schema), or None."""
    parts = urlsplit(endpoint.base_url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    return (
        f"the base URL from {endpoint.base_url_origin} must be an http:// or https:// URL "
        f"(got {endpoint.base_url!r})"
    )


class _RawFile:
    """An automations file read as YAML nodes, leniently: what a command needs from it even
    when the file is invalid or its secrets cannot be read (the journal's folder, the key
    and server for a lookup, the playlists its actions name, each with its line)."""

    def __init__(self, path: Path, root: Any, environ: Mapping[str, str]) -> None:
        self.path = path
        self.root = root
        self.environ = environ
        self._secrets: dict[Any, Any] | None = None

    @classmethod
    def read(cls, path: Path, environ: Mapping[str, str] | None = None) -> _RawFile | None:
        """The file's nodes, or None when it cannot be read or is not YAML."""
        file = path.expanduser().resolve()
        try:
            root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return cls(file, root, os.environ if environ is None else environ)

    @staticmethod
    def get(node: Any, key: str) -> Any:
        """The value node of `key` in a mapping node (the last, as YAML loads it), or None."""
        found = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    found = value_node
        return found

    def text(self, node: Any) -> str | None:
        """A scalar's text, `!env` and `!secret` resolved; None when absent or unreadable."""
        if not isinstance(node, yaml.ScalarNode):
            return None
        name = str(node.value).strip()
        if node.tag == "!env":
            return self.environ.get(name)
        if node.tag == "!secret":
            value = self._read_secrets().get(name)
            if isinstance(value, str):
                register_secret(value)
                return value
            return None
        if node.tag == "tag:yaml.org,2002:str":
            return str(node.value)
        return None

    def _read_secrets(self) -> dict[Any, Any]:
        if self._secrets is None:
            try:
                data = yaml.safe_load((self.path.parent / SECRETS_FILE).read_text("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                data = None
            self._secrets = data if isinstance(data, dict) else {}
        return self._secrets

    def finetuning(self, option: str) -> str | None:
        """`finetuning.<option>`, resolved, or None."""
        return self.text(self.get(self.get(self.root, "finetuning"), option))

    def state_dir(self) -> Path | None:
        """The journal's folder as `run` would use it, or None when it cannot be told."""
        node = self.get(self.root, "state_dir")
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return self.path.parent / DEFAULT_STATE_DIR
        value = self.text(node)
        if value is None or not value.strip():
            return None
        folder = Path(value).expanduser()
        return folder if folder.is_absolute() else self.path.parent / folder

    def automations(self) -> Iterator[tuple[int, Any]]:
        node = self.get(self.root, "automations")
        if isinstance(node, yaml.SequenceNode):
            yield from enumerate(node.value)

    def playlist_references(self, registry: Registry) -> list[tuple[int, str, str]]:
        """(line, path, name or id) of each playlist named as plain text in an enabled
        action step (a template is only known when it renders)."""
        found: list[tuple[int, str, str]] = []
        for index, automation in self.automations():
            if self._disabled(automation):
                continue
            for path, step in self._steps(automation, f"automations[{index}]"):
                name = self.text(self.get(step, "action"))
                spec = registry.actions.get(name) if name else None
                if spec is None or self._disabled(step):
                    continue
                for option in playlist_options(spec):
                    node = self.get(step, option)
                    value = self.text(node)
                    if value is None or not value.strip() or "{{" in value or "{%" in value:
                        continue
                    found.append((node.start_mark.line + 1, f"{path}.{option}", value.strip()))
        return found

    def _steps(self, automation: Any, path: str) -> Iterator[tuple[str, Any]]:
        # `actions:` or its alias `action:`, a list or one step (as the config reads them).
        key = "actions" if self.get(automation, "actions") is not None else "action"
        node = self.get(automation, key)
        if isinstance(node, yaml.SequenceNode):
            for index, step in enumerate(node.value):
                yield f"{path}.{key}[{index}]", step
        elif isinstance(node, yaml.MappingNode):
            yield f"{path}.{key}", node

    def _disabled(self, node: Any) -> bool:
        flag = self.get(node, "enabled")
        return isinstance(flag, yaml.ScalarNode) and str(flag.value).lower() in ("false", "no")

    def endpoint(self, api_key: str | None, base_url: str | None) -> Endpoint:
        """The endpoint as `load_file` decides it, from what can be read of the file."""
        file_key = self.finetuning("api_key")
        register_secret(file_key)  # kept out of everything written, as load_config does
        return resolve_endpoint(
            flag_key=api_key,
            flag_url=base_url,
            file_key=file_key,
            file_url=self.finetuning("base_url"),
            file_name=self.path.name,
        )

    def automation_count(self) -> int:
        return sum(1 for _ in self.automations())


def lenient_endpoint(
    path: Path, *, api_key: str | None = None, base_url: str | None = None
) -> Endpoint:
    """The endpoint `load_file` would decide, from what can be read of a file that does
    not load (the same precedence; an unreadable file counts as saying nothing)."""
    raw = _RawFile.read(path)
    if raw is None:
        return resolve_endpoint(flag_key=api_key, flag_url=base_url, file_name=path.name)
    return raw.endpoint(api_key, base_url)


def playlist_options(spec: ActionSpec) -> list[str]:
    """The options of an action that name a playlist (declared with `validators.PLAYLIST`)."""
    names: list[str] = []
    for marker, validator in spec.schema.schema.items():
        name = getattr(marker, "schema", marker)
        if validator is PLAYLIST and isinstance(name, str):
            names.append(name)
    return names


async def missing_playlists(
    client: FinetuningClient, references: list[tuple[int, str, str]], file_name: str
) -> list[ConfigProblem]:
    """The references no playlist of the account answers to, each with a did-you-mean;
    one request for the list (plus one per id that is not one of the account's)."""
    from connector.errors import NotFoundError

    if not references:
        return []
    playlists = await client.list_playlists()
    ids = {p.id.casefold() for p in playlists}
    names = [p.name for p in playlists]
    problems: list[ConfigProblem] = []
    for line, path, reference in references:
        wanted = reference.casefold()
        if wanted in ids:
            continue
        same = [p for p in playlists if p.name.casefold() == wanted]
        if len(same) > 1:
            listing = ", ".join(f"{p.id} ({p.name!r})" for p in same)
            message = f"{len(same)} playlists are named {reference!r}; use an id: {listing}"
            problems.append(ConfigProblem(file_name, line, path, message))
            continue
        if same:
            continue
        if _looks_like_id(reference):
            try:
                await client.get_playlist(reference)
            except NotFoundError:
                pass
            else:
                continue  # someone's public playlist, found by id
            message = f"no playlist has the id {reference!r}"
        else:
            message = f"no playlist is named {reference!r}"
        problems.append(
            ConfigProblem(file_name, line, path, message + _did_you_mean(reference, names))
        )
    return problems


def _looks_like_id(reference: str) -> bool:
    from connector.providers.finetuning.client import _looks_like_id as looks_like_id

    return bool(looks_like_id(reference))


def _did_you_mean(reference: str, names: list[str]) -> str:
    """' (did you mean 'Focus Beats'?)', else the names there are."""
    folded = {name.casefold(): name for name in names}
    close = difflib.get_close_matches(reference.casefold(), list(folded), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {folded[close[0]]!r}?)"
    if not names:
        return " (the account has no playlists; they are created in the web app)"
    return f" (your playlists: {', '.join(repr(n) for n in names)})"


# -- run ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_client(config: ConnectorConfig, out: TextIO) -> AsyncIterator[Connections]:
    """The configured client and journal, or the embedded sandbox's when no key is set.

    `config` holds the key and server in effect (see `load_file`). The embedded
    sandbox starts empty every time, so its journal is a fresh temporary one too:
    a journal kept from an earlier sandbox would describe generations that no
    longer exist.
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
    from connector.sandbox import SandboxConfig, run_sandbox

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


def _no_key_anywhere(file_name: str) -> str:
    return f"no API key from --api-key, finetuning.api_key in {file_name} or ${KEY_VARIABLE}"


async def run_file(
    path: Path,
    *,
    backfill: bool = False,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
    base_url: str | None = None,
) -> int:
    """`ftconnect run FILE`; `api_key` and `base_url` are the command line's."""
    try:
        config, endpoint = load_file(path, api_key=api_key, base_url=base_url)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    name = _file_name(config, path)
    if endpoint.api_key is None and endpoint.base_url_source != "default":
        # A server was named for this run: the sandbox would silently not be it.
        print(
            f"ftconnect: error: a server is named ({endpoint.base_url} from "
            f"{endpoint.base_url_origin}) but there is {_no_key_anywhere(name)}; give a key, "
            "or name no server to run on the embedded sandbox",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if endpoint.api_key is not None:
        trouble = _http_url_problem(endpoint)
        if trouble:
            print(f"ftconnect: error: {trouble}", file=sys.stderr)
            return EXIT_INVALID
        print(endpoint.describe(), file=out, flush=True)
        if config.tempolor is not None:
            print(_tempolor_line(config, name), file=out, flush=True)
    else:
        print(
            f"ftconnect: warning: {_no_key_anywhere(name)}: running on the embedded "
            "sandbox (nothing reaches Finetuning.ai or TemPolor)",
            file=sys.stderr,
            flush=True,
        )
    if backfill:
        config = replace(config, poll=replace(config.poll, backfill=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    from connector.ingress.webhooks import install_quiet_accept_errors, raise_file_limit

    # A listener facing the internet: room for many sockets, and if they run out
    # anyway, one log line a minute about it instead of a traceback per accept().
    raise_file_limit()
    quiet = install_quiet_accept_errors(loop)
    try:
        return await _run(config, stop, out)
    finally:
        quiet()


def _tempolor_line(config: ConnectorConfig, file_name: str) -> str:
    from connector.providers.tempolor.client import DEFAULT_BASE_URL as TEMPOLOR_URL

    assert config.tempolor is not None
    settings = config.tempolor
    where = f"tempolor.base_url in {file_name}" if settings.base_url else "the default"
    url = settings.base_url or TEMPOLOR_URL
    if not settings.api_key:
        return f"TemPolor: off (no tempolor.api_token in {file_name})"
    return f"TemPolor: {url} (from {where}); token: … (from tempolor.api_token in {file_name})"


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
        if not await _unless_stopped(starting, stop):
            print(
                "Stopping while starting (runs in flight resume at the next start).",
                file=out,
                flush=True,
            )
            return EXIT_OK
        try:
            starting.result()
        except (FinetuningError, StoreError, StateDirLocked, ListenerStartError) as err:
            print(f"ftconnect: cannot start: {err}", file=sys.stderr)
            return EXIT_ERROR
        checking = asyncio.create_task(_warn_missing_playlists(config, connections.finetuning))
        await _unless_stopped(checking, stop)
        enabled = [a.id for a in config.automations if a.enabled]
        print(f"Running {len(enabled)} automation(s): {', '.join(enabled)}", file=out, flush=True)
        await stop.wait()
        print("Stopping: finishing runs in flight...", file=out, flush=True)
        await runtime.stop()
    return EXIT_OK


async def _unless_stopped(task: asyncio.Task[Any], stop: asyncio.Event) -> bool:
    """Wait for `task` or `stop`, whichever comes first; False (task cancelled) on stop."""
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # start() stops what it had started before it re-raises
    return False


async def _warn_missing_playlists(config: ConnectorConfig, client: FinetuningClient) -> None:
    """A warning per playlist an action names that the account does not have. `run` goes
    on: the playlist may be created later, and until then only those steps fail."""
    raw = _RawFile.read(config.source) if config.source else None
    if raw is None:
        return
    references = raw.playlist_references(default_registry())
    try:
        problems = await missing_playlists(client, references, raw.path.name)
    except FinetuningError as err:
        print(f"ftconnect: warning: playlists not checked: {err}", file=sys.stderr, flush=True)
        return
    for problem in problems:
        print(
            f"ftconnect: warning: {problem}; steps naming it fail until it exists",
            file=sys.stderr,
            flush=True,
        )


# -- check --------------------------------------------------------------------------------


async def check_file(
    path: Path,
    *,
    offline: bool = False,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
    base_url: str | None = None,
    as_json: bool = False,
) -> int:
    """`ftconnect check FILE`: schemas, templates, duplicate ids and, online (a key found
    anywhere, not --offline), the playlists actions name: every problem in one pass."""
    config: ConnectorConfig | None = None
    problems: list[ConfigProblem] = []
    raw = _RawFile.read(path)
    try:
        config, endpoint = load_file(path, api_key=api_key, base_url=base_url)
    except ConfigError as err:
        problems = list(err.problems)
        endpoint = lenient_endpoint(path, api_key=api_key, base_url=base_url)
    name = _file_name(config, path)
    checked, reason, failure = False, None, None
    if offline:
        reason = "--offline"
    elif endpoint.api_key is None:
        reason = _no_key_anywhere(name)
    elif raw is None:
        reason = "the file is not readable YAML"
    elif (trouble := _http_url_problem(endpoint)) is not None:
        reason = failure = f"({trouble})"
    elif api_key_problem(endpoint.api_key) is not None:
        reason = "the API key is malformed (reported above)"
    else:
        references = raw.playlist_references(default_registry())
        try:
            async with FinetuningClient(
                endpoint.api_key, base_url=endpoint.base_url, max_retries=1
            ) as client:
                # The key and the server, checked even when no action names a playlist:
                # a revoked key or a dead server is what `run` would trip on first.
                await client.get_account()
                problems += await missing_playlists(client, references, raw.path.name)
            checked = True
        except FinetuningError as err:
            reason = failure = (
                f"on {endpoint.base_url} (from {endpoint.base_url_origin}, key from "
                f"{endpoint.key_origin}): {err}"
            )
    problems.sort(key=lambda p: (p.file != name, p.line or 0))
    count = (
        len(config.automations)
        if config is not None
        else (raw.automation_count() if raw is not None else None)
    )
    if as_json:
        document = {
            "file": str(path),
            "valid": not problems,
            "automations": count,
            "problems": [
                {"file": p.file, "line": p.line, "path": p.path, "message": p.message}
                for p in problems
            ],
            "playlists": {"checked": checked, "reason": reason},
        }
        print(dumps(document, indent=2), file=out)
    else:
        for problem in problems:
            print(problem, file=sys.stderr)
        if reason is not None and failure is None and not offline and raw is not None:
            print(f"ftconnect: note: playlists not looked up: {reason}", file=sys.stderr)
    if failure is not None:
        print(
            f"ftconnect: error: playlists not checked {failure}; --offline skips this check",
            file=sys.stderr,
        )
    if problems:
        return EXIT_INVALID
    if failure is not None:
        return EXIT_ERROR
    if not as_json:
        print(f"{path}: {count} automation(s), all valid", file=out)
    return EXIT_OK


def schema_document(registry: Registry | None = None) -> str:
    """`ftconnect schema`: every trigger and action as one JSON Schema document."""
    from connector.automation.jsonschema import registry_document

    return json.dumps(registry_document(registry or default_registry()), indent=2)


# -- the journal --------------------------------------------------------------------------


def state_dir_for(file: str | None, state_dir: str | None) -> Path:
    """The journal's folder: --state-dir, else the file's `state_dir`, else ./.ftconnect.

    Reading the journal needs nothing else from the file: when it does not load (a
    secret that cannot be resolved here, a problem elsewhere in it), its `state_dir`
    is read alone. Raises ConfigError when even that cannot be told.
    """
    if state_dir:
        return Path(state_dir)
    if not file:
        return Path(DEFAULT_STATE_DIR)
    try:
        return load_config(Path(file)).state_dir
    except ConfigError:
        raw = _RawFile.read(Path(file))
        found = raw.state_dir() if raw is not None else None
        if found is None:
            raise
        return found


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
        # Seeded: found at first start and recorded without firing (poll.backfill: false).
        fired = "seeded" if row.source == SEEDED else "fired"
        print(f"{row.received_at:%Y-%m-%d %H:%M:%S}  {row.kind:<18} {fired:<6}  {row.key}  {what}")
    if any(row.source == SEEDED for row in rows):
        print(
            "seeded: already there at the first start, recorded without firing "
            "(poll.backfill: true, or `run --backfill`, fires for them)",
            file=sys.stderr,
        )
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
            # `running` as --status names it, and what that means with no daemon.
            status = "running (queued: no daemon runs it; it starts with `ftconnect run`)"
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
