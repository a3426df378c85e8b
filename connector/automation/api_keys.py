"""The provider credentials in the file: the Finetuning.ai key and the useapi.net token.

A key or token the client would refuse is a problem of the file, at its line,
so a file `ftconnect check` accepts is one `ftconnect run` starts: the clients'
own checks (`check_api_key`, `check_api_token`) decide. The messages say what
is wrong with a key without ever showing it.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from connector.automation.model import SecretValue
from connector.automation.problems import got
from connector.automation.validators import exported
from connector.errors import InvalidApiKeyError
from connector.providers.finetuning.credentials import (
    API_KEY_PATTERN,
    API_KEY_PREFIX,
    check_api_key,
)
from connector.providers.tempolor.credentials import check_api_token

__all__ = ["api_key", "api_key_problem", "api_token"]

_KEY_SHAPE = f"'{API_KEY_PREFIX}' followed by 32 hex characters, 40 in all"


def _same_kind(original: str, text: str) -> str:
    """`text` (a stripped key), still a SecretValue when `original` was one."""
    if text == original:
        return original
    return SecretValue(text) if isinstance(original, SecretValue) else text


@exported(
    {
        "type": "string",
        "pattern": f"^{API_KEY_PATTERN.pattern}$",
        "x-allowed": f"`{API_KEY_PREFIX}` followed by 32 hex characters",
    }
)
def api_key(value: Any) -> str:
    """A Finetuning.ai key of the shape the client accepts; the message never shows it."""
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text {got(value)}")
    problem = api_key_problem(value)
    if problem is not None:
        raise vol.Invalid(problem)
    return _same_kind(value, value.strip())


def api_key_problem(key: str) -> str | None:
    """What is wrong with a Finetuning.ai API key, in words that never show it; None if fine.

    The client's own check (`check_api_key`) decides, so a key `ftconnect check`
    accepts is one `ftconnect run` can use. The text reads after the key's name
    ("finetuning.api_key: must be ..."); a key from --api-key or the environment
    can be reported with it too.
    """
    if not key.strip():
        return (
            f"is empty: a Finetuning.ai API key is {_KEY_SHAPE} "
            "(leave api_key out to run on the embedded sandbox)"
        )
    try:
        check_api_key(key)
    except InvalidApiKeyError:
        pass
    else:
        return None
    key = key.strip()
    found = []
    if not key.startswith(API_KEY_PREFIX):
        found.append(f"does not start with '{API_KEY_PREFIX}'")
    if len(key) != len(API_KEY_PREFIX) + 32:
        found.append(f"has {len(key)} characters")
    elif key.startswith(API_KEY_PREFIX):
        found.append(f"has characters other than 0-9 and a-f after '{API_KEY_PREFIX}'")
    return (
        f"must be a Finetuning.ai API key, {_KEY_SHAPE} (this one {' and '.join(found)}); "
        "create one under Profile → API, or leave api_key out to run on the embedded sandbox"
    )


@exported(
    {
        "type": "string",
        "pattern": r"^\S+$",
        "x-allowed": "one word: no spaces, line breaks or control characters",
    }
)
def api_token(value: Any) -> str:
    """A useapi.net token the TemPolor client accepts (`check_api_token`), never shown."""
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text {got(value)}")
    if not value.strip():
        raise vol.Invalid("is empty: copy the API token from useapi.net")
    try:
        return _same_kind(value, check_api_token(value))
    except InvalidApiKeyError:
        pass
    token = value.strip()
    bad = sum(1 for char in token if char.isspace() or ord(char) < 32)
    raise vol.Invalid(
        "must be one word, as useapi.net shows it, without spaces, line breaks or control "
        f"characters (this one has {len(token)} characters, {bad} of them spaces or "
        "control characters)"
    )
