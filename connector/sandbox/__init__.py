"""A faithful local stand-in for the Finetuning.ai public API v1.2 (and TemPolor).

In the spirit of stripe-mock: real HTTP on loopback, the documented shapes and
quirks, deterministic from a seed, with a ground truth to assert against::

    async with run_sandbox(SandboxConfig(processing_delay=0.1)) as sb:
        ...  # talk to sb.url with sb.api_key; inspect sb.sandbox

Only the configuration is imported eagerly: the rest (aiohttp included) loads on
first use, so `ftconnect --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import AccountConfig, FaultRule, SandboxConfig

if TYPE_CHECKING:
    from .app import SandboxHandle, create_app, run_sandbox
    from .clock import Clock, ManualClock
    from .ground_truth import GroundTruth
    from .state import Sandbox

__all__ = [
    "AccountConfig",
    "Clock",
    "FaultRule",
    "GroundTruth",
    "ManualClock",
    "Sandbox",
    "SandboxConfig",
    "SandboxHandle",
    "create_app",
    "run_sandbox",
]

_LAZY = {
    "Clock": "clock",
    "GroundTruth": "ground_truth",
    "ManualClock": "clock",
    "Sandbox": "state",
    "SandboxHandle": "app",
    "create_app": "app",
    "run_sandbox": "app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
