"""The open connections of a listener: an idle deadline on each, a cap on their number.

`connector.ingress.server` serves a listener behind these; they are here on their
own because they know nothing of HTTP but the one fixed answer a connection
turned away at the cap hears (`busy_answer`), in the listener's error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from connector.redaction import finite

__all__ = [
    "OVERLOAD_LOG_INTERVAL",
    "Connections",
    "ErrorBody",
    "Throttle",
    "busy_answer",
    "peer",
    "plain_error",
]

# The "at the connection cap" warning and the out-of-resource accept errors are
# logged at most once per this many seconds, with a count.
OVERLOAD_LOG_INTERVAL = 60.0

# An error answer's JSON body from its status and a short text that quotes nothing
# of the request: each listener answers its errors in one shape.
ErrorBody = Callable[[int, str], Mapping[str, Any]]


def plain_error(status: int, text: str) -> Mapping[str, Any]:
    """The default error body, `{"error": text}` (the webhook listener's)."""
    return {"error": text}


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


def busy_answer(error_body: ErrorBody = plain_error) -> bytes:
    """What a connection turned away at the cap hears before it is closed, whole.

    Written straight to the socket, before any request is read: a sender that
    retries on 503 will, and nothing in it comes from the request.
    """
    text = json.dumps(finite(error_body(503, "too busy, retry later")), allow_nan=False)
    body = text.encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
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
        busy: bytes | None = None,
    ) -> None:
        self._name = name
        self._busy_answer = busy if busy is not None else busy_answer()
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
                    transport.write(self._busy_answer)
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
            peer(transport),
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


def peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "an unknown peer"
