"""The webhook listener: where Finetuning.ai and TemPolor report finished generations.

Two routes take deliveries, one per provider, and `GET /healthz` reports liveness:

* `POST /hooks/finetuning?token=SECRET`: the Finetuning.ai webhook, fire-once
  and unsigned, its payload the generation itself, not wrapped in `data`;
* `POST /hooks/tempolor?token=SECRET`: the useapi.net `replyUrl` callback,
  whose body is the job as GET music/{job_id} returns it.

Neither provider signs its deliveries, so authenticity rests on a secret
`token` query parameter compared in constant time (docs/providers.md).
The listener only checks, parses (`connector.ingress.payloads`) and hands the
event to `record`, which makes it durable and queues the work; it never runs
actions itself, so it answers fast. It answers 200 only once `record` has
returned, so a 200 means "durable".

Hardening: no input produces a 500 or stops the server (bad input is a 400,
trouble on our side a 503), bodies are read with a bound and a deadline, and the
token never reaches a log record, an error body or a repr: everything aiohttp
logs on the listener's behalf goes through loggers that redact it
(`connector.ingress.logs`). Sockets are guarded by `connector.ingress.server`
(header deadline, connection cap, error answers that quote nothing).

    listener = WebhookListener(token=secret, record=runtime_record, port=8123)
    await listener.start()
    url = listener.hook_url("finetuning", public_url="https://hooks.example.com/hooks/finetuning")
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from yarl import URL

from connector.events import Event
from connector.ingress.logs import AccessLogger, RedactingLogger, Redactor
from connector.ingress.payloads import load_json, parse_finetuning, parse_tempolor
from connector.ingress.server import (
    HEADER_TIMEOUT,
    MAX_CONNECTIONS,
    SHUTDOWN_TIMEOUT,
    GuardedServer,
    Reject,
    json_response,
    read_body,
)
from connector.providers import PROVIDERS
from connector.providers.finetuning.models import Generation

__all__ = ["SHUTDOWN_TIMEOUT", "WebhookListener", "finetuning_delivery", "token_matches"]

MAX_BODY = 64 * 1024
# A delivery is a few hundred bytes sent at once; a body still arriving after
# this long is a stalled or hostile client, not a provider.
BODY_READ_TIMEOUT = 10.0
# `tempolor_job` is a network call to useapi.net: bounded, so the answer stays fast.
TEMPOLOR_FETCH_TIMEOUT = 10.0

_LOGGER = logging.getLogger(__name__)
_SERVER_LOGGER = logging.getLogger(f"{__name__}.server")
_ACCESS_LOGGER = logging.getLogger(f"{__name__}.access")


def token_matches(request: web.BaseRequest, token: bytes) -> bool:
    """Whether the request carries exactly one `token` parameter equal to `token`,
    compared in constant time (a host's own receiver checks deliveries the same way)."""
    given = request.rel_url.query.getall("token", [])
    return len(given) == 1 and hmac.compare_digest(given[0].encode("utf-8", "surrogatepass"), token)


def finetuning_delivery(body: bytes, log: logging.LoggerAdapter[logging.Logger]) -> Generation:
    """The generation a Finetuning.ai delivery carries, or Reject 400: bad JSON, or any
    shape the model chokes on (still bad input, never a 500)."""
    data = load_json(body)
    try:
        return parse_finetuning(data)
    except Reject:
        raise
    except Exception as err:
        log.debug("finetuning payload rejected", exc_info=err)
        raise Reject(400, "not a generation payload") from err


Record = Callable[[Event], Awaitable[bool]]
Health = Callable[[], Mapping[str, Any]]
FetchTempolorJob = Callable[[str], Awaitable[Generation | None]]


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
    client can hold (see `connector.ingress.server`); `body_timeout=None` reads
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
        redact = Redactor(token)
        self._log = RedactingLogger(_LOGGER, redact)
        self._server_log = RedactingLogger(_SERVER_LOGGER, redact)
        self._access_log = RedactingLogger(_ACCESS_LOGGER, redact)
        self._server = GuardedServer(
            name="webhook listener", log=self._log, server_options=self.server_options
        )

    def __repr__(self) -> str:
        # Never the token: the URL without a query string, and whether it is serving.
        shown = self._url() if self.port else f"http://{self.host}:<unbound>"
        return f"WebhookListener(url={shown!r}, started={self.started})"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._server.started

    @property
    def open_connections(self) -> int:
        """How many connections are being served now (0 when stopped)."""
        return self._server.open_connections

    async def start(self) -> None:
        """Bind `host:port` and serve behind the guards of `GuardedServer`; `port` is the
        bound port afterwards."""
        self.port = await self._server.start(
            self.app(),
            host=self.host,
            port=self.port,
            header_timeout=self.header_timeout,
            max_connections=self.max_connections,
        )
        self._log.info("webhook listener on %s", self._url())

    async def stop(self) -> None:
        """Stop serving; in-flight deliveries get `SHUTDOWN_TIMEOUT` seconds to finish."""
        if await self._server.stop():
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
            "access_log_class": AccessLogger,
            "access_log": self._access_log,
            "logger": self._server_log,
            "keepalive_timeout": self.header_timeout,
        }

    def app(self) -> web.Application:
        """A new aiohttp application with the listener's routes and error handling."""
        # aiohttp's own cap, for any path that reads through request.read(); the
        # hook handlers read with their own bound and answer 413 themselves.
        app = web.Application(
            client_max_size=self.max_body + 1,
            middlewares=[self._server.in_request, self._answer_errors],
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
                return json_response({"error": "expectation failed"}, 417)
            if provider is not None:
                try:
                    self._authorize(request, provider)
                except Reject as reject:
                    response = json_response({"error": reject.reason}, reject.status)
                    response.force_close()  # the body it would send is not wanted
                    return response
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own bytes are still to come
            return None

        return expect

    @web.middleware
    async def _answer_errors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Turn every failure into a JSON answer: checks keep their status, the rest is 503."""
        try:
            return await handler(request)
        except Reject as reject:
            response = json_response({"error": reject.reason}, reject.status)
            if request.content.exception() is not None:
                # The body stream is broken (say, undecodable gzip): aiohttp drops the
                # connection after this answer, so tell the client not to reuse it.
                response.force_close()
            return response
        except web.HTTPException as exc:
            # The router's 404 and 405, as JSON; 405 keeps its Allow header.
            status = exc.status if exc.status < 500 else 503
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return json_response({"error": exc.reason.lower()}, status, headers)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Input was classified on the way in, so what is left is our side.
            self._log.error(
                "%s %s: unexpected error, answered 503", request.method, request.path, exc_info=err
            )
            return json_response({"error": "internal error, retry later"}, 503)

    async def _healthz(self, request: web.Request) -> web.Response:
        """`{"status": "ok", **health()}`, 200; 503 when health() says anything but "ok"
        (a journal that cannot be written), so a monitor notices; a failing `health()`
        is the guard's 503."""
        body: dict[str, Any] = {"status": "ok", "open_connections": self.open_connections}
        if self._health is not None:
            body.update(self._health())
        return json_response(body, 200 if body.get("status") == "ok" else 503)

    async def _finetuning(self, request: web.Request) -> web.Response:
        """POST /hooks/finetuning: the generation itself, completed or failed."""
        self._authorize(request, "finetuning")
        generation = finetuning_delivery(await self._read_body(request), self._log)
        return await self._deliver(generation)

    async def _tempolor(self, request: web.Request) -> web.Response:
        """POST /hooks/tempolor: the job; 202 and nothing recorded while it is not final."""
        self._authorize(request, "tempolor")
        data = load_json(await self._read_body(request))
        try:
            job = parse_tempolor(data)
            generation = job.to_generation()
        except Reject:
            raise
        except Exception as err:
            self._log.debug("tempolor payload rejected", exc_info=err)
            raise Reject(400, "not a TemPolor job") from err
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
        if token_matches(request, self._token):
            return
        given = request.rel_url.query.getall("token", [])
        # No detail, to the caller or in the log: a wrong token is still a secret-shaped value.
        self._log.warning(
            "%s webhook from %s refused: %s token",
            provider,
            request.remote,
            "missing" if not given else "wrong",
        )
        raise Reject(401, "unauthorized")

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, never buffering more than `max_body + 1` bytes; 413 past `max_body`."""
        timeout = self.body_timeout if self.body_timeout is not None else BODY_READ_TIMEOUT
        return await read_body(request, max_body=self.max_body, timeout=timeout, log=self._log)

    async def _fetch_tempolor(self, job_id: str) -> Generation | None:
        assert self._tempolor_job is not None
        try:
            async with asyncio.timeout(TEMPOLOR_FETCH_TIMEOUT):
                return await self._tempolor_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error("tempolor job %s: could not fetch it", job_id, exc_info=err)
            raise Reject(503, "not recorded, retry later") from err

    def _not_final(self, provider: str, generation_id: str) -> web.Response:
        self._log.debug("%s %s: not final yet, nothing recorded", provider, generation_id)
        return json_response({"ok": True, "final": False}, 202)

    async def _deliver(self, generation: Generation) -> web.Response:
        """Record the generation's event; 200 only once `record` returned."""
        event = Event.for_generation(generation, source="webhook")
        try:
            new = await self._record(event)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._log.error("event %s: not recorded, answered 503", event.key, exc_info=err)
            return json_response({"error": "not recorded, retry later"}, 503)
        self._log.info("event %s recorded from a webhook (new: %s)", event.key, bool(new))
        return json_response({"ok": True, "new": bool(new)}, 200)
