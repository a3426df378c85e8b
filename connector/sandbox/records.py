"""The Finetuning side's records: accounts, generations (tracks) and playlists.

Plain data with the rules that belong to one record (credits, visibility);
`Sandbox` holds them and drives their lifecycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("pending", "processing", "completed", "failed")
IN_PROGRESS = ("pending", "processing")
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = ("major", "minor")
LANGUAGES = ("en", "ja", "de", "fr", "es", "zh", "ko", "pt", "it", "ru")
GENERATION_TYPES = ("music", "instrumental")


@dataclass
class Account:
    """One account: its key, plan and credit balance."""

    name: str
    email: str
    tier: str
    user_id: str
    api_key: str
    tempolor_token: str
    monthly_generations: int
    generations_used: int
    pack_credits: int
    credits_spent: int = 0  # credits spent through the sandbox since start-up

    @property
    def has_api_access(self) -> bool:
        """Pro and Lifetime plans have API access; every other tier gets 403."""
        return self.tier.lower() in ("pro", "lifetime")

    @property
    def monthly_remaining(self) -> int:
        """Generations left in the monthly allowance."""
        return max(0, self.monthly_generations - self.generations_used)

    @property
    def total_remaining(self) -> int:
        """Monthly remaining plus pack credits."""
        return self.monthly_remaining + self.pack_credits

    def spend_credit(self) -> None:
        """Spend one credit: the monthly allowance first, then pack credits."""
        if self.monthly_remaining > 0:
            self.generations_used += 1
        elif self.pack_credits > 0:
            self.pack_credits -= 1
        else:
            raise ValueError("no credits left")
        self.credits_spent += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, for /_sandbox/state."""
        data = asdict(self)
        data["monthly_remaining"] = self.monthly_remaining
        data["total_remaining"] = self.total_remaining
        return data


@dataclass
class GenerationParams:
    """A validated POST /v1/generations body (None = omitted, the service decides)."""

    tags: str
    lyrics: str | None = None
    duration: int | float = 60
    bpm: int | float = 120
    language: str | None = None
    key: str | None = None
    scale: str | None = None
    timesignature: int = 4
    seed: int | None = None
    webhook: str | None = None


@dataclass
class Generation:
    """One generation (a "track") with everything the sandbox knows about it."""

    id: str
    account: str  # owner's account name
    seq: int  # creation order, the tie-break of "newest first"
    prompt: str
    title: str
    type: str
    lyrics: str | None
    bpm: int | float
    requested_duration: int | float
    key: str
    scale: str
    timesignature: int
    language: str
    seed: int
    webhook: str | None
    status: str
    created_at: float  # whole seconds, so every timestamp format shows the same instant
    submitted_at: float  # precise, drives the lifecycle
    planned_outcome: str  # "completed" or "failed", fixed at creation
    planned_duration: float  # the actual length it will have if it completes
    planned_error: str
    is_public: bool = False
    started_at: float | None = None
    completed_at: float | None = None
    duration: float | None = None  # actual length, once completed
    file_size: int | None = None
    generation_time: float | None = None
    error_message: str | None = None
    play_count: int = 0
    download_count: int = 0
    like_count: int = 0
    deleted_at: float | None = None
    commit_failed: bool = False  # created, but the client was answered 500 (commit_then_fail)
    seeded: bool = False  # made at start-up or by add_track(), not through the API

    @property
    def keyscale(self) -> str:
        """Key and scale merged, e.g. "C minor"."""
        return f"{self.key} {self.scale}"

    @property
    def deleted(self) -> bool:
        """Whether bulk-delete removed it."""
        return self.deleted_at is not None

    @property
    def in_progress(self) -> bool:
        """Pending or processing."""
        return self.status in IN_PROGRESS

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, for /_sandbox/state."""
        data = asdict(self)
        data["keyscale"] = self.keyscale
        data["deleted"] = self.deleted
        return data


@dataclass
class Playlist:
    """A playlist; tracks are generation ids in playlist order."""

    id: str
    owner: str  # account name
    name: str
    description: str | None
    is_public: bool
    created_at: float
    updated_at: float
    track_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, for /_sandbox/state."""
        return asdict(self)
