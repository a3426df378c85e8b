"""The API's handlers, one per operation of `connector.api.openapi`.

Each reads its parameters strictly (a bad `limit` is a 400 that names the
range, never a default silently used), answers the shapes of
`connector.api.views`, and raises `ApiError` for everything else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from aiohttp import web

from connector.api.auth import Authenticator
from connector.api.errors import ApiError
from connector.api.hooks import (
    HookDeliverer,
    hook_payload,
    subscribable_triggers,
    validate_filter,
)
from connector.api.openapi import openapi_document
from connector.api.params import body_hash, cursor, idempotency_key, number
from connector.api.schemas import RUN_STATUSES, call_options_schema
from connector.api.views import (
    encode_cursor,
    event_view,
    hook_view,
    page,
    run_view,
)
from connector.automation.calls import check_call
from connector.automation.jsonschema import spec_schema
from connector.automation.model import ApiToken
from connector.automation.options import check_options, schema_keys
from connector.automation.problems import Problems, suggest
from connector.automation.registry import Registry
from connector.automation.specs import TriggerSpec
from connector.delivery.webhooks import generate_secret
from connector.dispatch.calls import event_kinds, run_actions
from connector.dispatch.runtime import Runtime
from connector.ingress.payloads import load_json
from connector.ingress.server import json_response, read_body
from connector.journal.idempotency import IDEMPOTENCY_TTL
from connector.journal.runs import RunRow
from connector.redaction import register_secret

__all__ = ["CALLER", "ApiRoutes"]

MAX_BODY = 64 * 1024
BODY_READ_TIMEOUT = 10.0
MAX_WAIT = 300.0
MAX_TARGET_URL = 2048
MAX_HOOKS = 100  # subscriptions at once: each dead target costs a timeout per pass
# How far back the samples of a trigger with filters look for matching events.
SAMPLE_SCAN = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CALLER: ContextVar[ApiToken] = ContextVar("api_caller")
"""The token of the request being served, set by the server's guard for the routes that
need one. A context variable rather than the request's mapping: typed request keys
(`web.RequestKey`) came with aiohttp 3.14, and 3.14 warns on plain string keys."""


class ApiRoutes:
    """The handlers, over one running connector's runtime and its REST-hook deliverer."""

    def __init__(
        self,
        runtime: Runtime,
        hooks: HookDeliverer,
        *,
        base_dir: Path,
        log: logging.LoggerAdapter[logging.Logger],
        max_body: int = MAX_BODY,
    ) -> None:
        self.runtime = runtime
        self.hooks = hooks
        self.base_dir = base_dir
        self.max_body = max_body
        self._log = log
        self._document: dict[str, Any] | None = None
        # Set when the API stops: callers waiting on a run are answered at once.
        self.stopping = asyncio.Event()

    def handlers(self) -> dict[str, Handler]:
        return {
            "getOpenApi": self.get_openapi,
            "getHealth": self.get_health,
            "listActions": self.list_actions,
            "callAction": self.call_action,
            "listRuns": self.list_runs,
            "getRun": self.get_run,
            "replayRun": self.replay_run,
            "listEvents": self.list_events,
            "listTriggers": self.list_triggers,
            "listTriggerSamples": self.list_samples,
            "listHooks": self.list_hooks,
            "createHook": self.create_hook,
            "getHook": self.get_hook,
            "deleteHook": self.delete_hook,
        }

    @property
    def registry(self) -> Registry:
        return self.runtime.registry

    # -- meta ------------------------------------------------------------------------

    async def get_openapi(self, request: web.Request) -> web.Response:
        if self._document is None:
            self._document = openapi_document(self.registry)
        return json_response(self._document, 200)

    async def get_health(self, request: web.Request) -> web.Response:
        status = self.runtime.health().get("status", "ok")
        return json_response({"status": status}, 200 if status == "ok" else 503)

    # -- actions ---------------------------------------------------------------------

    async def list_actions(self, request: web.Request) -> web.Response:
        actions = [
            {
                "key": spec.key,
                "title": spec.title,
                "description": spec.description,
                # As a call takes them (no secret options, no templates): the document's.
                "options_schema": call_options_schema(spec),
            }
            for spec in sorted(self.registry.actions.values(), key=lambda s: s.key)
        ]
        return json_response({"items": actions}, 200)

    async def call_action(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.registry.actions:
            known = sorted(self.registry.actions)
            raise ApiError(
                404,
                f"no action {key[:64]!r}{suggest(key, known) or ''} (known: {', '.join(known)})",
            )
        Authenticator.may_call(CALLER.get(), key)
        wait = number(request, "wait", 0.0, 0.0, MAX_WAIT)
        given_key = idempotency_key(request)
        options = await self._json_object(request, empty_ok=True)
        checked = check_call(self.registry, key, options, base_dir=self.base_dir)
        if isinstance(checked, list):
            raise ApiError(
                422,
                f"the options of {key!r} are not valid: "
                + "; ".join(f"{p.path}: {p.message}" for p in checked[:5]),
                details=[p.to_dict() for p in checked],
            )
        _spec, validated = checked
        token = CALLER.get()
        event_key: str | None = None
        if given_key is not None:
            this_body = body_hash(key, options)
            row, _claimed = self.runtime.store.claim_idempotency(
                token.name,
                given_key,
                this_body,
                f"api:idem:{secrets.token_hex(12)}",
                ttl=IDEMPOTENCY_TTL,
            )
            if row.body_hash != this_body:
                raise ApiError(
                    422,
                    "this Idempotency-Key was used in the last 24 hours with another action "
                    "or other options; use a new key for a new request",
                    code="idempotency_key_reused",
                )
            event_key = row.event_key
        try:
            run_id, new = await self.runtime.call_action(
                key, validated, event_key=event_key, requested_by=token.name
            )
        except RuntimeError as err:
            raise ApiError(503, f"not accepting calls now ({err}); retry later") from err
        # Whether this call started the run, as the journal says: a first try that
        # claimed its key but never got recorded (a crash) is not a replay.
        replayed = not new
        if wait > 0:
            # Until the run ends, `wait` runs out, or the API stops: a waiting caller
            # still gets its run's Location, never a dropped connection.
            ended = asyncio.ensure_future(self.runtime.wait_for_run(run_id, wait))
            stopping = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait((ended, stopping), return_when=asyncio.FIRST_COMPLETED)
            for waiter in (ended, stopping):
                waiter.cancel()
        headers = {"Location": f"/api/v1/runs/{run_id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return self._run_answer(run_id, headers)

    def _run_answer(self, run_id: str, headers: dict[str, str]) -> web.Response:
        row = self.runtime.store.run(run_id)
        if row is None:
            raise ApiError(503, "the run is not in the journal yet; retry later")
        status = 202 if row.status == "running" else 200
        return json_response({"run": run_view(row)}, status, headers)

    # -- runs ------------------------------------------------------------------------

    async def list_runs(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(RUN_STATUSES)}")
        automation = request.query.get("automation") or None
        limit = int(number(request, "limit", 50, 1, 200, whole=True))
        before = cursor(request)
        rows = self.runtime.store.runs_page(
            limit=limit + 1, status=status, automation_id=automation, before=before
        )
        return json_response(_page(rows, limit, run_view, _run_position), 200)

    async def get_run(self, request: web.Request) -> web.Response:
        row = self.runtime.store.run(request.match_info["run_id"])
        if row is None:
            raise ApiError(404, "no run with this id (it may have been pruned)")
        return json_response({"run": run_view(row)}, 200)

    async def replay_run(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        row = self.runtime.store.run(run_id)
        if row is None:
            raise ApiError(404, "no run with this id (it may have been pruned)")
        # A replay runs the run's steps again: the token must be allowed each action.
        Authenticator.may_replay(CALLER.get(), run_actions(self.runtime.config, row.automation_id))
        try:
            new_id = self.runtime.replay(run_id)
        except ValueError as err:
            raise ApiError(409, str(err)) from None
        return self._run_answer(new_id, {"Location": f"/api/v1/runs/{new_id}"})

    # -- events and triggers ---------------------------------------------------------

    async def list_events(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind") or None
        if kind is not None:
            kinds = event_kinds(self.registry)
            if kind not in kinds:
                raise ApiError(
                    400,
                    f"kind {kind[:64]!r} is not an event kind{suggest(kind, kinds) or ''} "
                    f"(kinds: {', '.join(kinds)})",
                )
        limit = int(number(request, "limit", 50, 1, 200, whole=True))
        rows = self.runtime.store.events_page(
            limit=limit + 1, kinds=[kind] if kind else None, before=cursor(request)
        )
        return json_response(
            _page(rows, limit, event_view, lambda r: encode_cursor(r.received_at, r.key)), 200
        )

    async def list_triggers(self, request: web.Request) -> web.Response:
        triggers = [
            {
                "key": spec.key,
                "title": spec.title,
                "description": spec.description,
                "subscribable": spec.matches is not None,
                "options_schema": spec_schema(spec),
            }
            for spec in sorted(self.registry.triggers.values(), key=lambda s: s.key)
        ]
        return json_response({"items": triggers}, 200)

    async def list_samples(self, request: web.Request) -> web.Response:
        spec = self._trigger(request.match_info["key"])
        limit = int(number(request, "limit", 10, 1, 100, whole=True))
        options = spec.schema({}) if spec.matches is not None else {}
        items: list[dict[str, Any]] = []
        # A trigger that fires on its own (schedule, credits_low) has no kinds to match:
        # its events are of its own kind.
        kinds = spec.kinds or frozenset({spec.key})
        rows = self.runtime.store.events_page(limit=SAMPLE_SCAN, kinds=kinds, before=None)
        # Seeds (what existed at the first start) are samples too: a polling tool
        # dedupes on `id`, and at set-up real tracks show the shape best.
        for row in rows:
            event = row.to_event()
            if spec.matches is not None:
                try:
                    if not spec.matches(event, options):
                        continue
                except Exception:
                    continue
            items.append(hook_payload(event, spec.key))
            if len(items) >= limit:
                break
        return json_response({"items": items}, 200)

    def _trigger(self, key: str) -> TriggerSpec:
        spec = self.registry.triggers.get(key)
        if spec is None:
            known = sorted(self.registry.triggers)
            raise ApiError(
                404,
                f"no trigger {key[:64]!r}{suggest(key, known) or ''} (known: {', '.join(known)})",
            )
        assert isinstance(spec, TriggerSpec)
        return spec

    # -- REST hooks ------------------------------------------------------------------

    async def list_hooks(self, request: web.Request) -> web.Response:
        return json_response({"items": [hook_view(h) for h in self.runtime.store.hooks()]}, 200)

    async def get_hook(self, request: web.Request) -> web.Response:
        row = self.runtime.store.hook(request.match_info["hook_id"])
        if row is None:
            raise ApiError(404, "no hook with this id")
        return json_response(hook_view(row), 200)

    async def create_hook(self, request: web.Request) -> web.Response:
        body = await self._json_object(request, empty_ok=False)
        problems: list[dict[str, str]] = []
        trigger = body.get("trigger")
        spec = self.registry.triggers.get(trigger) if isinstance(trigger, str) else None
        unknown = sorted(set(body) - {"trigger", "target_url", "filter"})
        for name in unknown:
            hint = suggest(name, ["trigger", "target_url", "filter"]) or ""
            if not hint and spec is not None and name in schema_keys(spec.schema):
                hint = f" ({name!r} is an option of {trigger!r}: put it under 'filter')"
            problems.append({"path": name, "message": f"is not a field of a hook{hint}"})
        target = body.get("target_url")
        given_filter = body.get("filter", {})
        if given_filter is None:
            given_filter = {}
        if not isinstance(trigger, str) or not trigger:
            problems.append({"path": "trigger", "message": "is required: a trigger's key"})
        url_problem = _target_problem(target)
        if url_problem:
            problems.append({"path": "target_url", "message": url_problem})
        if not isinstance(given_filter, dict):
            problems.append({"path": "filter", "message": "must be an object of trigger options"})
        validated: dict[str, Any] = {}
        if isinstance(trigger, str) and trigger and isinstance(given_filter, dict):
            problems += _filter_problems(self.registry, trigger, given_filter, validated)
        if problems:
            raise ApiError(
                422,
                "the hook is not valid: "
                + "; ".join(f"{p['path']}: {p['message']}" for p in problems[:5]),
                details=problems,
            )
        assert isinstance(trigger, str)
        assert isinstance(target, str)
        store = self.runtime.store
        if len(store.hooks()) >= MAX_HOOKS:
            raise ApiError(
                422,
                f"there are {MAX_HOOKS} hooks already, the most at once: delete one first",
                details=[{"path": "(body)", "message": f"at most {MAX_HOOKS} hooks"}],
            )
        hook_id = f"hook_{secrets.token_hex(8)}"
        row = store.add_hook(hook_id, trigger, target, validated, CALLER.get().name)
        secret = store.hook_secret(hook_id, generate_secret)
        register_secret(secret)
        self.hooks.reload()
        self._log.info("hook %s subscribed to %s by %s", hook_id, trigger, CALLER.get().name)
        return json_response(
            hook_view(row, secret=secret), 201, {"Location": f"/api/v1/hooks/{hook_id}"}
        )

    async def delete_hook(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        if not self.runtime.store.remove_hook(hook_id):
            raise ApiError(404, "no hook with this id")
        self.hooks.reload()
        return web.Response(status=204)

    # -- bodies ----------------------------------------------------------------------

    async def _json_object(self, request: web.Request, *, empty_ok: bool) -> dict[str, Any]:
        body = await read_body(
            request, max_body=self.max_body, timeout=BODY_READ_TIMEOUT, log=self._log
        )
        if not body.strip():
            if empty_ok:
                return {}
            raise ApiError(400, "the body is empty: send a JSON object")
        kind = request.content_type
        if kind not in ("application/json", "application/octet-stream", "") and not (
            kind.endswith("+json")
        ):
            raise ApiError(415, "send the body as JSON, with `Content-Type: application/json`")
        data = load_json(body)
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data


def _page(
    rows: list[Any], limit: int, view: Callable[[Any], dict[str, Any]], position: Any
) -> dict[str, Any]:
    more = len(rows) > limit
    shown = rows[:limit]
    return page([view(row) for row in shown], position(shown[-1]) if more and shown else None)


def _run_position(row: RunRow) -> str:
    return encode_cursor(row.started_at, row.run_id)


def _target_problem(target: Any) -> str | None:
    from urllib.parse import urlsplit

    if not isinstance(target, str) or not target:
        return "is required: the URL to POST events to"
    if len(target) > MAX_TARGET_URL:
        return f"must be at most {MAX_TARGET_URL} characters"
    try:
        parts = urlsplit(target)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http(s) URL"
    if parts.username or parts.password:
        return "must not carry a user name or password (put a token in its path or query)"
    if not _reachable_host(target):
        return "must be an http(s) URL whose host is a name or an IP address"
    return None


def _reachable_host(target: str) -> bool:
    """Whether an HTTP client can send to the URL's host: one with no IDNA form, or
    spaces or control characters in it, would be subscribed and then fail every
    delivery. The host is read as the deliverer's client reads it (yarl)."""
    import ipaddress

    from yarl import URL

    try:
        host = URL(target).raw_host  # the IDNA form of a name
    except ValueError:  # UnicodeError too: no IDNA form
        return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9_.-]+", host) is not None
    return True


def _filter_problems(
    registry: Any, trigger: str, given: dict[str, Any], validated: dict[str, Any]
) -> list[dict[str, str]]:
    import voluptuous as vol

    try:
        validated.update(validate_filter(registry, trigger, given))
    except vol.Invalid as err:
        # A filter is a trigger's options: said in the words `ftconnect check` uses
        # for them (an unknown one with its did-you-mean), at paths under `filter`.
        problems = Problems("request")
        schema = registry.triggers[trigger].schema
        check_options(problems, schema, dict(given), given, "filter", repr(trigger))
        errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
        found = [{"path": p.path, "message": p.message} for p in problems.items]
        return found or [_invalid("filter", e) for e in errors]
    except ValueError as err:
        known = subscribable_triggers(registry)
        hint = "" if trigger in registry.triggers else suggest(trigger, known)
        message = f"{trigger[:64]!r} is not a known trigger{hint}" if hint else str(err)
        return [{"path": "trigger", "message": message}]
    return []


def _invalid(prefix: str, err: Any) -> dict[str, str]:
    path = ".".join(str(p) for p in [prefix, *err.path])
    return {"path": path, "message": str(err.msg)}
