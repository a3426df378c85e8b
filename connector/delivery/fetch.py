"""Fetching a track's audio: one GET streamed into a ".part" file, checked, and retried.

`fetch_audio` runs the attempts of one download over the connector's shared
HTTP session. Each attempt streams into a fresh temporary file and checks
what arrives (status, content type, announced and actual length, the MP3
frame sync); a transient failure (429, 500, 502, 503, 504, a refused or
dropped connection, a timeout, a body cut short) is tried again after the
shared backoff (`connector.providers.http.backoff_delay`) or the server's
Retry-After. Messages and chained causes never carry a signed URL's query.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
from yarl import URL

from connector.delivery.errors import DownloadError
from connector.delivery.files import TempWriter, open_temp
from connector.providers.http import backoff_delay
from connector.version import USER_AGENT

_LOGGER = logging.getLogger(__name__)

_CHUNK = 64 * 1024

# Answers worth asking again: overload, gateways, rate limits. Every other 4xx is final.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})

ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a failed audio GET is tried again.

    `attempts` counts every GET, the first included. After failed attempt n
    the wait is `base_delay * 2**(n-1)`, at most `max_delay`, jittered down
    to as little as half, so many downloads failing together do not return
    together. A Retry-After (429, 503) replaces the backoff when it is at most
    `retry_after_cap` seconds; a longer one ends the download at once, since
    waiting less than asked would only be refused again.
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"attempts must be an integer (got {self.attempts!r})")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (got {self.attempts!r})")
        for name in ("base_delay", "max_delay", "retry_after_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0 (got {value!r})")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), jittered."""
        return backoff_delay(attempt, base=self.base_delay, cap=self.max_delay, jitter="equal")


DEFAULT_RETRY = RetryPolicy()


async def fetch_audio(
    session: aiohttp.ClientSession,
    url: str,
    directory: Path,
    *,
    max_bytes: int,
    timeout: float,
    on_progress: ProgressCallback | None,
    retry: RetryPolicy,
) -> tuple[TempWriter, int, int]:
    """GET `url` into a new ".part" file of `directory`; (writer, bytes, attempts made).

    The writer is not committed yet: the caller checks, tags and places the
    file. On failure or cancellation no temporary file is left, and the
    `DownloadError` says how many attempts were made.
    """
    attempt = 0
    while True:
        attempt += 1
        # A fresh ".part" per attempt: nothing of a broken body is ever kept.
        writer = await open_temp(directory)
        try:
            received = await _stream(
                session, url, writer, max_bytes=max_bytes, timeout=timeout, on_progress=on_progress
            )
        except DownloadError as err:
            writer.discard()
            delay = _retry_delay(err, attempt, retry)
            if delay is None:
                final = _final_error(err, attempt, retry)
                if final is err:
                    raise
                raise final from err
            _LOGGER.info(
                "%s; trying again in %.1f s (attempt %d of %d)",
                err.message,
                delay,
                attempt + 1,
                retry.attempts,
            )
            await asyncio.sleep(delay)
        except BaseException:
            writer.discard()
            raise
        else:
            return writer, received, attempt


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    writer: TempWriter,
    *,
    max_bytes: int,
    timeout: float,
    on_progress: ProgressCallback | None,
) -> int:
    """Stream the audio at `url` into `writer`; the number of bytes received."""
    shown = display_url(url)
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "audio/mpeg, audio/*;q=0.9, application/octet-stream;q=0.5",
        # No transfer compression: Content-Length then counts the bytes that arrive.
        "Accept-Encoding": "identity",
    }
    # Per request: the shared session's own timeouts belong to the API clients.
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 30.0))
    received = 0
    try:
        async with session.get(url, headers=headers, timeout=client_timeout) as response:
            status = response.status
            if not 200 <= status < 300:
                retry_after = (
                    _retry_after(response.headers.get("Retry-After"))
                    if status in _RETRY_AFTER_STATUSES
                    else None
                )
                raise DownloadError(
                    f"GET {shown} answered HTTP {status} {response.reason or ''}".rstrip(),
                    url=shown,
                    status=status,
                    retryable=status in _RETRY_STATUSES,
                    retry_after=retry_after,
                )
            content_type = response.content_type.lower()
            if not _content_type_ok(content_type):
                raise DownloadError(
                    f"GET {shown} sent {content_type!r}, not audio (expected audio/mpeg)",
                    url=shown,
                    status=response.status,
                )
            total = response.content_length
            if total is not None and total > max_bytes:
                raise DownloadError(
                    f"GET {shown} announces {total} bytes, over the limit of {max_bytes}",
                    url=shown,
                    status=response.status,
                )
            head = b""
            async for chunk in response.content.iter_chunked(_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(
                        f"GET {shown} sent more than the limit of {max_bytes} bytes",
                        url=shown,
                        status=response.status,
                    )
                if len(head) < 4:
                    head += chunk[: 4 - len(head)]
                    if len(head) >= 4 and not _looks_like_mp3(head):
                        raise DownloadError(
                            f"GET {shown} sent {content_type!r} that is not MP3 audio",
                            url=shown,
                            status=response.status,
                        )
                await writer.write(chunk)
                if on_progress is not None:
                    on_progress(received, total)
            # The length first: a body cut short is worth another try, not a verdict.
            if total is not None and received != total:
                raise DownloadError(
                    f"GET {shown} ended after {received} of {total} bytes",
                    url=shown,
                    status=status,
                    retryable=received < total,
                )
            if not _looks_like_mp3(head):
                raise DownloadError(
                    f"GET {shown} sent {received} bytes that are not MP3 audio", url=shown
                )
    except TimeoutError as err:
        raise DownloadError(
            f"GET {shown} did not finish within {timeout:g} s ({received} bytes received)",
            url=shown,
            retryable=True,
        ) from err
    except aiohttp.ClientPayloadError as err:
        raise _client_error(
            f"GET {shown} broke off after {received} bytes: {err}", shown, retryable=True
        ) from _safe_cause(err)
    except aiohttp.ClientError as err:
        # A connection refused, reset or closed early is transient; a bad URL, a
        # redirect loop or a certificate refused will fail the same way again.
        retryable = isinstance(err, aiohttp.ClientConnectionError) and not isinstance(
            err, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch
        )
        raise _client_error(
            f"GET {shown} failed after {received} bytes: {_describe(err)}",
            shown,
            retryable=retryable,
        ) from _safe_cause(err)
    return received


def display_url(url: str) -> str:
    """The URL without query or fragment: signed links carry their tokens there."""
    try:
        parsed = URL(url)
    except ValueError:
        return "(invalid URL)"
    return str(parsed.with_query(None).with_fragment(None))


def _looks_like_mp3(head: bytes) -> bool:
    """An ID3v2 tag or an MPEG audio frame sync (11 set bits) at the start."""
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _content_type_ok(content_type: str) -> bool:
    return content_type.startswith("audio/") or content_type in (
        "application/octet-stream",
        "binary/octet-stream",
    )


def _describe(err: aiohttp.ClientError) -> str:
    """The error's class and text; a response error's text is left out (it quotes URLs)."""
    if isinstance(err, aiohttp.ClientResponseError):
        # str() of these is "status, message=..., url=...", and a redirect loop's
        # repr adds every hop's headers (Location with its query): keep the facts.
        status = f" (HTTP {err.status})" if err.status else ""
        return f"{type(err).__name__}{status}" + (f": {err.message}" if err.message else "")
    return f"{type(err).__name__}: {err}"


def _client_error(message: str, shown: str, *, retryable: bool) -> DownloadError:
    """A DownloadError for an aiohttp error; URLs quoted in its text lose their query."""
    return DownloadError(_without_queries(message), url=shown, retryable=retryable)


def _safe_cause(err: Exception) -> Exception | None:
    """`err` as the cause to chain, unless it carries a full URL (query and all).

    Response errors (redirect loops, bad redirects) hold the request's URL in
    `request_info`, and some errors quote a URL whole in their text: chained,
    they would put a signed link's token in any traceback that gets logged.
    """
    text = f"{err} {err!r}"
    if isinstance(err, aiohttp.ClientResponseError) or _without_queries(text) != text:
        return None
    return err


# A URL (absolute, or a path such as a redirect's Location) and its query or fragment.
_URL_QUERY = re.compile(r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s?#'\"<>]*)[?#][^\s'\"<>]*")


def _without_queries(text: str) -> str:
    """`text` with the query and fragment of every URL or path in it cut off."""
    return _URL_QUERY.sub(r"\1", text)


# -- retries -----------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110); None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _retry_delay(err: DownloadError, attempt: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when `err` is final."""
    if not err.retryable or attempt >= policy.attempts:
        return None
    if err.retry_after is not None:
        return err.retry_after if err.retry_after <= policy.retry_after_cap else None
    return policy.backoff(attempt)


def _final_error(err: DownloadError, attempt: int, policy: RetryPolicy) -> DownloadError:
    """The error to raise once `err`, from attempt number `attempt`, ends the download."""
    if attempt == 1 and not err.retryable:
        return err  # refused outright (404, not audio, ...): said as it was
    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
    if not err.retryable:
        note = f"not retryable; {tries} made"
    elif (
        attempt < policy.attempts
        and err.retry_after is not None
        and err.retry_after > policy.retry_after_cap
    ):
        note = (
            f"the server asked to wait {err.retry_after:g} s (Retry-After), more than the "
            f"{policy.retry_after_cap:g} s a download waits; gave up after {tries}"
        )
    else:
        note = f"gave up after {tries}"
    return DownloadError(
        f"{err.message}; {note}",
        url=err.url,
        path=err.path,
        status=err.status,
        retryable=err.retryable,
        retry_after=err.retry_after,
        attempts=attempt,
    )
