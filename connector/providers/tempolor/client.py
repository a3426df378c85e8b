"""Async client for TemPolor through useapi.net, the connector's second provider.

Every public method is a thin typed wrapper returning a model; HTTP, retries and
the transport errors are `connector.providers.http.ApiClient`'s, so both clients
raise the same exception tree. This module adds what is useapi.net's own: the
bearer token, bare JSON answers, `{"error": <text>, "code": <status>}` errors
classed by HTTP status, and download links that expire.

    async with TempolorClient(api_token) as client:
        [job] = await client.create_song(prompt="epic orchestral", lyrics="...")
        done = await client.wait_for_job(job.job_id)
        link = await client.get_download_url(done.job_id)  # expires: use it at once
        generation = done.to_generation()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp

from connector.errors import (
    AuthenticationError,
    FieldProblem,
    GenerationOutcomeUnknownError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    MonthlyLimitReachedError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RequestValidationError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)
from connector.providers.http import (
    DEFAULT_CONNECT_TIMEOUT,
    ApiClient,
    Retry,
    parse_model,
    path_segment,
    retry_after_seconds,
)
from connector.providers.ratelimit import Clock, Sleep, WaitCallback
from connector.providers.tempolor.credentials import (
    DEFAULT_BASE_URL,
    check_api_token,
    redact_token,
)
from connector.providers.tempolor.models import (
    FILE_FORMATS,
    JOB_TYPES,
    InstrumentalRequest,
    SongRequest,
    TempolorDownload,
    TempolorJob,
    TempolorJobPage,
    TempolorRequest,
)

__all__ = ["ProgressCallback", "TempolorClient", "TempolorJobTimeoutError"]

_LOGGER = logging.getLogger(__name__)

ProgressCallback = Callable[[TempolorJob], Awaitable[None] | None]

_R = TypeVar("_R", bound=TempolorRequest)

# useapi.net answers `{"error": <text>, "code": <status>}`: the status decides the class.
_ERRORS_BY_STATUS: dict[int, tuple[type[ProviderError], str]] = {
    400: (ValidationError, "VALIDATION_ERROR"),
    401: (InvalidApiKeyError, "INVALID_API_KEY"),
    402: (MonthlyLimitReachedError, "PAYMENT_REQUIRED"),
    403: (AuthenticationError, "FORBIDDEN"),
    404: (NotFoundError, "NOT_FOUND"),
    429: (RateLimitedError, "RATE_LIMITED"),
}


class TempolorJobTimeoutError(GenerationTimeoutError):
    """wait_for_job gave up; the job keeps running at TemPolor."""

    def __init__(self, job_id: str, timeout: float, last_status: str | None) -> None:
        super().__init__(job_id, timeout, last_status)
        # The parent's hint names the Finetuning CLI; this one names the client call.
        self.message = (
            f"TemPolor job {job_id} still {last_status or 'unknown'} after {timeout:g} s; "
            "it keeps running at TemPolor: check it later with get_job()"
        )
        self.args = (self.message,)


class TempolorClient(ApiClient):
    """Client for TemPolor through useapi.net (songs, instrumentals, jobs, downloads).

    A session passed in is used and never closed; one the client makes itself
    is closed by `close()` / `async with`. `clock` is wall-clock epoch seconds
    (download links' `expires_at` is computed from it); `sleep` is used for
    retry backoff and polling, so tests can pass fakes for both.

    Retries as `FinetuningClient`: `max_retries` times, `connect_retries` times
    (default: `max_retries`) when the connection never opened; `connect_timeout`
    bounds opening a connection. No client-side budget: useapi.net publishes no
    request rate, so a 429 and its `Retry-After` are the only guide. A backoff
    over 2 s is logged at INFO on `connector.waits` and passed to `on_wait` (see
    `connector.providers.ratelimit.WaitCallback`).
    """

    provider_label = "TemPolor "
    _logger = _LOGGER

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 60.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = 4,
        connect_retries: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_wait: WaitCallback | None = None,
    ) -> None:
        api_token = check_api_token(api_token)
        super().__init__(
            secret=api_token,
            secret_shown=redact_token(api_token),
            base_url=base_url,
            default_base_url=DEFAULT_BASE_URL,
            session=session,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            connect_retries=connect_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            clock=clock,
            sleep=sleep,
            on_wait=on_wait,
        )

    def __repr__(self) -> str:
        token = self.api_token_hint
        return f"TempolorClient(base_url={str(self.base_url)!r}, api_token={token!r})"

    @property
    def api_token_hint(self) -> str:
        """The redacted token, for diagnostics."""
        return self._secret_shown

    # -- transport ---------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        *segments: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        retry: Retry = Retry.SAFE,
    ) -> Any:
        """Send one API call and return its parsed JSON answer, retrying what is safe."""
        url = self.base_url.joinpath(*segments)
        return await self._send(method, url, params=params, body=body, retry=retry)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"}

    def _answer(
        self, status: int, raw: bytes, content_type: str, retry_after_header: str | None
    ) -> Any:
        payload: Any = None
        parsed = False
        if raw:
            with contextlib.suppress(ValueError):
                payload, parsed = json.loads(raw), True
        if 200 <= status < 300:
            if not parsed:
                snippet = self._text(raw, 120)
                raise UnexpectedResponseError(
                    f"HTTP {status} with a non-JSON answer "
                    f"({content_type or 'no content type'}): {snippet!r}",
                    status=status,
                )
            return payload
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, str) and error:
            message = self._redact(error)
            details = self._redact(payload)
        else:
            details = self._redact(payload) if parsed else None
            text = self._text(raw, 200)
            kind = "an answer without an error text" if parsed else "a non-JSON answer"
            message = f"HTTP {status} with {kind}" + (f": {text}" if text else "")
        retry_after = retry_after_seconds(retry_after_header)
        cls, code = _ERRORS_BY_STATUS.get(status, (UnexpectedResponseError, f"HTTP_{status}"))
        if status >= 500:
            cls, code = ServerError, f"HTTP_{status}"
        raise cls(message, code=code, status=status, details=details, retry_after=retry_after)

    def _outcome_unknown(self, err: ProviderError) -> GenerationOutcomeUnknownError:
        return _outcome_unknown(str(err), err.status, err.details)

    # -- creating ----------------------------------------------------------------------

    async def create_song(
        self,
        request: SongRequest | Mapping[str, Any] | str | None = None,
        /,
        **fields: Any,
    ) -> list[TempolorJob]:
        """POST music/song: start a song with vocals; spends TemPolor credit.

        Takes a `SongRequest`, a mapping, a prompt string, or keyword fields
        (`prompt`, `lyrics`, `model_song`, `artistVoiceItemId`,
        `clonedVoiceItemId`, `midiItemId`, `user_id`, `replyUrl`, `replyRef`,
        `maxJobs`; snake_case names work too), all checked before anything is
        sent. Returns the jobs started (one per request on the sandbox).
        Retried only on 429 and on connections that never opened; an unclear
        outcome raises `GenerationOutcomeUnknownError` rather than risk a
        second job.
        """
        built = _build(SongRequest, request, fields)
        return await self._create("song", built)

    async def create_instrumental(
        self,
        request: InstrumentalRequest | Mapping[str, Any] | str | None = None,
        /,
        **fields: Any,
    ) -> list[TempolorJob]:
        """POST music/instrumental: start an instrumental; spends TemPolor credit.

        Fields: `prompt`, `model_instrumental`, `tonality` (`A:major` …
        `G:minor`), `bpm` (50–190), `chords`, `user_id`, `replyUrl`,
        `replyRef`, `maxJobs`; checked before sending. Retries as `create_song`.
        """
        built = _build(InstrumentalRequest, request, fields)
        return await self._create("instrumental", built)

    async def _create(self, kind: str, request: TempolorRequest) -> list[TempolorJob]:
        data = await self._request(
            "POST", "music", kind, body=request.to_payload(), retry=Retry.CREATE
        )
        try:
            return _created_jobs(data)
        except UnexpectedResponseError as err:
            # A 2xx means the job most likely started: never let the caller resubmit blindly.
            raise _outcome_unknown(err.message, 200, self._redact(data)) from err

    # -- reading -----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> TempolorJob:
        """GET music/{job_id}: the job's status, progress and, once completed, its metadata."""
        data = await self._request("GET", "music", path_segment(job_id, "job_id"))
        return _job(data)

    async def get_download_url(self, job_id: str, file_format: str = "mp3") -> TempolorDownload:
        """GET music/download/{job_id}: a link to the file, valid for `remain_seconds`.

        `file_format` is "mp3", "wav" or "stems" (a ZIP). The link expires:
        fetch a new one when it is needed rather than storing it. Before the
        job completes the server answers 400 (`ValidationError`).
        """
        segment = path_segment(job_id, "job_id")
        if file_format not in FILE_FORMATS:
            allowed = ", ".join(FILE_FORMATS)
            raise RequestValidationError(
                [FieldProblem("file_format", f"must be one of {allowed} (got {file_format!r})")],
                what="download request",
            )
        # Taken before sending: the server's countdown starts later, so expiry errs early.
        fetched_at = datetime.fromtimestamp(self._clock(), UTC)
        data = await self._request(
            "GET", "music", "download", segment, params={"file_format": file_format}
        )
        url = data.get("url") if isinstance(data, dict) else None
        remain = data.get("remainSeconds") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise UnexpectedResponseError(
                f"download answer without a 'url': {self._redact(repr(data))[:200]}"
            )
        if isinstance(remain, bool) or not isinstance(remain, int | float) or remain < 0:
            raise UnexpectedResponseError(
                f"download answer without a valid 'remainSeconds' (got {remain!r}); "
                "the link's lifetime is unknown"
            )
        return TempolorDownload(
            job_id=segment,
            file_format=file_format,
            url=url,
            remain_seconds=float(remain),
            fetched_at=fetched_at,
            expires_at=fetched_at + timedelta(seconds=remain),
        )

    async def list_jobs(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        cursor: str | None = None,
    ) -> TempolorJobPage:
        """GET music/: one page of jobs, newest first; pass its `cursor` for the next.

        `type` is "song" or "instrumental" (the server's default is song);
        `user_id` is required by the server once the token has several
        TemPolor accounts.
        """
        if type is not None and type not in JOB_TYPES:
            allowed = ", ".join(JOB_TYPES)
            raise RequestValidationError(
                [FieldProblem("type", f"must be one of {allowed} (got {type!r})")],
                what="list request",
            )
        params: dict[str, str] = {}
        if user_id is not None:
            params["user_id"] = str(user_id)
        if type is not None:
            params["type"] = type
        if cursor:
            params["cursor"] = cursor
        data = await self._request("GET", "music", "", params=params or None)
        if isinstance(data, list):
            # A bare list is one page with nothing after it.
            data = {"records": data}
        return parse_model(TempolorJobPage, data)

    async def iter_jobs(
        self, *, user_id: str | None = None, type: str | None = None
    ) -> AsyncIterator[TempolorJob]:
        """Every job, newest first, following the cursor; a job already yielded is skipped."""
        cursor: str | None = None
        seen_cursors: set[str] = set()
        seen_jobs: set[str] = set()
        while True:
            page = await self.list_jobs(user_id=user_id, type=type, cursor=cursor)
            for job in page.records:
                if job.job_id is not None and job.job_id in seen_jobs:
                    continue
                if job.job_id is not None:
                    seen_jobs.add(job.job_id)
                yield job
            if not page.has_next or not page.cursor or not page.records:
                return
            if page.cursor in seen_cursors:
                raise UnexpectedResponseError(
                    f"paging does not advance: cursor {page.cursor!r} came back twice"
                )
            seen_cursors.add(page.cursor)
            cursor = page.cursor

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        first_delay: float = 3.0,
        factor: float = 1.3,
        max_delay: float = 15.0,
    ) -> TempolorJob:
        """Poll until the job is completed or failed, and return it.

        Waits `first_delay`, then `factor` times longer each round up to
        `max_delay`. `on_progress` (plain or async) sees every poll's answer,
        `progress` included. Gives up with `TempolorJobTimeoutError` (a
        `GenerationTimeoutError`) after `timeout` seconds; the job keeps
        running at TemPolor.
        """
        started = self._clock()
        delay = first_delay
        while True:
            job = await self.get_job(job_id)
            if on_progress is not None:
                outcome = on_progress(job)
                if inspect.isawaitable(outcome):
                    await outcome
            if job.is_final:
                return job
            remaining = timeout - (self._clock() - started)
            if remaining <= 0:
                raise TempolorJobTimeoutError(job_id, timeout, job.generation_status.value)
            await self._sleep(min(delay, remaining))
            delay = min(max_delay, delay * factor)


def _build(
    cls: type[_R], request: _R | Mapping[str, Any] | str | None, fields: dict[str, Any]
) -> _R:
    """The validated request from a model, a mapping, a prompt string or keyword fields."""
    if request is None:
        return cls(**fields)
    if isinstance(request, str):
        if "prompt" in fields:
            raise TypeError("pass the prompt either positionally or as prompt=, not both")
        return cls(prompt=request, **fields)
    if isinstance(request, Mapping):
        return cls(**{**request, **fields})
    if isinstance(request, cls):
        if fields:
            raise TypeError(f"pass either a {cls.__name__} or keyword fields, not both")
        return request
    raise TypeError(f"expected a {cls.__name__}, a mapping or a prompt (got {request!r})")


def _outcome_unknown(cause: str, status: int | None, details: Any) -> GenerationOutcomeUnknownError:
    return GenerationOutcomeUnknownError(
        f"the TemPolor request may have reached the server ({cause}); a job may have "
        "started and spent credit, so it is not resubmitted: look for it with list_jobs() "
        "before trying again",
        status=status,
        details=details,
    )


def _job(data: Any) -> TempolorJob:
    if not isinstance(data, dict):
        raise UnexpectedResponseError(f"a job answer that is not an object ({type(data).__name__})")
    return parse_model(TempolorJob, data)


def _created_jobs(data: Any) -> list[TempolorJob]:
    """The jobs of a create answer: `{"jobs": [...]}`, a bare list of jobs, or one job body."""
    if isinstance(data, dict) and "jobs" in data:
        items = data["jobs"]
    else:
        items = data if isinstance(data, list) else [data]
    if not isinstance(items, list) or not items:
        raise UnexpectedResponseError("the create answer lists no job")
    jobs = [_job(item) for item in items]
    if any(not job.job_id for job in jobs):
        raise UnexpectedResponseError("the create answer holds a job without job_id")
    return jobs
