"""The TemPolor (useapi.net) side's vocabulary and records: statuses, models, jobs, accounts.

Plain data; `TempolorRecorder` (`tempolor_state.py`) holds and drives them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

STATUS_GENERATING = 0
STATUS_FAILED = 10
STATUS_COMPLETED = 30
STATUS_NAMES = {
    STATUS_GENERATING: "GENERATING",
    STATUS_FAILED: "FAILED",
    STATUS_COMPLETED: "COMPLETED",
}

SONG_MODELS = ("v3", "v3.5")
INSTRUMENTAL_MODELS = ("i3", "i3.5 beta")
TONALITIES = tuple(
    f"{root}:{mode}"
    for root in ("A", "Ab", "B", "Bb", "C#", "C", "D", "E", "Eb", "F#", "F", "G")
    for mode in ("major", "minor")
)
FILE_FORMATS = ("mp3", "wav", "stems")
MAX_JOBS_LIMIT = 10
DEFAULT_PAGE_SIZE = 20

JOB_ID_PATTERN = re.compile(
    r"^user:(?P<user>[0-9]+)-tempolor:(?P<user_id>[A-Za-z0-9_.]+)-job:(?P<item>[0-9A-Za-z]+)$"
)

JobKind = Literal["song", "instrumental"]


def iso(epoch: float) -> str:
    """useapi.net's timestamps: ISO 8601 UTC with milliseconds (`2025-01-15T10:30:00.000Z`)."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class TempolorAccount:
    """A TemPolor account configured under one useapi.net token (POST accounts)."""

    user_id: str
    owner: str  # name of the sandbox account whose token configured it
    max_jobs: int = MAX_JOBS_LIMIT
    request_params: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        """The body of GET accounts/{user_id}."""
        return {
            "user_id": self.user_id,
            "updated": int(self.updated * 1000),
            "updatedUTC": iso(self.updated),
            "maxJobs": self.max_jobs,
            "requestParams": self.request_params,
        }


@dataclass
class TempolorJob:
    """One generation job: what was asked, what was decided, where it stands."""

    job_id: str
    item_id: str
    owner: str  # sandbox account name (the token that created it)
    user_id: str  # TemPolor account it runs on
    kind: JobKind
    sequence: int  # creation order, for newest-first listing
    params: dict[str, Any]  # the validated request parameters
    model: str  # public model name, e.g. "v3.5" or "i3.5 beta"
    title: str
    style: str
    key: str  # e.g. "F:minor"
    bpm: int
    duration: int  # seconds, reported as musicMaterial.dur once completed
    seed: int
    planned_status: int  # outcome the lifecycle will apply (30 or 10)
    planned_error: str | None
    created_at: float  # epoch seconds, from the recorder's clock
    updated_at: float
    status: int = STATUS_GENERATING
    progress: int = 0
    error: str | None = None
    downloads: int = 0

    @property
    def prompt(self) -> str:
        """The prompt the job was created with."""
        return str(self.params["prompt"])

    @property
    def reply_url(self) -> str | None:
        """The replyUrl to call when the job turns final, if any."""
        value = self.params.get("replyUrl")
        return str(value) if value else None

    @property
    def final(self) -> bool:
        """True once the job is COMPLETED or FAILED."""
        return self.status != STATUS_GENERATING


@dataclass
class CallbackAttempt:
    """One replyUrl delivery: `status` when the receiver answered, else `error`."""

    job_id: str
    url: str
    body: dict[str, Any]
    at: float
    status: int | None = None
    error: str | None = None


@dataclass
class RecordedRequest:
    """One request the sub-application answered (the bearer token is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    account: str | None  # sandbox account name when the token was valid
    status: int
    at: float
    body: dict[str, Any] | None = None


@dataclass
class DownloadLink:
    """A download URL handed out by GET music/download/{job_id}."""

    secret: str
    job_id: str
    file_format: str
    filename: str
    url: str
    expires_at: float  # epoch seconds, compared with the recorder's clock
