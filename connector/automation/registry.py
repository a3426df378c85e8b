"""The registry: every trigger and action this installation knows, discovered once.

The built-in ones are the modules of `connector.triggers` and
`connector.actions` (each defines `TRIGGER = TriggerSpec(...)` or
`ACTION = ActionSpec(...)`, see `connector.automation.specs`). Other
installed packages add their own through the entry-point groups
`ftconnect.triggers` and `ftconnect.actions` (each entry point names a module
or a spec). A new trigger or action is a new file and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, TypeVar

from connector.automation.specs import ActionSpec, RegistryError, TriggerSpec

__all__ = ["Registry", "default_registry"]

TRIGGER_ENTRY_POINTS = "ftconnect.triggers"
ACTION_ENTRY_POINTS = "ftconnect.actions"

_S = TypeVar("_S", TriggerSpec, ActionSpec)


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
                loaded = _load(point, TRIGGER_ENTRY_POINTS)
                if not isinstance(loaded, TriggerSpec):
                    loaded = _spec(loaded, "TRIGGER", TriggerSpec)
                registry.add_trigger(loaded, f"plugin {point.value}")
            for point in entry_points(group=ACTION_ENTRY_POINTS):
                loaded = _load(point, ACTION_ENTRY_POINTS)
                if not isinstance(loaded, ActionSpec):
                    loaded = _spec(loaded, "ACTION", ActionSpec)
                registry.add_action(loaded, f"plugin {point.value}")
        return registry


def _modules(package: ModuleType) -> Iterator[ModuleType]:
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package.__name__}.{info.name}")


def _load(point: Any, group: str) -> Any:
    """An entry point's object; a plugin that fails to import is a RegistryError naming it."""
    try:
        return point.load()
    except Exception as err:
        raise RegistryError(
            f"plugin {point.value} (entry point {point.name!r} of {group}) cannot be loaded: "
            f"{type(err).__name__}: {err}"
        ) from err


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
