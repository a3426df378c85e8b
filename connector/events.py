"""Events: what triggers see, whatever the provider or the source that noticed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.providers.finetuning.models import Generation, GenerationStatus, iso_utc

TRACK_COMPLETED = "track_completed"
GENERATION_FAILED = "generation_failed"
SCHEDULE = "schedule"
CREDITS_LOW = "credits_low"
# A run of an automation (or of an API call) ended failed; never for a run started by one.
RUN_FAILED = "run_failed"
# An action called over the HTTP API: its run's one step is that action.
ACTION_CALLED = "action_called"


@dataclass(frozen=True)
class Event:
    """Something happened that automations may act on.

    `key` identifies the event across every source (webhook, poller, replay):
    for a generation it is (provider, generation id, terminal status), so the
    same completion seen twice is one event.
    """

    kind: str
    key: str
    provider: str = "finetuning"
    generation: Generation | None = None
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "poll"  # "webhook", "poll", "schedule", "account", "replay"
    submitted_by_connector: bool = False
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def for_generation(
        cls,
        generation: Generation,
        *,
        source: str,
        submitted_by_connector: bool = False,
    ) -> Event:
        """The terminal event of a generation (completed or failed)."""
        if not generation.status.is_terminal:
            raise ValueError(f"generation {generation.id} is {generation.status.value}, not final")
        completed = generation.status is GenerationStatus.COMPLETED
        kind = TRACK_COMPLETED if completed else GENERATION_FAILED
        return cls(
            kind=kind,
            key=generation_event_key(generation.provider, generation.id, generation.status.value),
            provider=generation.provider,
            generation=generation,
            source=source,
            submitted_by_connector=submitted_by_connector,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON: what `notify_webhook` sends and `ftconnect events --json` shows.

        The connector's own keys are snake_case; the generation is the API's own
        wire form (camelCase, as Finetuning.ai writes it) plus `provider`; every
        time is ISO 8601 UTC with `Z` (see `models.iso_utc`).
        """
        return {
            "key": self.key,
            "kind": self.kind,
            "provider": self.provider,
            "source": self.source,
            "generation": generation_dict(self.generation) if self.generation else None,
            "data": dict(self.data),
            "submitted_by_connector": self.submitted_by_connector,
            "occurred_at": iso_utc(self.occurred_at),
        }

    def variables(self) -> dict[str, Any]:
        """What templates see as `trigger`."""
        generation = None
        if self.generation is not None:
            generation = self.generation.model_dump()
            generation["provider"] = self.generation.provider
            generation["status"] = self.generation.status.value
            parameters = self.generation.parameters
            generation["key"] = parameters.key if parameters else None
            generation["scale"] = parameters.scale if parameters else None
            generation["tags"] = self.generation.prompt
        return {
            "kind": self.kind,
            "key": self.key,
            "provider": self.provider,
            "generation": generation,
            "data": dict(self.data),
            "source": self.source,
            "submitted_by_connector": self.submitted_by_connector,
            "occurred_at": self.occurred_at,
        }


def generation_dict(generation: Generation) -> dict[str, Any]:
    """A generation as JSON, the one shape used wherever one is written or sent: the API's
    wire form (camelCase names, ISO 8601 UTC times) plus `provider`."""
    return {**generation.to_wire(), "provider": generation.provider}


def generation_event_key(provider: str, generation_id: str, status: str) -> str:
    """The identity of a generation's terminal event."""
    return f"{provider}:{generation_id}:{status}"
