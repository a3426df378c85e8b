"""Configuration of the sandbox: accounts, timings, limits and injected faults.

Shared by the Finetuning.ai routes, the TemPolor sub-application and the CLI, so
every knob is spelled once. All durations are seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def derived_api_key(seed: int, account_name: str) -> str:
    """A Finetuning.ai key of the documented shape, stable for a seed and account."""
    digest = hashlib.sha256(f"finetuning:{seed}:{account_name}".encode()).hexdigest()
    return "ft_live_" + digest[:32]


def derived_tempolor_token(seed: int, account_name: str) -> str:
    """A useapi.net-style bearer token, stable for a seed and account."""
    digest = hashlib.sha256(f"tempolor:{seed}:{account_name}".encode()).hexdigest()
    return "user:" + digest[:8] + "-" + digest[8:40]


@dataclass
class AccountConfig:
    """One sandbox account (one API key, its own tracks, playlists and credits)."""

    name: str
    email: str
    tier: str = "pro"  # "pro" and "lifetime" have API access; anything else gets 403
    monthly_generations: int = 2000
    generations_used: int = 0
    pack_credits: int = 0
    api_key: str | None = None  # derived from the seed when None
    tempolor_token: str | None = None  # derived from the seed when None
    seed_tracks: int = 6  # completed tracks created at start-up (some public)
    seed_playlists: bool = True  # two private (one empty: Inbox) and a public at start-up


@dataclass
class FaultRule:
    """Faults injected on requests whose method and path match.

    `route` is "METHOD /path/pattern" with `*` as a wildcard for one path
    segment or more, e.g. "POST /v1/generations" or "GET /v1/generations/*";
    "*" alone matches every request.
    """

    route: str = "*"
    error_rate: float = 0.0  # fraction answered 500 or 503 (alternating)
    latency: float = 0.0  # seconds added before handling
    drop_rate: float = 0.0  # fraction whose connection is closed without an answer
    # POST /v1/generations only: the next N creations are committed (credit spent,
    # generation exists and runs) but the client is answered 500 INTERNAL_ERROR.
    commit_then_fail: int = 0


@dataclass
class SandboxConfig:
    """Everything the sandbox can be told. Defaults suit an interactive demo."""

    seed: int = 1
    pending_delay: float = 1.0  # seconds in "pending" before "processing"
    processing_delay: float = 3.0  # seconds in "processing" before the outcome
    failure_rate: float = 0.0  # fraction of generations that end "failed"
    # Generations whose tags contain this marker always fail (demos and tests).
    fail_marker: str = "#fail"
    read_limit: int = 60  # GET and bulk requests per window per account
    generation_limit: int = 10  # POST /v1/generations per window per account
    rate_window: float = 60.0
    max_in_progress: int = 20  # QUEUE_FULL past this many pending+processing
    # True: webhooks must be public https, as the real service demands.
    # False: http(s) URLs on loopback are accepted too (local use).
    strict_webhooks: bool = False
    webhook_timeout: float = 10.0
    download_link_ttl: float = 600.0  # TemPolor download links expire after this
    accounts: list[AccountConfig] = field(
        default_factory=lambda: [
            AccountConfig(name="Demo User", email="demo@sandbox.local"),
            AccountConfig(name="Second User", email="second@sandbox.local"),
            AccountConfig(name="Free User", email="free@sandbox.local", tier="free", seed_tracks=1),
        ]
    )
    faults: list[FaultRule] = field(default_factory=list)

    def api_key_for(self, account: AccountConfig) -> str:
        return account.api_key or derived_api_key(self.seed, account.name)

    def tempolor_token_for(self, account: AccountConfig) -> str:
        return account.tempolor_token or derived_tempolor_token(self.seed, account.name)
