"""The plugin API: what a trigger or an action declares, and what it is handed when it runs.

A trigger or an action is one module in `triggers/` or `actions/` that defines
`TRIGGER = TriggerSpec(...)` or `ACTION = ActionSpec(...)`: a key, a title and
description for people and form builders, a voluptuous schema for its options
(with defaults and descriptions), an example, and one async function.

That function is handed a context: `TriggerContext` for a source trigger,
`ActionContext` for an action. Both are Protocols listing exactly what
triggers and actions may use; the runtime's own classes provide them, so this
module (and a plugin) can be read without the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import voluptuous as vol

from connector.errors import ConnectorError
from connector.providers import PROVIDERS

if TYPE_CHECKING:
    import aiohttp

    from connector.automation.model import StepConfig
    from connector.events import Event
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.finetuning.models import Generation
    from connector.providers.tempolor.client import TempolorClient

__all__ = [
    "ActionContext",
    "ActionSpec",
    "LoadCheck",
    "Matcher",
    "Performer",
    "RegistryError",
    "RunInfo",
    "Source",
    "TriggerContext",
    "TriggerSpec",
]


class RegistryError(ConnectorError):
    """Two declarations share a key, or a plugin does not declare what it should."""


# ------------------------------------------------------------------ the contexts


class TriggerContext(Protocol):
    """What a source trigger (schedule, credits_low) gets: a way to fire events."""

    @property
    def automation_id(self) -> str:
        """The automation this trigger belongs to."""
        ...

    @property
    def trigger_index(self) -> int:
        """Where the trigger sits in the automation's `triggers` (from 0)."""
        ...

    @property
    def finetuning(self) -> FinetuningClient: ...

    async def fire(self, kind: str, key: str, data: Mapping[str, Any]) -> bool:
        """Fire an event for this automation only; returns False for a repeat key."""
        ...


class RunInfo(Protocol):
    """The run a step belongs to, as an action sees it."""

    @property
    def run_id(self) -> str: ...

    @property
    def automation_id(self) -> str: ...


class ActionContext(Protocol):
    """What an action gets: the clients, the event, earlier outputs, and its journal."""

    @property
    def run(self) -> RunInfo: ...

    @property
    def step(self) -> StepConfig: ...

    @property
    def step_index(self) -> int:
        """Where the step sits in the automation's `actions` (from 0)."""
        ...

    @property
    def variables(self) -> Mapping[str, Any]:
        """What templates see: `trigger`, `steps` (earlier outputs), `automation`."""
        ...

    @property
    def event(self) -> Event: ...

    @property
    def finetuning(self) -> FinetuningClient: ...

    @property
    def tempolor(self) -> TempolorClient:
        """The TemPolor client; a clear error when the file has no `tempolor:` section."""
        ...

    @property
    def session(self) -> aiohttp.ClientSession:
        """The connector's HTTP session, for actions that call other servers (downloads, hooks).

        Never close it; it lives as long as the running connector.
        """
        ...

    @property
    def resuming(self) -> bool:
        """An earlier attempt of this step may have taken effect (a crash cut it short)."""
        ...

    @property
    def allow_local_webhook(self) -> bool:
        """Loopback webhooks are fine when the API itself is on loopback (the sandbox)."""
        ...

    def webhook_url(self, provider: str = "finetuning") -> str | None:
        """Where providers should send results of what this step submits."""
        ...

    async def record_intent(self, fingerprint: Mapping[str, Any]) -> None:
        """Journal what is about to be submitted, before sending it."""
        ...

    def intent(self) -> Mapping[str, Any] | None:
        """What an earlier attempt of this step meant to submit, if it got that far."""
        ...

    async def submitted(self, generation: Generation) -> None:
        """Record a generation this connector submitted (filters, fast polling)."""
        ...

    def claimed_by_other(self, generation: Generation) -> str | None:
        """The run that already holds `generation`, when it is not this one."""
        ...

    def rival_intents(self, intent: Mapping[str, Any]) -> list[tuple[str, int]]:
        """Other runs' open submissions identical to `intent`: (run id, step index)."""
        ...

    async def wait_for(self, generation_id: str, *, timeout: float) -> Generation:
        """Wait until a generation ends (inside the shared read budget)."""
        ...

    def log(self, message: str) -> None: ...


# ----------------------------------------------------------------- the specs


Matcher = Callable[["Event", Mapping[str, Any]], bool]
Source = Callable[[TriggerContext, Mapping[str, Any]], Awaitable[None]]
Performer = Callable[[ActionContext, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
LoadCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class TriggerSpec:
    """What starts an automation.

    Event triggers list the event `kinds` they listen to and a `matches`
    function that filters one event with the trigger's options. Source
    triggers (schedules, account watches) have a `source` coroutine that runs
    for the life of the runtime and fires events through its context.
    """

    key: str
    title: str
    description: str
    schema: vol.Schema
    example: Mapping[str, Any]
    kinds: frozenset[str] = frozenset()
    matches: Matcher | None = None
    source: Source | None = None
    providers: frozenset[str] = frozenset(PROVIDERS)

    def __post_init__(self) -> None:
        if (self.matches is None) == (self.source is None):
            raise RegistryError(f"trigger {self.key!r}: declare exactly one of matches or source")
        if self.matches is not None and not self.kinds:
            raise RegistryError(f"trigger {self.key!r}: an event trigger must list its kinds")


@dataclass(frozen=True)
class ActionSpec:
    """One step of an automation.

    `run` performs it and returns its output (a JSON-ready mapping that later
    steps read as `steps.<id>`). `check` runs at load time on the validated
    options (before templates render) to refuse dangerous or impossible
    configurations early; `providers` lists where the action exists.
    """

    key: str
    title: str
    description: str
    schema: vol.Schema
    example: Mapping[str, Any]
    run: Performer
    providers: frozenset[str] = frozenset({"finetuning"})
    destructive: bool = False
    check: LoadCheck | None = None
    output_example: Mapping[str, Any] = field(default_factory=dict)
    # Options naming a folder or file: a relative one is relative to the automations
    # file's folder (as state_dir is), not to wherever the command was started.
    paths: tuple[str, ...] = ()
