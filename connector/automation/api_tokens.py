"""The values of the `api:` section's tokens: a client's name, its bearer token, its scopes.

A bearer token is the whole credential of an HTTP API client, so no message here
shows one, not even a part of it: only its length.
"""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from connector.automation.problems import got, shown
from connector.automation.validators import exported

__all__ = [
    "API_SCOPES",
    "API_TOKEN_MIN_LENGTH",
    "MAKE_TOKEN",
    "action_keys",
    "bearer_token",
    "client_name",
    "scopes",
    "token_list",
]

# What an HTTP API token may do: `read` every GET, `act` the calls that do something.
API_SCOPES = ("read", "act")
# A bearer token is the whole credential: long enough that guessing is hopeless.
API_TOKEN_MIN_LENGTH = 24
MAKE_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
_CLIENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME_ALLOWED = "1 to 64 letters, digits, `_`, `.` or `-`"
_TOKEN_ALLOWED = f"text of {API_TOKEN_MIN_LENGTH} or more characters, no whitespace"
_SCOPES_JSON = {"type": "array", "items": {"enum": list(API_SCOPES)}, "minItems": 1}


@exported({"type": "string", "pattern": f"^{_CLIENT_NAME.pattern}$", "x-allowed": _NAME_ALLOWED})
def client_name(value: Any) -> str:
    if isinstance(value, str) and _CLIENT_NAME.fullmatch(value):
        return value
    raise vol.Invalid(f"must be 1 to 64 letters, digits, '_', '.' or '-' (got {shown(value)})")


@exported({"type": "string", "minLength": API_TOKEN_MIN_LENGTH, "x-allowed": _TOKEN_ALLOWED})
def bearer_token(value: Any) -> str:
    # No message shows the token, not even a part of it: only its length.
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text {got(value)}")
    if any(char.isspace() for char in value):
        raise vol.Invalid("must not contain spaces, tabs or line breaks")
    if len(value) < API_TOKEN_MIN_LENGTH:
        raise vol.Invalid(
            f"must be at least {API_TOKEN_MIN_LENGTH} characters (got {len(value)}); "
            f"make one with: {MAKE_TOKEN}"
        )
    return value


@exported({**_SCOPES_JSON, "x-allowed": "a list of `read` and `act`"})
def scopes(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise vol.Invalid(f"must be a list such as [read, act] {got(value)}")
    if not value:
        raise vol.Invalid(f"must name at least one scope: {', '.join(API_SCOPES)}")
    wrong = [
        vol.Invalid(f"must be one of {', '.join(API_SCOPES)} (got {shown(item)})", path=[index])
        for index, item in enumerate(value)
        if not (isinstance(item, str) and item.lower() in API_SCOPES)
    ]
    if wrong:
        raise vol.MultipleInvalid(wrong)  # every bad item, at its index
    return list(dict.fromkeys(item.lower() for item in value))


@exported({"type": "array", "minItems": 1, "x-allowed": "a list of 1 or more tokens (below)"})
def token_list(value: Any) -> list[Any]:
    # The shape only: each token is checked by the validator (`API_TOKEN_SCHEMA`).
    if not isinstance(value, list):
        raise vol.Invalid(f"must be a list of tokens, each with a name and a token {got(value)}")
    if not value:
        raise vol.Invalid("must list at least one token; for no API, remove the api section")
    return value


@exported(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "minItems": 1,
        "x-allowed": "a list of action keys",
    }
)
def action_keys(value: Any) -> list[str]:
    # The shape only: the validator checks each key against the installed actions.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise vol.Invalid(f"must be a list of action keys such as [generate] {got(value)}")
    wrong = [
        vol.Invalid(f"must be an action's key {got(item)}", path=[index])
        for index, item in enumerate(items)
        if not (isinstance(item, str) and item.strip())
    ]
    if wrong:
        raise vol.MultipleInvalid(wrong)
    return [item.strip() for item in items]
