"""Runs that no automation of the file describes: actions called over the API, and failures.

An action called over the HTTP API is journaled like any other work: an event
(kind `action_called`, its data the action and its validated options) and one
run of it, whose automation (`api.<action>`) is made from the event itself.
So the call resumes after a crash, shows in `ftconnect runs`, replays, and a
repeat of its event key (an idempotent retry) finds the same run.

A run that ends failed makes a `run_failed` event, unless its own event was
one: an alerting automation that fails must not feed itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.automation.model import AutomationConfig, ConnectorConfig, StepConfig
from connector.dispatch.records import RunRecord
from connector.events import ACTION_CALLED, RUN_FAILED, Event

if TYPE_CHECKING:
    from connector.automation.registry import Registry

__all__ = [
    "API_AUTOMATION_PREFIX",
    "action_called",
    "api_automation",
    "event_kinds",
    "run_actions",
    "run_failed",
]

API_AUTOMATION_PREFIX = "api."
# Not a provider: the connector itself noticed these.
CONNECTOR = "connector"


def action_called(
    action: str,
    options: Mapping[str, Any],
    *,
    event_key: str | None = None,
    requested_by: str | None = None,
) -> Event:
    """The event of one API call; `event_key` None: a fresh one (no idempotency key)."""
    return Event(
        kind=ACTION_CALLED,
        key=event_key or f"api:{uuid.uuid4().hex}",
        provider=CONNECTOR,
        source="api",
        data={"action": action, "options": dict(options), "requested_by": requested_by},
    )


def api_automation(event: Event) -> AutomationConfig | None:
    """The one-step automation an `action_called` event runs; None for any other event.

    The options are the call's validated values: literal, never rendered as
    templates (`connector.automation.calls` refused any).
    """
    if event.kind != ACTION_CALLED:
        return None
    action = event.data.get("action")
    options = event.data.get("options")
    if not isinstance(action, str) or not isinstance(options, dict):
        return None
    step = StepConfig(action=action, id=action, options=dict(options), path="request", line=None)
    return AutomationConfig(
        id=f"{API_AUTOMATION_PREFIX}{action}",
        alias=f"API call: {action}",
        description=None,
        enabled=True,
        triggers=[],
        conditions=[],
        actions=[step],
        path="request",
        line=None,
    )


def run_failed(run: RunRecord) -> Event | None:
    """The `run_failed` event of a failed run (its key is the run's: made twice, it is one)."""
    if run.status != "failed" or run.event.kind == RUN_FAILED:
        return None
    return Event(
        kind=RUN_FAILED,
        key=f"{RUN_FAILED}:{run.run_id}",
        provider=CONNECTOR,
        source="runtime",
        data={
            "run_id": run.run_id,
            "automation": run.automation_id,
            "error": run.error,
            "event_key": run.event.key,
            "event_kind": run.event.kind,
        },
    )


def run_actions(config: ConnectorConfig, automation_id: str) -> list[str]:
    """The actions a run of `automation_id` takes (what a replay would do again): an API
    call's one action, or the steps of the file's automation (none if it is gone)."""
    if automation_id.startswith(API_AUTOMATION_PREFIX):
        return [automation_id[len(API_AUTOMATION_PREFIX) :]]
    for automation in config.automations:
        if automation.id == automation_id:
            return [step.action for step in automation.actions]
    return []


def event_kinds(registry: Registry) -> list[str]:
    """Every kind an event can have, sorted: the triggers' (a source fires its own key),
    and the connector's own (`action_called`, `run_failed`)."""
    kinds = {ACTION_CALLED, RUN_FAILED}
    for spec in registry.triggers.values():
        kinds |= set(spec.kinds or {spec.key})
    return sorted(kinds)
