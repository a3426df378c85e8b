"""The sandbox's world: accounts, generations, playlists, their lifecycle and the ground truth.

Nothing here knows about HTTP routing; `finetuning.py` renders this state in the
documented shapes and `app.py` wires it to aiohttp. Everything random is derived
from `SandboxConfig.seed`, so two sandboxes with the same seed and the same
requests produce the same ids, seeds, outcomes and durations.

The TemPolor sub-application keeps its own ground truth (`TempolorRecorder`,
reachable as `Sandbox.tempolor`). `GroundTruth` is the Finetuning side's, and
its recording API is usable by any other part of the sandbox:

* `GroundTruth.deliver_webhook(provider=, generation_id=, url=, body=, user_agent=)`
  POSTs `body` as JSON exactly once, only to a loopback address (any other
  URL is recorded as "not delivered"), never raises, and returns the recorded
  `WebhookAttempt`.
* `GroundTruth.record_webhook_attempt(...)` records an attempt made elsewhere.
* `GroundTruth.record_event(provider, kind, subject_id, **data)` records any
  other fact worth asserting on.
* `GroundTruth.clock` is the sandbox's injectable clock and
  `GroundTruth.base_url` its public base URL (None until the server is bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import random
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from . import audio
from .config import AccountConfig, FaultRule, SandboxConfig
from .tempolor import TempolorRecorder

STATUSES = ("pending", "processing", "completed", "failed")
IN_PROGRESS = ("pending", "processing")
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = ("major", "minor")
LANGUAGES = ("en", "ja", "de", "fr", "es", "zh", "ko", "pt", "it", "ru")
GENERATION_TYPES = ("music", "instrumental")
WEBHOOK_USER_AGENT = "finetuning-webhook/1.0"
NOT_LOOPBACK_ERROR = "not delivered: the sandbox only delivers to loopback"
DEFAULT_FAILURE_MESSAGE = "GPU job timed out after 240s"
FAILURE_MESSAGES = (
    DEFAULT_FAILURE_MESSAGE,
    "Model inference failed: CUDA out of memory",
    "Audio post-processing failed",
)

# Reasons of the playlist endpoints, spelled exactly as documented (§7).
PLAYLIST_NOT_FOUND = "Playlist not found"
NOT_AUTHORIZED = "Not authorized to modify this playlist"
TRACK_NOT_FOUND = "Track not found"
PRIVATE_INTO_PUBLIC = "Cannot add private track to public playlist"
ALREADY_IN_PLAYLIST = "Track already in playlist"
FOREIGN_INTO_PRIVATE = "Cannot add another user's track to a private playlist"
NOT_IN_PLAYLIST = "Track not found in playlist or not authorized"
NOT_OWNED = "Track not found or not owned by you"


class ApiError(Exception):
    """An answer in the documented error envelope: `{"error": {"code", "message"[, "details"]}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


# --------------------------------------------------------------------------- clocks


class Clock:
    """Wall-clock time (epoch seconds) and sleeping until a moment: the real thing."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Return once `time()` has reached `deadline`."""
        delay = deadline - self.time()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock(Clock):
    """A clock that only moves when told to, so tests need not wait.

    Starts at 2025-01-15 10:30:00 UTC (the docs' example instant) unless given
    another epoch time. `advance()` wakes every sleeper whose deadline passed;
    let the event loop run (e.g. `await sandbox.settle()`) to see the effects.
    """

    def __init__(self, start: float = 1_736_937_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        """The current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (≥ 0) and wake the sleepers now due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        still_waiting: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, future in self._sleepers:
            if deadline <= self._now:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((deadline, future))
        self._sleepers = still_waiting

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `advance()` reaches `deadline` (returns at once if already there)."""
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (deadline, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            with contextlib.suppress(ValueError):
                self._sleepers.remove(entry)


# --------------------------------------------------------------------------- formats


def iso_seconds(ts: float) -> str:
    """`2025-01-15T10:30:00Z`: the create response's createdAt."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_seconds(ts: float) -> str:
    """`2025-01-15 10:30:00` (UTC, no zone): GET detail and playlist timestamps."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_millis(ts: float) -> str:
    """`2025-01-15T10:30:17.623Z`: completedAt and the webhook timestamps."""
    millis = int(ts * 1000)
    seconds, ms = divmod(millis, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def audio_length(seconds: float) -> float:
    """The exact length of the MP3 the sandbox serves for `seconds` (whole 36 ms frames)."""
    return round(audio.frame_count(seconds) * audio.FRAME_SECONDS, 3)


def number(value: float) -> int | float:
    """A JSON number: integral values as int (as the docs print them), others as float."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def title_from_prompt(prompt: str) -> str:
    """The title the service derives: the first words of the first phrase, capitalized."""
    phrase = prompt.split(",", 1)[0]
    words = phrase.split()[:3]
    title = " ".join(word[:1].upper() + word[1:] for word in words)
    return title or "Untitled"


# --------------------------------------------------------------------------- determinism


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()


def unit_float(*parts: object) -> float:
    """A float in [0, 1) fixed by its arguments."""
    return int.from_bytes(_digest(*parts)[:7], "big") / float(1 << 56)


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID string fixed by its arguments."""
    return str(uuid.UUID(bytes=_digest(*parts)[:16], version=4))


# --------------------------------------------------------------------------- webhook URLs


def _host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a URL host denotes, including legacy IPv4 forms such as `127.1` or `0x7f.1`."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Resolvers treat an all-numeric last label as an IPv4 literal, so must we.
    last = host.rsplit(".", 1)[-1]
    if re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last, re.IGNORECASE):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _normalized_host(url: str) -> str | None:
    # Backslashes and control characters are where URL parsers disagree: refuse them,
    # so the host checked here is the host aiohttp would connect to.
    if "\\" in url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return None
    try:
        host = urlsplit(url).hostname
        yarl_host = URL(url).host
    except ValueError:
        return None
    if not host or not yarl_host:
        return None
    host = host.rstrip(".").lower()
    if host != yarl_host.strip("[]").rstrip(".").lower():
        return None
    return host


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this machine's loopback (127.0.0.0/8, ::1 or localhost)."""
    host = _normalized_host(url)
    if host is None:
        return False
    if host == "localhost":
        return True
    ip = _host_ip(host)
    return ip is not None and ip.is_loopback


def _is_public_host(host: str) -> bool:
    ip = _host_ip(host)
    if ip is not None:
        return ip.is_global and not ip.is_multicast
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    labels = host.split(".")
    # A single label (an intranet name) is not publicly resolvable.
    if len(labels) < 2:
        return False
    return all(re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?", label) for label in labels)


def webhook_problem(url: str, *, strict: bool) -> str | None:
    """Why `url` is not an acceptable webhook, or None when it is.

    Strict (the real service): HTTPS on a public host. Otherwise loopback http(s)
    URLs are accepted as well, so local receivers can be used.
    """
    if len(url) > 2048:
        return "webhook must be at most 2048 characters"
    if strict:
        problem = "webhook must be a valid HTTPS URL on a public host (no localhost or private IPs)"
    else:
        problem = (
            "webhook must be a valid HTTPS URL on a public host, "
            "or an http(s) URL on loopback (127.0.0.0/8, ::1, localhost)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return problem
    scheme = parts.scheme.lower()
    host = _normalized_host(url)
    if host is None or scheme not in ("http", "https"):
        return problem
    if scheme == "https" and _is_public_host(host):
        return None
    if not strict and is_loopback_url(url):
        return None
    return problem


# --------------------------------------------------------------------------- records


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


@dataclass
class WebhookAttempt:
    """One webhook POST the sandbox made (or refused to make)."""

    provider: str  # "finetuning" or "tempolor"
    generation_id: str
    url: str
    body: Any
    at: float
    status: int | None = None  # the receiver's HTTP status, when it answered
    error: str | None = None  # why there is no status (refused, timeout, not delivered)
    delivered: bool = False  # whether a connection to the receiver was attempted
    response_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class RequestRecord:
    """One HTTP request the sandbox received."""

    method: str
    path: str
    query: str
    status: int | None  # None when the connection was dropped without an answer
    account: str | None
    bucket: str | None  # "read", "generation" or None when not counted
    fault: str | None  # "latency", "drop", "error_500", "error_503", "commit_then_fail"
    at: float
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class FailedCommit:
    """A creation that really happened although the client was told it failed."""

    generation_id: str
    account: str
    status: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class Event:
    """A fact recorded by a sub-application (see `GroundTruth.record_event`)."""

    provider: str
    kind: str
    subject_id: str
    at: float
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


# --------------------------------------------------------------------------- ground truth


class GroundTruth:
    """Append-only record of what the sandbox really did; shared with the TemPolor app.

    See the module docstring for the recording API meant for sub-applications.
    """

    def __init__(self, clock: Clock, *, webhook_timeout: float) -> None:
        self.clock = clock
        self.webhook_timeout = webhook_timeout
        self.base_url: str | None = None
        self.webhook_attempts: list[WebhookAttempt] = []
        self.requests: list[RequestRecord] = []
        self.failed_commits: list[FailedCommit] = []
        self.events: list[Event] = []
        self._session: aiohttp.ClientSession | None = None

    def record_webhook_attempt(
        self,
        *,
        provider: str,
        generation_id: str,
        url: str,
        body: Any,
        status: int | None = None,
        error: str | None = None,
        delivered: bool = True,
        response_text: str | None = None,
    ) -> WebhookAttempt:
        """Record one webhook attempt and return it."""
        attempt = WebhookAttempt(
            provider=provider,
            generation_id=generation_id,
            url=url,
            body=body,
            at=self.clock.time(),
            status=status,
            error=error,
            delivered=delivered,
            response_text=response_text,
        )
        self.webhook_attempts.append(attempt)
        return attempt

    def record_request(self, record: RequestRecord) -> None:
        """Record one HTTP request (done by the request-log middleware for every path)."""
        self.requests.append(record)

    def record_failed_commit(self, generation_id: str, account: str, status: int) -> FailedCommit:
        """Record a creation answered with an error although it was committed."""
        commit = FailedCommit(generation_id, account, status, self.clock.time())
        self.failed_commits.append(commit)
        return commit

    def record_event(self, provider: str, kind: str, subject_id: str, **data: Any) -> Event:
        """Record any other fact (e.g. provider="tempolor", kind="job_completed")."""
        event = Event(provider, kind, subject_id, self.clock.time(), dict(data))
        self.events.append(event)
        return event

    def webhook_attempts_for(self, generation_id: str) -> list[WebhookAttempt]:
        """Every attempt made for one generation (or TemPolor job)."""
        return [a for a in self.webhook_attempts if a.generation_id == generation_id]

    async def deliver_webhook(
        self,
        *,
        provider: str,
        generation_id: str,
        url: str,
        body: Any,
        user_agent: str = WEBHOOK_USER_AGENT,
    ) -> WebhookAttempt:
        """POST `body` as JSON to `url` exactly once and record the outcome; never raises.

        Only loopback URLs are contacted: anything else is recorded as not
        delivered, so the sandbox can never send traffic off the machine.
        """
        if not is_loopback_url(url):
            return self.record_webhook_attempt(
                provider=provider,
                generation_id=generation_id,
                url=url,
                body=body,
                error=NOT_LOOPBACK_ERROR,
                delivered=False,
            )
        if self._session is None or self._session.closed:
            # force_close: one fresh connection per attempt, so nothing is ever resent.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            )
        headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        payload = json.dumps(body).encode()
        try:
            # No redirects: following one could lead the sandbox off loopback.
            async with self._session.post(
                url, data=payload, headers=headers, allow_redirects=False
            ) as response:
                text = await response.text(errors="replace")
                status: int | None = response.status
                error: str | None = None
        except asyncio.CancelledError:
            self.record_webhook_attempt(
                provider=provider,
                generation_id=generation_id,
                url=url,
                body=body,
                error="cancelled: the sandbox shut down",
            )
            raise
        except TimeoutError:
            status, error, text = None, f"timeout after {self.webhook_timeout}s", ""
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            status, error, text = None, f"{type(exc).__name__}: {exc}", ""
        return self.record_webhook_attempt(
            provider=provider,
            generation_id=generation_id,
            url=url,
            body=body,
            status=status,
            error=error,
            response_text=text[:2000] or None,
        )

    async def aclose(self) -> None:
        """Close the webhook HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


# --------------------------------------------------------------------------- rate limits


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


# --------------------------------------------------------------------------- faults


@dataclass
class ActiveFault:
    """A FaultRule with its runtime state (RNG, counters)."""

    rule: FaultRule
    method: str | None
    pattern: re.Pattern[str]
    rng: random.Random
    served_errors: int = 0
    commits_left: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to a request."""
        if self.method is not None and self.method != method.upper():
            return False
        return self.pattern.fullmatch(path) is not None


def compile_route(route: str) -> tuple[str | None, re.Pattern[str]]:
    """Split "METHOD /path/*" into a method (None = any) and a path regex."""
    route = route.strip()
    method: str | None = None
    pattern = route
    if " " in route:
        method, pattern = route.split(None, 1)
        method = None if method == "*" else method.upper()
        pattern = pattern.strip()
    if pattern in ("", "*"):
        return method, re.compile(".*")
    regex = "[^/]+(?:/[^/]+)*".join(re.escape(part) for part in pattern.split("*"))
    return method, re.compile(regex)


def validate_fault_rule(rule: FaultRule) -> None:
    """Raise ValueError when a rule's numbers are out of range."""
    for name in ("error_rate", "drop_rate"):
        value = getattr(rule, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
    if isinstance(rule.latency, bool) or not isinstance(rule.latency, int | float):
        raise ValueError("latency must be a number of seconds")
    if rule.latency < 0:
        raise ValueError("latency must not be negative")
    if isinstance(rule.commit_then_fail, bool) or not isinstance(rule.commit_then_fail, int):
        raise ValueError("commit_then_fail must be an integer")
    if rule.commit_then_fail < 0:
        raise ValueError("commit_then_fail must not be negative")
    if not isinstance(rule.route, str):
        raise ValueError("route must be a string")


class FaultInjector:
    """The fault rules in force and their deterministic random draws."""

    def __init__(self, seed: int, rules: Iterable[FaultRule] = ()) -> None:
        self._seed = seed
        self._generation = 0
        self.active: list[ActiveFault] = []
        self.replace(rules)

    @property
    def rules(self) -> list[FaultRule]:
        """The rules in force."""
        return [active.rule for active in self.active]

    def replace(self, rules: Iterable[FaultRule]) -> None:
        """Put new rules in force (validated; counters and RNGs restart)."""
        rules = list(rules)
        for rule in rules:
            validate_fault_rule(rule)
        self._generation += 1
        active = []
        for index, rule in enumerate(rules):
            method, pattern = compile_route(rule.route)
            rng = random.Random(f"{self._seed}:faults:{self._generation}:{index}")
            active.append(ActiveFault(rule, method, pattern, rng, 0, rule.commit_then_fail))
        self.active = active

    def matching(self, method: str, path: str) -> list[ActiveFault]:
        """The rules that apply to a request, in order."""
        return [active for active in self.active if active.matches(method, path)]


# --------------------------------------------------------------------------- the sandbox

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


class Sandbox:
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._seed_world()

    # ------------------------------------------------------------------ basics

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

    def audio_url(self, generation: Generation, *, webhook_form: bool = False) -> str | None:
        """Where the sandbox serves a completed generation's MP3 (None otherwise).

        The API shows `<base>/audio/<id>.mp3`; the webhook payload uses
        `<base>/<id>.mp3` (§14 #7). Both are served.
        """
        if generation.status != "completed" or generation.deleted:
            return None
        base = self._base_url or ""
        if webhook_form:
            return f"{base}/{generation.id}.mp3"
        return f"{base}/audio/{generation.id}.mp3"

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

    def queue_depth(self, name: str) -> int:
        """Pending plus processing generations of an account."""
        return sum(
            1
            for g in self._generations.values()
            if g.account == name and g.in_progress and not g.deleted
        )

    # ------------------------------------------------------------------ generations

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
        """The §11 payload (not wrapped in `data`)."""
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

    # ------------------------------------------------------------------ playlists

    def playlist(self, playlist_id: str) -> Playlist | None:
        """Any playlist by id."""
        return self._playlists.get(playlist_id)

    def playlists(self, account: str | None = None) -> list[Playlist]:
        """Playlists in creation order, optionally of one owner."""
        return [p for p in self._playlists.values() if account is None or p.owner == account]

    def visible_playlist(self, account: str, playlist_id: str) -> Playlist | None:
        """The account's own playlist, or another user's public one."""
        playlist = self._playlists.get(playlist_id)
        if playlist is None or (playlist.owner != account and not playlist.is_public):
            return None
        return playlist

    def playlist_tracks(self, playlist: Playlist) -> list[Generation]:
        """The playlist's tracks, in playlist order."""
        return [self._generations[t] for t in playlist.track_ids if t in self._generations]

    def add_playlist(
        self,
        account: str,
        name: str,
        *,
        is_public: bool = False,
        description: str | None = None,
        track_ids: Iterable[str] = (),
        created_at: float | None = None,
    ) -> Playlist:
        """Create a playlist directly (the API itself cannot create playlists)."""
        if account not in self._accounts:
            raise KeyError(account)
        now = self.clock.time() if created_at is None else created_at
        playlist = Playlist(
            id=self._new_id("playlist"),
            owner=account,
            name=name,
            description=description,
            is_public=is_public,
            created_at=now,
            updated_at=now,
            track_ids=list(track_ids),
        )
        self._playlists[playlist.id] = playlist
        return playlist

    def _add_problem(self, account: str, playlist_id: str, track_id: str) -> str | None:
        playlist = self.visible_playlist(account, playlist_id)
        if playlist is None:
            return PLAYLIST_NOT_FOUND
        if playlist.owner != account:
            return NOT_AUTHORIZED
        track = self._generations.get(track_id)
        if track is None or track.deleted or (track.account != account and not track.is_public):
            return TRACK_NOT_FOUND
        if playlist.is_public and not track.is_public:
            return PRIVATE_INTO_PUBLIC
        if not playlist.is_public and track.account != account:
            return FOREIGN_INTO_PRIVATE
        if track_id in playlist.track_ids:
            return ALREADY_IN_PLAYLIST
        return None

    def add_tracks(
        self, account: str, playlist_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Add tracks one by one: (added ids, per-item errors keyed by `trackId`)."""
        added: list[str] = []
        errors: list[dict[str, str]] = []
        for track_id in track_ids:
            problem = self._add_problem(account, playlist_id, track_id)
            if problem is not None:
                errors.append({"trackId": track_id, "error": problem})
                continue
            playlist = self._playlists[playlist_id]
            playlist.track_ids.append(track_id)
            playlist.updated_at = self.clock.time()
            added.append(track_id)
        return added, errors

    def remove_tracks(
        self, account: str, playlist_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Take tracks out of an own playlist: (removed ids, per-item errors)."""
        removed: list[str] = []
        errors: list[dict[str, str]] = []
        playlist = self._playlists.get(playlist_id)
        for track_id in track_ids:
            if playlist is None or playlist.owner != account or track_id not in playlist.track_ids:
                errors.append({"trackId": track_id, "error": NOT_IN_PLAYLIST})
                continue
            playlist.track_ids.remove(track_id)
            playlist.updated_at = self.clock.time()
            removed.append(track_id)
        return removed, errors

    def move_tracks(
        self, account: str, source_id: str, target_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Add each track to the target and, only if that worked, remove it from the source."""
        moved: list[str] = []
        errors: list[dict[str, str]] = []
        for track_id in track_ids:
            source = self.visible_playlist(account, source_id)
            if source is None:
                problem: str | None = PLAYLIST_NOT_FOUND
            elif source.owner != account:
                problem = NOT_AUTHORIZED
            elif track_id not in source.track_ids:
                problem = NOT_IN_PLAYLIST
            else:
                problem = self._add_problem(account, target_id, track_id)
            if source is None or problem is not None:
                errors.append({"trackId": track_id, "error": problem or PLAYLIST_NOT_FOUND})
                continue
            target = self._playlists[target_id]
            now = self.clock.time()
            target.track_ids.append(track_id)
            target.updated_at = now
            source.track_ids.remove(track_id)
            source.updated_at = now
            moved.append(track_id)
        return moved, errors

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
