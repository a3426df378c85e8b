"""The webhook listener: where Finetuning.ai and TemPolor report finished generations.

Two routes take deliveries, one per provider, and `GET /healthz` reports liveness:

* `POST /hooks/finetuning?token=SECRET`: the Finetuning.ai webhook, fire-once
  and unsigned, its payload the generation itself, not wrapped in `data`
  (shared/api/FINETUNING.md §11);
* `POST /hooks/tempolor?token=SECRET`: the useapi.net `replyUrl` callback,
  whose body is the job as GET music/{job_id} returns it (shared/api/TEMPOLOR.md).

Neither provider signs its deliveries, so authenticity rests on a secret
`token` query parameter compared in constant time (FINETUNING.md §16, decision 9).
The listener only checks, parses and hands the event to `record`, which makes it
durable and queues the work; it never runs actions itself, so it answers fast.
It answers 200 only once `record` has returned, so a 200 means "durable".

Hardening: no input produces a 500 or stops the server (bad input is a 400,
trouble on our side a 503), bodies are read with a bound, and the token never
reaches a log record, an error body or a repr. Everything aiohttp logs on the
listener's behalf (its access log and its server log, which includes parser
errors that quote the request line) goes through loggers that redact the token.

Hostile clients: the listener may face the internet, so a client must not be
able to take the daemon down by holding sockets. Each connection has
`header_timeout` seconds, from its opening and again from the end of each
answer, to deliver a request's headers (aiohttp has no such deadline: 3.11
starts no timer before the first request, 3.14's keep-alive timer defaults to
an hour); the body then has `BODY_READ_TIMEOUT`. At most `max_connections`
are served at once: past that the connection idle the longest is closed to
make room, since attackers and the real sender may share an address and the
newest connection is the likeliest to be a real request. Protocol errors are
answered with a fixed body (aiohttp's own 400 quotes the request line, token
and all). `raise_file_limit()` and `install_quiet_accept_errors()` are for the
daemon's start: more descriptors, and no log flood when they do run out.

    listener = WebhookListener(token=secret, record=runtime_record, port=8123)
    await listener.start()
    url = listener.hook_url("finetuning", public_url="https://hooks.example.com/hooks/finetuning")
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import math
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import ValidationError
from yarl import URL

from connector.events import Event
from connector.providers.finetuning.models import Generation
from connector.providers.tempolor.models import TempolorJob
from connector.redaction import finite, spellings

if TYPE_CHECKING:
    from logging import _ExcInfoType

__all__ = ["PROVIDERS", "WebhookListener", "install_quiet_accept_errors", "raise_file_limit"]

PROVIDERS: tuple[str, ...] = ("finetuning", "tempolor")
MAX_BODY = 64 * 1024
# A delivery is a few hundred bytes sent at once; a body still arriving after
# this long is a stalled or hostile client, not a provider.
BODY_READ_TIMEOUT = 10.0
# `tempolor_job` is a network call to useapi.net: bounded, so the answer stays fast.
TEMPOLOR_FETCH_TIMEOUT = 10.0
# Time in-flight requests get to finish (their `record` call above all) on stop().
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
REDACTED = "<redacted>"

_LOGGER = logging.getLogger(__name__)
_SERVER_LOGGER = logging.getLogger(f"{__name__}.server")
_ACCESS_LOGGER = logging.getLogger(f"{__name__}.access")

Record = Callable[[Event], Awaitable[bool]]
Health = Callable[[], Mapping[str, Any]]
FetchTempolorJob = Callable[[str], Awaitable[Generation | None]]


class _Reject(Exception):
    """An answer other than success, decided by a check: status and a short, safe reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason[:REASON_MAX]


class _Redactor:
    """Removes the token, raw and in its URL-encoded spellings, from any text."""

    def __init__(self, token: str) -> None:
        # Longest first, so a spelling that contains another is replaced whole.
        self._spellings = sorted(spellings(token), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for spelling in self._spellings:
            text = text.replace(spelling, REDACTED)
        return text


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that renders each message (and its traceback) and redacts the token.

    aiohttp's server logger quotes bad request lines, and exceptions may quote
    URLs, so redacting only our own format strings is not enough: the whole
    rendered text is redacted, and the traceback goes into the message as text
    so no raw `exc_info` with the token in it reaches a handler.
    """

    def __init__(self, logger: logging.Logger, redact: _Redactor) -> None:
        super().__init__(logger)
        self._redact = redact

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType | None = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log `msg % args` at `level`, the token removed from the text and the traceback."""
        if not self.isEnabledFor(level):
            return
        text = _render(msg, args)
        trace = _format_exc_info(exc_info)
        if trace:
            text = f"{text}\n{trace}"
        # stacklevel + 1: report the caller of the adapter, not this method.
        self.logger.log(
            level,
            "%s",
            self._redact(text),
            stack_info=stack_info,
            stacklevel=stacklevel + 1,
            extra=extra,
        )


def _render(msg: object, args: tuple[object, ...]) -> str:
    try:
        return str(msg) % args if args else str(msg)
    except Exception:
        # A bad format string must not lose the record (nor raise inside a handler).
        return f"{msg} {args!r}"


def _format_exc_info(exc_info: _ExcInfoType | None) -> str:
    if exc_info is None or exc_info is False:
        return ""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return "".join(traceback.format_exception(exc_info)).rstrip()
    if exc_info[1] is None:
        return ""
    return "".join(traceback.format_exception(exc_info[1])).rstrip()


class _AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without the query string, status, time.

    aiohttp's default format logs the request line, query string and all, and
    the query string carries the token.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line (at INFO)."""
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        """Skip building the line when nobody listens at INFO."""
        return self.logger.isEnabledFor(logging.INFO)


# -- connections: deadlines, a cap, and error answers that quote nothing ------------------


class _Throttle:
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


class _Connections:
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
    ) -> None:
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
        self._overload = _Throttle(loop, OVERLOAD_LOG_INTERVAL, self._report_overload)

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
            "webhook listener full (%d connections): %d idle connection(s) closed to make "
            "room and %d new one(s) refused since the last report (at most one every %g s)",
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


class _GuardedRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, tracked by `_Connections`, its error answers fixed.

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
        connections: _Connections,
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
            text = "bad request" if status == 400 else _phrase(status)
        if request.writer.output_size > 0:
            # Part of an answer already went out: the connection is beyond repair.
            raise ConnectionError("an answer was partly sent; cannot send the error answer")
        response = _json({"error": text}, status)
        response.force_close()
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "bad request"


class WebhookListener:
    """An HTTP server taking webhook deliveries from Finetuning.ai and TemPolor.

    `record(event)` makes an event durable and queues its work, returning
    whether it was new; the listener answers 200 only after it returned, and
    503 when it raised (so a sender that retries will). `health()` adds fields
    to `GET /healthz`. `tempolor_job(job_id)` fetches a job whose callback
    carried only its id. `port=0` binds a free port: `port` holds the real
    one after `start()`, and a later `start()` reuses it, so hook URLs
    already handed to providers stay valid.

    `header_timeout`, `max_connections` and `body_timeout` bound what one
    client can hold (see the module docstring); `body_timeout=None` reads
    `BODY_READ_TIMEOUT` at each request.
    """

    def __init__(
        self,
        *,
        token: str,
        record: Record,
        host: str = "127.0.0.1",
        port: int = 0,
        health: Health | None = None,
        max_body: int = MAX_BODY,
        tempolor_job: FetchTempolorJob | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("the webhook token must be a non-empty string")
        if max_body < 1:
            raise ValueError("max_body must be at least one byte")
        if not header_timeout > 0 or (body_timeout is not None and not body_timeout > 0):
            raise ValueError("header_timeout and body_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        # `surrogatepass`: whatever str the config holds can be encoded for the comparison.
        self._token = token.encode("utf-8", "surrogatepass")
        self._token_text = token
        self._record = record
        self._health = health
        self._tempolor_job = tempolor_job
        self.host = host
        self.port = port
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        redact = _Redactor(token)
        self._log = _RedactingLogger(_LOGGER, redact)
        self._server_log = _RedactingLogger(_SERVER_LOGGER, redact)
        self._access_log = _RedactingLogger(_ACCESS_LOGGER, redact)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: _Connections | None = None

    def __repr__(self) -> str:
        # Never the token: the URL without a query string, and whether it is serving.
        shown = self._url() if self.port else f"http://{self.host}:<unbound>"
        return f"WebhookListener(url={shown!r}, started={self.started})"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    @property
    def open_connections(self) -> int:
        """How many connections are being served now (0 when stopped)."""
        return len(self._connections) if self._connections is not None else 0

    async def start(self) -> None:
        """Bind `host:port` and serve; `port` is the bound port afterwards.

        Served through `loop.create_server` with `_GuardedRequestHandler` as the
        protocol, rather than a `web.TCPSite` (whose protocol is aiohttp's own):
        the runner still builds the application and its `web.Server`, which the
        handlers register with, so `stop()` drains them as before.
        """
        if self._runner is not None:
            raise RuntimeError("the webhook listener is already started")
        loop = asyncio.get_running_loop()
        connections = _Connections(
            loop=loop,
            header_timeout=self.header_timeout,
            max_connections=self.max_connections,
            log=self._log,
        )
        runner = web.AppRunner(
            self.app(),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            **self.server_options(),
        )
        await runner.setup()
        try:
            manager = runner.server
            assert manager is not None  # set by setup()
            manager.request_handler = _no_echo(manager.request_handler)
            options = {**self.server_options(), "debug": loop.get_debug()}

            def protocol() -> _GuardedRequestHandler:
                return _GuardedRequestHandler(
                    manager, loop=loop, connections=connections, **options
                )

            server = await loop.create_server(protocol, self.host, self.port, backlog=BACKLOG)
        except BaseException:
            await runner.cleanup()
            connections.close_all()
            raise
        self._runner = runner
        self._server = server
        self._connections = connections
        self.port = int(server.sockets[0].getsockname()[1])
        self._log.info("webhook listener on %s", self._url())

    async def stop(self) -> None:
        """Stop serving; in-flight deliveries get `SHUTDOWN_TIMEOUT` seconds to finish."""
        runner, self._runner = self._runner, None
        server, self._server = self._server, None
        connections, self._connections = self._connections, None
        if server is not None:
            server.close()  # no new connections
        if runner is not None:
            await runner.cleanup()  # idle connections closed, requests in flight drained
        if connections is not None:
            connections.close_all()  # whatever is left, and the timers
        if runner is not None:
            self._log.info("webhook listener on %s stopped", self._url())

    # -- URLs ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://host:port`, the local address (without the token)."""
        if not self.port:
            raise RuntimeError("the webhook listener has no port yet: start() it first")
        return self._url()

    def _url(self) -> str:
        return str(URL.build(scheme="http", host=self.host, port=self.port))

    def hook_url(self, provider: str, public_url: str | None = None) -> str:
        """The URL to give `provider` for its deliveries, `?token=...` included.

        `public_url` is the configured public address of the Finetuning.ai hook
        (the service only delivers to public https URLs), e.g.
        `https://hooks.example.com/hooks/finetuning`; TemPolor's is the same URL
        with its last path segment replaced by `tempolor`. Without it, the local
        URL. Other query parameters are kept; a `token` already there is replaced.
        """
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}: one of {', '.join(PROVIDERS)}")
        if public_url:
            base = URL(public_url)
            if base.scheme not in ("http", "https") or not base.host:
                raise ValueError("public_url must be an absolute http(s) URL")
            if provider != "finetuning":
                parent = base.path.rstrip("/").rsplit("/", 1)[0]
                base = base.with_path(f"{parent}/{provider}", keep_query=True)
        else:
            base = URL(self.url).with_path(f"/hooks/{provider}")
        return str(base.update_query({"token": self._token_text}))

    # -- the application -----------------------------------------------------------------

    def server_options(self) -> dict[str, Any]:
        """Runner options that keep the token out of aiohttp's logs, and idle sockets short.

        `start()` uses them; pass them to `aiohttp.test_utils.TestServer(app, **options)`
        too, or its default access log writes the query string, token and all.
        (Such a server still lacks what `start()` adds: the header deadline, the
        connection cap and the error answers that quote nothing.) The keep-alive
        timeout is aiohttp's own idle limit, a second line behind the header
        deadline.
        """
        return {
            "access_log_class": _AccessLogger,
            "access_log": self._access_log,
            "logger": self._server_log,
            "keepalive_timeout": self.header_timeout,
        }

    def app(self) -> web.Application:
        """A new aiohttp application with the listener's routes and error handling."""
        # aiohttp's own cap, for any path that reads through request.read(); the
        # hook handlers read with their own bound and answer 413 themselves.
        app = web.Application(
            client_max_size=self.max_body + 1, middlewares=[self._in_request, self._guard]
        )
        app.router.add_post(
            "/hooks/finetuning", self._finetuning, expect_handler=self._expect("finetuning")
        )
        app.router.add_post(
            "/hooks/tempolor", self._tempolor, expect_handler=self._expect("tempolor")
        )
        # HEAD too (allow_head)
        app.router.add_get("/healthz", self._healthz, expect_handler=self._expect(None))
        return app

    def _expect(self, provider: str | None) -> Callable[[web.Request], Awaitable[Any]]:
        """An `Expect:` handler that never echoes the header, and asks for the body
        (`100 Continue`) only once the token is right.

        aiohttp handles `Expect` before any middleware: its own handler answers an
        unknown expectation with a text body that quotes it, and says `100
        Continue` before any check, so a sender learns nothing it should not.
        """

        async def expect(request: web.Request) -> web.StreamResponse | None:
            if request.headers.get("Expect", "").lower() != "100-continue" or (
                request.version < (1, 1)
            ):
                return _json({"error": "expectation failed"}, 417)
            if provider is not None:
                try:
                    self._authorize(request, provider)
                except _Reject as reject:
                    response = _json({"error": reject.reason}, reject.status)
                    response.force_close()  # the body it would send is not wanted
                    return response
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own bytes are still to come
            return None

        return expect

    @web.middleware
    async def _in_request(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Mark the connection busy while its request is handled (see `_Connections`).

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

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Turn every failure into a JSON answer: checks keep their status, the rest is 503."""
        try:
            return await handler(request)
        except _Reject as reject:
            response = _json({"error": reject.reason}, reject.status)
            if request.content.exception() is not None:
                # The body stream is broken (say, undecodable gzip): aiohttp drops the
                # connection after this answer, so tell the client not to reuse it.
                response.force_close()
            return response
        except web.HTTPException as exc:
            # The router's 404 and 405, as JSON; 405 keeps its Allow header.
            status = exc.status if exc.status < 500 else 503
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _json({"error": exc.reason.lower()}, status, headers)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Input was classified on the way in, so what is left is our side.
            self._log.error(
                "%s %s: unexpected error, answered 503", request.method, request.path, exc_info=err
            )
            return _json({"error": "internal error, retry later"}, 503)

    async def _healthz(self, request: web.Request) -> web.Response:
        """`{"status": "ok", **health()}`, 200; 503 when health() says anything but "ok"
        (a journal that cannot be written), so a monitor notices; a failing `health()`
        is the guard's 503."""
        body: dict[str, Any] = {"status": "ok", "open_connections": self.open_connections}
        if self._health is not None:
            body.update(self._health())
        return _json(body, 200 if body.get("status") == "ok" else 503)

    async def _finetuning(self, request: web.Request) -> web.Response:
        """POST /hooks/finetuning: the generation itself, completed or failed."""
        self._authorize(request, "finetuning")
        data = _load_json(await self._read_body(request))
        try:
            generation = _parse_finetuning(data)
        except _Reject:
            raise
        except Exception as err:  # a model that choked on some input shape: still bad input
            self._log.debug("finetuning payload rejected", exc_info=err)
            raise _Reject(400, "not a generation payload") from err
        return await self._deliver(generation)

    async def _tempolor(self, request: web.Request) -> web.Response:
        """POST /hooks/tempolor: the job; 202 and nothing recorded while it is not final."""
        self._authorize(request, "tempolor")
        data = _load_json(await self._read_body(request))
        try:
            job = _parse_tempolor(data)
            generation = job.to_generation()
        except _Reject:
            raise
        except Exception as err:
            self._log.debug("tempolor payload rejected", exc_info=err)
            raise _Reject(400, "not a TemPolor job") from err
        if job.status_code is None and job.job_id and self._tempolor_job is not None:
            # A callback naming the job but not its state: ask for the job itself.
            fetched = await self._fetch_tempolor(job.job_id)
            if fetched is None:
                return self._not_final("tempolor", job.job_id)
            generation = fetched
        if not generation.is_terminal:
            # Progress pings are not events; the poller keeps watching the job.
            return self._not_final("tempolor", generation.id)
        return await self._deliver(generation)

    # -- the steps of a delivery -----------------------------------------------------------

    def _authorize(self, request: web.Request, provider: str) -> None:
        """Exactly one `token` parameter, equal to ours in constant time, or 401."""
        given = request.rel_url.query.getall("token", [])
        if len(given) == 1:
            candidate = given[0].encode("utf-8", "surrogatepass")
            if hmac.compare_digest(candidate, self._token):
                return
        # No detail, to the caller or in the log: a wrong token is still a secret-shaped value.
        self._log.warning(
            "%s webhook from %s refused: %s token",
            provider,
            request.remote,
            "missing" if not given else "wrong",
        )
        raise _Reject(401, "unauthorized")

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, never buffering more than `max_body + 1` bytes; 413 past `max_body`."""
        too_large = _Reject(413, f"body too large (limit {self.max_body} bytes)")
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            raise too_large
        # A chunked or compressed body has no useful Content-Length: count while reading.
        body = bytearray()
        timeout = self.body_timeout if self.body_timeout is not None else BODY_READ_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                while chunk := await request.content.read(self.max_body + 1 - len(body)):
                    body += chunk
                    if len(body) > self.max_body:
                        raise too_large
        except TimeoutError:
            raise _Reject(408, "body not received in time") from None
        except (_Reject, asyncio.CancelledError):
            raise
        except Exception as err:
            # Broken chunking, a bad Content-Encoding stream: the sender's bytes.
            self._log.debug("could not read a webhook body", exc_info=err)
            raise _Reject(400, "could not read the body") from err
        return bytes(body)

    async def _fetch_tempolor(self, job_id: str) -> Generation | None:
        assert self._tempolor_job is not None
        try:
            async with asyncio.timeout(TEMPOLOR_FETCH_TIMEOUT):
                return await self._tempolor_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error("tempolor job %s: could not fetch it", job_id, exc_info=err)
            raise _Reject(503, "not recorded, retry later") from err

    def _not_final(self, provider: str, generation_id: str) -> web.Response:
        self._log.debug("%s %s: not final yet, nothing recorded", provider, generation_id)
        return _json({"ok": True, "final": False}, 202)

    async def _deliver(self, generation: Generation) -> web.Response:
        """Record the generation's event; 200 only once `record` returned."""
        event = Event.for_generation(generation, source="webhook")
        try:
            new = await self._record(event)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error("event %s: not recorded, answered 503", event.key, exc_info=err)
            return _json({"error": "not recorded, retry later"}, 503)
        self._log.info("event %s recorded from a webhook (new: %s)", event.key, bool(new))
        return _json({"ok": True, "new": bool(new)}, 200)


def _no_echo(
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
            return _json({"error": _phrase(status).lower()}, status)

    return handle_request


# -- parsing ------------------------------------------------------------------------------


_NOT_FINITE = "not JSON: numbers must be finite"


def _reject_constant(name: str) -> NoReturn:
    """`NaN`, `Infinity`, `-Infinity`: Python's extensions, not JSON (RFC 8259 §6)."""
    raise _Reject(400, _NOT_FINITE)


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent, refused if it overflows a float.

    `1e400` is valid JSON syntax but parses to `inf`, which no field can mean and
    which our own JSON (the journal, outgoing webhooks) cannot write back.
    """
    value = float(text)
    if not math.isfinite(value):
        raise _Reject(400, _NOT_FINITE)
    return value


def _load_json(body: bytes) -> Any:
    """Strict JSON: finite numbers and valid Unicode strings only, or 400."""
    if not body.strip():
        raise _Reject(400, "not JSON: empty body")
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and oversized integers too; RecursionError, deep nesting.
        raise _Reject(400, "not JSON") from None
    _check_strings(data)
    return data


def _check_strings(data: Any) -> None:
    """400 unless every string in `data`, keys included, can be encoded as UTF-8.

    JSON's `\\ud800` escapes (and, since `json.loads` decodes bytes with
    `surrogatepass`, surrogates encoded as UTF-8 bytes) give strings holding a
    lone surrogate: not text, and the journal fails to store them, which would
    answer 503 "retry later" to input that can never succeed. Iterative, as a
    body nested as deep as the parser allows must not hit the recursion limit.
    """
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = [key for key in item if isinstance(key, str)]
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
            continue
        else:
            continue
        for text in strings:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Reject(400, "not JSON: a string is not valid Unicode") from None


def _problem(err: ValidationError) -> str:
    """The first problem of a validation error, short, without the offending input."""
    errors = err.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _parse_finetuning(data: Any) -> Generation:
    """A Finetuning.ai webhook payload: a terminal `Generation`, fields at the top level."""
    what = "not a generation payload"
    if not isinstance(data, dict):
        raise _Reject(400, f"{what}: expected a JSON object")
    # `provider` is ours to set, not the sender's: this route only speaks for Finetuning.
    data = {key: value for key, value in data.items() if key != "provider"}
    try:
        generation = Generation.model_validate(data)
    except ValidationError as err:
        raise _Reject(400, f"{what}: {_problem(err)}") from None
    if not generation.id.strip():
        raise _Reject(400, f"{what}: id must not be empty")
    if not generation.is_terminal:
        raise _Reject(400, f"{what}: status must be completed or failed")
    return generation


def _parse_tempolor(data: Any) -> TempolorJob:
    """A TemPolor `replyUrl` callback: the job, as GET music/{job_id} returns it."""
    what = "not a TemPolor job"
    if not isinstance(data, dict):
        raise _Reject(400, f"{what}: expected a JSON object")
    try:
        job = TempolorJob.model_validate(data)
    except ValidationError as err:
        raise _Reject(400, f"{what}: {_problem(err)}") from None
    if not job.job_id or not job.job_id.strip():
        raise _Reject(400, f"{what}: job_id is required")
    return job


def _json(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A strict JSON answer: no `NaN`/`Infinity`, which JSON parsers other than Python's refuse.

    Non-finite floats (say, an age that health() computed as infinite) become
    null; `default=str`: health() may report datetimes, and the answer must
    not fail on them either.
    """
    text = json.dumps(finite(body), default=str, allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


# -- the daemon's side: descriptors, and what asyncio logs when they run out -------------------

# Errors accept() gives when the process or system is out of descriptors or memory.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Soft limits to try when the hard limit is "unlimited" (macOS), which setrlimit
# refuses as a soft limit; the first one accepted wins.
_UNLIMITED_TRIES = (1 << 20, 1 << 16, 10240)


def raise_file_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open files to its hard limit; the (soft, hard) now set.

    The soft limit is often 1024, which a daemon holding a journal, API
    connections, actions' downloads and a listener open to the internet can
    reach; the hard limit is what an unprivileged process may raise it to, and
    usually far higher. Call it once at the start of `ftconnect run`. Never
    fails: where the limit cannot be raised, it is left as it is. None where
    the platform has no such limit (Windows).
    """
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard:
        return soft, hard
    targets = _UNLIMITED_TRIES if hard == resource.RLIM_INFINITY else (hard,)
    for target in targets:
        if soft >= target:
            break  # never lower it
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue  # macOS refuses more than kern.maxfilesperproc: try less
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def install_quiet_accept_errors(
    loop: asyncio.AbstractEventLoop,
    *,
    interval: float = OVERLOAD_LOG_INTERVAL,
    logger: logging.Logger | None = None,
) -> Callable[[], None]:
    """Make out-of-descriptor errors one log line per `interval`; returns the undo.

    When a process runs out of descriptors, asyncio's accept loop reports
    "socket.accept() out of system resource" with a traceback for every
    failed accept(): up to `backlog` of them per wake-up, each also scheduling
    a retry a second later (CPython 3.11's loop does not stop at the first),
    so a few seconds of it are hundreds of thousands of lines, which fill the
    disk and bury what matters. Contexts carrying an OSError with EMFILE,
    ENFILE, ENOBUFS or ENOMEM are therefore counted, as are the
    "Invalid file descriptor" ValueErrors of those retries firing after the
    server closed: the first is logged (at ERROR, one line, no traceback),
    the rest at most once per `interval`, as a count. Every other context
    goes to the handler installed before (asyncio's default if none).

    Matching the retries relies on asyncio naming `_start_serving` in the
    context's message ("Exception in callback ..."); if that ever changes,
    they are simply logged as before. The undo restores the previous handler
    and logs what was counted since the last line.
    """
    log = logger if logger is not None else _LOGGER
    previous = loop.get_exception_handler()
    latest = ""

    def report(count: int) -> None:
        log.error(
            "%s (%d time(s) since the last such line; at most one line every %g s)",
            latest,
            count,
            interval,
        )

    throttle = _Throttle(loop, interval, report)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal latest
        exc = context.get("exception")
        message = str(context.get("message") or "")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            latest = f"{message or 'out of system resources'}: {exc}"
            throttle.hit()
        elif isinstance(exc, ValueError) and "_start_serving" in message:
            throttle.hit()  # the retry of an accept() that ran out, its server since closed
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def undo() -> None:
        throttle.close()
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)

    return undo
