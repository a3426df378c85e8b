"""The sandbox as an aiohttp application, and `run_sandbox` to serve it on loopback.

Middlewares, outermost first:

1. request log: every request lands in the ground truth (method, path, status,
   account, rate bucket, fault applied);
2. envelope: errors become `{"error": {"code", "message"[, "details"]}}` and
   every response gets `X-RateLimit-Limit` / `X-RateLimit-Remaining`;
3. faults: latency, dropped connections, 500/503 answers, commit-then-fail;
4. auth: `X-API-Key` and the plan (PRO_PLAN_REQUIRED);
5. rate limits: sliding windows per account, "generation" for
   POST /v1/generations and "read" for everything else.

`/health`, the audio URLs and the `/_sandbox/` control surface need no key;
control routes and /health are never rate limited nor faulted. The TemPolor
sub-application under `/v1/tempolor/` answers its own errors and auth; only the
request log and the faults apply to it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .audio import MAX_DURATION
from .clock import Clock
from .config import FaultRule, SandboxConfig
from .errors import ApiError
from .finetuning import NOTES, SANDBOX, Notes, add_routes, not_found, read_json_object
from .ground_truth import RequestRecord
from .records import STATUSES
from .state import Sandbox
from .tempolor import create_tempolor_app

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"ft_live_[0-9a-f]{32}")
TEMPOLOR_PREFIX = "/v1/tempolor"
CONTROL_PREFIX = "/_sandbox"

RATE_MESSAGES = {
    "read": ("RATE_LIMITED", "Too many requests on a read endpoint — wait and retry"),
    "generation": (
        "GENERATION_RATE_LIMITED",
        "Too many POST /v1/generations calls — wait and retry",
    ),
}
INTERNAL_MESSAGE = "Unexpected server error"
INVALID_KEY_MESSAGE = "API key is malformed, revoked, or does not exist"
PLAN_MESSAGE = "Your subscription does not include API access"


def _is_tempolor(path: str) -> bool:
    return path == TEMPOLOR_PREFIX or path.startswith(TEMPOLOR_PREFIX + "/")


def _is_control(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def _is_api(path: str) -> bool:
    return path.startswith("/v1/") and not _is_tempolor(path)


def _bucket(request: web.Request) -> str:
    if request.method == "POST" and request.path == "/v1/generations":
        return "generation"
    return "read"


def error_response(error: ApiError) -> web.Response:
    """The JSON error envelope for `error`, with its extra headers."""
    response = web.json_response(error.body(), status=error.status)
    response.headers.update(error.headers)
    return response


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status in (404, 405):
        # Every unknown route, wrong methods included, is NOT_FOUND: the documented code.
        return not_found(f"No route for {request.method} {request.path}")
    if exc.status == 413:
        return ApiError(413, "VALIDATION_ERROR", "Request body is too large")
    code = "INTERNAL_ERROR" if exc.status >= 500 else "VALIDATION_ERROR"
    return ApiError(exc.status, code, exc.reason)


# --------------------------------------------------------------------------- middlewares


def _request_log(sandbox: Sandbox) -> Middleware:
    @web.middleware
    async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        if sandbox.base_url is None:
            # Served by something other than run_sandbox: learn the address from the request.
            sandbox.base_url = str(request.url.origin())
        at = sandbox.clock.time()
        started = time.monotonic()
        status: int | None = None
        notes = Notes()
        token = NOTES.set(notes)
        try:
            response = await handler(request)
            status = None if notes.dropped else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            status = 500
            raise
        finally:
            NOTES.reset(token)
            account = notes.account
            sandbox.ground_truth.record_request(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    status=status,
                    account=account.name if account is not None else None,
                    bucket=notes.bucket,
                    fault=notes.fault,
                    at=at,
                    elapsed=round(time.monotonic() - started, 6),
                )
            )

    return request_log


def _envelope(sandbox: Sandbox) -> Middleware:
    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_tempolor(request.path):
            return await handler(request)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            response = error_response(_from_http_exception(request, exc))
        except Exception:
            logger.exception("sandbox: unexpected error on %s %s", request.method, request.path)
            response = error_response(ApiError(500, "INTERNAL_ERROR", INTERNAL_MESSAGE))
        decision = NOTES.get().rate
        if decision is None:
            # Not counted (no key, no route, control surface): the read bucket, untouched.
            limit = sandbox.config.read_limit
            response.headers["X-RateLimit-Limit"] = str(limit)
            response.headers["X-RateLimit-Remaining"] = str(limit)
        else:
            response.headers["X-RateLimit-Limit"] = str(decision.limit)
            response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        return response

    return envelope


def _faults(sandbox: Sandbox) -> Middleware:
    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if _is_control(path) or path == "/health":
            return await handler(request)
        matching = sandbox.faults.matching(request.method, path)
        if not matching:
            return await handler(request)
        notes = NOTES.get()
        latency = sum(active.rule.latency for active in matching)
        if latency > 0:
            notes.fault = "latency"
            await asyncio.sleep(latency)
        for active in matching:
            if active.rule.drop_rate > 0 and active.rng.random() < active.rule.drop_rate:
                notes.fault = "drop"
                notes.dropped = True
                if request.transport is not None:
                    request.transport.close()
                # Nothing reaches the client: its connection is already closed.
                return web.Response(status=500)
            if active.rule.error_rate > 0 and active.rng.random() < active.rule.error_rate:
                active.served_errors += 1
                status = 500 if active.served_errors % 2 else 503
                notes.fault = f"error_{status}"
                if _is_tempolor(path):
                    return web.json_response(
                        {"error": INTERNAL_MESSAGE, "code": status}, status=status
                    )
                message = INTERNAL_MESSAGE if status == 500 else "Service temporarily unavailable"
                raise ApiError(status, "INTERNAL_ERROR", message)
        committing = None
        if request.method == "POST" and path == "/v1/generations":
            committing = next((a for a in matching if a.commits_left > 0), None)
        response = await handler(request)
        generation_id = notes.created_id
        if committing is not None and response.status == 202 and generation_id is not None:
            committing.commits_left -= 1
            notes.fault = "commit_then_fail"
            generation = sandbox.generation(generation_id)
            if generation is not None:
                generation.commit_failed = True
                sandbox.ground_truth.record_failed_commit(generation_id, generation.account, 500)
            raise ApiError(500, "INTERNAL_ERROR", INTERNAL_MESSAGE)
        return response

    return faults


def _auth(sandbox: Sandbox) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_api(request.path) or request.match_info.http_exception is not None:
            return await handler(request)
        key = request.headers.get("X-API-Key")
        if not key:
            raise ApiError(401, "MISSING_API_KEY", "X-API-Key header was not provided")
        account = sandbox.account_for_key(key) if KEY_PATTERN.fullmatch(key) else None
        if account is None:
            raise ApiError(401, "INVALID_API_KEY", INVALID_KEY_MESSAGE)
        notes = NOTES.get()
        notes.account = account
        if not account.has_api_access:
            notes.rate = sandbox.rate_limiter.peek(account.name, _bucket(request))
            raise ApiError(403, "PRO_PLAN_REQUIRED", PLAN_MESSAGE)
        return await handler(request)

    return auth


def _rate_limit(sandbox: Sandbox) -> Middleware:
    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        notes = NOTES.get()
        account = notes.account
        if account is None:
            return await handler(request)
        decision = sandbox.rate_limiter.hit(account.name, _bucket(request))
        notes.rate = decision
        notes.bucket = decision.bucket
        if not decision.allowed:
            code, message = RATE_MESSAGES[decision.bucket]
            raise ApiError(429, code, message, headers={"Retry-After": str(decision.retry_after)})
        try:
            return await handler(request)
        except ApiError as exc:
            if exc.status == 429:
                # A refused request (QUEUE_FULL) gives its slot back.
                notes.rate = sandbox.rate_limiter.refund(account.name, decision)
            raise

    return rate_limit


# --------------------------------------------------------------------------- control surface


_FAULT_FIELDS = {
    "route": "route",
    "error_rate": "error_rate",
    "errorRate": "error_rate",
    "latency": "latency",
    "drop_rate": "drop_rate",
    "dropRate": "drop_rate",
    "commit_then_fail": "commit_then_fail",
    "commitThenFail": "commit_then_fail",
}


def fault_rules_from_json(payload: Any) -> list[FaultRule]:
    """FaultRules from `{"faults": [...]}` or a bare list (snake_case or camelCase keys)."""
    items = payload.get("faults") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ValueError("faults must be an array of fault rules")
    rules = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("each fault rule must be an object")
        unknown = sorted(set(item) - set(_FAULT_FIELDS))
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(unknown)}")
        rules.append(FaultRule(**{_FAULT_FIELDS[k]: v for k, v in item.items()}))
    return rules


async def _optional_body(request: web.Request) -> dict[str, Any]:
    if not (await request.read()).strip():
        return {}
    return await read_json_object(request)


def _control_error(exc: Exception) -> ApiError:
    if isinstance(exc, KeyError):
        return not_found("Generation not found")
    # The generation exists but is finished or deleted: a state conflict.
    return ApiError(409, "CONFLICT", str(exc))


def _add_control_routes(app: web.Application, sandbox: Sandbox) -> None:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(sandbox.snapshot())

    async def generation(request: web.Request) -> web.Response:
        found = sandbox.generation(request.match_info["id"])
        if found is None:
            raise not_found("Generation not found")
        data = found.to_dict()
        data["webhook_attempts"] = [a.to_dict() for a in sandbox.webhook_attempts_for(found.id)]
        return web.json_response(data)

    async def complete(request: web.Request) -> web.Response:
        body = await _optional_body(request)
        duration = body.get("duration")
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 0 < duration <= MAX_DURATION
        ):
            message = f"duration must be a number of seconds in (0, {MAX_DURATION:g}]"
            raise ApiError(400, "VALIDATION_ERROR", message)
        try:
            done = sandbox.complete_now(request.match_info["id"], duration=duration)
        except (KeyError, ValueError) as exc:
            raise _control_error(exc) from exc
        return web.json_response(done.to_dict())

    async def fail(request: web.Request) -> web.Response:
        body = await _optional_body(request)
        message = body.get("errorMessage", body.get("error_message"))
        if message is not None and not isinstance(message, str):
            raise ApiError(400, "VALIDATION_ERROR", "errorMessage must be a string")
        try:
            if message is None:
                done = sandbox.fail_now(request.match_info["id"])
            else:
                done = sandbox.fail_now(request.match_info["id"], message)
        except (KeyError, ValueError) as exc:
            raise _control_error(exc) from exc
        return web.json_response(done.to_dict())

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": [asdict(rule) for rule in sandbox.faults.rules]})

    async def set_faults(request: web.Request) -> web.Response:
        # An empty body clears the rules.
        payload = await _optional_body(request) or {"faults": []}
        try:
            sandbox.set_faults(fault_rules_from_json(payload))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "VALIDATION_ERROR", str(exc)) from exc
        return await get_faults(request)

    async def reset_rate_limits(request: web.Request) -> web.Response:
        sandbox.reset_rate_limits()
        return web.json_response({"reset": True})

    async def webhooks(request: web.Request) -> web.Response:
        wanted = request.query.get("generation_id")
        attempts = sandbox.webhook_attempts_for(wanted) if wanted else sandbox.webhook_attempts
        return web.json_response({"webhook_attempts": [a.to_dict() for a in attempts]})

    async def requests(request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_dict() for r in sandbox.requests]})

    async def add_track(request: web.Request) -> web.Response:
        body = await _optional_body(request)
        account = body.get("account", sandbox.accounts[0].name if sandbox.accounts else "")
        status = body.get("status", "completed")
        if account not in {a.name for a in sandbox.accounts}:
            raise ApiError(400, "VALIDATION_ERROR", "account must name a sandbox account")
        if status not in STATUSES:
            raise ApiError(400, "VALIDATION_ERROR", f"status must be one of {', '.join(STATUSES)}")
        try:
            track = sandbox.add_track(
                account,
                prompt=str(body.get("prompt", "lofi chill piano, vinyl crackle")),
                duration=float(body.get("duration", 60.0)),
                is_public=bool(body.get("isPublic", body.get("is_public", False))),
                status=status,
                type_=str(body.get("type", "music")),
            )
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "VALIDATION_ERROR", str(exc)) from exc
        return web.json_response(track.to_dict(), status=201)

    async def update_account(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in {a.name for a in sandbox.accounts}:
            raise not_found("Account not found")
        body = await _optional_body(request)
        numbers: dict[str, int] = {}
        for field in ("monthly_generations", "generations_used", "pack_credits"):
            value = body.get(field)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ApiError(400, "VALIDATION_ERROR", f"{field} must be an integer ≥ 0")
                numbers[field] = value
        tier = body.get("tier")
        if tier is not None:
            if not isinstance(tier, str):
                raise ApiError(400, "VALIDATION_ERROR", "tier must be a string")
            sandbox.set_tier(name, tier)
        account = sandbox.set_credits(name, **numbers)
        return web.json_response(account.to_dict())

    router = app.router
    router.add_get("/_sandbox/state", state)
    router.add_get("/_sandbox/generations/{id}", generation)
    router.add_post("/_sandbox/generations/{id}/complete", complete)
    router.add_post("/_sandbox/generations/{id}/fail", fail)
    router.add_get("/_sandbox/faults", get_faults)
    router.add_post("/_sandbox/faults", set_faults)
    router.add_post("/_sandbox/reset-rate-limits", reset_rate_limits)
    router.add_get("/_sandbox/webhooks", webhooks)
    router.add_get("/_sandbox/requests", requests)
    router.add_post("/_sandbox/tracks", add_track)
    router.add_post("/_sandbox/accounts/{name}", update_account)


# --------------------------------------------------------------------------- app and runner


def create_app(sandbox: Sandbox) -> web.Application:
    """The whole sandbox (Finetuning.ai, audio host, control surface, TemPolor) for `sandbox`."""
    app = web.Application(
        middlewares=[
            _request_log(sandbox),
            _envelope(sandbox),
            _faults(sandbox),
            _auth(sandbox),
            _rate_limit(sandbox),
        ]
    )
    app[SANDBOX] = sandbox
    add_routes(app)
    _add_control_routes(app, sandbox)
    app.add_subapp(TEMPOLOR_PREFIX + "/", create_tempolor_app(sandbox.config, sandbox.tempolor))

    async def close_sandbox(_: web.Application) -> None:
        await sandbox.aclose()

    app.on_cleanup.append(close_sandbox)
    return app


@dataclass(frozen=True)
class SandboxHandle:
    """A running sandbox: where it listens, the credentials to use, and its ground truth."""

    url: str  # base URL, e.g. http://127.0.0.1:8787
    api_key: str  # the first account with API access (Pro or Lifetime)
    api_keys: dict[str, str]  # every account's Finetuning key, by account name
    tempolor_url: str  # <url>/v1/tempolor
    tempolor_token: str  # the TemPolor bearer token of the same account as api_key
    tempolor_tokens: dict[str, str]  # every account's TemPolor token, by account name
    sandbox: Sandbox  # ground truth and driving (complete_now, faults, ...)

    @property
    def config(self) -> SandboxConfig:
        """The sandbox's configuration."""
        return self.sandbox.config


def _advertised_url(host: str, port: int) -> str:
    # A wildcard bind is reachable on loopback; advertise that.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@asynccontextmanager
async def run_sandbox(
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
) -> AsyncIterator[SandboxHandle]:
    """Serve a sandbox on `host:port` (port 0 = a free port) for the duration of the block.

    On exit the server stops, lifecycle timers and webhook deliveries are
    cancelled and every HTTP session is closed.
    """
    sandbox = Sandbox(config, clock=clock)
    app = create_app(sandbox)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        url = _advertised_url(host, bound_port)
        sandbox.base_url = url
        api_keys = {a.name: a.api_key for a in sandbox.accounts}
        tokens = {a.name: a.tempolor_token for a in sandbox.accounts}
        main = next((a for a in sandbox.accounts if a.has_api_access), None)
        if main is None and sandbox.accounts:
            main = sandbox.accounts[0]
        yield SandboxHandle(
            url=url,
            api_key=main.api_key if main else "",
            api_keys=api_keys,
            tempolor_url=url + TEMPOLOR_PREFIX,
            tempolor_token=main.tempolor_token if main else "",
            tempolor_tokens=tokens,
            sandbox=sandbox,
        )
    finally:
        await runner.cleanup()
