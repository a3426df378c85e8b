"""Trigger: a generation finished and its track is ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.plugin import TRACK_COMPLETED, Event, TriggerSpec, number_range

from ._filters import FILTER_OPTIONS, passes_filters


def matches(event: Event, options: Mapping[str, Any]) -> bool:
    """A completed generation that passes the filters and is long enough."""
    if not passes_filters(event, options):
        return False
    minimum = options.get("min_duration")
    if minimum is None:
        return True
    duration = event.generation.duration if event.generation else None
    return duration is not None and duration >= minimum


TRIGGER = TriggerSpec(
    key="track_completed",
    title="Track completed",
    description="A generation reached `completed`: its audio is ready. Fires once per track, "
    "whether a webhook or the poller noticed it.",
    schema=vol.Schema(
        {
            **FILTER_OPTIONS,
            vol.Optional(
                "min_duration", description="only tracks at least this many seconds long"
            ): number_range(0, 3600, " seconds"),
        }
    ),
    example={"trigger": "track_completed", "tags_contain": "lofi", "min_duration": 60},
    kinds=frozenset({TRACK_COMPLETED}),
    matches=matches,
)
