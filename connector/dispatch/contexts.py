"""The contexts the runtime hands to plugins: a step's, and a trigger source's.

Plugins see them through the Protocols in `connector.automation.specs`; these
classes implement them over a running `Runtime`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from connector.automation.model import StepConfig
from connector.errors import ProviderError
from connector.events import Event
from connector.journal.intents import GENERATE_ACTION, GenerationIntent
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation

if TYPE_CHECKING:
    from connector.dispatch.records import RunRecord
    from connector.dispatch.runtime import Runtime
    from connector.providers.tempolor.client import TempolorClient

_LOGGER = logging.getLogger("connector.dispatch.runtime")


class SourceContext:
    """What a source trigger (schedule, credits_low) gets: a way to fire events.

    The runtime's side of `connector.automation.specs.TriggerContext`.
    """

    def __init__(self, runtime: Runtime, automation_id: str, trigger_index: int) -> None:
        self.runtime = runtime
        self.automation_id = automation_id
        self.trigger_index = trigger_index

    @property
    def finetuning(self) -> FinetuningClient:
        return self.runtime.finetuning

    async def fire(self, kind: str, key: str, data: Mapping[str, Any]) -> bool:
        """Fire an event for this automation only; returns False for a repeat key."""
        event = Event(kind=kind, key=key, source=kind, data=dict(data))
        return await self.runtime.submit_event(event, only_automation=self.automation_id)


class StepContext:
    """What an action gets: the clients, the event, earlier outputs, and its journal.

    The runtime's side of `connector.automation.specs.ActionContext`.
    """

    def __init__(
        self,
        runtime: Runtime,
        run: RunRecord,
        step: StepConfig,
        step_index: int,
        attempt: int,
        variables: Mapping[str, Any],
    ) -> None:
        self.runtime = runtime
        self.run = run
        self.step = step
        self.step_index = step_index
        self.attempt = attempt
        self.variables = variables

    @property
    def event(self) -> Event:
        return self.run.event

    @property
    def finetuning(self) -> FinetuningClient:
        return self.runtime.finetuning

    @property
    def tempolor(self) -> TempolorClient:
        """The TemPolor client; a clear error when the file has no `tempolor:` section."""
        if self.runtime.tempolor is None:
            raise ProviderError(
                "this step uses TemPolor, but the automations file has no 'tempolor:' section "
                "with an api_token",
                code="PROVIDER_NOT_CONFIGURED",
            )
        return self.runtime.tempolor

    @property
    def session(self) -> aiohttp.ClientSession:
        """The connector's HTTP session, for actions that call other servers (downloads, hooks).

        Never close it; it lives as long as the running connector.
        """
        return self.runtime.session

    @property
    def resuming(self) -> bool:
        """An earlier attempt of this step may have taken effect (a crash cut it short)."""
        return self.attempt > 1

    @property
    def allow_local_webhook(self) -> bool:
        """Loopback webhooks are fine when the API itself is on loopback (the sandbox)."""
        return self.runtime.api_is_local

    def webhook_url(self, provider: str = "finetuning") -> str | None:
        """Where providers should send results of what this step submits."""
        return self.runtime.webhook_url(provider)

    async def record_intent(self, fingerprint: Mapping[str, Any]) -> None:
        """Journal what is about to be submitted, before sending it.

        A `generate` step's is a `GenerationIntent` (as JSON): until the step ends,
        a generation matching it counts as ours even if a webhook or the poller
        sees it finish before the step hears back.
        """
        generation = None
        if self.step.action == GENERATE_ACTION:
            generation = GenerationIntent.from_json(fingerprint)  # refused before it is kept
        store = self.runtime.store
        await self.runtime.journal(
            "record an intent", store.record_intent, self.run.run_id, self.step_index, fingerprint
        )
        if generation is not None:
            self.runtime.intents.open(generation, self.run.run_id, self.step_index)

    def intent(self) -> Mapping[str, Any] | None:
        """What an earlier attempt of this step meant to submit, if it got that far."""
        return self.runtime.store.intent(self.run.run_id, self.step_index)

    async def submitted(self, generation: Generation) -> None:
        """Record a generation this connector submitted (filters, fast polling)."""
        await self.runtime.journal(
            "record a submission",
            self.runtime.note_submission,
            generation,
            run_id=self.run.run_id,
        )

    def claimed_by_other(self, generation: Generation) -> str | None:
        """The run that already holds `generation`, when it is not this one."""
        owner = self.runtime.store.submitted_by(generation.provider, generation.id)
        return owner if owner is not None and owner != self.run.run_id else None

    def rival_intents(self, intent: Mapping[str, Any]) -> list[tuple[str, int]]:
        """Other runs' open submissions identical to `intent` (see `OpenIntents.rivals`)."""
        generation = GenerationIntent.from_json(intent)
        return self.runtime.intents.rivals(generation, self.run.run_id, self.step_index)

    async def wait_for(self, generation_id: str, *, timeout: float) -> Generation:
        """Wait until a generation ends (inside the shared read budget)."""
        return await self.finetuning.wait_for_generation(generation_id, timeout=timeout)

    def log(self, message: str) -> None:
        _LOGGER.info("%s/%s: %s", self.run.automation_id, self.step.id, message)
