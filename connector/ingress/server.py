"""The hardened HTTP server under every listener the connector opens to the network.

A listener may face the internet, so a client must not be able to take the
daemon down by holding sockets. Each connection has `header_timeout` seconds,
from its opening and again from the end of each answer, to deliver a request's
headers (aiohttp has no such deadline: 3.11 starts no timer before the first
request, 3.14's keep-alive timer defaults to an hour); a handler bounds the body
itself. At most `max_connections` are served at once: past that the connection
idle the longest is closed to make room, since attackers and the real sender may
share an address and the newest connection is the likeliest to be a real
request. Protocol errors are answered with a fixed body (aiohttp's own 400
quotes the request line, secrets in its query string and all), in the shape the
listener's other errors have (`error_body`), and what a client breaks is logged
at DEBUG: aiohttp logs a broken body at ERROR with a traceback, which would let
anyone fill the log.

`GuardedServer` serves one aiohttp application that way; the webhook listener
(`connector.ingress.webhooks`) is built on it. Its loggers come from the
listener, which redacts its own secrets (`connector.ingress.logs`).

    server = GuardedServer(name="webhook listener", log=log, server_options=options)
    port = await server.start(app, host="127.0.0.1", port=0,
                              header_timeout=10.0, max_connections=512)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from connector.ingress.connections import (
    Connections,
    ErrorBody,
    busy_answer,
    peer,
    plain_error,
)
from connector.redaction import finite

# Time in-flight requests get to finish on stop().
SHUTDOWN_TIMEOUT = 5.0
# A connection has this long, from its opening and again from the end of each
# answer, to deliver a request's headers; then it is closed. A provider sends its
# request at once; a client still silent (or trickling) after this long is idle
# or hostile, and each such socket holds a file descriptor.
HEADER_TIMEOUT = 10.0
# Connections served at once. Well under the usual soft limit of 1024 descriptors,
# so a flood of them leaves room for the journal, the API clients and the actions
# even where `raise_file_limit()` could not raise it.
MAX_CONNECTIONS = 512
# Pending connections the kernel queues for accept() (aiohttp's TCPSite default).
BACKLOG = 128
REASON_MAX = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What only a client's bytes cause: a message the parser refused (a bad line or
# header, bad chunking, an undecodable Content-Encoding: `BadHttpMessage`), or a
# body that broke while read (`RequestPayloadError` wraps those). The same classes
# from aiohttp 3.11 to 3.14.
CLIENT_FAULTS: tuple[type[BaseException], ...] = (BadHttpMessage, web.RequestPayloadError)


class Reject(Exception):
    """An answer other than success, decided by a check: status and a short, safe reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason[:REASON_MAX]


def json_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A strict JSON answer: no `NaN`/`Infinity`, which JSON parsers other than Python's refuse.

    Non-finite floats (say, an age that health() computed as infinite) become
    null; `default=str`: health() may report datetimes, and the answer must
    not fail on them either.
    """
    text = json.dumps(finite(body), default=str, allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


async def read_body(
    request: web.BaseRequest,
    *,
    max_body: int,
    timeout: float,
    log: logging.LoggerAdapter[logging.Logger],
) -> bytes:
    """The body, never buffering more than `max_body + 1` bytes.

    Raises Reject: 413 past `max_body`, 408 when it is not all in within
    `timeout` seconds (a trickling client holds no socket for long), 400 when
    the stream is broken (bad chunking, an undecodable Content-Encoding).
    """
    too_large = Reject(413, f"body too large (limit {max_body} bytes)")
    declared = request.content_length
    if declared is not None and declared > max_body:
        raise too_large
    # A chunked or compressed body has no useful Content-Length: count while reading.
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(max_body + 1 - len(body)):
                body += chunk
                if len(body) > max_body:
                    raise too_large
    except TimeoutError:
        raise Reject(408, "body not received in time") from None
    except (Reject, asyncio.CancelledError):
        raise
    except Exception as err:
        log.debug("could not read a request body", exc_info=err)
        raise Reject(400, "could not read the body") from err
    return bytes(body)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, tracked by `Connections`, its error answers fixed.

    Why a subclass rather than a proxy protocol wrapped around aiohttp's: the
    error answer needs a subclass anyway (`RequestHandler` has `__slots__`, so
    `handle_error` cannot be replaced per instance), and the tracking then takes
    two overridden methods instead of a proxy that must forward every protocol
    callback (data, eof, flow control) and would break silently if aiohttp's
    protocol gained one (say, became a `BufferedProtocol`).

    What it relies on in aiohttp, the same from 3.11.16 to 3.14: the constructor
    `RequestHandler(manager, *, loop, **handler_options)` (the options `Server`
    would pass: logger, access log, keepalive_timeout, debug); `manager` being the
    `web.Server` an `AppRunner` builds (the handler takes the request handler
    and factory from it and registers itself there, so the runner's shutdown
    still closes and drains it); asyncio's `connection_made`/`connection_lost`;
    and `handle_error(request, status, exc, message)`, which aiohttp calls for
    a request it could not parse (the status it chose, usually 400, and a
    message quoting the request line) and for an exception a handler let
    through (500; 504 for a timeout), with `request.writer.output_size` telling
    whether an answer already started; and `log_exception(*args, exc_info=...)`,
    through which it logs every exception it catches itself.
    """

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        connections: Connections,
        error_body: ErrorBody = plain_error,
        **options: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **options)
        self._tracker = connections
        self._tracked: asyncio.BaseTransport | None = None
        self._error_body = error_body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection, and count it (which may evict another or refuse this one)."""
        super().connection_made(transport)
        self._tracked = transport
        self._tracker.opened(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Let aiohttp clean up, then forget the connection."""
        try:
            super().connection_lost(exc)
        finally:
            transport, self._tracked = self._tracked, None
            if transport is not None:
                self._tracker.closed(transport)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A fixed JSON answer with nothing of the request in it; the connection closes.

        aiohttp's own puts `message` in the body, and for a bad request line
        that is the line itself, `?token=...` included. A 5xx (an exception
        that got past the listener's middleware) is a 503 like every other
        failure on our side, unless the exception is one only a client causes
        (a handler that read a broken body and let the error through): that is
        a 400. A protocol error is the client's doing, so it is logged at
        DEBUG, where aiohttp logs a traceback at ERROR: a client sending
        garbage must not be able to fill the log.
        """
        if status >= 500 and not isinstance(exc, CLIENT_FAULTS):
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            status, text = 503, "internal error, retry later"
        else:
            status = 400 if status >= 500 else status
            # `exc` quotes the request line; the server logger redacts the token from it.
            self.logger.debug("bad request from %s (%s): %s", request.remote, status, exc)
            text = "bad request" if status == 400 else phrase(status)
        if request.writer.output_size > 0:
            # Part of an answer already went out: the connection is beyond repair.
            raise ConnectionError("an answer was partly sent; cannot send the error answer")
        response = json_response(self._error_body(status, text), status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's ERROR with a traceback, except for what only a client causes.

        After answering, aiohttp reads what is left of a request's body to keep
        the connection: a body that cannot be decoded fails again there, and
        aiohttp logs it as an "Unhandled exception". That is a client's doing,
        no token needed (a 401 comes first, the drain after), so it is one DEBUG
        line; whatever else aiohttp catches (a bug of ours) is still an ERROR
        with its traceback.
        """
        exc = _logged_exception(kw.get("exc_info", True))
        if isinstance(exc, CLIENT_FAULTS):
            transport = self.transport
            self.logger.debug(
                "dropped a malformed request from %s: %s: %s",
                peer(transport) if transport is not None else "an unknown peer",
                type(exc).__name__,
                " ".join(str(exc).split())[:REASON_MAX],
            )
            return
        super().log_exception(*args, **kw)


def _logged_exception(exc_info: object) -> BaseException | None:
    """The exception a logging call's `exc_info` stands for (True: the one being handled)."""
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    return sys.exc_info()[1] if exc_info is True else None


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "bad request"


def no_echo(
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    error_body: ErrorBody = plain_error,
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The application's entry point, with what escapes its middlewares answered as JSON.

    Only aiohttp's `Expect:` handling raises past them (on a path with no route,
    where `_expect` is not installed); its answer would quote the header.
    """

    async def handle_request(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handle(request)
        except web.HTTPException as exc:
            status = exc.status if exc.status < 500 else 503
            return json_response(error_body(status, phrase(status)), status)

    return handle_request


class GuardedServer:
    """Serves one aiohttp application behind the guards above; `start()` returns the port.

    Served through `loop.create_server` with `GuardedRequestHandler` as the
    protocol, rather than a `web.TCPSite` (whose protocol is aiohttp's own): the
    runner still builds the application's `web.Server`, which the handlers
    register with, so `stop()` drains them as before. The application must
    include `in_request` among its middlewares (first), so a connection counts
    as busy while its request is handled. `error_body` shapes the answers the
    server gives itself (protocol errors, an unknown expectation, the 503 at
    the cap) like the application's own errors; by default `{"error": text}`.
    """

    def __init__(
        self,
        *,
        name: str,
        log: logging.LoggerAdapter[logging.Logger],
        server_options: Callable[[], dict[str, Any]],
        error_body: ErrorBody = plain_error,
    ) -> None:
        self.name = name
        self._log = log
        self._server_options = server_options
        self._error_body = error_body
        self._busy_answer = busy_answer(error_body)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: Connections | None = None

    @property
    def started(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    @property
    def open_connections(self) -> int:
        """How many connections are being served now (0 when stopped)."""
        return len(self._connections) if self._connections is not None else 0

    async def start(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        header_timeout: float,
        max_connections: int,
    ) -> int:
        """Bind `host:port` (0: a free port) and serve `app`; the bound port."""
        if self._runner is not None:
            raise RuntimeError(f"the {self.name} is already started")
        loop = asyncio.get_running_loop()
        connections = Connections(
            loop=loop,
            header_timeout=header_timeout,
            max_connections=max_connections,
            log=self._log,
            name=self.name,
            busy=self._busy_answer,
        )
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            **self._server_options(),
        )
        await runner.setup()
        try:
            manager = runner.server
            assert manager is not None  # set by setup()
            manager.request_handler = no_echo(manager.request_handler, self._error_body)
            options = {**self._server_options(), "debug": loop.get_debug()}

            def protocol() -> GuardedRequestHandler:
                return GuardedRequestHandler(
                    manager,
                    loop=loop,
                    connections=connections,
                    error_body=self._error_body,
                    **options,
                )

            server = await loop.create_server(protocol, host, port, backlog=BACKLOG)
        except BaseException:
            await runner.cleanup()
            connections.close_all()
            raise
        self._runner = runner
        self._server = server
        self._connections = connections
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> bool:
        """Stop serving; in-flight requests get `SHUTDOWN_TIMEOUT` seconds. Whether it ran."""
        runner, self._runner = self._runner, None
        server, self._server = self._server, None
        connections, self._connections = self._connections, None
        if server is not None:
            server.close()  # no new connections
        if runner is not None:
            await runner.cleanup()  # idle connections closed, requests in flight drained
        if connections is not None:
            connections.close_all()  # whatever is left, and the timers
        return runner is not None

    @web.middleware
    async def in_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Mark the connection busy while its request is handled (see `Connections`).

        A middleware runs once aiohttp has a request's headers, which is what
        the header deadline waits for; the connection is idle again, its
        deadline restarted, once the answer is decided.
        """
        connections = self._connections  # the same object on the way out, even if stop()ped
        transport = request.transport
        if connections is None or transport is None:  # under a TestServer; or already gone
            return await handler(request)
        connections.busy(transport)
        try:
            return await handler(request)
        finally:
            connections.idle(transport)
