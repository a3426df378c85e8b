"""Async client for the Finetuning.ai public API v1.2.

Every public method is a thin typed wrapper returning a model; HTTP, rate
budgets, retries and the transport errors are `connector.providers.http.ApiClient`'s.
This module adds what is Finetuning's own: the `X-API-Key` header, the
`{"data": ...}` / `{"error": {code, message, details}}` envelopes, two budgets.

    async with FinetuningClient(api_key) as client:
        generation = await client.create_generation(GenerationRequest(tags="lofi piano"))
        done = await client.wait_for_generation(generation.id)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from pydantic import ValidationError as PydanticValidationError
from yarl import URL

from connector.errors import (
    AddFailedError,
    AmbiguousPlaylistError,
    BulkOperationError,
    FieldProblem,
    GenerationOutcomeUnknownError,
    GenerationTimeoutError,
    MoveFailedError,
    PlaylistNotFoundError,
    ProviderError,
    RequestValidationError,
    UnexpectedResponseError,
    error_for,
)
from connector.providers.finetuning.credentials import DEFAULT_BASE_URL, check_api_key, redact_key
from connector.providers.finetuning.ids import (
    UUID_PATTERN,
    chunked,
    looks_like_playlist_id,
    validate_ids,
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
)
from connector.providers.http import (
    DEFAULT_CONNECT_TIMEOUT,
    ApiClient,
    Retry,
    parse_model,
    path_segment,
    retry_after_seconds,
)
from connector.providers.ratelimit import Clock, RateBudget, Sleep, WaitCallback
from connector.version import USER_AGENT

__all__ = ["FinetuningClient", "ProgressCallback"]

_LOGGER = logging.getLogger(__name__)

ProgressCallback = Callable[[Generation], Awaitable[None] | None]


class FinetuningClient(ApiClient):
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

    _logger = _LOGGER

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
        api_key = check_api_key(api_key)
        super().__init__(
            secret=api_key,
            secret_shown=redact_key(api_key),
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
        self.read_budget = read_budget or RateBudget(
            60, 60.0, name="reads", clock=clock, sleep=sleep
        )
        self.generation_budget = generation_budget or RateBudget(
            10, 60.0, name="generations", clock=clock, sleep=sleep
        )

    def __repr__(self) -> str:
        return f"FinetuningClient(base_url={str(self.base_url)!r}, api_key={self.api_key_hint!r})"

    @property
    def api_key_hint(self) -> str:
        """The redacted key, for diagnostics."""
        return self._secret_shown

    # -- transport ---------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        budget: RateBudget | None = None,
        retry: Retry = Retry.SAFE,
    ) -> Any:
        """Send one API call and return the `data` of its answer, retrying what is safe."""
        url = self.base_url.join(URL(path))
        budget = budget or self.read_budget
        return await self._send(method, url, params=params, body=body, budget=budget, retry=retry)

    def _auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": self._secret}

    def _answer(
        self, status: int, raw: bytes, content_type: str, retry_after_header: str | None
    ) -> Any:
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if not isinstance(payload, dict) or "data" not in payload:
                snippet = self._text(raw, 120, strip=False)
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
            text = self._text(raw, 200)
            message = f"HTTP {status} with a non-JSON answer" + (f": {text}" if text else "")
        retry_after = retry_after_seconds(retry_after_header, body_retry)
        raise error_for(status, code, message, details=details, retry_after=retry_after)

    def _outcome_unknown(self, err: ProviderError) -> GenerationOutcomeUnknownError:
        return GenerationOutcomeUnknownError(
            "the generation request may have reached the server "
            f"({err}); a credit may have been spent, so it is not "
            "resubmitted: look for the generation before trying again",
            status=err.status,
            details=err.details,
        )

    # -- account -----------------------------------------------------------------------

    async def get_account(self) -> Account:
        """GET /v1/me: the account, its credits and its queue (costs no credit)."""
        return parse_model(Account, await self._request("GET", "/v1/me"))

    async def health(self) -> bool:
        """GET /health (no key needed; undocumented, used by `ft doctor`)."""
        session = self._get_session()
        try:
            async with asyncio.timeout(self.request_timeout):
                async with session.get(
                    self.base_url.join(URL("/health")),
                    headers={"User-Agent": USER_AGENT},
                    timeout=self._timeout(),
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
            retry=Retry.CREATE,
        )
        return parse_model(Generation, data)

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
        return parse_model(
            GenerationPage, await self._request("GET", "/v1/generations", params=params)
        )

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
        path = f"/v1/generations/{path_segment(generation_id, 'generation_id')}"
        return parse_model(Generation, await self._request("GET", path))

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
        return [parse_model(Playlist, item) for item in items]

    async def get_playlist(self, playlist_id: str) -> PlaylistDetail:
        """GET /v1/playlists/:id: one playlist with all its tracks."""
        path = f"/v1/playlists/{path_segment(playlist_id, 'playlist_id')}"
        return parse_model(PlaylistDetail, await self._request("GET", path))

    async def resolve_playlist(self, name_or_id: str) -> str:
        """Turn a playlist name or id into its id.

        An id (a UUID or `pl_…`) passes through unchanged; anything else is
        matched case-insensitively and exactly against your playlist names.
        """
        reference = name_or_id.strip() if isinstance(name_or_id, str) else ""
        if not reference:
            raise RequestValidationError([FieldProblem("playlist", "must be a name or an id")])
        if looks_like_playlist_id(reference):
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
        path = f"/v1/playlists/{path_segment(playlist_id, 'playlist_id')}/tracks"
        return await self._bulk(path, validate_ids(ids, field="track_ids"), "added", AddFailedError)

    async def remove_tracks(self, playlist_id: str, ids: Iterable[str]) -> BulkResult:
        """POST /v1/playlists/:id/tracks/bulk-remove; tracks stay in the library."""
        path = f"/v1/playlists/{path_segment(playlist_id, 'playlist_id')}/tracks/bulk-remove"
        return await self._bulk(path, validate_ids(ids, field="track_ids"), "removed", None)

    async def move_tracks(self, source_id: str, target_id: str, ids: Iterable[str]) -> BulkResult:
        """POST /v1/playlists/:source/tracks/move; MOVE_FAILED becomes item errors."""
        source = path_segment(source_id, "source_id")
        target = path_segment(target_id, "target_id")
        same = source == target or (
            bool(UUID_PATTERN.fullmatch(source)) and source.lower() == target.lower()
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
            except ProviderError as err:
                # Earlier chunks took effect: say so rather than hide it.
                err.partial_result = result
                raise
            result = result.merge(_bulk(data, succeeded_key))
        return result


def _bulk(data: Any, succeeded_key: str) -> BulkResult:
    try:
        return BulkResult.from_wire(data, succeeded_key)
    except (ValueError, PydanticValidationError) as err:
        raise UnexpectedResponseError(f"malformed bulk answer: {err}") from err
