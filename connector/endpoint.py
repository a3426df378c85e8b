"""Which Finetuning.ai server and key to use, and where each came from.

One precedence for every caller (the command line, `connector.app`, an HTTP
API): an explicit value (a flag), then the automations file, then the
environment, then (the server only) the public API. Only the standard library
is imported at the top, so the CLI's start-up stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from connector.errors import ConnectorError

KEY_VARIABLE = "FINETUNING_API_KEY"
BASE_URL_VARIABLE = "FINETUNING_BASE_URL"


class EndpointError(ConnectorError):
    """The server and key in effect cannot be used: a server named without a key, or a
    base URL that is not http(s)."""


@dataclass(frozen=True)
class Endpoint:
    """Which server a command talks to and with which key, and where each came from.

    `*_source` is "flag", "file", "env" or "none"/"default"; `*_origin` says it
    for people ("--api-key", "finetuning.api_key in a.yaml", "$FINETUNING_API_KEY").
    """

    api_key: str | None
    key_source: str
    key_origin: str
    base_url: str
    base_url_source: str
    base_url_origin: str

    def describe(self) -> str:
        """`Server: URL (from --base-url); key: ft_live_… (from $FINETUNING_API_KEY)`."""
        from connector.providers.finetuning.credentials import redact_key
        from connector.redaction import strip_url_secrets

        return (
            f"Server: {strip_url_secrets(self.base_url)} (from {self.base_url_origin}); "
            f"key: {redact_key(self.api_key)} (from {self.key_origin})"
        )

    def base_url_problem(self) -> str | None:
        """Why the base URL in effect is unusable (a flag or variable is not validated by
        the file's schema), or None."""
        parts = urlsplit(self.base_url)
        if parts.scheme in ("http", "https") and parts.hostname:
            return None
        return (
            f"the base URL from {self.base_url_origin} must be an http:// or https:// URL "
            f"(got {self.base_url!r})"
        )


def no_key_anywhere(file_name: str) -> str:
    """What to say when no key was found: every place that was looked at."""
    return f"no API key from --api-key, finetuning.api_key in {file_name} or ${KEY_VARIABLE}"


def resolve_endpoint(
    *,
    flag_key: str | None,
    flag_url: str | None,
    file_key: str | None = None,
    file_url: str | None = None,
    file_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """The one precedence every command uses, for the key and the server each:
    the command line, then the automations file (when the command reads one), then
    the environment, then (the server only) the public API.

    The file wins over the environment because it is the specific, written choice
    for these automations, while an exported variable is ambient: it is there for
    every command and every file of the shell. A file that wants the environment
    says so with `api_key: !env FINETUNING_API_KEY`.
    """
    from connector.providers.finetuning.credentials import DEFAULT_BASE_URL

    env = os.environ if environ is None else environ
    where = f" in {file_name}" if file_name else " in the file"
    key, key_source, key_origin = _first(
        (flag_key, "flag", "--api-key"),
        (file_key, "file", f"finetuning.api_key{where}"),
        (env.get(KEY_VARIABLE), "env", f"${KEY_VARIABLE}"),
    ) or (None, "none", "nowhere")
    url, url_source, url_origin = _first(
        (flag_url, "flag", "--base-url"),
        (file_url, "file", f"finetuning.base_url{where}"),
        (env.get(BASE_URL_VARIABLE), "env", f"${BASE_URL_VARIABLE}"),
    ) or (DEFAULT_BASE_URL, "default", "the default")
    _register_url_password(url)
    return Endpoint(key, key_source, key_origin, url, url_source, url_origin)


def _register_url_password(url: str) -> None:
    """A password in the base URL (`https://user:pw@host`) is a secret like the key."""
    import contextlib

    from connector.redaction import register_secret

    with contextlib.suppress(ValueError):  # not a URL: refused elsewhere, clearly
        register_secret(urlsplit(url).password)


def _first(*candidates: tuple[str | None, str, str]) -> tuple[str, str, str] | None:
    """The first candidate with a value (blank counts as unset, as `export X=` means)."""
    for value, source, origin in candidates:
        if value is not None and value.strip():
            return value.strip(), source, origin
    return None
