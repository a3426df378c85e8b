"""The one HTTP core of the provider API clients, and the backoff formula.

`ApiClient` holds what the Finetuning.ai and TemPolor clients share:

- the address and the timeouts (`request_timeout` bounds a whole attempt,
  `connect_timeout` only opening the connection);
- the session: one passed in is used and never closed (a closed one is a final
  error), one made here is closed by `close()` and `async with`;
- the attempt loop: retries with exponential backoff and jitter, `Retry-After`
  honoured on 429 and 5xx, `connect_retries` for connections that never opened,
  a create (`Retry.CREATE`) repeated only when it surely did not reach the server;
- transport failures mapped to `ProviderConnectionError` (`NotSentError` when the
  connection never opened) and `ProviderTimeoutError`;
- rate budgets (`connector.providers.ratelimit.RateBudget`): a slot per attempt,
  the server's `X-RateLimit-*` headers observed, a 429's `Retry-After` pausing it;
- wait announcements on `connector.waits` and `on_wait`, as in `ratelimit`;
- the client's secret redacted from everything the server sends back.

A client adds only what its provider does differently: `_auth_headers` (how the
secret is sent), `_answer` (how an answer becomes data or a `ProviderError`),
`_outcome_unknown` (its words for a create that may have taken effect) and
`provider_label` (how retries are named in announcements).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, Literal, Self, TypeVar

import aiohttp
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from yarl import URL

from connector.errors import (
    FieldProblem,
    GenerationOutcomeUnknownError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    UnexpectedResponseError,
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

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "RETRYABLE_STATUSES",
    "ApiClient",
    "NotSentError",
    "Retry",
    "backoff_delay",
    "parse_model",
    "path_segment",
    "retry_after_seconds",
]

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to open a connection, within request_timeout
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
"""Server failures worth another try; any other 5xx is final."""

_M = TypeVar("_M", bound=BaseModel)

Jitter = Literal["added", "equal"]


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: Jitter = "added") -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    The schedule is `base * 2**(attempt - 1)`, at most `cap`, then jittered so that
    many callers failing together do not come back together:

    - "added" (the API clients): plus up to `base` more, never less than the schedule;
    - "equal" (outgoing webhooks, downloads): between half and all of the schedule.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    if jitter == "equal":
        return ceiling / 2 + random.uniform(0, ceiling / 2)
    return ceiling + random.uniform(0, base)


class Retry(Enum):
    """How a request may be retried."""

    # Reads and idempotent writes: repeating them cannot spend anything.
    SAFE = "safe"
    # A create that spends credit: only when the request surely did not take effect.
    CREATE = "create"


class NotSentError(ProviderConnectionError):
    """The connection never opened, so the request surely did not reach the server."""


class ApiClient(ABC):
    """The shared HTTP core of a provider client (see the module docstring).

    Subclasses call `__init__` with their secret, its shown form and their
    defaults, and send every API call through `_send`.
    """

    provider_label = ""
    """Put before "GET /path" when a retry is announced ("TemPolor ")."""

    _logger = logging.getLogger(__name__)
    """Where each request's outcome is logged at DEBUG: the client module's logger."""

    def __init__(
        self,
        *,
        secret: str,
        secret_shown: str,
        base_url: str,
        default_base_url: str,
        session: aiohttp.ClientSession | None,
        request_timeout: float,
        connect_timeout: float,
        max_retries: int,
        connect_retries: int | None,
        backoff_base: float,
        backoff_max: float,
        clock: Clock,
        sleep: Sleep,
        on_wait: WaitCallback | None,
    ) -> None:
        self._secret = secret
        self._secret_shown = secret_shown
        register_secret(secret)  # nothing written or sent may carry it
        self.base_url = URL(base_url.rstrip("/") or default_base_url)
        if self.base_url.scheme not in ("http", "https") or not self.base_url.host:
            raise ValueError(f"base_url must be an http(s) URL (got {base_url!r})")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive (got {request_timeout!r})")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive (got {connect_timeout!r})")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more (got {max_retries!r})")
        if connect_retries is not None and connect_retries < 0:
            raise ValueError(f"connect_retries must be 0 or more (got {connect_retries!r})")
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.connect_retries = max_retries if connect_retries is None else connect_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_wait = on_wait
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self.requests_sent = 0  # every HTTP attempt, retries included

    # -- the session -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the client made it; one passed in stays open."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session this client uses (made on first use when none was passed in)."""
        return self._get_session()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ProviderError(
                    "the session passed to the client is closed", code="SESSION_CLOSED"
                )
            self._session = aiohttp.ClientSession()
        return self._session

    def _timeout(self) -> aiohttp.ClientTimeout:
        """Per-request aiohttp timeouts: only opening the connection (the pool wait, DNS,
        TCP and TLS) is bounded here; the whole attempt is bounded by `request_timeout`."""
        connect = self.connect_timeout
        return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect)

    # -- what a provider adds --------------------------------------------------------

    @abstractmethod
    def _auth_headers(self) -> dict[str, str]:
        """The headers that carry the secret."""

    @abstractmethod
    def _answer(
        self, status: int, raw: bytes, content_type: str, retry_after_header: str | None
    ) -> Any:
        """The data of a 2xx answer, or raise the `ProviderError` an answer stands for."""

    @abstractmethod
    def _outcome_unknown(self, err: ProviderError) -> GenerationOutcomeUnknownError:
        """The error for a create that failed after it may have reached the server."""

    # -- the attempt loop ------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        budget: RateBudget | None = None,
        retry: Retry = Retry.SAFE,
    ) -> Any:
        """Send one API call and return what `_answer` makes of it, retrying what is safe."""
        self._get_session()  # a closed session passed in is final: fail before any retry
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = self._clock()
            try:
                return await self._attempt(method, url, params=params, body=body, budget=budget)
            except ProviderError as err:
                delay = self._retry_delay(err, attempt, retry)
                if delay is None:
                    if retry is Retry.CREATE and _may_have_taken_effect(err):
                        raise self._outcome_unknown(err) from err
                    _gave_up(err, attempt, max(0.0, self._clock() - started))
                    raise
                await self._retry_sleep(
                    delay,
                    f"{self.provider_label}{method} {url.path}",
                    err,
                    attempt,
                    max(0.0, self._clock() - attempt_started),
                )

    def _retries_for(self, err: ProviderError) -> int:
        """How many retries the kind of failure `err` allows."""
        return self.connect_retries if isinstance(err, NotSentError) else self.max_retries

    def _retry_delay(self, err: ProviderError, attempt: int, retry: Retry) -> float | None:
        """Seconds to wait before trying again, or None when the error is final."""
        if attempt > self._retries_for(err):
            return None
        backoff = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_max)
        if isinstance(err, RateLimitError):
            # A 429 spends nothing and starts nothing, even on a create.
            return err.retry_after if err.retry_after is not None else backoff
        if retry is Retry.CREATE:
            # Only a connection that never opened surely did not reach the server.
            return backoff if isinstance(err, NotSentError) else None
        if isinstance(err, ProviderConnectionError):
            return backoff
        if isinstance(err, ServerError) and err.status in RETRYABLE_STATUSES:
            return err.retry_after if err.retry_after is not None else backoff
        return None

    async def _retry_sleep(
        self, delay: float, what: str, err: ProviderError, attempt: int, attempt_took: float
    ) -> None:
        """The backoff before retrying `what`, announced (INFO on `connector.waits`, and
        `on_wait`) when the failed attempt and the backoff together leave the caller over
        2 s without news: every backoff over 2 s, and a 1 s one after a 10 s connect
        timeout. A backoff not announced is logged at DEBUG on the client's logger."""
        attempts = 1 + self._retries_for(err)
        reason = f"to retry {what} (attempt {attempt + 1} of {attempts}){_failure(err, delay)}"
        announce = attempt_took + delay > ANNOUNCE_AFTER
        if not announce:
            self._logger.debug("%s", describe_wait(reason, delay))
        await announced_sleep(self._sleep, delay, reason, self.on_wait, announce=announce)

    async def _attempt(
        self,
        method: str,
        url: URL,
        *,
        params: dict[str, Any] | None,
        body: Any,
        budget: RateBudget | None,
    ) -> Any:
        session = self._get_session()
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **self._auth_headers()}
        used_at_send = 0
        if budget is not None:
            with waits_reported_to(self.on_wait):
                used_at_send = await budget.acquire()
        released = budget is None
        self.requests_sent += 1
        try:
            async with (
                said_if_slow(
                    f"for an answer from {_origin(url)} to {method} {url.path}",
                    self.request_timeout,
                    self.on_wait,
                ),
                asyncio.timeout(self.request_timeout),
                # Never followed: a redirect would carry the credential header to
                # wherever it points (aiohttp strips only Authorization, and only
                # across origins), and the API has no redirects of its own.
                session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=self._timeout(),
                    allow_redirects=False,
                ) as response,
            ):
                raw = await response.read()
                if budget is not None:
                    budget.release()
                    released = True
                    _observe(budget, response, used_at_send)
                status = response.status
                location = response.headers.get("Location", "")
                retry_after_header = response.headers.get("Retry-After")
                content_type = response.content_type
        except aiohttp.ConnectionTimeoutError as err:
            raise NotSentError(self._redact(_connect_timed_out(url, self.connect_timeout))) from err
        except TimeoutError as err:
            raise ProviderTimeoutError(
                f"no answer from {_origin(url)} within {self.request_timeout:g} s"
            ) from err
        except aiohttp.ClientConnectorError as err:
            raise NotSentError(self._redact(_cannot_connect(url, err))) from err
        except aiohttp.ClientError as err:
            raise ProviderConnectionError(
                self._redact(f"connection to {_origin(url)} failed: {type(err).__name__}: {err}")
            ) from err
        finally:
            if not released and budget is not None:
                budget.release()
        self._logger.debug("%s %s -> %s", method, url.path, status)
        if 300 <= status < 400:
            target = self._redact(str(URL(location).with_query(None).with_fragment(None)))
            raise UnexpectedResponseError(
                f"{_origin(url)} answered HTTP {status}, a redirect to {target or 'nowhere'}: "
                "not followed, so the credential is not sent on; set base_url to the API's "
                "own address",
                status=status,
            )
        try:
            return self._answer(status, raw, content_type, retry_after_header)
        except ProviderError as err:
            if budget is not None and err.status == 429 and err.retry_after is not None:
                budget.pause(err.retry_after)
            raise

    # -- redaction -------------------------------------------------------------------

    def _redact(self, value: Any) -> Any:
        """Remove the secret from server-provided data (an echoing proxy, a verbose error)."""
        if isinstance(value, str):
            return value.replace(self._secret, self._secret_shown)
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redact(item) for key, item in value.items()}
        return value

    def _text(self, raw: bytes, limit: int, *, strip: bool = True) -> str:
        """The start of an answer's text, redacted before cutting so no secret prefix survives."""
        text = raw.decode("utf-8", "replace")
        redacted: str = self._redact(text.strip() if strip else text)
        return redacted[:limit]


def retry_after_seconds(*candidates: Any) -> float | None:
    """The first candidate that is a number of seconds >= 0 (a header, then a body field)."""
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            seconds = float(candidate)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return None


def path_segment(value: str, name: str) -> str:
    """`value` as one URL path segment, or a `RequestValidationError` before sending."""
    if not isinstance(value, str) or not value.strip():
        raise RequestValidationError([FieldProblem(name, "must be a non-empty id")])
    if "/" in value or value in (".", ".."):
        raise RequestValidationError([FieldProblem(name, f"is not a valid id: {value!r}")])
    return value.strip()


def parse_model(cls: type[_M], data: Any) -> _M:
    """`data` as a `cls`, or an `UnexpectedResponseError` saying where it breaks the contract."""
    try:
        return cls.model_validate(data)
    except PydanticValidationError as err:
        first = err.errors()[0]
        raise UnexpectedResponseError(
            f"the answer does not match the documented {cls.__name__}: {first['msg']} "
            f"at {'.'.join(str(p) for p in first['loc'])}"
        ) from err


def _observe(budget: RateBudget, response: aiohttp.ClientResponse, used_at_send: int) -> None:
    """Tell the budget what the server says of its own window."""
    remaining = _int_header(response.headers, "X-RateLimit-Remaining")
    if response.status == 429 and response.headers.get("Retry-After") is not None:
        # Retry-After says exactly when to resume; phantom slots would hold the
        # budget for a whole window instead.
        remaining = None
    budget.observe(_int_header(response.headers, "X-RateLimit-Limit"), remaining, used_at_send)


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


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


def _failure(err: ProviderError, delay: float) -> str:
    """What went wrong, to follow 'retry GET /v1/me (attempt 2 of 5)'."""
    if err.status is None:
        return f": {err.message}"
    text = f" after HTTP {err.status}"
    if err.code and not err.code.startswith("HTTP_"):
        text += f" {err.code}"
    if err.retry_after is not None and err.retry_after == delay:
        text += ", as the server's Retry-After asks"
    return text


def _gave_up(err: ProviderError, attempts: int, elapsed: float) -> None:
    """Say in a final connection error how long the client kept trying."""
    if attempts < 2 or not isinstance(err, ProviderConnectionError):
        return
    err.message = f"{err.message}; gave up after {attempts} attempts in {elapsed:.1f} s"
    err.args = (err.message,)


def _may_have_taken_effect(err: ProviderError) -> bool:
    if isinstance(err, NotSentError):
        return False
    if isinstance(err, ProviderConnectionError):
        return True
    return isinstance(err, (ServerError, UnexpectedResponseError))
