"""Generations: creation (credits, queue), the pending -> processing -> final lifecycle, webhooks.

A mixin of `Sandbox` working on the stores of `World`. A generation's outcome
and length are fixed when it is created (from the seed, `failure_rate` and
`fail_marker`); its lifecycle task only applies them on the clock's schedule,
and `complete_now`/`fail_now` apply them at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import audio
from .determinism import stable_uuid, unit_float
from .errors import ApiError
from .formats import audio_length, iso_millis, number, title_from_prompt
from .records import GENERATION_TYPES, KEYS, SCALES, STATUSES, Generation, GenerationParams
from .world import World

DEFAULT_FAILURE_MESSAGE = "GPU job timed out after 240s"
FAILURE_MESSAGES = (
    DEFAULT_FAILURE_MESSAGE,
    "Model inference failed: CUDA out of memory",
    "Audio post-processing failed",
)
NOT_OWNED = "Track not found or not owned by you"  # a bulk-delete item's error


class GenerationsMixin(World):
    """Looking up, creating, finishing and deleting generations."""

    def generation(self, generation_id: str) -> Generation | None:
        """Any generation by id, deleted ones included."""
        return self._generations.get(generation_id)

    def generations(
        self, account: str | None = None, *, include_deleted: bool = True
    ) -> list[Generation]:
        """Generations in creation order, optionally of one account."""
        return [
            g
            for g in self._generations.values()
            if (account is None or g.account == account) and (include_deleted or not g.deleted)
        ]

    def visible_generation(self, account: str, generation_id: str) -> Generation | None:
        """A generation the account owns and that still exists."""
        generation = self._generations.get(generation_id)
        if generation is None or generation.deleted or generation.account != account:
            return None
        return generation

    def list_generations(
        self, account: str, *, status: str | None = None, type_: str | None = None
    ) -> list[Generation]:
        """An account's live generations, newest first by createdAt."""
        rows = [
            g
            for g in self._generations.values()
            if g.account == account
            and not g.deleted
            and (status is None or g.status == status)
            and (type_ is None or g.type == type_)
        ]
        rows.sort(key=lambda g: (g.created_at, g.seq), reverse=True)
        return rows

    def queue_depth(self, name: str) -> int:
        """Pending plus processing generations of an account."""
        return sum(
            1
            for g in self._generations.values()
            if g.account == name and g.in_progress and not g.deleted
        )

    def audio_url(self, generation: Generation, *, webhook_form: bool = False) -> str | None:
        """Where the sandbox serves a completed generation's MP3 (None otherwise).

        The API shows `<base>/audio/<id>.mp3`; the webhook payload uses
        `<base>/<id>.mp3` (docs/providers.md). Both are served.
        """
        if generation.status != "completed" or generation.deleted:
            return None
        base = self._base_url or ""
        if webhook_form:
            return f"{base}/{generation.id}.mp3"
        return f"{base}/audio/{generation.id}.mp3"

    def _pick_key_scale(self, seed: int, key: str | None, scale: str | None) -> tuple[str, str]:
        # "The model decides": a deterministic choice from the seed.
        return key or KEYS[seed % len(KEYS)], scale or SCALES[(seed // len(KEYS)) % 2]

    def _build_generation(
        self,
        account: str,
        params: GenerationParams,
        *,
        type_: str = "music",
        now: float,
    ) -> Generation:
        seq = self._next("generation")
        generation_id = stable_uuid(self.config.seed, "generation", seq)
        seed = params.seed if params.seed is not None else self._random_seed()
        key, scale = self._pick_key_scale(seed, params.key, params.scale)
        outcome_draw = unit_float(self.config.seed, "outcome", seed, seq)
        marker = self.config.fail_marker
        fails = bool(marker) and marker.lower() in params.tags.lower()
        fails = fails or outcome_draw < self.config.failure_rate
        offset = unit_float(self.config.seed, "duration", seed, seq) - 0.5  # within ±0.5 s
        planned = max(1.0, round(float(params.duration) + offset, 1))
        error = FAILURE_MESSAGES[int(unit_float(self.config.seed, "error", seed, seq) * 3)]
        if marker and marker.lower() in params.tags.lower():
            error = DEFAULT_FAILURE_MESSAGE
        return Generation(
            id=generation_id,
            account=account,
            seq=seq,
            prompt=params.tags,
            title=title_from_prompt(params.tags),
            type=type_,
            lyrics=params.lyrics,
            bpm=params.bpm,
            requested_duration=params.duration,
            key=key,
            scale=scale,
            timesignature=params.timesignature,
            language=params.language or "en",
            seed=seed,
            webhook=params.webhook,
            status="pending",
            created_at=float(int(now)),
            submitted_at=now,
            planned_outcome="failed" if fails else "completed",
            planned_duration=planned,
            planned_error=error,
        )

    def create_generation(self, account_name: str, params: GenerationParams) -> Generation:
        """Accept a creation: check credits and queue, spend a credit, start the lifecycle.

        Raises ApiError 402 MONTHLY_LIMIT_REACHED or 429 QUEUE_FULL.
        """
        account = self._accounts[account_name]
        if account.total_remaining <= 0:
            raise ApiError(402, "MONTHLY_LIMIT_REACHED", "No generations remaining this month")
        if self.queue_depth(account_name) >= self.config.max_in_progress:
            raise ApiError(
                429,
                "QUEUE_FULL",
                "Too many generations in progress",
                headers={"Retry-After": str(self._queue_retry_after(account_name))},
            )
        now = self.clock.time()
        generation = self._build_generation(account_name, params, now=now)
        account.spend_credit()
        if self.config.pending_delay <= 0:
            generation.status = "processing"
            generation.started_at = now
        self._generations[generation.id] = generation
        self._start_lifecycle(generation)
        return generation

    def _queue_retry_after(self, account_name: str) -> int:
        # When the first of the account's running generations is due to finish.
        horizon = self.config.pending_delay + self.config.processing_delay
        now = self.clock.time()
        waits = [
            g.submitted_at + horizon - now
            for g in self._generations.values()
            if g.account == account_name and g.in_progress and not g.deleted
        ]
        wait = min(waits) if waits else 1.0
        return max(1, int(-(-wait // 1)))

    def add_track(
        self,
        account: str,
        *,
        prompt: str = "lofi chill piano, vinyl crackle",
        duration: float = 60.0,
        is_public: bool = False,
        status: str = "completed",
        bpm: int | float = 120,
        key: str | None = None,
        scale: str | None = None,
        timesignature: int = 4,
        seed: int | None = None,
        type_: str = "music",
        created_at: float | None = None,
        error_message: str | None = None,
    ) -> Generation:
        """Seed a track directly (no credit spent, no lifecycle, no webhook).

        `duration` is the actual length of a completed track; `status` may be any
        of the four statuses (in-progress ones stay put until completed or failed
        with `complete_now`/`fail_now`).
        """
        if account not in self._accounts:
            raise KeyError(account)
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if type_ not in GENERATION_TYPES:
            raise ValueError("type_ must be music or instrumental")
        now = self.clock.time() if created_at is None else created_at
        params = GenerationParams(
            tags=prompt,
            duration=number(float(round(duration))),
            bpm=bpm,
            key=key,
            scale=scale,
            timesignature=timesignature,
            seed=seed,
        )
        generation = self._build_generation(account, params, type_=type_, now=now)
        generation.seeded = True
        generation.is_public = is_public
        generation.planned_duration = float(duration)
        generation.status = status
        if status != "pending":
            generation.started_at = generation.submitted_at
        if status == "completed":
            self._settle_completed(generation, generation.submitted_at + 12.4, float(duration))
        elif status == "failed":
            generation.completed_at = generation.submitted_at + 240.0
            generation.error_message = error_message or DEFAULT_FAILURE_MESSAGE
        self._generations[generation.id] = generation
        return generation

    def _settle_completed(self, generation: Generation, at: float, duration: float) -> None:
        generation.status = "completed"
        generation.completed_at = int(at * 1000) / 1000
        generation.duration = audio_length(duration)
        generation.generation_time = round(generation.completed_at - generation.submitted_at, 1)
        generation.error_message = None
        generation.file_size = len(self.audio_bytes(generation))

    def audio_bytes(self, generation: Generation) -> bytes:
        """The MP3 of a generation: the same bytes every time, rebuilt on demand.

        Building one takes well under a millisecond, so nothing is cached and
        memory stays flat however many generations a benchmark makes.
        """
        duration = generation.duration or audio_length(generation.planned_duration)
        return audio.mp3_bytes(duration, title=generation.title, seed=generation.seed)

    def complete_now(self, generation_id: str, *, duration: float | None = None) -> Generation:
        """Complete an in-progress generation at once (its webhook fires).

        `duration` overrides the actual length. Raises KeyError for an unknown
        id and ValueError when it is deleted or already finished.
        """
        generation = self._in_progress(generation_id)
        if duration is not None and not 0 < duration <= audio.MAX_DURATION:
            raise ValueError(f"duration must be in (0, {audio.MAX_DURATION:g}] seconds")
        self._cancel_lifecycle(generation_id)
        self._finish(generation, failed=False, duration=duration)
        return generation

    def fail_now(self, generation_id: str, message: str = DEFAULT_FAILURE_MESSAGE) -> Generation:
        """Fail an in-progress generation at once with `message` (its webhook fires)."""
        generation = self._in_progress(generation_id)
        self._cancel_lifecycle(generation_id)
        self._finish(generation, failed=True, error_message=message)
        return generation

    def _in_progress(self, generation_id: str) -> Generation:
        generation = self._generations[generation_id]
        if generation.deleted:
            raise ValueError(f"generation {generation_id} was deleted")
        if not generation.in_progress:
            raise ValueError(f"generation {generation_id} is already {generation.status}")
        return generation

    def _finish(
        self,
        generation: Generation,
        *,
        failed: bool,
        error_message: str | None = None,
        duration: float | None = None,
        at: float | None = None,
    ) -> None:
        now = self.clock.time() if at is None else at
        if generation.started_at is None:
            generation.started_at = now
        if failed:
            generation.status = "failed"
            generation.completed_at = int(now * 1000) / 1000
            generation.error_message = error_message or generation.planned_error
            generation.duration = None
            generation.file_size = None
            generation.generation_time = None
        else:
            actual = generation.planned_duration if duration is None else float(duration)
            self._settle_completed(generation, now, actual)
        if generation.webhook:
            self._spawn(self._deliver(generation))

    async def _deliver(self, generation: Generation) -> None:
        if generation.webhook is None:
            return
        await self.ground_truth.deliver_webhook(
            provider="finetuning",
            generation_id=generation.id,
            url=generation.webhook,
            body=self.webhook_payload(generation),
        )

    def webhook_payload(self, generation: Generation) -> dict[str, Any]:
        """The webhook payload: the generation itself, not wrapped in `data`."""
        completed_at = generation.completed_at
        payload: dict[str, Any] = {
            "id": generation.id,
            "status": generation.status,
            "audioUrl": self.audio_url(generation, webhook_form=True),
            "duration": generation.duration if generation.status == "completed" else None,
            "prompt": generation.prompt,
            "parameters": {
                "bpm": number(generation.bpm),
                "duration": number(generation.requested_duration),
                "keyscale": generation.keyscale,
                "timesignature": generation.timesignature,
                "seed": generation.seed,
            },
            "createdAt": iso_millis(generation.created_at),
            "completedAt": iso_millis(completed_at) if completed_at is not None else None,
        }
        if generation.status == "failed":
            payload["errorMessage"] = generation.error_message
        return payload

    def _start_lifecycle(self, generation: Generation) -> None:
        task = self._spawn(self._lifecycle(generation))
        self._lifecycles[generation.id] = task
        generation_id = generation.id

        def forget(_: asyncio.Task[None]) -> None:
            if self._lifecycles.get(generation_id) is task:
                del self._lifecycles[generation_id]

        task.add_done_callback(forget)

    def _cancel_lifecycle(self, generation_id: str) -> None:
        task = self._lifecycles.pop(generation_id, None)
        if task is not None:
            task.cancel()

    async def _lifecycle(self, generation: Generation) -> None:
        # Transitions are stamped with their scheduled moment, not when the task woke up.
        pending_until = generation.submitted_at + self.config.pending_delay
        await self.clock.sleep_until(pending_until)
        if generation.status == "pending" and not generation.deleted:
            generation.status = "processing"
            generation.started_at = pending_until
        done_at = pending_until + self.config.processing_delay
        await self.clock.sleep_until(done_at)
        if generation.in_progress and not generation.deleted:
            self._finish(generation, failed=generation.planned_outcome == "failed", at=done_at)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def delete_generations(
        self, account: str, ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Bulk delete: (deleted ids, per-item errors keyed by `id`)."""
        deleted: list[str] = []
        errors: list[dict[str, str]] = []
        now = self.clock.time()
        for generation_id in ids:
            generation = self.visible_generation(account, generation_id)
            if generation is None:
                errors.append({"id": generation_id, "error": NOT_OWNED})
                continue
            generation.deleted_at = now
            self._cancel_lifecycle(generation_id)
            for playlist in self._playlists.values():
                if generation_id in playlist.track_ids:
                    playlist.track_ids.remove(generation_id)
                    playlist.updated_at = now
            deleted.append(generation_id)
        return deleted, errors
