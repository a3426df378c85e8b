"""The daemon's side of serving: more file descriptors, and one line when they run out."""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from collections.abc import Callable
from typing import Any

from connector.ingress.connections import OVERLOAD_LOG_INTERVAL, Throttle

_LOGGER = logging.getLogger(__name__)

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

    throttle = Throttle(loop, interval, report)

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
