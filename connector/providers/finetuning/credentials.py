"""Finetuning.ai API keys and address: the format facts and the checks, nothing heavy.

Imported by configuration code and the CLI without loading aiohttp or pydantic.
"""

from __future__ import annotations

import re

from connector.errors import InvalidApiKeyError

__all__ = ["API_KEY_PATTERN", "API_KEY_PREFIX", "DEFAULT_BASE_URL", "check_api_key", "redact_key"]

DEFAULT_BASE_URL = "https://pub.finetuning.ai"
API_KEY_PREFIX = "ft_live_"
API_KEY_PATTERN = re.compile(r"ft_live_[0-9a-fA-F]{32}")
"""A key is `ft_live_` followed by 32 hex characters, 40 in all."""


def redact_key(api_key: str | None) -> str:
    """What may be shown of a key: its documented prefix at most."""
    if not api_key:
        return "(none)"
    return f"{API_KEY_PREFIX}…" if api_key.startswith(API_KEY_PREFIX) else "…"


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
