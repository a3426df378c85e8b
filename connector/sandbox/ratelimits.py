"""The Finetuning.ai rate limits: sliding-window counters per account and bucket."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .clock import Clock
from .config import SandboxConfig


@dataclass
class RateDecision:
    """The verdict of one rate-limit check."""

    allowed: bool
    bucket: str
    limit: int
    remaining: int
    retry_after: int = 0  # whole seconds until a slot frees, on refusal
    token: float | None = None  # identifies the slot taken, for refund()


class RateLimiter:
    """Sliding-window request counters per account and bucket ("read", "generation")."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def limit(self, bucket: str) -> int:
        """The configured limit of a bucket."""
        if bucket == "generation":
            return self._config.generation_limit
        return self._config.read_limit

    def _window(self, account: str, bucket: str) -> deque[float]:
        hits = self._hits.setdefault((account, bucket), deque())
        horizon = self._clock.time() - self._config.rate_window
        while hits and hits[0] <= horizon:
            hits.popleft()
        return hits

    def peek(self, account: str, bucket: str) -> RateDecision:
        """The bucket's state without counting a request."""
        limit = self.limit(bucket)
        used = len(self._window(account, bucket))
        return RateDecision(True, bucket, limit, max(0, limit - used))

    def hit(self, account: str, bucket: str) -> RateDecision:
        """Count one request, or refuse it (a refused request takes no slot)."""
        limit = self.limit(bucket)
        hits = self._window(account, bucket)
        now = self._clock.time()
        if len(hits) >= limit:
            # The slot frees when the oldest counted request leaves the window.
            frees_at = hits[len(hits) - limit] + self._config.rate_window if limit > 0 else now
            wait = frees_at - now
            retry_after = max(1, int(-(-wait // 1)))
            return RateDecision(False, bucket, limit, 0, retry_after)
        hits.append(now)
        return RateDecision(True, bucket, limit, max(0, limit - len(hits)), token=now)

    def refund(self, account: str, decision: RateDecision) -> RateDecision:
        """Give back the slot `decision` took; returns the bucket's new state."""
        hits = self._hits.get((account, decision.bucket))
        if hits is not None and decision.token is not None:
            for index in range(len(hits) - 1, -1, -1):
                if hits[index] == decision.token:
                    del hits[index]
                    break
        return self.peek(account, decision.bucket)

    def reset(self) -> None:
        """Forget every counted request."""
        self._hits.clear()
