"""Action: generate a track (optionally waiting for it to finish)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import voluptuous as vol

from connector.errors import GenerationFailedError, GenerationOutcomeUnknownError
from connector.journal.intents import GENERATE_ACTION, GenerationIntent, reply_ref_for
from connector.plugin import ActionContext, ActionSpec, number_range, one_of, templatable
from connector.providers.finetuning import models
from connector.providers.finetuning.models import Generation, GenerationRequest, GenerationStatus
from connector.providers.tempolor.models import TempolorJob


class AmbiguousSubmissionError(GenerationOutcomeUnknownError):
    """An unclear create answer, and more than one generation (or run) it could be."""


CLOCK_SKEW = 120.0  # seconds our clock and TemPolor's may disagree by (replyRef is unique)
# A generation adopted after an unclear answer must be created after the intent was
# journaled; this allows for timestamps cut to the second and a little clock drift.
ADOPTION_SKEW = 2.0


def _text(limit: int) -> Any:
    return vol.All(str, vol.Length(max=limit, msg=f"must be at most {limit} characters"))


FINETUNING_ONLY = ("duration", "language", "timesignature", "seed")
TEMPOLOR_ONLY = ("instrumental", "model", "tonality", "chords")


def check(options: Mapping[str, Any]) -> None:
    """Options the chosen provider does not have are refused at load time, by name."""
    provider = options.get("provider", "finetuning")
    if provider == "tempolor":
        extra = [name for name in FINETUNING_ONLY if name in options]
        if extra:
            raise vol.Invalid(f"{', '.join(extra)}: not available for provider 'tempolor'")
        bpm = options.get("bpm")
        if isinstance(bpm, int | float) and not 50 <= bpm <= 190:
            raise vol.Invalid(f"bpm: must be between 50 and 190 for TemPolor (got {bpm})")
        if not options.get("instrumental") and any(n in options for n in ("bpm", "tonality")):
            raise vol.Invalid("bpm and tonality: TemPolor takes them for instrumentals only")
        model = options.get("model")
        song_models, instrumental_models = ("v3", "v3.5"), ("i3", "i3.5 beta")
        allowed = instrumental_models if options.get("instrumental") else song_models
        if model is not None and model not in allowed:
            raise vol.Invalid(f"model: must be one of {', '.join(allowed)} (got {model!r})")
    else:
        extra = [name for name in TEMPOLOR_ONLY if name in options and name != "instrumental"]
        if options.get("instrumental"):
            extra.insert(0, "instrumental")
        if extra:
            raise vol.Invalid(f"{', '.join(extra)}: only available for provider 'tempolor'")
        bpm = options.get("bpm")
        low, high = models.BPM_RANGE
        if isinstance(bpm, int | float) and not low <= bpm <= high:
            raise vol.Invalid(f"bpm: must be between {low} and {high} (got {bpm})")


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Submit (one credit) at most once per step, tell ingress, and wait if asked to.

    Before sending, the step journals its intent (tags, parameters, a seed it
    picks when none is given, the time). If a crash or an unclear answer leaves
    the outcome unknown, the generation the intent describes is looked for
    among recent ones before anything is submitted again.
    """
    if options["provider"] == "tempolor":
        return await _tempolor(context, options)
    intent = _journaled(context) if context.resuming else None
    if intent is None:
        seed = secrets.randbelow(2**31)
        intent = GenerationIntent.finetuning(options, default_seed=seed, at=time.time())
    fields = intent.request_fields()
    generation = await _find(context, intent) if context.resuming else None
    if generation is None:
        webhook = context.webhook_url("finetuning")
        if webhook:
            fields["webhook"] = webhook
        request = GenerationRequest.build(allow_local_webhook=context.allow_local_webhook, **fields)
        await context.record_intent(intent.to_json())
        try:
            generation = await context.finetuning.create_generation(request)
        except GenerationOutcomeUnknownError:
            generation = await _find(context, intent)
            if generation is None:
                raise
            context.log(f"submission answer lost; found {generation.id} (no second credit)")
    await context.submitted(generation)
    if options["wait"] and not generation.is_terminal:
        generation = await context.wait_for(generation.id, timeout=options["wait_timeout"])
    _fail_if_failed(generation, options)
    return {
        "id": generation.id,
        "status": generation.status.value,
        "credits_remaining": generation.credits_remaining,
        "generation": generation.to_wire(),
    }


def _fail_if_failed(generation: Generation, options: Mapping[str, Any]) -> None:
    """With `wait: true`, a failed generation fails the step with the provider's reason,
    so the next steps do not run on a track that does not exist; `continue_on_error:
    true` lets the run go on (the output's `status` then says `failed`)."""
    if (
        options["wait"]
        and generation.status is GenerationStatus.FAILED
        and not options["continue_on_error"]
    ):
        reason = generation.error_message or "no reason given"
        raise GenerationFailedError(
            f"generation {generation.id} failed: {reason} "
            "(continue_on_error: true lets the next steps run anyway)"
        )


async def _tempolor(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """TemPolor: a song (with lyrics) or an instrumental; `replyRef` identifies the step,
    so an unknown outcome is reconciled by finding the job that carries it."""
    client = context.tempolor
    reference = reply_ref_for(context.run.run_id, context.step_index)
    job = await _find_job(context, reference) if context.resuming else None
    if job is None:
        fields: dict[str, Any] = {"prompt": options["tags"], "replyRef": reference}
        webhook = context.webhook_url("tempolor")
        if webhook:
            fields["replyUrl"] = webhook
        intent = GenerationIntent.tempolor(reference, at=time.time())
        await context.record_intent(intent.to_json())
        try:
            if options["instrumental"]:
                for name in ("bpm", "chords", "tonality"):
                    if options.get(name) is not None:
                        fields[name] = options[name]
                if options.get("key") and options.get("scale") and "tonality" not in fields:
                    fields["tonality"] = f"{options['key']}:{options['scale']}"
                if options.get("model"):
                    fields["model_instrumental"] = options["model"]
                jobs = await client.create_instrumental(**fields)
            else:
                if options.get("lyrics"):
                    fields["lyrics"] = options["lyrics"]
                if options.get("model"):
                    fields["model_song"] = options["model"]
                jobs = await client.create_song(**fields)
        except GenerationOutcomeUnknownError:
            job = await _find_job(context, reference)
            if job is None:
                raise
        else:
            job = jobs[0]
    generation = job.to_generation()
    await context.submitted(generation)
    if options["wait"] and not generation.is_terminal:
        job = await client.wait_for_job(generation.id, timeout=options["wait_timeout"])
        generation = job.to_generation()
    _fail_if_failed(generation, options)
    return {
        "id": generation.id,
        "status": generation.status.value,
        "credits_remaining": None,
        "generation": generation.to_wire(),
    }


async def _find_job(context: ActionContext, reference: str) -> TempolorJob | None:
    """The TemPolor job an earlier attempt of this step created (it carries `replyRef`)."""
    intent = _journaled(context)
    since = datetime.fromtimestamp((intent.at if intent else time.time()) - CLOCK_SKEW, UTC)
    async for job in context.tempolor.iter_jobs():
        if job.reply_ref == reference:
            return job
        if job.created_at is not None and job.created_at < since:
            return None
    return None


def _journaled(context: ActionContext) -> GenerationIntent | None:
    """The intent an earlier attempt of this step journaled, if it got that far.

    One this version cannot read fails the step (`IntentFormatError`): what the
    earlier attempt submitted is then unknown, and guessing could adopt another
    run's generation or spend a second credit.
    """
    journaled = context.intent()
    return GenerationIntent.from_json(journaled) if journaled is not None else None


async def _find(context: ActionContext, intent: GenerationIntent) -> Generation | None:
    """The generation an intent describes, if exactly one can be this step's.

    A candidate has the intent's tags and seed, was created after the intent
    was journaled (give or take `ADOPTION_SKEW`), and belongs to no other run.
    While another run holds an open intent with the same tags and seed (a fixed
    `seed`), the answer cannot be told apart and the step fails with a clear
    error instead: adopting another run's track would lose this one's, and
    submitting again could spend a second credit.
    """
    since = datetime.fromtimestamp(intent.at - ADOPTION_SKEW, UTC)
    candidates: list[Generation] = []
    async for generation in context.finetuning.iter_generations():
        if generation.created_at is not None and generation.created_at < since:
            break
        parameters = generation.parameters
        if (
            generation.prompt == intent.tags
            and parameters is not None
            and parameters.seed == intent.seed
            and _same_parameters(intent, parameters)
            and context.claimed_by_other(generation) is None
        ):
            candidates.append(generation)
    if not candidates:
        return None
    rivals = context.rival_intents(intent.to_json())
    if rivals or len(candidates) > 1:
        found = ", ".join(g.id for g in candidates)
        who = (
            f"run {', '.join(run for run, _ in rivals)} submitted the same tags and seed"
            if rivals
            else f"{len(candidates)} generations match"
        )
        raise AmbiguousSubmissionError(
            f"the outcome of this step's submission is unknown and cannot be told apart: {who} "
            f"(seed {intent.seed}; found {found}). Nothing was adopted and nothing "
            "resubmitted: check the account, then `ftconnect replay` the run if it is needed. "
            "A random seed (the default) avoids this."
        )
    return candidates[0]


def _same_parameters(intent: GenerationIntent, parameters: models.GenerationParameters) -> bool:
    """Whether what the server echoes agrees with what the intent asked for.

    A parameter the intent did not set, or the server does not echo (the list
    omits `language`), is no evidence either way.
    """

    def differs(asked: Any, echoed: Any, same: Any = lambda a, b: a == b) -> bool:
        return asked is not None and echoed is not None and not same(asked, echoed)

    return not (
        differs(intent.duration, parameters.duration, lambda a, b: abs(a - b) < 0.5)
        or differs(intent.bpm, parameters.bpm)
        or differs(intent.timesignature, parameters.timesignature)
        or differs(intent.language, parameters.language)
        or differs(intent.key, parameters.key, lambda a, b: a.lower() == b.lower())
        or differs(intent.scale, parameters.scale, lambda a, b: a.lower() == b.lower())
    )


ACTION = ActionSpec(
    key=GENERATE_ACTION,  # its intents are GenerationIntents: the runtime matches them
    title="Generate a track",
    description="Starts a music generation (spends one credit). With `wait: true` the next steps "
    "see the finished track in `steps.<id>.generation`; otherwise its completion fires "
    "`track_completed` / `generation_failed` like any other.",
    schema=vol.Schema(
        {
            vol.Optional(
                "provider", default="finetuning", description="finetuning or tempolor"
            ): one_of("finetuning", "tempolor"),
            vol.Optional(
                "instrumental", default=False, description="TemPolor: an instrumental, not a song"
            ): bool,
            vol.Optional("model", description="TemPolor: v3, v3.5 (songs); i3, i3.5 beta"): one_of(
                "v3", "v3.5", "i3", "i3.5 beta"
            ),
            vol.Optional("tonality", description="TemPolor instrumentals: e.g. F:minor"): (
                templatable(str)
            ),
            vol.Optional("chords", description="TemPolor instrumentals: chords, max 200"): (
                templatable(_text(200))
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
            vol.Optional(
                "bpm", description="tempo, 60-200 (TemPolor instrumentals: 50-190)"
            ): templatable(number_range(50, 200)),
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
            vol.Optional(
                "continue_on_error",
                default=False,
                description="with wait: true, go on when the generation fails (default: the "
                "step fails with the provider's reason)",
            ): bool,
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
    check=check,
    providers=frozenset({"finetuning", "tempolor"}),
    output_example={"id": "…", "status": "completed", "credits_remaining": 1952, "generation": {}},
)
