"""What every part of the `Sandbox` shares: configuration, clock, collaborators and stores.

`Sandbox` (`state.py`) is assembled from this base and two mixins that work on
its stores, `GenerationsMixin` (`generations.py`) and `PlaylistsMixin`
(`playlists.py`). Everything random is derived from `SandboxConfig.seed`, so
two sandboxes with the same seed and the same requests produce the same ids,
seeds, outcomes and durations.
"""

from __future__ import annotations

import asyncio

from .clock import Clock
from .config import SandboxConfig
from .determinism import stable_uuid, unit_float
from .faults import FaultInjector
from .ground_truth import GroundTruth
from .ratelimits import RateLimiter
from .records import Account, Generation, Playlist
from .tempolor_state import TempolorRecorder


class World:
    """The sandbox's state and collaborators, and the id and seed counters."""

    def __init__(self, config: SandboxConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = clock or Clock()
        self.ground_truth = GroundTruth(self.clock, webhook_timeout=self.config.webhook_timeout)
        self.rate_limiter = RateLimiter(self.config, self.clock)
        self.faults = FaultInjector(self.config.seed, self.config.faults)
        # One clock for both providers, so a ManualClock drives TemPolor jobs too.
        self.tempolor = TempolorRecorder(
            self.config, clock=self.clock.time, sleep_until=self.clock.sleep_until
        )
        self._base_url: str | None = None
        self._accounts: dict[str, Account] = {}
        self._by_key: dict[str, Account] = {}
        self._generations: dict[str, Generation] = {}
        self._playlists: dict[str, Playlist] = {}
        self._counters: dict[str, int] = {}
        self._lifecycles: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # lifecycles and webhook deliveries

    @property
    def base_url(self) -> str | None:
        """The public base URL (http://host:port), known once the server is bound."""
        return self._base_url

    @base_url.setter
    def base_url(self, value: str | None) -> None:
        self._base_url = value.rstrip("/") if value else value
        self.ground_truth.base_url = self._base_url

    def _next(self, kind: str) -> int:
        self._counters[kind] = self._counters.get(kind, 0) + 1
        return self._counters[kind]

    def _new_id(self, kind: str) -> str:
        return stable_uuid(self.config.seed, kind, self._next(kind))

    def _random_seed(self) -> int:
        n = self._next("seed")
        return int(unit_float(self.config.seed, "seed", n) * 2_147_483_647)
