"""A running connector built from an automations file: clients, journal, runtime.

`open_connector` is the one place that wires them; the command line, an HTTP
API or an integration build on it. Nothing here prints, parses arguments or
exits::

    async with open_connector(Path("automations.yaml")) as connector:
        connector.runtime.run_listeners.append(on_run)
        await connector.start()
        ...  # until told to stop; leaving the block stops it and closes everything

The key and the server come from one precedence (`connector.endpoint`): the
caller's `api_key` / `base_url`, then the file, then the environment. With no
key anywhere the embedded sandbox is started in-process (as `ftconnect run`
does), so the examples work offline. Every HTTP request of the connector
(both providers' clients, downloads, outgoing webhooks) goes through ONE
aiohttp session, made here or passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import aiohttp

from connector.automation.api_keys import api_key_problem
from connector.automation.loader import load_config
from connector.automation.model import ConnectorConfig
from connector.automation.problems import ConfigError, ConfigProblem
from connector.automation.registry import Registry
from connector.dispatch.listener import ListenerStartError
from connector.dispatch.runtime import Runtime
from connector.endpoint import Endpoint, EndpointError, no_key_anywhere, resolve_endpoint
from connector.errors import MissingApiKeyError
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.ratelimit import RateBudget
from connector.sandbox import SandboxConfig

if TYPE_CHECKING:
    from connector.api.hooks import HookDeliverer
    from connector.api.server import ApiListener
    from connector.providers.tempolor.client import TempolorClient
    from connector.sandbox import SandboxHandle

WHEN_NO_KEY: Final = "when-no-key"
NEVER: Final = "never"
SandboxChoice: TypeAlias = SandboxConfig | Literal["when-no-key", "never"]
"""Where a connector runs: `"when-no-key"` (the default, as `ftconnect run`): on the
embedded sandbox only when no key is found anywhere; `"never"`: on the configured API,
no key being `MissingApiKeyError`; a `SandboxConfig`: always on an embedded sandbox
with those settings, whatever key is configured (as `ftconnect demo`)."""


def embedded_sandbox() -> SandboxConfig:
    """The embedded sandbox `ftconnect run` starts with no key: tracks finish in seconds."""
    return SandboxConfig(pending_delay=0.5, processing_delay=2.0)


@dataclass(eq=False)
class Connector:
    """A connector built by `open_connector`: everything open, the runtime not started.

    `config` is the file's, with the key and server decided for it (on a sandbox the
    configured ones are not used); `endpoint` is where the clients talk and with
    which key, `sandbox` the embedded sandbox (or None), `session` the one HTTP
    session the clients and the runtime share.
    """

    config: ConnectorConfig
    endpoint: Endpoint
    runtime: Runtime
    store: Store
    session: aiohttp.ClientSession
    finetuning: FinetuningClient
    tempolor: TempolorClient | None = None
    sandbox: SandboxHandle | None = None
    hooks: HookDeliverer | None = None
    api: ApiListener | None = None
    _started: bool = field(default=False, repr=False)
    _delivering: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """Started and not stopped since."""
        return self._started

    async def start(self) -> None:
        """Start the runtime: journal lock, resumed runs, listener, pollers, trigger sources.

        Raises what stopped it (`ProviderError`, `JournalError`, `StateDirLocked`,
        `ListenerStartError`), having stopped what did start; cancelled, it stops too.
        """
        await self.runtime.start()
        self._started = True
        try:
            await self._start_api()
        except BaseException:
            await self.stop(grace=5.0)
            raise

    async def _start_api(self) -> None:
        """The REST-hook deliverer, then the HTTP API listener when the file has `api:`."""
        if self.hooks is not None:
            self._delivering = asyncio.create_task(self.hooks.run(), name="rest-hooks")
        if self.config.api is None or self.hooks is None:
            return
        from connector.api.server import ApiListener

        api = ApiListener(self.config.api, self.runtime, self.hooks)
        try:
            await api.start()
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
            raise ListenerStartError(
                f"api.listen {api.host}:{api.port}: cannot listen there ({reason})"
            ) from err
        self.api = api

    async def stop(self, *, grace: float = 30.0) -> None:
        """Take no new work and let runs in flight finish (up to `grace` s). Leaving
        `open_connector`'s block does this too; stopping twice is stopping once."""
        if self._started:
            self._started = False
            if self.api is not None:
                await self.api.stop()
            if self._delivering is not None:
                self._delivering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._delivering
                self._delivering = None
            await self.runtime.stop(grace=grace)


@contextlib.asynccontextmanager
async def open_connector(
    config: ConnectorConfig | Path,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    endpoint: Endpoint | None = None,
    sandbox: SandboxChoice = WHEN_NO_KEY,
    session: aiohttp.ClientSession | None = None,
    registry: Registry | None = None,
) -> AsyncIterator[Connector]:
    """Build a connector from a config (or the path of its file); not started yet.

    `api_key` and `base_url` win over the file's and the environment's; `endpoint`
    is instead what `load_file` / `settle_endpoint` already decided for this config.
    A `session` passed in is used by everything and never closed; otherwise one is
    made here. On leaving the block the runtime stops, then the clients, the session,
    the journal and the sandbox close, in that order. Raises ConfigError (the file),
    EndpointError (a server named without a key, a base URL that is not http(s)) or
    MissingApiKeyError (`sandbox="never"` and no key anywhere).
    """
    if endpoint is not None and (api_key is not None or base_url is not None):
        raise ValueError("give endpoint, or api_key and base_url: not both")
    if not isinstance(sandbox, SandboxConfig) and sandbox not in (WHEN_NO_KEY, NEVER):
        raise ValueError(
            f"sandbox={sandbox!r}: one of {WHEN_NO_KEY!r}, {NEVER!r} or a SandboxConfig"
        )
    on_sandbox: SandboxConfig | None
    if isinstance(sandbox, SandboxConfig):
        # Always the sandbox: the configured key and server are not even looked at.
        on_sandbox = sandbox
        if not isinstance(config, ConnectorConfig):
            config = load_config(config)
    else:
        if isinstance(config, ConnectorConfig):
            if endpoint is None:
                config, endpoint = settle_endpoint(config, api_key=api_key, base_url=base_url)
        else:
            config, endpoint = load_file(config, api_key=api_key, base_url=base_url)
        on_sandbox = _sandbox_settings(config, endpoint, sandbox)
    async with contextlib.AsyncExitStack() as stack:
        handle: SandboxHandle | None = None
        if on_sandbox is None:
            # The journal first: a locked or corrupt one stops before any client exists.
            # Opened in a thread (folders, the file, migrations): a host's event loop,
            # Home Assistant's, must not wait on the disk.
            store = stack.enter_context(await asyncio.to_thread(Store.open, config.state_dir))
        else:
            from connector.sandbox import run_sandbox

            handle = await stack.enter_async_context(run_sandbox(on_sandbox))
            # The embedded sandbox starts empty every time, so its journal is a fresh
            # temporary one too: one kept from an earlier sandbox would describe
            # generations that no longer exist.
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ftconnect-"))
            store = stack.enter_context(Store.open(state_dir))
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        finetuning: FinetuningClient
        if handle is None:
            assert endpoint is not None  # decided above
            assert endpoint.api_key is not None  # else the sandbox would run
            used = endpoint
            finetuning = finetuning_client(
                config, endpoint.api_key, endpoint.base_url, session=session
            )
            settings = config.tempolor
            token = settings.api_key if settings else None
            tempolor_url = settings.base_url if settings else None
        else:
            used = _sandbox_endpoint(handle)
            finetuning = FinetuningClient(handle.api_key, base_url=handle.url, session=session)
            token, tempolor_url = handle.tempolor_token, handle.tempolor_url
        await stack.enter_async_context(finetuning)
        tempolor = tempolor_client(token, tempolor_url, session=session)
        if tempolor is not None:
            await stack.enter_async_context(tempolor)
        runtime = Runtime(config, finetuning, registry=registry, store=store, tempolor=tempolor)
        from connector.api.hooks import HookDeliverer

        # REST hooks subscribed over the API: each event's deliveries are journaled with it.
        hooks = HookDeliverer(store, runtime.registry, session)
        runtime.outbox_targets = hooks.targets
        runtime.outbox_listeners.append(hooks.wake)
        connector = Connector(
            config, used, runtime, store, session, finetuning, tempolor, handle, hooks
        )
        stack.push_async_callback(connector.stop)
        yield connector


def _sandbox_settings(
    config: ConnectorConfig, endpoint: Endpoint, choice: SandboxChoice
) -> SandboxConfig | None:
    """The embedded sandbox to run on, or None for the configured API (checked here)."""
    check_endpoint(endpoint, file_name(config))
    if endpoint.api_key is not None:
        return None
    if choice == NEVER:
        raise MissingApiKeyError(no_key_anywhere(file_name(config)))
    return embedded_sandbox()


def _sandbox_endpoint(handle: SandboxHandle) -> Endpoint:
    where = "the embedded sandbox"
    return Endpoint(handle.api_key, "sandbox", where, handle.url, "sandbox", where)


def check_endpoint(endpoint: Endpoint, name: str) -> None:
    """Raise EndpointError when the server and key in effect cannot be run with: a server
    named without a key (the sandbox would silently not be it), or a base URL that is
    not http(s). `name` is the file's, for the message."""
    if endpoint.api_key is None and endpoint.base_url_source != "default":
        raise EndpointError(
            f"a server is named ({endpoint.base_url} from {endpoint.base_url_origin}) but "
            f"there is {no_key_anywhere(name)}; give a key, or name no server to run on the "
            "embedded sandbox"
        )
    if endpoint.api_key is not None:
        trouble = endpoint.base_url_problem()
        if trouble:
            raise EndpointError(trouble)


def finetuning_client(
    config: ConnectorConfig,
    api_key: str,
    base_url: str,
    *,
    session: aiohttp.ClientSession | None = None,
) -> FinetuningClient:
    """The client with the budgets and backoff the file sets (defaults: the documented)."""
    settings = config.finetuning
    return FinetuningClient(
        api_key,
        base_url=base_url,
        session=session,
        backoff_base=settings.retry_backoff,
        read_budget=RateBudget(settings.reads_per_window, settings.rate_window, name="reads"),
        generation_budget=RateBudget(
            settings.generations_per_window, settings.rate_window, name="generations"
        ),
    )


def tempolor_client(
    token: str | None, base_url: str | None, *, session: aiohttp.ClientSession | None = None
) -> TempolorClient | None:
    """The TemPolor client, or None without a token (TemPolor is then off)."""
    if not token:
        return None
    from connector.providers.tempolor.client import TempolorClient

    if base_url:
        return TempolorClient(token, base_url=base_url, session=session)
    return TempolorClient(token, session=session)


# -- the file, its key and its server -----------------------------------------------------


# What an unset `!env` variable of a value the caller replaces reads as, so the rest of
# the file can load: a well-formed stand-in per field (never used: replaced).
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
    problem when the caller gives that value: it would be replaced anyway.
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
    return settle_endpoint(config, api_key=api_key, base_url=base_url, path=path)


def settle_endpoint(
    config: ConnectorConfig,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    path: Path | None = None,
) -> tuple[ConnectorConfig, Endpoint]:
    """Decide the key and server of a loaded config (the caller's, then the file's, then
    the environment's) and put them in it. Raises ConfigError for a malformed key."""
    name = file_name(config, path)
    endpoint = resolve_endpoint(
        flag_key=api_key,
        flag_url=base_url,
        file_key=config.finetuning.api_key,
        file_url=config.finetuning.base_url,
        file_name=name,
    )
    if endpoint.api_key and endpoint.key_source != "file":
        # The file's own key was checked as it loaded; one from the caller or the
        # environment is checked here, so a malformed one is a clear line, not a traceback.
        key_problem = api_key_problem(endpoint.api_key)
        if key_problem is not None:
            raise ConfigError([ConfigProblem(name, None, endpoint.key_origin, key_problem)])
    finetuning = replace(config.finetuning, api_key=endpoint.api_key, base_url=endpoint.base_url)
    return replace(config, finetuning=finetuning), endpoint


def file_name(config: ConnectorConfig | None, path: Path | None = None) -> str:
    """The name messages give the file: its own, else the path's, else "the file"."""
    if config is not None and config.source:
        return config.source.name
    return path.name if path is not None else "the file"
