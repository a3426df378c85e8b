"""The ground truth: an append-only record of what the sandbox really did.

Tests assert against it rather than against what a client was told. The
TemPolor sub-application keeps its own (`TempolorRecorder`, reachable as
`Sandbox.tempolor`); `GroundTruth` is the Finetuning side's, and its recording
API is usable by any other part of the sandbox:

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
import json
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from .clock import Clock
from .webhook_urls import NOT_LOOPBACK_ERROR, is_loopback_url

WEBHOOK_USER_AGENT = "finetuning-webhook/1.0"


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
