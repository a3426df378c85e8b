"""Loggers for a listener that must never write its secret, and an access log without queries.

aiohttp's server logger quotes bad request lines and its default access log
writes the query string, and a webhook's query string carries its token. A
listener hands `GuardedServer` loggers wrapped in `RedactingLogger`, which
redacts the whole rendered text and the traceback, and `AccessLogger`, which
writes the path without the query.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from connector.redaction import spellings

if TYPE_CHECKING:
    from logging import _ExcInfoType

REDACTED = "<redacted>"


class Redactor:
    """Removes the tokens, raw and in their URL-encoded spellings, from any text."""

    def __init__(self, *tokens: str) -> None:
        # Longest first, so a spelling that contains another is replaced whole.
        found = {spelling for token in tokens for spelling in spellings(token)}
        self._spellings = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for spelling in self._spellings:
            text = text.replace(spelling, REDACTED)
        return text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that renders each message (and its traceback) and redacts the token.

    aiohttp's server logger quotes bad request lines, and exceptions may quote
    URLs, so redacting only our own format strings is not enough: the whole
    rendered text is redacted, and the traceback goes into the message as text
    so no raw `exc_info` with the token in it reaches a handler.
    """

    def __init__(self, logger: logging.Logger, redact: Redactor) -> None:
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


class AccessLogger(AbstractAccessLogger):
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
