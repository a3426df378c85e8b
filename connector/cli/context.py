"""What a command needs: its arguments, the endpoint, stderr helpers, one HTTP session and
the API client (both opened on first use, closed when the command ends).

Only the standard library is imported at the top; aiohttp and the client load when a
command first asks for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from connector.cli.output import print_error
from connector.errors import ConnectorError

if TYPE_CHECKING:
    import aiohttp

    from connector.endpoint import Endpoint
    from connector.providers.finetuning.client import FinetuningClient

# A refused connection is retried once (about 1.5 s), not four times (about 17 s): a
# person is waiting. The daemon keeps the client's longer retries.
CLI_CONNECT_RETRIES = 1


class CliError(ConnectorError):
    """A local problem worth one clear line on stderr (exit 1)."""


def endpoint_of(args: argparse.Namespace) -> Endpoint:
    """The endpoint of a command that reads no automations file."""
    from connector.endpoint import resolve_endpoint

    return resolve_endpoint(flag_key=args.api_key, flag_url=args.base_url)


class Context:
    """What a command needs: its arguments, stderr helpers, and a client opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        from contextlib import AsyncExitStack

        from connector.cli.progress import StatusLine, WaitProgress, color_enabled

        self.args = args
        self.endpoint = endpoint_of(args)
        # One status line per command; a long wait (rate budget, retry) overlays it.
        self.line = StatusLine(sys.stderr)
        self.waits = WaitProgress(self.line)
        self.err_color = color_enabled(sys.stderr, no_color=args.no_color)
        self.out_color = color_enabled(sys.stdout, no_color=args.no_color)
        self._stack = AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._client: FinetuningClient | None = None

    @property
    def api_key(self) -> str | None:
        return self.endpoint.api_key

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    async def session(self) -> aiohttp.ClientSession:
        """One HTTP session for the API and the audio host, closed when the command ends."""
        if self._session is None:
            import aiohttp

            traces = [trace_config(self.api_key)] if self.args.verbose else []
            self._session = await self._stack.enter_async_context(
                aiohttp.ClientSession(trace_configs=traces)
            )
        return self._session

    async def client(self) -> FinetuningClient:
        """The API client; raises MissingApiKeyError / InvalidApiKeyError without a usable key."""
        if self._client is None:
            from connector.endpoint import KEY_VARIABLE
            from connector.errors import MissingApiKeyError
            from connector.providers.finetuning.client import FinetuningClient

            if not self.api_key:
                raise MissingApiKeyError(
                    f"no API key: pass --api-key or set {KEY_VARIABLE} (to try without an "
                    "account: `ftconnect demo`, or `ftconnect sandbox` for a local API)"
                )
            try:
                client = FinetuningClient(
                    self.api_key,
                    base_url=self.base_url,
                    session=await self.session(),
                    connect_retries=CLI_CONNECT_RETRIES,
                    on_wait=self.waits,
                )
            except ValueError as err:  # a base URL that is not http(s)
                raise CliError(str(err)) from err
            self._client = await self._stack.enter_async_context(client)
        return self._client

    async def aclose(self) -> None:
        """Close the client and the session."""
        self.waits.close()
        await self._stack.aclose()

    def note(self, message: str) -> None:
        """A status message for people (stderr)."""
        print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """`ftconnect: warning: ...` on stderr."""
        from connector.cli.progress import YELLOW, paint

        print(f"ftconnect: {paint('warning', YELLOW, self.err_color)}: {message}", file=sys.stderr)

    def hint(self, message: str) -> None:
        """`ftconnect: hint: ...` on stderr."""
        print(f"ftconnect: hint: {message}", file=sys.stderr)

    def fail(self, message: object) -> None:
        """`ftconnect: error: ...` on stderr."""
        self.waits.close()
        print_error(message, no_color=self.args.no_color)


Command = Callable[[Context], Awaitable[int]]


def trace_config(api_key: str | None) -> Any:
    """aiohttp hooks logging each request line, its status and time (never the key)."""
    import logging
    import time

    import aiohttp

    from connector.providers.finetuning.credentials import redact_key

    logger = logging.getLogger("connector.http")
    started: dict[int, float] = {}

    def shown(url: Any, headers: Any) -> Any:
        # Only API calls keep their query (limit, offset): a signed audio link carries its
        # token there.
        return url if "X-API-Key" in headers else url.with_query(None)

    async def on_start(
        _session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started[id(context)] = time.monotonic()
        auth = f" X-API-Key: {redact_key(api_key)}" if "X-API-Key" in params.headers else ""
        logger.debug("-> %s %s%s", params.method, shown(params.url, params.headers), auth)

    async def on_end(
        _session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        elapsed = (time.monotonic() - started.pop(id(context), time.monotonic())) * 1000
        logger.debug(
            "<- %s %s %s in %.0f ms",
            params.response.status,
            params.method,
            shown(params.url, params.headers),
            elapsed,
        )

    async def on_exception(
        _session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        started.pop(id(context), None)
        url = shown(params.url, params.headers)
        logger.debug("<- failed %s %s: %r", params.method, url, params.exception)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace
