"""Signed outgoing webhooks, following the Standard Webhooks specification.

Every delivery is a JSON POST carrying three headers (standardwebhooks.com):

* `webhook-id`: the message id, the same on every retry of one message, so
  receivers can deduplicate;
* `webhook-timestamp`: Unix seconds of this attempt (recomputed per retry);
* `webhook-signature`: `v1,<base64 HMAC-SHA256>` of
  `"{webhook-id}.{webhook-timestamp}." + body`, keyed with the base64-decoded
  part of a `whsec_...` secret (only when a secret is configured).

    delivery = await send_webhook(
        url, {"type": "track.completed", ...}, secret=secret, session=session
    )

`verify()` is the receiving side, for our own listener and tests. Secrets and
signatures never appear in logs, messages or reprs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from pydantic import BaseModel
from yarl import URL

from connector.errors import ConnectorError, DeliveryError
from connector.providers.http import backoff_delay
from connector.redaction import scrub
from connector.version import USER_AGENT

_LOGGER = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# The spec asks for symmetric keys of 24 to 64 bytes (192 to 512 bits).
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
DEFAULT_TOLERANCE = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class WebhookSecretError(ConnectorError, ValueError):
    """A webhook secret is malformed. The message describes it without showing it."""


@dataclass(frozen=True)
class WebhookDelivery:
    """The outcome of one message: delivered or not, after how many attempts.

    `status` is the last HTTP status (None when no answer came), `error` says
    why the last attempt failed (None on success).
    """

    ok: bool
    status: int | None
    attempts: int
    msg_id: str
    error: str | None = None


class WebhookDeliveryError(DeliveryError):
    """A webhook could not be delivered; `delivery` holds what happened."""

    default_code = "WEBHOOK_FAILED"

    def __init__(self, message: str, delivery: WebhookDelivery) -> None:
        super().__init__(message, status=delivery.status)
        self.delivery = delivery


# -- secrets and signatures --------------------------------------------------------------


def generate_secret(num_bytes: int = 32) -> str:
    """A new random secret in the spec's form: "whsec_" + base64 of `num_bytes` bytes."""
    if not SECRET_MIN_BYTES <= num_bytes <= SECRET_MAX_BYTES:
        raise ValueError(
            f"num_bytes must be between {SECRET_MIN_BYTES} and {SECRET_MAX_BYTES} (got {num_bytes})"
        )
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a "whsec_..." secret, or WebhookSecretError saying what is wrong."""
    if not isinstance(secret, str):
        raise WebhookSecretError(f"the webhook secret must be text (got {type(secret).__name__})")
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise WebhookSecretError(
            f"the webhook secret must start with {SECRET_PREFIX!r} followed by base64 "
            f"(the given one, {len(text)} characters, does not)"
        )
    encoded = text[len(SECRET_PREFIX) :]
    try:
        # Unpadded secrets exist in the wild; the padding is restored before decoding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            f"the webhook secret after {SECRET_PREFIX!r} is not valid base64 "
            f"({len(encoded)} characters)"
        ) from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise WebhookSecretError(
            f"the webhook secret decodes to {len(key)} bytes; the Standard Webhooks spec "
            f"asks for {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} (use generate_secret())"
        )
    return key


def _check_msg_id(msg_id: str) -> None:
    # The id is part of the signed "id.timestamp.body": a "." in it would make
    # two different (id, timestamp) pairs sign the same bytes.
    if not isinstance(msg_id, str) or not msg_id or "." in msg_id or msg_id != msg_id.strip():
        raise ValueError(f"msg_id must be non-empty, without '.' or spaces (got {msg_id!r})")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one attempt: "v1," + base64 HMAC-SHA256."""
    _check_msg_id(msg_id)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError(f"timestamp must be whole Unix seconds (got {timestamp!r})")
    digest = _digest(secret_key(secret), msg_id, timestamp, bytes(body))
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # A plain dict is case-sensitive; HTTP header names are not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether `headers` carry a valid signature of `body` made within `tolerance` seconds.

    Any of several space-separated signatures may match (secret rotation);
    signatures of other schemes ("v1a,...") are skipped. Comparison is in
    constant time. A malformed secret raises WebhookSecretError; a missing or
    malformed header just fails the check.
    """
    key = secret_key(secret)
    msg_id = _header(headers, HEADER_ID)
    stamp = _header(headers, HEADER_TIMESTAMP)
    signatures = _header(headers, HEADER_SIGNATURE)
    if not msg_id or not stamp or not signatures or "." in msg_id:
        return False
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False  # too old (a replay) or too far in the future
    expected = _digest(key, msg_id, timestamp, bytes(body))
    matched = False
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # No early exit: every candidate costs the same, whichever matched.
        matched |= hmac.compare_digest(expected, given)
    return matched


# -- delivery ----------------------------------------------------------------------------


def _encode(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", by_alias=True)
    # No secret leaves the process in a body, and NaN/Infinity (not JSON) become null.
    payload = scrub(payload)
    try:
        # Compact and strict (no NaN): the bytes signed are the bytes sent.
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the webhook payload is not JSON-serialisable: {err}") from err
    return text.encode("utf-8")


def _target(url: str) -> str:
    """Where a webhook goes, for messages: scheme, host and port only.

    Webhook URLs often embed their own secret (Home Assistant's webhook id,
    n8n's path, tokens in the query), so the path is never shown.
    """
    try:
        parsed = URL(url)
    except ValueError:
        return "(invalid URL)"
    if not parsed.host:
        return "(invalid URL)"
    return f"{parsed.scheme}://{parsed.host}" + (
        f":{parsed.explicit_port}" if parsed.explicit_port else ""
    )


def _scrub(text: str, url: str, target: str) -> str:
    """`text` without the URL's path and query (an error message may quote the URL)."""
    try:
        parsed = URL(url)
    except ValueError:
        return text.replace(url, target)
    text = text.replace(url, target).replace(str(parsed), target)
    for secretish in (parsed.raw_path_qs, parsed.path_qs):
        if secretish not in ("", "/"):
            text = text.replace(secretish, "/…")
    return text


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None  # HTTP dates are GMT; one without a zone is not an HTTP date
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


async def send_webhook(
    url: str,
    payload: Any,
    *,
    secret: str | None,
    session: aiohttp.ClientSession,
    msg_id: str | None = None,
    max_attempts: int = 5,
    backoff_base: float = 1.0,
    backoff_max: float = 60.0,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> WebhookDelivery:
    """POST `payload` (JSON-encoded unless already bytes) to `url`, signed when `secret` is set.

    `session` is the connector's HTTP session (an action's `context.session`);
    it is used, never closed. `timeout` bounds each attempt, set per request.
    Retries with exponential backoff and jitter on 429, 5xx, timeouts and
    connection errors, waiting what `Retry-After` asks when given (both
    capped at `backoff_max`); other answers are final: any 2xx succeeds,
    3xx and other 4xx fail at once. Redirects are never followed, so the
    signature and the body go only where they were addressed. Each attempt
    gets a fresh `webhook-timestamp` and signature; `webhook-id` stays.
    Returns the `WebhookDelivery`, or raises `WebhookDeliveryError` carrying
    it when every attempt failed.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1 (got {max_attempts})")
    try:
        scheme = URL(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise ValueError(f"the webhook URL must be http(s) (got {_target(url)})")
    if secret is not None:
        secret_key(secret)  # a malformed secret fails here, before anything is sent
    msg_id = msg_id if msg_id is not None else "msg_" + uuid.uuid4().hex
    _check_msg_id(msg_id)
    body = _encode(payload)
    target = _target(url)

    status: int | None = None
    error = ""
    attempt = 0
    while True:
        attempt += 1
        timestamp = int(clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            HEADER_ID: msg_id,
            HEADER_TIMESTAMP: str(timestamp),
        }
        if secret is not None:
            headers[HEADER_SIGNATURE] = sign(secret, msg_id, timestamp, body)
        retry_after: float | None = None
        retry = True
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                await response.read()  # the whole answer, so the connection can be reused
                if 200 <= status < 300:
                    _LOGGER.debug(
                        "webhook %s to %s: HTTP %d on attempt %d",
                        msg_id,
                        target,
                        status,
                        attempt,
                    )
                    return WebhookDelivery(True, status, attempt, msg_id)
                error = f"HTTP {status} {response.reason or ''}".rstrip()
                retry = _retryable(status)
                if 300 <= status < 400:
                    error += " (redirects are not followed: configure the final URL)"
                if retry:
                    retry_after = _retry_after(response.headers.get("Retry-After"), clock())
        except TimeoutError:
            status = None
            error = f"no answer within {timeout:g} s"
        except aiohttp.ClientConnectorCertificateError as err:
            # A bad certificate will not fix itself between attempts.
            status, error, retry = (
                None,
                f"TLS certificate rejected: {err.certificate_error}",
                False,
            )
        except aiohttp.ClientError as err:
            status = None
            error = _scrub(f"{type(err).__name__}: {err}", url, target)
        if not retry or attempt >= max_attempts:
            break
        delay = (
            retry_after
            if retry_after is not None
            else backoff_delay(attempt, base=backoff_base, cap=backoff_max, jitter="equal")
        )
        delay = min(delay, backoff_max)
        _LOGGER.debug(
            "webhook %s to %s: %s on attempt %d; retrying in %.1f s",
            msg_id,
            target,
            error,
            attempt,
            delay,
        )
        await sleep(delay)
    delivery = WebhookDelivery(False, status, attempt, msg_id, error)
    tries = "attempt" if attempt == 1 else "attempts"
    final = "" if retry else " (not retried)"
    message = f"webhook {msg_id} to {target} failed after {attempt} {tries}: {error}{final}"
    _LOGGER.debug("%s", message)
    raise WebhookDeliveryError(message, delivery)
