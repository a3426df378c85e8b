"""Trigger: a run ended failed, so a flow or Home Assistant can raise the alarm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.plugin import RUN_FAILED, Event, TriggerSpec


def _automation_ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise vol.Invalid("must be an automation id or a list of them")
    return [item.strip() for item in items]


def matches(event: Event, options: Mapping[str, Any]) -> bool:
    """Any failed run, or only those of the automations named (`api.<action>` for calls)."""
    wanted = options.get("automation")
    return not wanted or event.data.get("automation") in wanted


TRIGGER = TriggerSpec(
    key="run_failed",
    title="Run failed",
    description="A run of an automation, or an action called over the HTTP API (automation "
    "`api.<action>`), ended `failed`; `trigger.data` holds `run_id`, `automation`, `error`, "
    "`event_key` and `event_kind`. Never fires for a run that a `run_failed` event started, "
    "so an alerting automation that fails cannot loop.",
    schema=vol.Schema(
        {
            vol.Optional(
                "automation",
                description="only runs of this automation id (or these ids); default: any",
            ): _automation_ids,
        }
    ),
    example={"trigger": "run_failed", "automation": "file_finished_tracks"},
    kinds=frozenset({RUN_FAILED}),
    matches=matches,
)
