"""Declarations of triggers and actions, and the registry that discovers them.

A trigger or an action is one module in `triggers/` or `actions/` that defines
`TRIGGER = TriggerSpec(...)` or `ACTION = ActionSpec(...)`: a key, a title and
description for people and form builders, a voluptuous schema for its options
(with defaults and descriptions), an example, and one async function. Other
installed packages add their own through the entry-point groups
`ftconnect.triggers` and `ftconnect.actions` (each entry point names a module
or a spec). A new trigger or action is a new file and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import voluptuous as vol

if TYPE_CHECKING:
    from connector.dispatch.runtime import ActionContext, TriggerContext
    from connector.events import Event

PROVIDERS = frozenset({"finetuning", "tempolor"})
TRIGGER_ENTRY_POINTS = "ftconnect.triggers"
ACTION_ENTRY_POINTS = "ftconnect.actions"

Matcher = Callable[["Event", Mapping[str, Any]], bool]
Source = Callable[["TriggerContext", Mapping[str, Any]], Awaitable[None]]
Performer = Callable[["ActionContext", Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
LoadCheck = Callable[[Mapping[str, Any]], None]


_S = TypeVar("_S", "TriggerSpec", "ActionSpec")


class RegistryError(Exception):
    """Two declarations share a key, or a plugin does not declare what it should."""


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
    providers: frozenset[str] = PROVIDERS

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


@dataclass
class Registry:
    """Every trigger and action known to this installation."""

    triggers: dict[str, TriggerSpec] = field(default_factory=dict)
    actions: dict[str, ActionSpec] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # "trigger:key" -> where from

    def add_trigger(self, spec: TriggerSpec, origin: str) -> None:
        self._claim(f"trigger:{spec.key}", origin)
        self.triggers[spec.key] = spec

    def add_action(self, spec: ActionSpec, origin: str) -> None:
        self._claim(f"action:{spec.key}", origin)
        self.actions[spec.key] = spec

    def _claim(self, name: str, origin: str) -> None:
        if name in self.origins:
            raise RegistryError(
                f"{name.replace(':', ' ')} is declared twice: in {self.origins[name]} and {origin}"
            )
        self.origins[name] = origin

    @classmethod
    def discover(cls, *, with_plugins: bool = True) -> Registry:
        """Load the built-in `triggers/` and `actions/` modules and installed plugins."""
        registry = cls()
        actions = importlib.import_module("connector.actions")
        triggers = importlib.import_module("connector.triggers")

        for module in _modules(triggers):
            registry.add_trigger(_spec(module, "TRIGGER", TriggerSpec), module.__name__)
        for module in _modules(actions):
            registry.add_action(_spec(module, "ACTION", ActionSpec), module.__name__)
        if with_plugins:
            for point in entry_points(group=TRIGGER_ENTRY_POINTS):
                loaded = point.load()
                if not isinstance(loaded, TriggerSpec):
                    loaded = _spec(loaded, "TRIGGER", TriggerSpec)
                registry.add_trigger(loaded, f"plugin {point.value}")
            for point in entry_points(group=ACTION_ENTRY_POINTS):
                loaded = point.load()
                if not isinstance(loaded, ActionSpec):
                    loaded = _spec(loaded, "ACTION", ActionSpec)
                registry.add_action(loaded, f"plugin {point.value}")
        return registry


def _modules(package: ModuleType) -> Iterator[ModuleType]:
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package.__name__}.{info.name}")


def _spec(module: Any, attribute: str, kind: type[_S]) -> _S:
    spec = getattr(module, attribute, None)
    if not isinstance(spec, kind):
        name = getattr(module, "__name__", repr(module))
        raise RegistryError(f"{name} must define {attribute} = {kind.__name__}(...)")
    return spec


_REGISTRY: Registry | None = None


def default_registry() -> Registry:
    """The registry of this process, discovered once."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry.discover()
    return _REGISTRY
