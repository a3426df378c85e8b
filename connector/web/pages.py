"""The web page's handlers: sign-in, the overview, runs, a run's trace, events, hooks.

Served by the API listener beside `/api/v1`, over the same runtime and the
same tokens. A browser signs in once with a token that has `read` and gets a
session cookie (`connector.web.sessions`); the page then shows what the token
may see, and offers only the buttons it may press (Replay needs `act`, and
the token's `actions:` must allow every action the run takes). Everything is
rendered on the server; `/ui/app.js` only refreshes the parts marked live.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import web

from connector.api.auth import Authenticator
from connector.api.errors import ApiError
from connector.api.params import cursor
from connector.api.schemas import RUN_STATUSES
from connector.api.views import encode_cursor, masked_url
from connector.automation.model import ApiToken
from connector.dispatch.calls import API_AUTOMATION_PREFIX, event_kinds, run_actions
from connector.dispatch.runtime import Runtime
from connector.ingress.server import Reject, read_body
from connector.journal.runs import RunRow
from connector.providers.hosts import is_loopback
from connector.web.overview import CreditsCache, health_items
from connector.web.render import Renderer
from connector.web.sessions import SESSION_COOKIE, Session, SessionStore, SignInThrottle

__all__ = ["WebPages"]

PAGE_SIZE = 50
MAX_FORM = 4096
# A browser sends a form of a few hundred bytes at once: a client that trickles one
# holds a connection the cap cannot evict while it reads, so reads are short and few.
FORM_TIMEOUT = 2.0
FORM_READS = 16

Row = TypeVar("Row")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A signed-in page's handler: the request, its session, and the form it sent (POST).
SignedIn = Callable[[web.Request, Session, dict[str, str]], Awaitable[web.StreamResponse]]


class PageError(Exception):
    """An answer other than the page asked for: status, a title and a sentence."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class WebPages:
    """The page's routes over one running connector."""

    def __init__(
        self,
        runtime: Runtime,
        tokens: list[ApiToken],
        *,
        api_url: Callable[[], str],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.runtime = runtime
        self.sessions = SessionStore(tokens)
        self.throttle = SignInThrottle()
        self.renderer = Renderer()
        self.credits = CreditsCache(runtime)
        self._reads = asyncio.Semaphore(FORM_READS)
        self._auth = Authenticator(tokens)
        self._api_url = api_url
        self._log = log

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/signin", self.signin_form),
            ("POST", "/signin", self.signin),
            ("POST", "/signout", self._signed_in(self.signout, form=True)),
            ("GET", "/", self._signed_in(self.overview)),
            ("GET", "/runs", self._signed_in(self.runs)),
            ("GET", "/runs/{run_id}", self._signed_in(self.run)),
            ("POST", "/runs/{run_id}/replay", self._signed_in(self.replay, form=True)),
            ("GET", "/events", self._signed_in(self.events)),
            ("GET", "/hooks", self._signed_in(self.hooks)),
            ("GET", "/ui/app.js", self._signed_in(self.script)),
        ]

    # -- answers ---------------------------------------------------------------------

    def error_page(
        self, request: web.Request, status: int, title: str, message: str
    ) -> web.Response:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        return self.renderer.page(
            "error.html",
            {"title": title, "message": message, "session": session, "nav": ""},
            status=status,
        )

    def _page(
        self,
        template: str,
        session: Session | None,
        nav: str,
        context: dict[str, Any],
        *,
        status: int = 200,
    ) -> web.Response:
        return self.renderer.page(
            template, {"session": session, "nav": nav, **context}, status=status
        )

    def _signed_in(self, handler: SignedIn, *, form: bool = False) -> Handler:
        """`handler` for a signed-in browser only. A page asked for without a session
        is a redirect to sign-in (and back); a form sent without one, or from another
        site, or without its CSRF token, is refused."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
                fields: dict[str, str] = {}
                if form:
                    if session is None:  # refused before its body is read
                        if handler == self.signout:
                            return self._signed_out()
                        raise PageError(
                            403, "Signed out", "Your session has ended: sign in again, then retry."
                        )
                    fields = await self._form(request)
                    if not session.csrf_ok(fields.get("csrf")):
                        raise PageError(
                            403,
                            "Refused",
                            "This form is stale or did not come from this page: "
                            "reload the page and try again.",
                        )
                elif session is None:
                    target = request.path_qs if request.path != "/" else "/"
                    return see_other(f"/signin?{urlencode({'next': target})}")
                return await handler(request, session, fields)
            except PageError as err:
                self._log.info(
                    "%s %s from %s: %d %s", request.method, request.path, request.remote,
                    err.status, err.message,
                )  # fmt: skip
                return _closing(
                    request, self.error_page(request, err.status, err.title, err.message)
                )

        return guarded

    async def _form(self, request: web.Request) -> dict[str, str]:
        """A small url-encoded form from this very site (else PageError 403)."""
        if not _same_site(request):
            raise PageError(403, "Refused", "Forms are accepted only from this page itself.")
        if request.content_type != "application/x-www-form-urlencoded":
            raise PageError(415, "Refused", "Send the form as the page does (url-encoded).")
        if request.content_length is None:
            raise PageError(411, "Refused", "Send the form with its length, as a browser does.")
        if self._reads.locked():
            raise PageError(503, "Busy", "Too many forms are being sent at once: retry.")
        try:
            async with self._reads:
                body = await read_body(
                    request, max_body=MAX_FORM, timeout=FORM_TIMEOUT, log=self._log
                )
        except Reject as reject:
            raise PageError(reject.status, "Refused", reject.reason) from None
        try:
            parsed = parse_qs(body.decode("utf-8"), max_num_fields=10, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "Refused", "The form could not be read.") from None
        return {name: values[0] for name, values in parsed.items() if values}

    # -- signing in ------------------------------------------------------------------

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        target = _local_path(request.query.get("next"))
        if self.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return see_other(target)
        return self._signin_page(target)

    def _signin_page(
        self, target: str, error: str | None = None, status: int = 200
    ) -> web.Response:
        return self._page("signin.html", None, "", {"next": target, "error": error}, status=status)

    async def signin(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        try:
            fields = await self._form(request)
        except PageError as err:
            return _closing(request, self.error_page(request, err.status, err.title, err.message))
        target = _local_path(fields.get("next"))
        given = fields.get("token", "").strip()
        if given[:7].lower() == "bearer ":  # pasted as an Authorization header's value
            given = given[7:].strip()
        try:
            token = self._auth.authenticate(f"Bearer {given}")
        except ApiError:
            # The right token always passes: the throttle only slows down guessing
            # (and keeps a guesser from filling the log).
            wait = self.throttle.wait(client)
            if wait > 0:
                return self._signin_page(
                    target, f"Too many failed sign-ins from here: wait {wait:.0f} s.", 429
                )
            self.throttle.failed(client)
            self._log.info("sign-in from %s refused: not a token of api.tokens", client)
            message = (
                "That token is not one of this connector's API tokens (api.tokens in its file)."
                if given
                else "Enter an API token from api.tokens."
            )
            return self._signin_page(target, message, 401)
        if "read" not in token.scopes:
            self._log.info("sign-in from %s refused: token %r lacks read", client, token.name)
            return self._signin_page(
                target,
                f"Token {token.name!r} lacks the read scope, which the page needs: add read "
                "to its scopes in api.tokens.",
                403,
            )
        cookie = self.sessions.sign_in(token)
        self._log.info("%s signed in to the web page from %s", token.name, client)
        response = see_other(target)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=_secure(request),
        )
        return response

    async def signout(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        self.sessions.sign_out(request.cookies.get(SESSION_COOKIE))
        self._log.info("%s signed out of the web page", session.token.name)
        return self._signed_out()

    @staticmethod
    def _signed_out() -> web.Response:
        """To the sign-in page, the cookie cleared (also when the session had already
        ended, as after a restart: signing out then is no error)."""
        response = see_other("/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # -- pages -----------------------------------------------------------------------

    async def overview(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        store = self.runtime.store
        day_ago = datetime.now(UTC) - timedelta(hours=24)
        failed = [
            row
            for row in store.runs_page(limit=201, status="failed")
            if row.started_at is not None and row.started_at >= day_ago
        ]
        credits = self.credits.peek()
        return self._page(
            "overview.html",
            session,
            "overview",
            {
                "health": health_items(self.runtime, self._api_url()),
                "credits": None if credits is None else credits.as_context(time.monotonic()),
                "in_flight": store.runs_page(limit=20, status="running"),
                "events": store.events_page(limit=10),
                "failures": failed[:20],
                "failure_count": len(failed),
                "failure_more": len(failed) > 200,
                "aliases": self._aliases(),
            },
        )

    async def runs(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        status = request.query.get("status") or None
        if status is not None and status not in RUN_STATUSES:
            raise PageError(
                400, "Not a status", f"Status must be one of {', '.join(RUN_STATUSES)}."
            )
        automation = request.query.get("automation") or None
        before = _cursor(request)
        rows = self.runtime.store.runs_page(
            limit=PAGE_SIZE + 1, status=status, automation_id=automation, before=before
        )
        rows, older = _older(
            rows,
            "/runs",
            {"status": status, "automation": automation},
            lambda last: encode_cursor(last.started_at, last.run_id),
        )
        choices = sorted(a.id for a in self.runtime.config.automations) + [
            f"{API_AUTOMATION_PREFIX}{key}" for key in sorted(self.runtime.registry.actions)
        ]
        if automation and automation not in choices:
            choices.append(automation)
        return self._page(
            "runs.html",
            session,
            "runs",
            {
                "rows": rows,
                "statuses": RUN_STATUSES,
                "status": status,
                "automation": automation,
                "automations": choices,
                "aliases": self._aliases(),
                "older": older,
                "paged": before is not None,
            },
        )

    async def run(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        row = self._run_row(request)
        event = self.runtime.store.event_row(row.event_key)
        generation = None
        if event is not None and event.generation is not None:
            try:
                generation = event.to_event().generation
            except ValueError:  # a journal row this version cannot read: shown without it
                generation = None
        return self._page(
            "run.html",
            session,
            "runs",
            {
                "run": row,
                "event": event,
                "generation": generation,
                "alias": self._aliases().get(row.automation_id),
                "replayable": self._may_replay(session, row),
                "replay_actions": run_actions(self.runtime.config, row.automation_id),
                "csrf": session.csrf,
            },
        )

    async def replay(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        row = self._run_row(request)
        if not self._may_replay(session, row):
            raise PageError(
                403,
                "Not allowed",
                f"Token {session.token.name!r} may not replay this run: it needs the act "
                "scope, and its actions must allow every action the run takes.",
            )
        try:
            new_id = self.runtime.replay(row.run_id)
        except ValueError as err:
            replay = next(
                (
                    other.run_id
                    for other in self.runtime.store.runs_for_event(row.event_key)
                    if other.replay_of == row.run_id
                ),
                None,
            )
            if replay is not None:  # replayed already (a double click): show that replay
                return see_other(f"/runs/{replay}")
            raise PageError(409, "Cannot replay", str(err)) from None
        self._log.info(
            "run %s replayed as %s by %s (web page)", row.run_id, new_id, session.token.name
        )
        return see_other(f"/runs/{new_id}")

    async def events(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        kind = request.query.get("kind") or None
        kinds = event_kinds(self.runtime.registry)
        if kind is not None and kind not in kinds:
            raise PageError(400, "Not an event kind", f"Kind must be one of {', '.join(kinds)}.")
        before = _cursor(request)
        rows = self.runtime.store.events_page(
            limit=PAGE_SIZE + 1, kinds=[kind] if kind else None, before=before
        )
        rows, older = _older(
            rows, "/events", {"kind": kind}, lambda last: encode_cursor(last.received_at, last.key)
        )
        return self._page(
            "events.html",
            session,
            "events",
            {
                "rows": rows,
                "kinds": kinds,
                "kind": kind,
                "older": older,
                "paged": before is not None,
            },
        )

    async def hooks(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        hooks = [(row, masked_url(row.target_url)) for row in self.runtime.store.hooks()]
        return self._page("hooks.html", session, "hooks", {"hooks": hooks})

    async def script(
        self, request: web.Request, session: Session, form: dict[str, str]
    ) -> web.StreamResponse:
        return web.Response(
            body=self.renderer.script,
            content_type="text/javascript",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    # -- helpers ---------------------------------------------------------------------

    def _run_row(self, request: web.Request) -> RunRow:
        row = self.runtime.store.run(request.match_info["run_id"])
        if row is None:
            raise PageError(404, "No such run", "No run has this id (it may have been pruned).")
        return row

    def _aliases(self) -> dict[str, str]:
        return {a.id: a.alias for a in self.runtime.config.automations if a.alias}

    def _may_replay(self, session: Session, row: RunRow) -> bool:
        """Whether the session's token may replay `row`: it has `act`, and its `actions:`
        (when it has any) allow every action the run would take again."""
        if not session.may("act") or row.status == "running":
            return False
        try:
            Authenticator.may_replay(
                session.token, run_actions(self.runtime.config, row.automation_id)
            )
        except ApiError:
            return False
        return True


def _closing(request: web.Request, response: web.Response) -> web.Response:
    """`response`, closing the connection after it when the request's body was left
    unread: a client trickling a refused body holds no connection for it."""
    if request.body_exists and not request.content.at_eof():
        response.force_close()
    return response


def see_other(location: str) -> web.Response:
    """303 to `location`: after a form, the browser GETs the page it names."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _older(
    rows: list[Row],
    path: str,
    filters: dict[str, str | None],
    position: Callable[[Row], str],
) -> tuple[list[Row], str | None]:
    """A page of `rows` (read one past PAGE_SIZE) and the link to the older ones, with
    the same filters, when there are any."""
    if len(rows) <= PAGE_SIZE:
        return rows, None
    shown = rows[:PAGE_SIZE]
    query = {name: value for name, value in filters.items() if value}
    query["cursor"] = position(shown[-1])
    return shown, f"{path}?{urlencode(query)}"


def _cursor(request: web.Request) -> tuple[float, str] | None:
    try:
        return cursor(request)
    except ApiError:
        raise PageError(
            400, "Not a page", "This page link is not one the page made: start from the newest."
        ) from None


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL),
    of printable ASCII (it becomes a `Location` header)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(not 0x21 <= ord(c) <= 0x7E for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _secure(request: web.Request) -> bool:
    """Whether the browser reached the page over https: directly, or through a TLS proxy
    on this machine that says so (`X-Forwarded-Proto`)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return forwarded and is_loopback(request.remote or "")


def _same_site(request: web.Request) -> bool:
    """Whether a form comes from this site. `Sec-Fetch-Site` decides when the browser
    sends it (no page can forge it). Else `Origin`, when it names one, must name this
    host and port; not the scheme, which a TLS proxy in front changes. (Chromium may
    send `Origin: null` for the page's own forms, and then sends `Sec-Fetch-Site`.)"""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site form; the CSRF token still decides
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()
