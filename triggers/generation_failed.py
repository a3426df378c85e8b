"""Trigger: a generation ended in `failed`."""

from __future__ import annotations

import voluptuous as vol

from connector.plugin import GENERATION_FAILED, TriggerSpec

from ._filters import FILTER_OPTIONS, passes_filters

TRIGGER = TriggerSpec(
    key="generation_failed",
    title="Generation failed",
    description="A generation ended in `failed`; `trigger.generation.error_message` says why. "
    "Fires once per generation.",
    schema=vol.Schema(dict(FILTER_OPTIONS)),
    example={"trigger": "generation_failed", "only_submitted_by_connector": True},
    kinds=frozenset({GENERATION_FAILED}),
    matches=passes_filters,
)
