"""What listeners see of the work: a run of an automation for one event, and its steps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.events import Event

_LOGGER = logging.getLogger(__name__)


@dataclass
class StepRecord:
    """One action step of a run, as the listeners see it."""

    step_id: str
    action: str
    status: str = "running"  # running, succeeded, failed
    output: Mapping[str, Any] | None = None
    error: str | None = None
    attempt: int = 1
    options: Mapping[str, Any] | None = None  # after templating and validation
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


@dataclass
class RunRecord:
    """One automation run for one event, as the listeners see it."""

    run_id: str
    automation_id: str
    event: Event
    status: str = "running"  # running, succeeded, failed, skipped
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    resumed: bool = False
    # Its first step was journaled started with its event (an API call): no second write.
    first_step_journaled: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


RunListener = Callable[[RunRecord], None]
StepListener = Callable[[RunRecord, StepRecord], None]
EventListener = Callable[[Event], None]


def notify(listeners: list[Callable[..., None]], *args: Any) -> None:
    """Tell every listener; one that fails (stdout closed under `| tee`) is logged and
    must not stop the others, nor the runtime."""
    for listener in listeners:
        try:
            listener(*args)
        except Exception:
            _LOGGER.exception("a listener failed; carrying on")
