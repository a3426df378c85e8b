"""Secrets never leave the process: one registry of the values to hide, and the scrubbers.

The connector holds four kinds of secret: the Finetuning.ai API key, the
TemPolor token, the webhook listener's token and the `whsec_` signing secrets
of `notify_webhook` steps. Each is registered here as soon as it is known (the
config loader, the clients and the listener register theirs), and everything
the connector writes or sends passes through `scrub` first: the journal (event
data, step outputs, errors, intents), JSON sidecars in the media library,
outgoing webhook bodies, and the log records of the `connector` loggers.

Scrubbing is the second line of defence. The first is never to keep a secret
in data at all: providers echo the webhook URL a generation was created with
(Finetuning.ai's `webhook`, TemPolor's `replyUrl`), token and all, so the
models strip those URLs down to scheme, host and path as they parse them
(`strip_url_secrets`). A value registered here is also found in the spellings
it takes inside a URL (percent-encoded, form-encoded), so a URL quoted whole in
an error message is caught too.

Values shorter than `MIN_LENGTH` are not registered: replacing a three-letter
word everywhere would mangle data, and the config refuses tokens that short.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from yarl import URL

__all__ = [
    "MIN_LENGTH",
    "REDACTED",
    "SECRETS",
    "ScrubFilter",
    "SecretSet",
    "dumps",
    "finite",
    "register_secret",
    "scrub",
    "scrub_text",
    "spellings",
    "strip_url_secrets",
]

REDACTED = "<redacted>"
MIN_LENGTH = 8


class SecretSet:
    """The secret values this process knows, and their spellings, longest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._spellings: tuple[str, ...] = ()

    def add(self, value: object) -> None:
        """Register a secret (an empty, non-string or too short value is ignored)."""
        if not isinstance(value, str):
            return
        text = str(value)  # a str subclass (SecretValue) as a plain str
        if len(text.strip()) < MIN_LENGTH or text in self._values:
            return
        with self._lock:
            self._values.add(text)
            known = set(self._spellings)
            known.update(spellings(text))
            # Longest first, so a spelling that contains another is replaced whole.
            self._spellings = tuple(sorted(known, key=len, reverse=True))

    def update(self, values: Iterable[object]) -> None:
        for value in values:
            self.add(value)

    def discard_all(self) -> None:
        """Forget every secret (tests only)."""
        with self._lock:
            self._values.clear()
            self._spellings = ()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def values(self) -> frozenset[str]:
        """The registered values, for tests that search written bytes for them."""
        return frozenset(self._values)

    def scrub_text(self, text: str) -> str:
        """`text` with every spelling of every secret replaced by `REDACTED`."""
        for spelling in self._spellings:
            if spelling in text:
                text = text.replace(spelling, REDACTED)
        return text

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets removed from every string (keys too)
        and non-finite floats turned into None, so it can be written as strict JSON."""
        if isinstance(value, str):
            return self.scrub_text(value) if self._spellings else value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, Mapping):
            return {
                (self.scrub_text(k) if isinstance(k, str) else k): self.scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        return value


def spellings(text: str) -> set[str]:
    """The ways a secret shows in text: raw, percent- and form-encoded (with upper- or
    lower-case hex, `~` kept or encoded, as different encoders write them), in a yarl
    query string (what a request line carries) and inside a bytes repr (parser errors)."""
    encoded = {
        quote(text, safe=""),
        quote_plus(text, safe=""),
        # How yarl writes it into a query string (what a request line carries).
        URL.build(query={"token": text}).raw_query_string.removeprefix("token="),
    }
    # Java's URLEncoder and others encode "~"; some encoders write lower-case hex.
    encoded |= {form.replace("~", "%7E") for form in encoded}
    encoded |= {_PERCENT.sub(lambda m: m.group(0).lower(), form) for form in encoded}
    forms = {text, *encoded, repr(text.encode("utf-8", "surrogatepass"))[2:-1]}
    return {form for form in forms if form}


_PERCENT = re.compile(r"%[0-9A-F]{2}")


SECRETS = SecretSet()
"""The process-wide registry: the config loader, clients and listener add to it."""


def register_secret(value: object) -> None:
    """Add a secret to the process-wide registry."""
    SECRETS.add(value)


def scrub(value: Any) -> Any:
    """`SECRETS.scrub(value)`: a JSON-like value without secrets or non-finite floats."""
    return SECRETS.scrub(value)


def scrub_text(text: str) -> str:
    """`SECRETS.scrub_text(text)`."""
    return SECRETS.scrub_text(text)


def finite(value: Any) -> Any:
    """A JSON-like value with non-finite floats (NaN, ±Infinity) turned into None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = None, ensure_ascii: bool = True) -> str:
    """Strict JSON text for people and other programs: no secret, no `NaN`/`Infinity`.

    What the CLI prints (`--json`) and the runtime's one-line summaries go
    through it: standard JSON parsers (JavaScript's, jq) refuse `NaN`, and a
    value from a provider may carry one. Unknown types are written with `str()`.
    """
    return json.dumps(
        scrub(value), indent=indent, default=str, allow_nan=False, ensure_ascii=ensure_ascii
    )


def strip_url_secrets(value: Any) -> Any:
    """A URL without what may carry a credential: query string, fragment, user and password.

    Providers echo the webhook URL they were given (`?token=...` and all); what
    is kept (scheme, host, port, path) still says where deliveries go. A value
    that is not a URL string is returned unchanged (validation is elsewhere).
    """
    if not isinstance(value, str) or not value:
        return value
    try:
        url = URL(value)
    except (ValueError, TypeError):
        return REDACTED
    if not url.raw_query_string and not url.raw_fragment and url.raw_user is None:
        return value
    try:
        stripped = url.with_query(None).with_fragment(None).with_user(None).with_password(None)
    except (ValueError, TypeError):
        return REDACTED
    return str(stripped)


class ScrubFilter(logging.Filter):
    """A logging filter that renders a record's message and removes registered secrets.

    Installed on the CLI's handlers: whatever a library or our own code logs
    (an exception quoting a URL, a repr) passes through it before it is written.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not len(SECRETS):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's own error path
            return True
        cleaned = SECRETS.scrub_text(message)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Render the traceback now, scrubbed, so the handler does not render it raw.
            record.exc_text = SECRETS.scrub_text(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = SECRETS.scrub_text(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True
