"""Action: generate a track (optionally waiting for it to finish)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from connector import models
from connector.exceptions import GenerationOutcomeUnknownError
from connector.models import Generation, GenerationRequest
from connector.registry import ActionSpec
from connector.validation import number_range, one_of, templatable

if TYPE_CHECKING:
    from connector.runtime import ActionContext

CLOCK_SKEW = 120.0  # seconds our clock and the server's may disagree by
REQUEST_FIELDS = (
    "tags",
    "lyrics",
    "duration",
    "bpm",
    "language",
    "key",
    "scale",
    "timesignature",
    "seed",
)


def _text(limit: int) -> Any:
    return vol.All(str, vol.Length(max=limit, msg=f"must be at most {limit} characters"))


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Submit (one credit) at most once per step, tell ingress, and wait if asked to.

    Before sending, the step journals its intent (tags, parameters, a seed it
    picks when none is given, the time). If a crash or an unclear answer leaves
    the outcome unknown, the generation the intent describes is looked for
    among recent ones before anything is submitted again.
    """
    fields = {name: options[name] for name in REQUEST_FIELDS if options.get(name) is not None}
    intent = context.intent() if context.resuming else None
    if intent is None:
        fields.setdefault("seed", secrets.randbelow(2**31))
        intent = {**fields, "at": time.time()}
    else:
        fields = {name: intent[name] for name in REQUEST_FIELDS if name in intent}
    generation = await _find(context, intent) if context.resuming else None
    if generation is None:
        webhook = context.webhook_url("finetuning")
        if webhook:
            fields["webhook"] = webhook
        request = GenerationRequest.build(allow_local_webhook=context.allow_local_webhook, **fields)
        context.record_intent(intent)
        try:
            generation = await context.finetuning.create_generation(request)
        except GenerationOutcomeUnknownError:
            generation = await _find(context, intent)
            if generation is None:
                raise
            context.log(f"submission answer lost; found {generation.id} (no second credit)")
    context.submitted(generation)
    if options["wait"] and not generation.is_terminal:
        generation = await context.wait_for(generation.id, timeout=options["wait_timeout"])
    return {
        "id": generation.id,
        "status": generation.status.value,
        "credits_remaining": generation.credits_remaining,
        "generation": generation.to_wire(),
    }


async def _find(context: ActionContext, intent: Mapping[str, Any]) -> Generation | None:
    """The generation an intent describes, among those created since (same tags and seed)."""
    since = datetime.fromtimestamp(float(intent["at"]) - CLOCK_SKEW, UTC)
    async for generation in context.finetuning.iter_generations():
        if generation.created_at is not None and generation.created_at < since:
            return None
        parameters = generation.parameters
        if (
            generation.prompt == intent.get("tags")
            and parameters is not None
            and parameters.seed == intent.get("seed")
        ):
            return generation
    return None


ACTION = ActionSpec(
    key="generate",
    title="Generate a track",
    description="Starts a music generation (spends one credit). With `wait: true` the next steps "
    "see the finished track in `steps.<id>.generation`; otherwise its completion fires "
    "`track_completed` / `generation_failed` like any other.",
    schema=vol.Schema(
        {
            vol.Optional("provider", default="finetuning", description="finetuning"): one_of(
                "finetuning"
            ),
            vol.Required("tags", description="music description, max 700 characters"): templatable(
                _text(models.TAGS_MAX)
            ),
            vol.Optional("lyrics", description="lyrics, max 2000 characters"): templatable(
                _text(models.LYRICS_MAX)
            ),
            vol.Optional("duration", description="seconds, 5-210 (default 60)"): templatable(
                number_range(*models.DURATION_RANGE, " seconds")
            ),
            vol.Optional("bpm", description="tempo, 60-200 (default 120)"): templatable(
                number_range(*models.BPM_RANGE)
            ),
            vol.Optional("language", description="vocal language"): templatable(
                one_of(*models.LANGUAGES)
            ),
            vol.Optional(
                "key", description="musical key (default: the model decides)"
            ): templatable(one_of(*models.KEYS)),
            vol.Optional(
                "scale", description="major or minor (default: the model decides)"
            ): templatable(one_of(*models.SCALES)),
            vol.Optional(
                "timesignature", description="beats per bar, 2-7 (default 4)"
            ): templatable(number_range(*models.TIMESIGNATURE_RANGE)),
            vol.Optional(
                "seed", description="same seed and parameters, similar result"
            ): templatable(vol.Coerce(int)),
            vol.Optional(
                "wait", default=False, description="wait for the track before the next step"
            ): bool,
            vol.Optional(
                "wait_timeout", default=600, description="seconds to wait at most with wait: true"
            ): number_range(10, 3600, " seconds"),
        }
    ),
    example={
        "action": "generate",
        "tags": "lofi chill piano, rainy morning",
        "duration": 90,
        "bpm": 80,
        "wait": True,
    },
    run=run,
    providers=frozenset({"finetuning"}),
    output_example={"id": "…", "status": "completed", "credits_remaining": 1952, "generation": {}},
)
