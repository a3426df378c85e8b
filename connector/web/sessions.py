"""Signing in to the web page: sessions behind a cookie, CSRF tokens, a sign-in throttle.

A session is made by signing in with an API token that has `read`; the page
then acts as that token (its name in the logs, its scopes and `actions:` on
every button). Sessions live in this process only: a restart signs everyone
out, which is the safe failure. The cookie carries a random id; the server
keeps only its SHA-256, so a lookup's timing or a memory dump says nothing
usable about a live cookie.

Every form that changes something carries the session's CSRF token, checked in
constant time, on top of a cookie that is `SameSite=Strict` and a check of
`Origin` / `Sec-Fetch-Site`: three locks a cross-site page would all have to
pick.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connector.automation.model import ApiToken

__all__ = [
    "MAX_SESSIONS",
    "SESSION_COOKIE",
    "SESSION_IDLE",
    "SESSION_LIFETIME",
    "Session",
    "SessionStore",
    "SignInThrottle",
]

SESSION_COOKIE = "ftc_session"
SESSION_IDLE = 12 * 3600.0  # signed out after this long unused
SESSION_LIFETIME = 7 * 24 * 3600.0  # and after this long in any case
MAX_SESSIONS = 1000  # the oldest is dropped past this many (each is a sign-in)


@dataclass
class Session:
    """One signed-in browser: the token it acts as, its CSRF token, its times."""

    token: ApiToken
    csrf: str = field(repr=False)
    created: float
    seen: float

    def may(self, scope: str) -> bool:
        return scope in self.token.scopes

    def csrf_ok(self, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.csrf.encode())


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """The signed-in sessions of one API listener (in memory, bounded)."""

    def __init__(
        self,
        tokens: Sequence[ApiToken],
        *,
        clock: Callable[[], float] = time.monotonic,
        idle: float = SESSION_IDLE,
        lifetime: float = SESSION_LIFETIME,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self._tokens = {token.name: token for token in tokens}
        self._clock = clock
        self._idle = idle
        self._lifetime = lifetime
        self._limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __repr__(self) -> str:
        return f"SessionStore(sessions={len(self._sessions)})"

    def __len__(self) -> int:
        return len(self._sessions)

    def sign_in(self, token: ApiToken) -> str:
        """A new session for `token`; the cookie value to set (shown nowhere else)."""
        cookie = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[_digest(cookie)] = Session(
            token=token, csrf=secrets.token_urlsafe(32), created=now, seen=now
        )
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)
        return cookie

    def get(self, cookie: str | None) -> Session | None:
        """The live session of a cookie, or None (unknown, expired, or its token gone)."""
        if not cookie or len(cookie) > 256:
            return None
        digest = _digest(cookie)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        current = self._tokens.get(session.token.name)
        if (
            now - session.seen > self._idle
            or now - session.created > self._lifetime
            or current is None
            or current.token != session.token.token
        ):
            del self._sessions[digest]
            return None
        session.seen = now
        self._sessions.move_to_end(digest)
        return session

    def sign_out(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(_digest(cookie), None)


class SignInThrottle:
    """At most `limit` failed sign-ins per client address in `window` seconds.

    A token has 24+ random characters, so guessing is hopeless anyway; the
    throttle keeps a guesser from also filling the log and the CPU. It counts
    failures only: a user who signs in right is never slowed down. The table
    is bounded: past `max_clients` addresses the oldest is forgotten.
    """

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        failures = self._recent(client)
        if failures is None or len(failures) < self._limit:
            return 0.0
        return max(0.0, failures[0] + self._window - self._clock())

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque()
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
        failures.append(self._clock())
        while len(failures) > self._limit:
            failures.popleft()

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
