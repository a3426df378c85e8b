"""The Finetuning.ai stand-in's state machine: `Sandbox`, assembled from its parts.

Nothing here knows about HTTP routing; `finetuning.py` renders this state in the
documented shapes and `app.py` wires it to aiohttp. The parts:

* `world.py` (`World`): configuration, clock, ground truth, rate limiter, fault
  injector, the TemPolor recorder, the stores and the seeded id counters;
* `generations.py` (`GenerationsMixin`): creation, lifecycle, webhooks, deletion;
* `playlists.py` (`PlaylistsMixin`): the playlist endpoints' rules;
* this module: accounts, the seeded start-up world, the control surface used by
  tests and `/_sandbox/*`, and the JSON snapshot of everything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from .clock import Clock
from .config import AccountConfig, FaultRule, SandboxConfig
from .determinism import stable_uuid, unit_float
from .generations import GenerationsMixin
from .ground_truth import FailedCommit, RequestRecord, WebhookAttempt
from .playlists import PlaylistsMixin
from .records import Account, Generation

_SEED_PROMPTS = (
    "lofi chill piano, vinyl crackle, rainy night",
    "modern country instrumental, acoustic guitar strumming, pedal steel guitar",
    "epic orchestral trailer, big drums, choir",
    "synthwave night drive, analog pads, gated drums",
    "smooth jazz saxophone evening, brushed drums",
    "ambient drone, field recordings, slow evolving textures",
    "upbeat funk groove, slap bass, horn section",
    "acoustic folk ballad, fingerpicked guitar, warm vocals",
)


class Sandbox(GenerationsMixin, PlaylistsMixin):
    """The Finetuning.ai stand-in's state, lifecycle driver and ground truth.

    Ground truth: `accounts`, `generations()`, `generation(id)`, `playlists()`,
    `webhook_attempts`, `webhook_attempts_for(id)`, `requests`, `failed_commits`,
    `credits_spent(name)`, `tempolor` (the TemPolor recorder) and `snapshot()`
    (everything, JSON-able).
    Driving: `complete_now(id)`, `fail_now(id, message)`, `add_track(...)`,
    `add_playlist(...)`, `set_faults(rules)`, `reset_rate_limits()`,
    `set_credits(...)`, `set_tier(...)`, `settle()`.
    """

    def __init__(self, config: SandboxConfig | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self._seed_world()

    # ------------------------------------------------------------------ accounts

    @property
    def accounts(self) -> list[Account]:
        """Every account, in configuration order."""
        return list(self._accounts.values())

    def account(self, name: str) -> Account:
        """The account called `name` (KeyError when unknown)."""
        return self._accounts[name]

    def account_for_key(self, api_key: str) -> Account | None:
        """The account an API key belongs to."""
        return self._by_key.get(api_key)

    def credits_spent(self, name: str) -> int:
        """Credits the account spent through the sandbox since start-up."""
        return self._accounts[name].credits_spent

    def set_tier(self, name: str, tier: str) -> None:
        """Change an account's plan (e.g. to "free" to get PRO_PLAN_REQUIRED)."""
        self._accounts[name].tier = tier

    def set_credits(
        self,
        name: str,
        *,
        monthly_generations: int | None = None,
        generations_used: int | None = None,
        pack_credits: int | None = None,
    ) -> Account:
        """Change an account's balance (e.g. to exhaust it)."""
        account = self._accounts[name]
        if monthly_generations is not None:
            account.monthly_generations = monthly_generations
        if generations_used is not None:
            account.generations_used = generations_used
        if pack_credits is not None:
            account.pack_credits = pack_credits
        return account

    # ------------------------------------------------------------------ seeding

    def _seed_world(self) -> None:
        start = float(int(self.clock.time()))
        for index, account_config in enumerate(self.config.accounts):
            self._seed_account(index, account_config, start)

    def _seed_account(self, index: int, account_config: AccountConfig, start: float) -> None:
        seed = self.config.seed
        account = Account(
            name=account_config.name,
            email=account_config.email,
            tier=account_config.tier,
            user_id=stable_uuid(seed, "user", account_config.name),
            api_key=self.config.api_key_for(account_config),
            tempolor_token=self.config.tempolor_token_for(account_config),
            monthly_generations=account_config.monthly_generations,
            generations_used=account_config.generations_used,
            pack_credits=account_config.pack_credits,
        )
        if account.name in self._accounts:
            raise ValueError(f"two accounts are called {account.name!r}")
        self._accounts[account.name] = account
        self._by_key[account.api_key] = account
        tracks: list[Generation] = []
        count = account_config.seed_tracks
        for i in range(count):
            draw = unit_float(seed, "seed-track", account.name, i)
            track = self.add_track(
                account.name,
                prompt=_SEED_PROMPTS[(index * 3 + i) % len(_SEED_PROMPTS)],
                duration=round(30 + draw * 150, 1),
                is_public=i % 2 == 0,
                bpm=60 + int(draw * 1000) % 120,
                created_at=start - (count - i) * 3600 - index * 600,
            )
            track.play_count = int(draw * 1000) % 50
            track.download_count = int(draw * 10_000) % 7
            track.like_count = int(draw * 100_000) % 12
            tracks.append(track)
        if account_config.seed_playlists:
            week_ago = start - 7 * 86_400
            focus = self.add_playlist(
                account.name,
                "Focus Beats",
                description="Deep-work soundtrack",
                track_ids=[t.id for t in tracks[:3]],
                created_at=week_ago,
            )
            focus.updated_at = start - 86_400
            self.add_playlist(
                account.name,
                "Public Picks",
                is_public=True,
                track_ids=[t.id for t in tracks if t.is_public][:2],
                created_at=week_ago + 3600,
            )
            # Empty: where the README's examples file new tracks before moving them
            # (the API cannot create playlists, so the sandbox starts with one).
            self.add_playlist(
                account.name,
                "Inbox",
                description="New tracks, to sort",
                created_at=week_ago + 7200,
            )

    # ------------------------------------------------------------------ control

    def set_faults(self, rules: Iterable[FaultRule]) -> None:
        """Replace the fault rules in force (ValueError on a bad rule)."""
        self.faults.replace(rules)

    def reset_rate_limits(self) -> None:
        """Forget every counted request, as if a window had passed."""
        self.rate_limiter.reset()

    @property
    def webhook_attempts(self) -> list[WebhookAttempt]:
        """Every Finetuning webhook attempt, in order (see `webhook_attempts_for`)."""
        return list(self.ground_truth.webhook_attempts)

    def webhook_attempts_for(self, generation_id: str) -> list[WebhookAttempt]:
        """The webhook attempts of one generation."""
        return self.ground_truth.webhook_attempts_for(generation_id)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every HTTP request received (TemPolor's included), in order of their answers."""
        return list(self.ground_truth.requests)

    @property
    def failed_commits(self) -> list[FailedCommit]:
        """Creations that were committed although the client got an error."""
        return list(self.ground_truth.failed_commits)

    async def settle(self, rounds: int = 20) -> None:
        """Let woken lifecycle tasks run and wait for webhook deliveries in flight."""
        for _ in range(rounds):
            await asyncio.sleep(0)
        deliveries = [t for t in self._tasks if t not in self._lifecycles.values()]
        if deliveries:
            await asyncio.gather(*deliveries, return_exceptions=True)
        await self.tempolor.settle()
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def wait_for_status(
        self,
        generation_id: str,
        statuses: Iterable[str] = ("completed", "failed"),
        *,
        within: float,
    ) -> Generation:
        """Poll the ground truth (real time) until a generation reaches a status."""
        wanted = set(statuses)
        deadline = time.monotonic() + within
        while True:
            generation = self._generations[generation_id]
            if generation.status in wanted:
                return generation
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{generation_id} is still {generation.status}")
            await asyncio.sleep(0.01)

    def snapshot(self) -> dict[str, Any]:
        """Everything the sandbox knows, JSON-able (GET /_sandbox/state)."""
        return {
            "base_url": self._base_url,
            "time": self.clock.time(),
            "config": {
                "seed": self.config.seed,
                "pending_delay": self.config.pending_delay,
                "processing_delay": self.config.processing_delay,
                "failure_rate": self.config.failure_rate,
                "fail_marker": self.config.fail_marker,
                "read_limit": self.config.read_limit,
                "generation_limit": self.config.generation_limit,
                "rate_window": self.config.rate_window,
                "max_in_progress": self.config.max_in_progress,
                "strict_webhooks": self.config.strict_webhooks,
            },
            "accounts": [a.to_dict() for a in self._accounts.values()],
            "generations": [g.to_dict() for g in self._generations.values()],
            "playlists": [p.to_dict() for p in self._playlists.values()],
            "webhook_attempts": [a.to_dict() for a in self.ground_truth.webhook_attempts],
            "requests": [r.to_dict() for r in self.ground_truth.requests],
            "failed_commits": [c.to_dict() for c in self.ground_truth.failed_commits],
            "events": [e.to_dict() for e in self.ground_truth.events],
            "faults": [asdict(rule) for rule in self.faults.rules],
            "tempolor": {
                "jobs": [asdict(job) for job in self.tempolor.jobs.values()],
                "callbacks": [asdict(attempt) for attempt in self.tempolor.callbacks],
            },
        }

    async def aclose(self) -> None:
        """Cancel the lifecycle timers and webhook deliveries, close the HTTP session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.ground_truth.aclose()
        await self.tempolor.close()
