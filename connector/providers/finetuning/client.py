"""Async client for the Finetuning.ai public API v1.2.

One private transport method (`_request`) owns HTTP, rate budgets, retries and
error mapping; every public method is a thin typed wrapper returning a model.

    async with FinetuningClient(api_key) as client:
        generation = await client.create_generation(GenerationRequest(tags="lofi piano"))
        done = await client.wait_for_generation(generation.id)
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from enum import Enum
from typing import Any, Self, TypeVar

import aiohttp
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from yarl import URL

from connector.errors import (
    AddFailedError,
    AmbiguousPlaylistError,
    BulkOperationError,
    FieldProblem,
    FinetuningConnectionError,
    FinetuningError,
    FinetuningTimeoutError,
    GenerationOutcomeUnknownError,
    GenerationRateLimitedError,
    GenerationTimeoutError,
    InvalidApiKeyError,
    MoveFailedError,
    PlaylistNotFoundError,
    QueueFullError,
    RateLimitedError,
    RequestValidationError,
    ServerError,
    UnexpectedResponseError,
    error_for,
)
from connector.providers.finetuning.models import (
    Account,
    BulkResult,
    Generation,
    GenerationPage,
    GenerationRequest,
    GenerationStatus,
    Playlist,
    PlaylistDetail,
    chunked,
    validate_ids,
)
from connector.providers.ratelimit import (
    ANNOUNCE_AFTER,
    Clock,
    RateBudget,
    Sleep,
    WaitCallback,
    announced_sleep,
    describe_wait,
    said_if_slow,
    waits_reported_to,
)
from connector.redaction import register_secret
from connector.version import USER_AGENT

_LOGGER = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://pub.finetuning.ai"
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to open a connection, within request_timeout
API_KEY_PATTERN = re.compile(r"ft_live_[0-9a-fA-F]{32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})

_M = TypeVar("_M", bound=BaseModel)

ProgressCallback = Callable[[Generation], Awaitable[None] | None]


class _Retry(Enum):
    """How a request may be retried."""

    # GET and the bulk endpoints: repeating them cannot spend anything.
    SAFE = "safe"
    # POST /v1/generations: only when the request surely did not take effect.
    CREATE = "create"


def redact_key(api_key: str | None) -> str:
    """What may be shown of a key: its documented prefix at most."""
    if not api_key:
        return "(none)"
    return "ft_live_…" if api_key.startswith("ft_live_") else "…"


def check_api_key(api_key: str) -> str:
    """Return the key without surrounding whitespace, or say clearly what is wrong with it."""
    if not isinstance(api_key, str) or not api_key.strip():
        raise InvalidApiKeyError(
            "no API key given: set FINETUNING_API_KEY or pass api_key "
            "(keys look like ft_live_ followed by 32 hex characters)"
        )
    key = api_key.strip()
    if not API_KEY_PATTERN.fullmatch(key):
        starts = "starts with 'ft_live_'" if key.startswith("ft_live_") else "lacks 'ft_live_'"
        raise InvalidApiKeyError(
            f"the API key is malformed: it {starts} and has {len(key)} characters, but a key "
            "is 'ft_live_' followed by 32 hex characters (40 in all)"
        )
    return key


def _looks_like_id(reference: str) -> bool:
    return bool(_UUID.fullmatch(reference)) or reference.startswith("pl_")


def _retry_after(value: str | None, body_value: Any = None) -> float | None:
    for candidate in (value, body_value):
        if candidate is None:
            continue
        try:
            seconds = float(candidate)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return None


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class SessionOwner:
    """Session ownership shared by the API clients.

    A session passed in is used and never closed (a closed one is an error:
    retrying cannot help); one the client makes itself is closed by `close()`
    and `async with`.
    """

    _session: aiohttp.ClientSession | None
    _owns_session: bool

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the client made it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise FinetuningError(
                    "the session passed to the client is closed", code="SESSION_CLOSED"
                )
            self._session = aiohttp.ClientSession()
        return self._session


class FinetuningClient(SessionOwner):
    """Client for the Finetuning.ai public API v1.2 (every endpoint).

    A session passed in is used and never closed; one the client makes itself
    is closed by `close()` / `async with`. Two budgets mirror the server's
    limits (reads and bulk 60/min, submissions 10/min) and are shared by every
    caller of this client.

    Failures that may pass are retried with exponential backoff: `max_retries`
    times, or `connect_retries` times (default: `max_retries`) when the
    connection never opened (refused, unknown host, no answer within
    `connect_timeout`). Every wait over 2 s (a budget slot, a `Retry-After`, a
    backoff) is logged at INFO on `connector.waits` and passed to `on_wait`
    (see `connector.providers.ratelimit.WaitCallback`; settable after construction).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 60.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = 4,
        connect_retries: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        read_budget: RateBudget | None = None,
        generation_budget: RateBudget | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_wait: WaitCallback | None = None,
    ) -> None:
        self._api_key = check_api_key(api_key)
        register_secret(self._api_key)  # nothing written or sent may carry it
        self.base_url = URL(base_url.rstrip("/") or DEFAULT_BASE_URL)
        if self.base_url.scheme not in ("http", "https") or not self.base_url.host:
            raise ValueError(f"base_url must be an http(s) URL (got {base_url!r})")
        self.request_timeout = request_timeout
        self.connect_timeout = _check_timeouts(request_timeout, connect_timeout)
        self.max_retries = max_retries
        self.connect_retries = _check_retries(max_retries, connect_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_wait = on_wait
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self.read_budget = read_budget or RateBudget(
            60, 60.0, name="reads", clock=clock, sleep=sleep
        )
        self.generation_budget = generation_budget or RateBudget(
            10, 60.0, name="generations", clock=clock, sleep=sleep
        )
        self.requests_sent = 0  # every HTTP attempt, retries included

    def __repr__(self) -> str:
        key = redact_key(self._api_key)
        return f"FinetuningClient(base_url={str(self.base_url)!r}, api_key={key!r})"

    @property
    def api_key_hint(self) -> str:
        """The redacted key, for diagnostics."""
        return redact_key(self._api_key)

    # -- transport ---------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        budget: RateBudget | None = None,
        retry: _Retry = _Retry.SAFE,
    ) -> Any:
        """Send one API call and return the `data` of its answer, retrying what is safe."""
        budget = budget or self.read_budget
        url = self.base_url.join(URL(path))
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = self._clock()
            try:
                return await self._attempt(method, url, params=params, body=body, budget=budget)
            except FinetuningError as err:
                delay = self._retry_delay(err, attempt, retry)
                if delay is None:
                    if retry is _Retry.CREATE and _may_have_taken_effect(err):
                        raise GenerationOutcomeUnknownError(
                            "the generation request may have reached the server "
                            f"({err}); a credit may have been spent, so it is not "
                            "resubmitted: look for the generation before trying again",
                            status=err.status,
                            details=err.details,
                        ) from err
                    _gave_up(err, attempt, self._clock() - started)
                    raise
                await _retry_sleep(
                    self._sleep,
                    delay,
                    f"{method} {path}",
                    err,
                    attempt,
                    1 + self._retries_for(err),
                    self._clock() - attempt_started,
                    self.on_wait,
                    _LOGGER,
                )

    def _retries_for(self, err: FinetuningError) -> int:
        """How many retries the kind of failure `err` allows."""
        return self.connect_retries if isinstance(err, _NotSent) else self.max_retries

    def _retry_delay(self, err: FinetuningError, attempt: int, retry: _Retry) -> float | None:
        """Seconds to wait before trying again, or None when the error is final."""
        if attempt > self._retries_for(err):
            return None
        # Exponential backoff with jitter, as the rate-limits page advises.
        backoff = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        backoff += random.uniform(0, self.backoff_base)
        if isinstance(err, GenerationRateLimitedError | QueueFullError | RateLimitedError):
            # A 429 spends nothing, even on create.
            return err.retry_after if err.retry_after is not None else backoff
        if retry is _Retry.CREATE:
            # Only a connection that never opened surely did not reach the server.
            return backoff if isinstance(err, _NotSent) else None
        if isinstance(err, FinetuningConnectionError):
            return backoff
        if isinstance(err, ServerError) and err.status in _RETRYABLE_STATUSES:
            return err.retry_after if err.retry_after is not None else backoff
        return None

    async def _attempt(
        self,
        method: str,
        url: URL,
        *,
        params: dict[str, Any] | None,
        body: Any,
        budget: RateBudget,
    ) -> Any:
        session = self._get_session()
        headers = {
            "X-API-Key": self._api_key,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        with waits_reported_to(self.on_wait):
            used_at_send = await budget.acquire()
        released = False
        self.requests_sent += 1
        try:
            async with (
                said_if_slow(
                    f"for an answer from {_origin(url)} to {method} {url.path}",
                    self.request_timeout,
                    self.on_wait,
                ),
                asyncio.timeout(self.request_timeout),
                session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=_client_timeout(self.connect_timeout),
                ) as response,
            ):
                raw = await response.read()
                budget.release()
                released = True
                status = response.status
                retry_after_header = response.headers.get("Retry-After")
                remaining = _int_header(response.headers, "X-RateLimit-Remaining")
                if status == 429 and retry_after_header is not None:
                    # Retry-After says exactly when to resume; phantom slots
                    # would hold the budget for a whole window instead.
                    remaining = None
                budget.observe(
                    _int_header(response.headers, "X-RateLimit-Limit"), remaining, used_at_send
                )
                content_type = response.content_type
        except aiohttp.ConnectionTimeoutError as err:
            raise _NotSent(_connect_timed_out(url, self.connect_timeout)) from err
        except TimeoutError as err:
            raise FinetuningTimeoutError(
                f"no answer from {_origin(url)} within {self.request_timeout:g} s"
            ) from err
        except aiohttp.ClientConnectorError as err:
            raise _NotSent(_cannot_connect(url, err)) from err
        except aiohttp.ClientError as err:
            raise FinetuningConnectionError(
                f"connection to {_origin(url)} failed: {type(err).__name__}: {err}"
            ) from err
        finally:
            if not released:
                budget.release()
        _LOGGER.debug("%s %s -> %s", method, url.path, status)
        return self._parse(status, raw, content_type, retry_after_header, budget)

    def _parse(
        self,
        status: int,
        raw: bytes,
        content_type: str,
        retry_after_header: str | None,
        budget: RateBudget,
    ) -> Any:
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if not isinstance(payload, dict) or "data" not in payload:
                snippet = self._redact(raw.decode("utf-8", "replace"))[:120]
                raise UnexpectedResponseError(
                    f"HTTP {status} without the documented {{'data': ...}} envelope "
                    f"({content_type or 'no content type'}): {snippet!r}",
                    status=status,
                )
            return payload["data"]
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or "") or None
            message = self._redact(str(error.get("message") or code or f"HTTP {status}"))
            details = self._redact(error.get("details"))
            body_retry = error.get("retryAfter")
        else:
            code, details, body_retry = None, None, None
            text = self._redact(raw.decode("utf-8", "replace")).strip()[:200]
            message = f"HTTP {status} with a non-JSON answer" + (f": {text}" if text else "")
        retry_after = _retry_after(retry_after_header, body_retry)
        if status == 429 and retry_after is not None:
            budget.pause(retry_after)
        raise error_for(status, code, message, details=details, retry_after=retry_after)

    def _redact(self, value: Any) -> Any:
        """Remove the key from server-provided text (an echoing proxy, a verbose error)."""
        if isinstance(value, str):
            return value.replace(self._api_key, redact_key(self._api_key))
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redact(item) for key, item in value.items()}
        return value

    # -- account -----------------------------------------------------------------------

    async def get_account(self) -> Account:
        """GET /v1/me: the account, its credits and its queue (costs no credit)."""
        return Account.model_validate(await self._request("GET", "/v1/me"))

    async def health(self) -> bool:
        """GET /health (no key needed; undocumented, used by `ft doctor`)."""
        session = self._get_session()
        try:
            async with asyncio.timeout(self.request_timeout):
                async with session.get(
                    self.base_url.join(URL("/health")),
                    headers={"User-Agent": USER_AGENT},
                    timeout=_client_timeout(self.connect_timeout),
                ) as response:
                    return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    # -- generations -------------------------------------------------------------------

    async def create_generation(
        self, request: GenerationRequest | dict[str, Any] | None = None, **fields: Any
    ) -> Generation:
        """POST /v1/generations: start a generation; spends one credit.

        Accepts a `GenerationRequest`, a dict, or keyword fields, all checked
        before anything is sent. Never retried once the request may have
        reached the server: an unclear outcome raises
        `GenerationOutcomeUnknownError` instead of risking a second credit.
        """
        if request is None:
            request = GenerationRequest(**fields)
        elif isinstance(request, dict):
            request = GenerationRequest(**{**request, **fields})
        elif fields:
            raise TypeError("pass either a GenerationRequest or keyword fields, not both")
        data = await self._request(
            "POST",
            "/v1/generations",
            body=request.to_payload(),
            budget=self.generation_budget,
            retry=_Retry.CREATE,
        )
        return _model(Generation, data)

    async def list_generations(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        status: GenerationStatus | str | None = None,
        type: str | None = None,
    ) -> GenerationPage:
        """GET /v1/generations: one page, newest first."""
        problems = []
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            problems.append(FieldProblem("limit", f"must be between 1 and 100 (got {limit!r})"))
        if not isinstance(offset, int) or offset < 0:
            problems.append(FieldProblem("offset", f"must be 0 or more (got {offset!r})"))
        if status is not None and status not in {s.value for s in GenerationStatus}:
            allowed = ", ".join(s.value for s in GenerationStatus)
            problems.append(FieldProblem("status", f"must be one of {allowed} (got {status!r})"))
        if problems:
            raise RequestValidationError(problems, what="list request")
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = str(GenerationStatus(status).value)
        if type is not None:
            params["type"] = type
        return _model(GenerationPage, await self._request("GET", "/v1/generations", params=params))

    async def iter_generations(
        self,
        *,
        status: GenerationStatus | str | None = None,
        page_size: int = 100,
        type: str | None = None,
    ) -> AsyncIterator[Generation]:
        """Every generation, newest first, across pages.

        Offset pages shift when new generations arrive while paging; an id
        already yielded is not yielded again.
        """
        offset = 0
        seen: set[str] = set()
        while True:
            page = await self.list_generations(
                limit=page_size, offset=offset, status=status, type=type
            )
            for generation in page.generations:
                if generation.id not in seen:
                    seen.add(generation.id)
                    yield generation
            if not page.has_more or not page.generations:
                return
            next_offset = page.next_offset if page.next_offset is not None else offset + page_size
            if next_offset <= offset:
                raise UnexpectedResponseError(
                    f"paging does not advance: nextOffset {next_offset} after offset {offset}"
                )
            offset = next_offset

    async def get_generation(self, generation_id: str) -> Generation:
        """GET /v1/generations/:id."""
        path = f"/v1/generations/{_segment(generation_id, 'generation_id')}"
        return _model(Generation, await self._request("GET", path))

    async def wait_for_generation(
        self,
        generation_id: str,
        *,
        timeout: float = 300.0,
        on_progress: ProgressCallback | None = None,
        first_delay: float = 3.0,
        factor: float = 1.3,
        max_delay: float = 15.0,
    ) -> Generation:
        """Poll until the generation is completed or failed, and return it.

        Waits 3 s, then 1.3 times longer each round up to 15 s (the `ft` CLI's
        schedule), inside the shared read budget. `on_progress` (plain or async)
        sees every poll's answer. Gives up with `GenerationTimeoutError` after
        `timeout` seconds; the generation keeps running on the server.
        """
        started = self._clock()
        delay = first_delay
        last: Generation | None = None
        while True:
            last = await self.get_generation(generation_id)
            if on_progress is not None:
                outcome = on_progress(last)
                if inspect.isawaitable(outcome):
                    await outcome
            if last.is_terminal:
                return last
            remaining = timeout - (self._clock() - started)
            if remaining <= 0:
                raise GenerationTimeoutError(generation_id, timeout, last.status.value)
            await self._sleep(min(delay, remaining))
            delay = min(max_delay, delay * factor)

    async def delete_generations(self, ids: Iterable[str]) -> BulkResult:
        """POST /v1/generations/bulk-delete, permanently; chunks of 100, merged."""
        return await self._bulk(
            "/v1/generations/bulk-delete", validate_ids(ids), "deleted", None, id_field="ids"
        )

    # -- playlists ---------------------------------------------------------------------

    async def list_playlists(self) -> list[Playlist]:
        """GET /v1/playlists: all of your playlists."""
        data = await self._request("GET", "/v1/playlists")
        items = data.get("playlists") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UnexpectedResponseError(
                f"playlists answer without a 'playlists' list: {self._redact(repr(data))[:200]}"
            )
        return [_model(Playlist, item) for item in items]

    async def get_playlist(self, playlist_id: str) -> PlaylistDetail:
        """GET /v1/playlists/:id: one playlist with all its tracks."""
        path = f"/v1/playlists/{_segment(playlist_id, 'playlist_id')}"
        return _model(PlaylistDetail, await self._request("GET", path))

    async def resolve_playlist(self, name_or_id: str) -> str:
        """Turn a playlist name or id into its id.

        An id (a UUID or `pl_…`) passes through unchanged; anything else is
        matched case-insensitively and exactly against your playlist names.
        """
        reference = name_or_id.strip() if isinstance(name_or_id, str) else ""
        if not reference:
            raise RequestValidationError([FieldProblem("playlist", "must be a name or an id")])
        if _looks_like_id(reference):
            return reference
        playlists = await self.list_playlists()
        for playlist in playlists:
            if playlist.id == reference:
                return playlist.id
        wanted = reference.casefold()
        matches = [p for p in playlists if p.name.casefold() == wanted]
        if len(matches) == 1:
            return matches[0].id
        if matches:
            raise AmbiguousPlaylistError(reference, [(p.id, p.name) for p in matches])
        raise PlaylistNotFoundError(reference, [p.name for p in playlists])

    async def add_tracks(self, playlist_id: str, ids: Iterable[str]) -> BulkResult:
        """POST /v1/playlists/:id/tracks; chunks of 100; ADD_FAILED becomes item errors."""
        path = f"/v1/playlists/{_segment(playlist_id, 'playlist_id')}/tracks"
        return await self._bulk(path, validate_ids(ids, field="track_ids"), "added", AddFailedError)

    async def remove_tracks(self, playlist_id: str, ids: Iterable[str]) -> BulkResult:
        """POST /v1/playlists/:id/tracks/bulk-remove; tracks stay in the library."""
        path = f"/v1/playlists/{_segment(playlist_id, 'playlist_id')}/tracks/bulk-remove"
        return await self._bulk(path, validate_ids(ids, field="track_ids"), "removed", None)

    async def move_tracks(self, source_id: str, target_id: str, ids: Iterable[str]) -> BulkResult:
        """POST /v1/playlists/:source/tracks/move; MOVE_FAILED becomes item errors."""
        source = _segment(source_id, "source_id")
        target = _segment(target_id, "target_id")
        same = source == target or (
            bool(_UUID.fullmatch(source)) and source.lower() == target.lower()
        )
        if same:
            raise RequestValidationError(
                [FieldProblem("target_id", "must differ from the source playlist")]
            )
        return await self._bulk(
            f"/v1/playlists/{source}/tracks/move",
            validate_ids(ids, field="track_ids"),
            "moved",
            MoveFailedError,
            extra={"targetPlaylistId": target},
        )

    async def _bulk(
        self,
        path: str,
        ids: list[str],
        succeeded_key: str,
        all_failed: type[BulkOperationError] | None,
        *,
        id_field: str = "trackIds",
        extra: dict[str, Any] | None = None,
    ) -> BulkResult:
        """Send ids in chunks of 100 and merge the answers into one result."""
        result = BulkResult()
        for chunk in chunked(ids):
            try:
                data = await self._request("POST", path, body={id_field: chunk, **(extra or {})})
            except BulkOperationError as err:
                if all_failed is not None and isinstance(err, all_failed):
                    result = result.merge(BulkResult.all_failed(chunk, err.details, err.message))
                    continue
                err.partial_result = result
                raise
            except FinetuningError as err:
                # Earlier chunks took effect: say so rather than hide it.
                err.partial_result = result
                raise
            result = result.merge(_bulk(data, succeeded_key))
        return result


class _NotSent(FinetuningConnectionError):
    """The connection never opened, so the request surely did not reach the server."""


def _check_timeouts(request_timeout: float, connect_timeout: float) -> float:
    if request_timeout <= 0:
        raise ValueError(f"request_timeout must be positive (got {request_timeout!r})")
    if connect_timeout <= 0:
        raise ValueError(f"connect_timeout must be positive (got {connect_timeout!r})")
    return connect_timeout


def _check_retries(max_retries: int, connect_retries: int | None) -> int:
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more (got {max_retries!r})")
    if connect_retries is None:
        return max_retries
    if connect_retries < 0:
        raise ValueError(f"connect_retries must be 0 or more (got {connect_retries!r})")
    return connect_retries


def _client_timeout(connect_timeout: float) -> aiohttp.ClientTimeout:
    """Per-request aiohttp timeouts: only opening the connection (the pool wait, DNS, TCP
    and TLS) is bounded here; the whole request is bounded by `request_timeout`."""
    return aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout)


def _origin(url: URL) -> str:
    """scheme://host:port of `url`: what was tried, never a user, a query or a path."""
    host = url.host or "?"
    if ":" in host:
        host = f"[{host}]"
    port = url.port if url.port is not None else ""
    return f"{url.scheme}://{host}:{port}"


def _cannot_connect(url: URL, err: aiohttp.ClientConnectorError) -> str:
    """'cannot connect to http://127.0.0.1:9 (connection refused)'."""
    return f"cannot connect to {_origin(url)} ({_connect_failure(err)})"


def _connect_timed_out(url: URL, connect_timeout: float) -> str:
    return (
        f"cannot connect to {_origin(url)} "
        f"(no answer within the {connect_timeout:g} s connect timeout)"
    )


def _connect_failure(err: aiohttp.ClientConnectorError) -> str:
    """Why a connection did not open, in a few words: 'connection refused'."""
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate refused: {err.certificate_error}"
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        cause = getattr(err.os_error, "strerror", None) or str(err.os_error)
        return f"host name not resolved: {cause}"
    if isinstance(err, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {err.os_error}"
    os_error = err.os_error
    number = getattr(os_error, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        text = os.strerror(number)
        return text[:1].lower() + text[1:]
    return str(os_error) or type(os_error).__name__


def _failure_phrase(err: FinetuningError, delay: float) -> str:
    """What went wrong, to follow 'retry GET /v1/me (attempt 2 of 5)'."""
    if err.status is None:
        return f": {err.message}"
    text = f" after HTTP {err.status}"
    if err.code and not err.code.startswith("HTTP_"):
        text += f" {err.code}"
    if err.retry_after is not None and err.retry_after == delay:
        text += ", as the server's Retry-After asks"
    return text


async def _retry_sleep(
    sleep: Sleep,
    delay: float,
    what: str,
    err: FinetuningError,
    attempt: int,
    attempts: int,
    attempt_took: float,
    on_wait: WaitCallback | None,
    logger: logging.Logger,
) -> None:
    """The backoff before retrying `what`, announced (INFO on `connector.waits`, and
    `on_wait`) when the failed attempt and the backoff together leave the caller over
    2 s without news: every backoff over 2 s, and a 1 s one after a 10 s connect
    timeout. A backoff not announced is logged at DEBUG on `logger`, for `-v`."""
    reason = f"to retry {what} (attempt {attempt + 1} of {attempts}){_failure_phrase(err, delay)}"
    announce = max(0.0, attempt_took) + delay > ANNOUNCE_AFTER
    if not announce:
        logger.debug("%s", describe_wait(reason, delay))
    await announced_sleep(sleep, delay, reason, on_wait, announce=announce)


def _gave_up(err: FinetuningError, attempts: int, elapsed: float) -> None:
    """Say in a final connection error how long the client kept trying."""
    if attempts < 2 or not isinstance(err, FinetuningConnectionError):
        return
    err.message = f"{err.message}; gave up after {attempts} attempts in {elapsed:.1f} s"
    err.args = (err.message,)


def _may_have_taken_effect(err: FinetuningError) -> bool:
    if isinstance(err, _NotSent):
        return False
    if isinstance(err, FinetuningConnectionError):
        return True
    return isinstance(err, (ServerError, UnexpectedResponseError))


def _segment(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestValidationError([FieldProblem(name, "must be a non-empty id")])
    if "/" in value or value in (".", ".."):
        raise RequestValidationError([FieldProblem(name, f"is not a valid id: {value!r}")])
    return value.strip()


def _model(cls: type[_M], data: Any) -> _M:
    try:
        return cls.model_validate(data)
    except PydanticValidationError as err:
        raise UnexpectedResponseError(
            f"the answer does not match the documented {cls.__name__}: {err.errors()[0]['msg']} "
            f"at {'.'.join(str(p) for p in err.errors()[0]['loc'])}"
        ) from err


def _bulk(data: Any, succeeded_key: str) -> BulkResult:
    try:
        return BulkResult.from_wire(data, succeeded_key)
    except (ValueError, PydanticValidationError) as err:
        raise UnexpectedResponseError(f"malformed bulk answer: {err}") from err
