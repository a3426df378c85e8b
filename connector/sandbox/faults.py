"""Fault injection: the `FaultRule`s in force, matched per request, with seeded random draws."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .config import FaultRule


@dataclass
class ActiveFault:
    """A FaultRule with its runtime state (RNG, counters)."""

    rule: FaultRule
    method: str | None
    pattern: re.Pattern[str]
    rng: random.Random
    served_errors: int = 0
    commits_left: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to a request."""
        if self.method is not None and self.method != method.upper():
            return False
        return self.pattern.fullmatch(path) is not None


def compile_route(route: str) -> tuple[str | None, re.Pattern[str]]:
    """Split "METHOD /path/*" into a method (None = any) and a path regex."""
    route = route.strip()
    method: str | None = None
    pattern = route
    if " " in route:
        method, pattern = route.split(None, 1)
        method = None if method == "*" else method.upper()
        pattern = pattern.strip()
    if pattern in ("", "*"):
        return method, re.compile(".*")
    regex = "[^/]+(?:/[^/]+)*".join(re.escape(part) for part in pattern.split("*"))
    return method, re.compile(regex)


def validate_fault_rule(rule: FaultRule) -> None:
    """Raise ValueError when a rule's numbers are out of range."""
    for name in ("error_rate", "drop_rate"):
        value = getattr(rule, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
    if isinstance(rule.latency, bool) or not isinstance(rule.latency, int | float):
        raise ValueError("latency must be a number of seconds")
    if rule.latency < 0:
        raise ValueError("latency must not be negative")
    if isinstance(rule.commit_then_fail, bool) or not isinstance(rule.commit_then_fail, int):
        raise ValueError("commit_then_fail must be an integer")
    if rule.commit_then_fail < 0:
        raise ValueError("commit_then_fail must not be negative")
    if not isinstance(rule.route, str):
        raise ValueError("route must be a string")


class FaultInjector:
    """The fault rules in force and their deterministic random draws."""

    def __init__(self, seed: int, rules: Iterable[FaultRule] = ()) -> None:
        self._seed = seed
        self._generation = 0
        self.active: list[ActiveFault] = []
        self.replace(rules)

    @property
    def rules(self) -> list[FaultRule]:
        """The rules in force."""
        return [active.rule for active in self.active]

    def replace(self, rules: Iterable[FaultRule]) -> None:
        """Put new rules in force (validated; counters and RNGs restart)."""
        rules = list(rules)
        for rule in rules:
            validate_fault_rule(rule)
        self._generation += 1
        active = []
        for index, rule in enumerate(rules):
            method, pattern = compile_route(rule.route)
            rng = random.Random(f"{self._seed}:faults:{self._generation}:{index}")
            active.append(ActiveFault(rule, method, pattern, rng, 0, rule.commit_then_fail))
        self.active = active

    def matching(self, method: str, path: str) -> list[ActiveFault]:
        """The rules that apply to a request, in order."""
        return [active for active in self.active if active.matches(method, path)]
