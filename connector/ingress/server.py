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
quotes the request line, secrets in its query string and all).

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
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

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
# The "at the connection cap" warning and the out-of-resource accept errors are
# logged at most once per this many seconds, with a count.
OVERLOAD_LOG_INTERVAL = 60.0
REASON_MAX = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# -- connections: deadlines, a cap, and error answers that quote nothing ------------------


class Throttle:
    """Reports the first of a burst of like events at once, then at most once per `interval`.

    `report(count)` gets how many events happened since the previous report. A
    flood (a thousand connections over the cap, an accept() failing in a loop)
    is then a line a minute that says how big it was, not a line per event:
    the log is a resource a hostile client must not be able to exhaust either.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, report: Callable[[int], None]
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._report = report
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def hit(self) -> None:
        """Count one event; report now unless a report went out less than `interval` ago."""
        self._count += 1
        if self._timer is None:
            self._emit()

    def close(self) -> None:
        """Stop the timer, reporting what was counted since the last report."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._count:
            count, self._count = self._count, 0
            self._report(count)

    def _emit(self) -> None:
        count, self._count = self._count, 0
        self._timer = self._loop.call_later(self._interval, self._tick)
        self._report(count)

    def _tick(self) -> None:
        self._timer = None
        if self._count:
            self._emit()


class _Connection:
    """One served connection: its transport, whether it is in a request, its idle deadline."""

    __slots__ = ("busy", "timer", "transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.busy = 0
        self.timer: asyncio.TimerHandle | None = None


# What a connection turned away at the cap hears before it is closed: a sender
# that retries on 503 will, and nothing in it comes from the request.
_BUSY_BODY = b'{"error": "too busy, retry later"}'
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class Connections:
    """The open connections of one listener: an idle deadline on each, a cap on their number.

    A connection is idle from its opening until a request's headers are in (the
    listener's middleware then calls `busy`), and again from the end of the
    request's handling (`idle`): while idle it has `header_timeout` seconds to
    start a request, or it is closed. So a client that connects and says nothing,
    or trickles its headers a byte at a time, holds its socket for
    `header_timeout` seconds at most, and a request's body has the handlers'
    own `BODY_READ_TIMEOUT`.

    At most `max_connections` are open at once. A new connection past the cap
    closes the one idle the longest rather than being refused: attackers and the
    real sender may all come from one address (a proxy, a tunnel, 127.0.0.1),
    so refusing newcomers would let a flood of idle sockets lock the sender out,
    while evicting the idlest costs an attacker its oldest socket and costs a
    real client nothing (it connects and sends at once, so it is never the
    idlest for long). A connection in a request is never evicted; only when all
    of them are does a newcomer get a 503 and the door.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float,
        max_connections: int,
        log: logging.LoggerAdapter[logging.Logger],
        name: str = "listener",
    ) -> None:
        self._name = name
        self._loop = loop
        self._header_timeout = header_timeout
        self._max = max_connections
        self._log = log
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        # The idle ones, idle the longest first (dicts keep insertion order).
        self._idle: dict[asyncio.BaseTransport, None] = {}
        self.evicted = 0
        self.refused = 0
        self._reported = (0, 0)  # (evicted, refused) as of the last overload report
        self._overload = Throttle(loop, OVERLOAD_LOG_INTERVAL, self._report_overload)

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, transport: asyncio.BaseTransport) -> None:
        """A new connection: make room for it if at the cap, then start its idle deadline."""
        if len(self._open) >= self._max:
            if not self._idle:
                self.refused += 1
                self._overload.hit()
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(_BUSY_ANSWER)
                transport.close()
                return
            self.evicted += 1
            self._overload.hit()
            self._drop(next(iter(self._idle)))
        connection = _Connection(transport)
        self._open[transport] = connection
        self._set_idle(connection)

    def closed(self, transport: asyncio.BaseTransport) -> None:
        """The connection is gone (whoever closed it): forget it."""
        connection = self._open.pop(transport, None)
        if connection is not None:
            self._forget(connection)

    def busy(self, transport: asyncio.BaseTransport) -> None:
        """A request's headers are in: no deadline, no eviction, until `idle`."""
        connection = self._open.get(transport)
        if connection is None:
            return
        connection.busy += 1
        self._forget(connection)

    def idle(self, transport: asyncio.BaseTransport) -> None:
        """The request was handled: the next one's headers are due within the deadline."""
        connection = self._open.get(transport)
        if connection is None or connection.busy == 0:
            return
        connection.busy -= 1
        if connection.busy == 0:
            self._set_idle(connection)

    def close_all(self) -> None:
        """Close every connection and stop every timer (the listener stops)."""
        for transport in list(self._open):
            self._drop(transport)
        self._overload.close()

    def _set_idle(self, connection: _Connection) -> None:
        self._idle[connection.transport] = None
        connection.timer = self._loop.call_later(
            self._header_timeout, self._expire, connection.transport
        )

    def _forget(self, connection: _Connection) -> None:
        self._idle.pop(connection.transport, None)
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        connection = self._open.get(transport)
        if connection is None or connection.busy:
            return
        self._log.debug(
            "closed a connection from %s: no request within %g s",
            _peer(transport),
            self._header_timeout,
        )
        self._drop(transport)

    def _drop(self, transport: asyncio.BaseTransport) -> None:
        """Forget a connection and close it (its `closed` comes later and finds nothing)."""
        self.closed(transport)
        transport.close()

    def _report_overload(self, count: int) -> None:
        evicted, refused = self.evicted - self._reported[0], self.refused - self._reported[1]
        self._reported = (self.evicted, self.refused)
        self._log.warning(
            "%s full (%d connections): %d idle connection(s) closed to make "
            "room and %d new one(s) refused since the last report (at most one every %g s)",
            self._name,
            self._max,
            evicted,
            refused,
            OVERLOAD_LOG_INTERVAL,
        )


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "an unknown peer"


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
    whether an answer already started.
    """

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        connections: Connections,
        **options: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **options)
        self._tracker = connections
        self._tracked: asyncio.BaseTransport | None = None

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
        failure on our side. A protocol error is the client's doing, so it is
        logged at DEBUG, where aiohttp logs a traceback at ERROR: a client
        sending garbage must not be able to fill the log.
        """
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            status, text = 503, "internal error, retry later"
        else:
            # `exc` quotes the request line; the server logger redacts the token from it.
            self.logger.debug("bad request from %s (%s): %s", request.remote, status, exc)
            text = "bad request" if status == 400 else phrase(status)
        if request.writer.output_size > 0:
            # Part of an answer already went out: the connection is beyond repair.
            raise ConnectionError("an answer was partly sent; cannot send the error answer")
        response = json_response({"error": text}, status)
        response.force_close()
        return response


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "bad request"


def no_echo(
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
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
            return json_response({"error": phrase(status).lower()}, status)

    return handle_request


class GuardedServer:
    """Serves one aiohttp application behind the guards above; `start()` returns the port.

    Served through `loop.create_server` with `GuardedRequestHandler` as the
    protocol, rather than a `web.TCPSite` (whose protocol is aiohttp's own): the
    runner still builds the application's `web.Server`, which the handlers
    register with, so `stop()` drains them as before. The application must
    include `in_request` among its middlewares (first), so a connection counts
    as busy while its request is handled.
    """

    def __init__(
        self,
        *,
        name: str,
        log: logging.LoggerAdapter[logging.Logger],
        server_options: Callable[[], dict[str, Any]],
    ) -> None:
        self.name = name
        self._log = log
        self._server_options = server_options
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
            manager.request_handler = no_echo(manager.request_handler)
            options = {**self._server_options(), "debug": loop.get_debug()}

            def protocol() -> GuardedRequestHandler:
                return GuardedRequestHandler(manager, loop=loop, connections=connections, **options)

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
