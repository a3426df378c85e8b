"""Bearer tokens with scopes, compared in constant time.

Each configured token has a name (what logs and the journal say: "called by
n8n") and scopes: `read` for every GET, `act` for what changes anything
(calling an action, a replay, subscribing a hook). A token is compared with
every configured one, whether or not an earlier one matched, so the time an
answer takes says nothing about which token came close.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from connector.api.errors import ApiError
from connector.automation.model import ApiToken

__all__ = ["SCOPES", "Authenticator"]

SCOPES = ("read", "act")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ftconnect"'}


class Authenticator:
    """Which configured token an `Authorization` header carries, and what it may do."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        if not tokens:
            raise ValueError("the API needs at least one token")
        self._tokens = [(t.token.encode("utf-8", "surrogatepass"), t) for t in tokens]

    def __repr__(self) -> str:
        return f"Authenticator(tokens={[t.name for _, t in self._tokens]!r})"

    def authenticate(self, header: str | None) -> ApiToken:
        """The token of `Authorization: Bearer TOKEN`, or ApiError 401."""
        if not header:
            raise ApiError(
                401,
                "missing Authorization header: send `Authorization: Bearer <token>` with "
                "a token from api.tokens",
                headers=_CHALLENGE,
            )
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(
                401,
                "the Authorization header must be `Bearer <token>`",
                headers=_CHALLENGE,
            )
        candidate = given.strip().encode("utf-8", "surrogatepass")
        found: ApiToken | None = None
        for secret, token in self._tokens:
            if hmac.compare_digest(candidate, secret) and found is None:
                found = token
        if found is None:
            raise ApiError(401, "the token is not one of api.tokens", headers=_CHALLENGE)
        return found

    @staticmethod
    def may_call(token: ApiToken, action: str) -> None:
        """ApiError 403 unless `token` may call `action` (its `actions`, when it has any)."""
        if token.actions is not None and action not in token.actions:
            allowed = ", ".join(sorted(token.actions))
            raise ApiError(
                403,
                f"token {token.name!r} may not call {action!r} (it may call: {allowed}); add "
                f"{action} to its actions in api.tokens",
            )

    @staticmethod
    def may_replay(token: ApiToken, actions: Sequence[str]) -> None:
        """ApiError 403 unless `token` may call every one of `actions`: a replay runs the
        run's steps again, so a token limited to `generate` replays nothing that deletes."""
        for action in actions:
            Authenticator.may_call(token, action)

    @staticmethod
    def require(token: ApiToken, scope: str) -> None:
        """ApiError 403 unless `token` has `scope`."""
        if scope not in token.scopes:
            have = ", ".join(sorted(token.scopes)) or "none"
            raise ApiError(
                403,
                f"token {token.name!r} lacks the {scope!r} scope (it has: {have}); add "
                f"{scope} to its scopes in api.tokens",
            )
