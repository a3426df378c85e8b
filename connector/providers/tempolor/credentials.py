"""useapi.net API tokens (for TemPolor) and address: the format facts and the checks.

Imported by configuration code and the CLI without loading aiohttp or pydantic.
"""

from __future__ import annotations

from connector.errors import InvalidApiKeyError

__all__ = ["DEFAULT_BASE_URL", "check_api_token", "redact_token"]

DEFAULT_BASE_URL = "https://api.useapi.net/v1/tempolor"


def redact_token(api_token: str | None) -> str:
    """What may be shown of a useapi.net token: its `user:` prefix at most."""
    if not api_token:
        return "(none)"
    return "user:…" if api_token.startswith("user:") else "…"


def check_api_token(api_token: str) -> str:
    """Return the token without surrounding whitespace, or say clearly what is wrong with it."""
    if not isinstance(api_token, str) or not api_token.strip():
        raise InvalidApiKeyError(
            "no useapi.net API token given: pass api_token (see useapi.net's setup page)"
        )
    token = api_token.strip()
    if any(c.isspace() or ord(c) < 32 for c in token):
        # It goes into a header: a line break would split it, a space would truncate it.
        raise InvalidApiKeyError(
            f"the useapi.net API token is malformed: its {len(token)} characters contain "
            "whitespace or control characters"
        )
    return token
