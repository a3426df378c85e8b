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

    listener = WebhookListener(token=secret, record=runtime_record, port=8123)
    await listener.start()
    url = listener.hook_url("finetuning", public_url="https://hooks.example.com/hooks/finetuning")
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, quote_plus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import ValidationError
from yarl import URL

from .events import Event
from .models import Generation
from .tempolor_models import TempolorJob

if TYPE_CHECKING:
    from logging import _ExcInfoType

__all__ = ["PROVIDERS", "WebhookListener"]

PROVIDERS: tuple[str, ...] = ("finetuning", "tempolor")
MAX_BODY = 64 * 1024
# A delivery is a few hundred bytes sent at once; a body still arriving after
# this long is a stalled or hostile client, not a provider.
BODY_READ_TIMEOUT = 10.0
# `tempolor_job` is a network call to useapi.net: bounded, so the answer stays fast.
TEMPOLOR_FETCH_TIMEOUT = 10.0
# Time in-flight requests get to finish (their `record` call above all) on stop().
SHUTDOWN_TIMEOUT = 5.0
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
        spellings = {
            token,
            quote(token, safe=""),
            quote_plus(token, safe=""),
            # How yarl writes it into a query string (what a request line carries).
            URL.build(query={"token": token}).raw_query_string.removeprefix("token="),
            # How it shows inside a bytes repr, as aiohttp's parser errors quote request lines.
            repr(token.encode("utf-8", "surrogatepass"))[2:-1],
        }
        # Longest first, so a spelling that contains another is replaced whole.
        self._spellings = sorted((s for s in spellings if s), key=len, reverse=True)

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


class WebhookListener:
    """An HTTP server taking webhook deliveries from Finetuning.ai and TemPolor.

    `record(event)` makes an event durable and queues its work, returning
    whether it was new; the listener answers 200 only after it returned, and
    503 when it raised (so a sender that retries will). `health()` adds fields
    to `GET /healthz`. `tempolor_job(job_id)` fetches a job whose callback
    carried only its id. `port=0` binds a free port: `port` holds the real
    one after `start()`, and a later `start()` reuses it, so hook URLs
    already handed to providers stay valid.
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
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("the webhook token must be a non-empty string")
        if max_body < 1:
            raise ValueError("max_body must be at least one byte")
        # `surrogatepass`: whatever str the config holds can be encoded for the comparison.
        self._token = token.encode("utf-8", "surrogatepass")
        self._token_text = token
        self._record = record
        self._health = health
        self._tempolor_job = tempolor_job
        self.host = host
        self.port = port
        self.max_body = max_body
        redact = _Redactor(token)
        self._log = _RedactingLogger(_LOGGER, redact)
        self._server_log = _RedactingLogger(_SERVER_LOGGER, redact)
        self._access_log = _RedactingLogger(_ACCESS_LOGGER, redact)
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        # Never the token: the URL without a query string, and whether it is serving.
        shown = self._url() if self.port else f"http://{self.host}:<unbound>"
        return f"WebhookListener(url={shown!r}, started={self.started})"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    async def start(self) -> None:
        """Bind `host:port` and serve; `port` is the bound port afterwards."""
        if self._runner is not None:
            raise RuntimeError("the webhook listener is already started")
        runner = web.AppRunner(
            self.app(),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            **self.server_options(),
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._log.info("webhook listener on %s", self._url())

    async def stop(self) -> None:
        """Stop serving; in-flight deliveries get `SHUTDOWN_TIMEOUT` seconds to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
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
        """Runner options that keep the token out of aiohttp's logs.

        `start()` uses them; pass them to `aiohttp.test_utils.TestServer(app, **options)`
        too, or its default access log writes the query string, token and all.
        """
        return {
            "access_log_class": _AccessLogger,
            "access_log": self._access_log,
            "logger": self._server_log,
        }

    def app(self) -> web.Application:
        """A new aiohttp application with the listener's routes and error handling."""
        # aiohttp's own cap, for any path that reads through request.read(); the
        # hook handlers read with their own bound and answer 413 themselves.
        app = web.Application(client_max_size=self.max_body + 1, middlewares=[self._guard])
        app.router.add_post("/hooks/finetuning", self._finetuning)
        app.router.add_post("/hooks/tempolor", self._tempolor)
        app.router.add_get("/healthz", self._healthz)  # HEAD too (allow_head)
        return app

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
        """`{"status": "ok", **health()}`; a failing `health()` is the guard's 503."""
        body: dict[str, Any] = {"status": "ok"}
        if self._health is not None:
            body.update(self._health())
        return _json(body, 200)

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
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT):
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


# -- parsing ------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _load_json(body: bytes) -> Any:
    """Strict JSON (no NaN or Infinity), or 400 "not JSON"."""
    if not body.strip():
        raise _Reject(400, "not JSON: empty body")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and oversized integers too; RecursionError, deep nesting.
        raise _Reject(400, "not JSON") from None


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
    # default=str: health() may report datetimes; the answer must not fail on them.
    text = json.dumps(body, default=str)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)
