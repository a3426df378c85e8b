"""The API listener: `ftconnect run` serves the HTTP API here, on its own port.

Its own listener rather than routes on the webhook one: the webhook listener
may face the internet (providers must reach it), while the API is loopback by
default and exposing it is a decision of its own (`api.listen`). It stands on
the same hardened server (`connector.ingress.server`: header deadline,
connection cap, error answers that quote nothing), and its loggers redact
every API token. Every answer that is not a success is the JSON of
`connector.api.errors`; no input gives a 500.

    listener = ApiListener(config.api, connector.runtime, hooks)
    await listener.start()      # listener.port is the bound port
    ...
    await listener.stop()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from connector.api.auth import Authenticator
from connector.api.errors import CODES, ApiError, error_response
from connector.api.hooks import HookDeliverer
from connector.api.openapi import OPERATIONS, Operation
from connector.api.routes import CALLER, ApiRoutes
from connector.automation.model import ApiConfig, ApiToken
from connector.automation.problems import suggest
from connector.dispatch.runtime import Runtime
from connector.ingress.logs import AccessLogger, RedactingLogger, Redactor
from connector.ingress.server import GuardedServer, Reject, phrase
from connector.redaction import scrub_text
from connector.web.pages import WebPages

__all__ = ["ApiListener"]

_LOGGER = logging.getLogger(__name__)
_SERVER_LOGGER = logging.getLogger(f"{__name__}.server")
_ACCESS_LOGGER = logging.getLogger(f"{__name__}.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _SecretsRedactor(Redactor):
    """The API tokens, and every secret registered with `connector.redaction` since
    (a hook's whsec_ secret is made while the API runs)."""

    def __call__(self, text: str) -> str:
        return scrub_text(super().__call__(text))


def _scrubbed(redact: Redactor, value: Any) -> Any:
    """`value` (an error's details: lists, objects, text) with `redact` applied to its text."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrubbed(redact, item) for item in value]
    if isinstance(value, dict):
        return {_scrubbed(redact, k): _scrubbed(redact, v) for k, v in value.items()}
    return value


def _check_query(request: web.Request, takes: list[str]) -> None:
    """ApiError 400 for a query parameter the operation does not take."""
    for name in request.query:
        if name not in takes:
            hint = suggest(name, takes) or ""
            these = f"it takes {', '.join(takes)}" if takes else "it takes none"
            raise ApiError(400, f"unknown query parameter {name[:64]!r}{hint} ({these})")


class ApiListener:
    """Serves the operations of `connector.api.openapi` for one running connector."""

    def __init__(
        self,
        config: ApiConfig,
        runtime: Runtime,
        hooks: HookDeliverer,
        *,
        base_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.host = config.host
        self.port = config.port
        self._auth = Authenticator(config.tokens)
        redact = _SecretsRedactor(*(token.token for token in config.tokens))
        self._redact = redact
        self._log = RedactingLogger(_LOGGER, redact)
        self._server_log = RedactingLogger(_SERVER_LOGGER, redact)
        self._access_log = RedactingLogger(_ACCESS_LOGGER, redact)
        folder = base_dir
        if folder is None:
            source = runtime.config.source
            folder = source.parent if source is not None else Path.cwd()
        self.routes = ApiRoutes(runtime, hooks, base_dir=folder, log=self._log)
        self.web = WebPages(runtime, list(config.tokens), api_url=self._url, log=self._log)
        self._server = GuardedServer(
            name="API listener",
            log=self._log,
            server_options=self.server_options,
            error_body=self._error_body,
        )

    def __repr__(self) -> str:
        return f"ApiListener(url={self._url()!r}, started={self.started})"

    @property
    def started(self) -> bool:
        return self._server.started

    @property
    def url(self) -> str:
        """`http://host:port` once started."""
        if not self.port:
            raise RuntimeError("the API listener has no port yet: start() it first")
        return self._url()

    def _url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port or '<unbound>'}"

    async def start(self) -> None:
        self.port = await self._server.start(
            self.app(),
            host=self.host,
            port=self.port,
            header_timeout=self.config.header_timeout,
            max_connections=self.config.max_connections,
        )
        self._log.info(
            "HTTP API on %s/api/v1 (document: /api/v1/openapi.json), web page on %s/",
            self._url(),
            self._url(),
        )

    async def stop(self) -> None:
        """Stop serving: callers waiting on a run (`?wait=`) are answered first (202 and
        its Location), then requests in flight get `SHUTDOWN_TIMEOUT` seconds."""
        self.routes.stopping.set()
        self.web.credits.close()
        await asyncio.sleep(0)  # let the waiting handlers answer before the drain
        if await self._server.stop():
            self._log.info("HTTP API on %s stopped", self._url())

    def server_options(self) -> dict[str, Any]:
        """Runner options: loggers that redact the tokens, an access log without queries."""
        return {
            "access_log_class": AccessLogger,
            "access_log": self._access_log,
            "logger": self._server_log,
            "keepalive_timeout": self.config.header_timeout,
        }

    def app(self) -> web.Application:
        """A new application with every operation routed, guarded and answered as JSON."""
        app = web.Application(
            client_max_size=self.routes.max_body + 1,
            middlewares=[self._server.in_request, self._answer_errors],
        )
        handlers = self.routes.handlers()
        for operation in OPERATIONS:
            handler = handlers.get(operation.operation_id)
            if handler is None:
                raise RuntimeError(f"no handler for operation {operation.operation_id}")
            app.router.add_route(
                operation.method,
                operation.path,
                self._guard(operation, handler),
                expect_handler=self._expect_for(operation),
            )
        for method, path, page in self.web.routes():
            if method == "GET":
                app.router.add_get(path, page)  # and HEAD, for monitors and `curl -I`
            else:
                app.router.add_route(method, path, page)
        return app

    def _guard(self, operation: Operation, handler: Handler) -> Handler:
        """The handler behind the token and scope check its operation declares, and the
        query parameters it takes (a misspelt `wiat=60` must not pass unnoticed). Each
        refusal is logged at INFO: who, what, why (never a token)."""
        scope = operation.scope
        takes = sorted(p.name for p in operation.parameters if p.location == "query")

        async def guarded(request: web.Request) -> web.StreamResponse:
            token = self._admit(request, scope, takes)
            caller = CALLER.set(token) if token is not None else None
            try:
                return await handler(request)
            except ApiError as err:
                self._refused(request, token, err)
                raise
            finally:
                if caller is not None:
                    CALLER.reset(caller)

        return guarded

    def _admit(
        self, request: web.Request, scope: str | None, takes: list[str], *, when: str = ""
    ) -> ApiToken | None:
        """The caller's token (None where none is needed), or the refusal, logged: a token
        missing, unknown or without `scope`, or a query parameter not in `takes`."""
        token: ApiToken | None = None
        try:
            if scope is not None:
                token = self._auth.authenticate(request.headers.get("Authorization"))
                self._auth.require(token, scope)
            _check_query(request, takes)
        except ApiError as err:
            self._refused(request, token, err, when=when)
            raise
        return token

    def _refused(
        self, request: web.Request, token: ApiToken | None, err: ApiError, *, when: str = ""
    ) -> None:
        self._log.info(
            "%s %s from %s%s%s: %d %s: %s",
            request.method,
            request.path,
            request.remote,
            f" ({token.name})" if token is not None else "",
            when,
            err.status,
            err.code,
            err.message,
        )

    def _expect_for(
        self, operation: Operation
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
        """`Expect:` for one operation: `100 Continue` only to a caller `_guard` lets
        through (token, scope, query), anything but `100-continue` 417; never quoting it.

        aiohttp runs this before any middleware, and a client that waits for
        `100 Continue` sends its body only then: said before the checks, it would
        invite anyone to upload. A refusal closes the connection, since the body
        the client held back is not wanted.
        """
        scope = operation.scope
        takes = sorted(p.name for p in operation.parameters if p.location == "query")

        async def expect(request: web.Request) -> web.StreamResponse | None:
            if request.headers.get("Expect", "").lower() != "100-continue" or (
                request.version < (1, 1)
            ):
                return error_response(ApiError(417, "only `Expect: 100-continue` is understood"))
            try:
                self._admit(request, scope, takes, when=", before its body (Expect: 100-continue)")
            except ApiError as err:
                err.message = self._redact(err.message)
                response = error_response(err)
                response.force_close()
                return response
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own bytes are still to come
            return None

        return expect

    @staticmethod
    def _error_body(status: int, text: str) -> dict[str, Any]:
        """The API's error shape for the answers the hardened server gives itself: a
        request aiohttp cannot parse, an unknown expectation off the routes, the 503 at
        the connection cap. `text` quotes nothing of the request."""
        code = CODES.get(status) or ("invalid_request" if status < 500 else "unavailable")
        message = text
        if status == 417:  # as the routes' own 417
            message = "only `Expect: 100-continue` is understood"
        elif status == 400:
            message = (
                f"{text}: not well-formed HTTP/1.1 (a malformed request line or header, a "
                "header line over 8190 bytes, too many headers, broken chunking, or a "
                "Content-Encoding the server cannot decode)"
            )
        return {"error": {"code": code, "message": message, "details": None}}

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure as the API's JSON error: checks keep their status, the rest is 503.
        Off `/api/`, the web page's: an HTML page (and its redirects as they are)."""
        if not request.path.startswith("/api/"):
            return await self._answer_page_errors(request, handler)
        try:
            return await handler(request)
        except ApiError as err:
            # Messages may quote what the caller sent (a key, a path): never a secret.
            err.message = self._redact(err.message)
            err.details = _scrubbed(self._redact, err.details)
            return error_response(err)
        except Reject as reject:
            response = error_response(ApiError(reject.status, reject.reason))
            if request.content.exception() is not None:
                response.force_close()
            return response
        except web.HTTPException as exc:
            # The router's 404 and 405; 405 keeps its Allow header.
            status = exc.status if exc.status < 500 else 503
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            allowed = exc.headers.get("Allow", "")
            if status == 404:
                message = "no such path (the operations are listed at /api/v1/openapi.json)"
                if len(request.path) > 1 and request.path.endswith("/"):
                    message = "no such path: leave out the trailing slash"
            elif status == 405:
                message = f"{request.method} is not allowed here: use {allowed or 'another'}"
            else:
                message = phrase(status)
            return error_response(ApiError(status, message, headers=headers))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error(
                "%s %s: unexpected error, answered 503", request.method, request.path, exc_info=err
            )
            return error_response(ApiError(503, "internal error, retry later"))

    async def _answer_page_errors(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                message = "There is no page here. The API is at /api/v1."
                if len(request.path) > 1 and request.path.endswith("/"):
                    message = f"There is no page here: try {request.path.rstrip('/')}"
                return self.web.error_page(request, 404, "Not found", message)
            if exc.status == 405:
                allowed = exc.headers.get("Allow", "")
                message = f"{request.method} is not allowed here ({allowed})."
                return self.web.error_page(request, 405, "Not allowed", message)
            return self.web.error_page(request, exc.status, phrase(exc.status), phrase(exc.status))
        except Reject as reject:
            return self.web.error_page(request, reject.status, phrase(reject.status), reject.reason)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error(
                "%s %s: unexpected error, answered 503", request.method, request.path, exc_info=err
            )
            return self.web.error_page(request, 503, "Unavailable", "Internal error, retry later.")
