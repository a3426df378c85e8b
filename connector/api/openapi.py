"""The API's operations, declared once: the OpenAPI 3.1 document and the server's routes.

`OPERATIONS` lists every route the server answers (method, path, operation id,
the scope a token needs, parameters, body, every status it can answer), and
`openapi_document` turns it into the document served at
/api/v1/openapi.json, so the two cannot drift apart.

The document also has one typed operation per installed action,
`POST /api/v1/actions/<key>` (`call_<key>`), whose body is that action's
option schema (`spec_schema`, JSON Schema 2020-12, which OpenAPI 3.1 takes as
it is): a no-code tool that imports the document gets a form per action. The
server routes them all through the generic `callAction`; they exist for the
document only (`action_operations`).

Response schemas state what the server sends, no more: nullable fields say so,
and objects leave extra keys allowed, so a new field breaks no client.
Request schemas are as strict as the server's checks, no stricter.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from connector.automation.jsonschema import spec_schema
from connector.automation.registry import Registry
from connector.version import __version__

__all__ = [
    "ERROR_CODES",
    "OPERATIONS",
    "Operation",
    "Parameter",
    "Response",
    "Scope",
    "action_operations",
    "openapi_document",
    "operations",
    "options_schema_name",
]

Scope = Literal["read", "act"]
ParameterIn = Literal["path", "query", "header"]
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter; `schema` is its JSON Schema (ranges, default)."""

    name: str
    location: ParameterIn
    schema: Mapping[str, Any] = field(hash=False)
    description: str
    required: bool = False


@dataclass(frozen=True)
class Response:
    """One status an operation answers; `schema` names a components/schemas entry (None:
    no body), `headers` name components/headers entries."""

    status: int
    description: str
    schema: str | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One route: the server maps `operation_id` to its handler; `scope` None needs no token."""

    method: str
    path: str
    operation_id: str
    scope: Scope | None
    summary: str
    description: str = ""
    tag: str = "meta"
    parameters: tuple[Parameter, ...] = ()
    body: str | None = None  # components/schemas name of the JSON body
    body_required: bool = True  # False: an empty body stands for {}
    responses: tuple[Response, ...] = ()

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status this operation can answer, in order."""
        return tuple(response.status for response in self.responses)


# ------------------------------------------------------------------ parameters

ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
# Printable ASCII, without the spaces at either end that HTTP would strip.
IDEMPOTENCY_KEY_PATTERN = "^[!-~]([ -~]*[!-~])?$"
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "replayed")
STEP_STATUSES = ("running", "succeeded", "failed", "skipped")


def _param(name: str, location: ParameterIn, description: str, **schema: Any) -> Parameter:
    return Parameter(name, location, schema, description, required=location == "path")


def _limit(default: int, maximum: int) -> Parameter:
    bounds = {"minimum": 1, "maximum": maximum, "default": default}
    return _param("limit", "query", f"Items per page, 1 to {maximum}", type="integer", **bounds)


_RUN_ID = _param("run_id", "path", "A run's id", type="string", pattern=ID_PATTERN)
_HOOK_ID = _param("hook_id", "path", "A hook's id", type="string", pattern=ID_PATTERN)
_ACTION_KEY = _param("key", "path", "An action's key (see listActions)", type="string")
_TRIGGER_KEY = _param("key", "path", "A trigger's key (see listTriggers)", type="string")
_CURSOR = _param("cursor", "query", "The `next_cursor` of the page before", type="string")
_STATUS = _param("status", "query", "Only runs in this state", type="string", enum=[*RUN_STATUSES])
_AUTOMATION = _param("automation", "query", "Only runs of this automation id", type="string")
_KIND = _param("kind", "query", "Only events of this kind", type="string")
_WAITED = "Seconds to wait for the run to end: 200 with the finished run, else 202 as without"
_WAIT = _param("wait", "query", _WAITED, type="number", minimum=0, maximum=300, default=0)
_REPLAYED = (
    "Repeating a call with the same key and body answers the first call's run "
    "(with `Idempotent-Replayed: true`) instead of starting another"
)
_KEY_SCHEMA: JsonObject = {"minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN}
_IDEMPOTENCY_KEY = _param("Idempotency-Key", "header", _REPLAYED, type="string", **_KEY_SCHEMA)


# ------------------------------------------------------------------ operations


def _ok(status: int, description: str, schema: str | None, *headers: str) -> Response:
    return Response(status, description, schema, headers)


def _op(
    head: str,
    scope: Scope | None,
    summary: str,
    *ok: Response,
    tag: str = "meta",
    description: str = "",
    parameters: tuple[Parameter, ...] = (),
    body: str | None = None,
    body_required: bool = True,
    missing: str = "",
    conflict: str = "",
    unprocessable: str = "",
) -> Operation:
    """An operation (`head` is "METHOD path operationId") with the error statuses that
    follow from what it takes: 400 for any parameter or body, 401 and 403 for a scope,
    408, 413 and 415 for a body, and 503 (the journal, or anything unexpected) always."""
    method, path, operation_id = head.split()
    errors: list[Response] = []
    if parameters or body:
        text = "invalid_request: a parameter is malformed or out of range"
        text += ", or the body is not a JSON object" if body else ""
        errors.append(Response(400, text, "Error"))
    if scope is not None:
        errors.append(Response(401, "unauthorized: no bearer token, or an unknown one", "Error"))
        errors.append(Response(403, f"forbidden: the token lacks the `{scope}` scope", "Error"))
    if missing:
        errors.append(Response(404, f"not_found: {missing}", "Error"))
    if conflict:
        errors.append(Response(409, conflict, "Error"))
    if body:
        errors.append(Response(408, "request_timeout: the body came too slowly", "Error"))
        errors.append(Response(413, "payload_too_large: the body is too large", "Error"))
        errors.append(Response(415, "unsupported_media_type: send application/json", "Error"))
    if unprocessable:
        errors.append(Response(422, unprocessable, "Error"))
    if 503 not in {response.status for response in ok}:
        errors.append(Response(503, "unavailable: the journal cannot be used now; retry", "Error"))
    fields = (method, path, operation_id, scope, summary, description, tag, parameters, body)
    return Operation(*fields, body_required, (*ok, *errors))


_CALL_DESCRIPTION = (
    "Runs the action once with these options (literal values: no templates are "
    "rendered; an empty body is {}). Answers 202 with the run while it runs, 200 once "
    "it has ended (within `wait`, or before a repeated call), with its Location."
)
_CALLED = (
    _ok(200, "The run, ended", "RunResult", "Location", "Idempotent-Replayed"),
    _ok(202, "The run, started", "RunResult", "Location", "Idempotent-Replayed"),
)
_CALL_ERRORS: dict[str, str] = {
    "conflict": "idempotency_conflict: a call with the same Idempotency-Key is in flight",
    "unprocessable": "validation_failed: the options do not fit the action (details lists "
    "each problem's path and message), or idempotency_key_reused: the Idempotency-Key "
    "was used with another body",
}
_HOOK_DESCRIPTION = (
    "Each new event the trigger (with `filter`) matches is POSTed to `target_url`, "
    "signed per the Standard Webhooks spec with the `secret` answered here, and only here."
)
_HOOK_UNPROCESSABLE = (
    "validation_failed: unknown trigger, a bad URL or filter (details lists each "
    "problem's path and message)"
)
_NO_RUN = "no run has this id"
_NO_HOOK = "no hook has this id"

# Tables, one entry to a line or a few (the formatter would give each value its own).
# fmt: off
# Every `error.code` the server answers with, and its status.
ERROR_CODES: Mapping[str, int] = {
    "invalid_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404,
    "method_not_allowed": 405, "request_timeout": 408, "conflict": 409,
    "idempotency_conflict": 409, "payload_too_large": 413, "unsupported_media_type": 415,
    "expectation_failed": 417, "validation_failed": 422, "idempotency_key_reused": 422,
    "unavailable": 503,
}

OPERATIONS: tuple[Operation, ...] = (
    _op("GET /api/v1/openapi.json getOpenApi", None, "This document",
        _ok(200, "The OpenAPI 3.1 document, with a typed call per action", "OpenApiDocument")),
    _op("GET /api/v1/health getHealth", None, "Is the connector well",
        _ok(200, "`ok`", "Health"),
        _ok(503, "`degraded` while the journal fails, or an error", "HealthOrError")),
    _op("GET /api/v1/actions listActions", "read", "The actions that can be called",
        _ok(200, "Every action, with the options its call takes", "ActionList"), tag="actions"),
    _op("POST /api/v1/actions/{key} callAction", "act", "Call any action by its key", *_CALLED,
        tag="actions", parameters=(_ACTION_KEY, _WAIT, _IDEMPOTENCY_KEY), body="ActionOptions",
        body_required=False, missing="no action has this key", **_CALL_ERRORS,
        description=f"{_CALL_DESCRIPTION} The call_<key> operations type each action's body."),
    _op("GET /api/v1/runs listRuns", "read", "Runs, newest first",
        _ok(200, "A page of runs", "RunsPage"),
        tag="runs", parameters=(_STATUS, _AUTOMATION, _limit(50, 200), _CURSOR)),
    _op("GET /api/v1/runs/{run_id} getRun", "read", "One run, with its steps",
        _ok(200, "The run", "RunResult"), tag="runs", parameters=(_RUN_ID,), missing=_NO_RUN),
    _op("POST /api/v1/runs/{run_id}/replay replayRun", "act",
        "Run a finished run's automation again, for the same event",
        _ok(200, "The new run, already ended", "RunResult", "Location"),
        _ok(202, "The new run, started", "RunResult", "Location"),
        tag="runs", parameters=(_RUN_ID,), missing=_NO_RUN,
        conflict="conflict: the run is still running, or was replayed already"),
    _op("GET /api/v1/events listEvents", "read", "Recorded events, newest first",
        _ok(200, "A page of events", "EventsPage"),
        tag="events", parameters=(_KIND, _limit(50, 200), _CURSOR)),
    _op("GET /api/v1/triggers listTriggers", "read", "The triggers hooks can follow",
        _ok(200, "Every trigger, with the options a hook's `filter` takes", "TriggerList"),
        tag="triggers"),
    _op("GET /api/v1/triggers/{key}/samples listTriggerSamples", "read",
        "A trigger's recent events, newest first, as a hook would deliver them",
        _ok(200, "The samples", "SampleList"),
        tag="triggers", parameters=(_TRIGGER_KEY, _limit(10, 100)),
        description="What no-code tools show while a hook is being set up.",
        missing="no trigger has this key"),
    _op("GET /api/v1/hooks listHooks", "read", "The REST hooks, oldest first",
        _ok(200, "Every hook", "HookList"), tag="hooks"),
    _op("POST /api/v1/hooks createHook", "act", "Subscribe a URL to a trigger's events",
        _ok(201, "The hook, with its signing secret", "HookCreated", "Location"),
        tag="hooks", description=_HOOK_DESCRIPTION, body="HookCreate",
        unprocessable=_HOOK_UNPROCESSABLE),
    _op("GET /api/v1/hooks/{hook_id} getHook", "read", "One hook, with delivery counts",
        _ok(200, "The hook", "Hook"), tag="hooks", parameters=(_HOOK_ID,), missing=_NO_HOOK),
    _op("DELETE /api/v1/hooks/{hook_id} deleteHook", "act",
        "Unsubscribe: delete a hook and its pending deliveries",
        _ok(204, "Deleted", None), tag="hooks", parameters=(_HOOK_ID,), missing=_NO_HOOK),
)
# fmt: on


def _name(key: str) -> str:
    """A key as components/schemas names and operation ids take it (`[A-Za-z0-9._-]`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def options_schema_name(action_key: str) -> str:
    """The components/schemas name of an action's options."""
    return f"options.{_name(action_key)}"


def action_operations(registry: Registry) -> tuple[Operation, ...]:
    """One typed `call_<key>` operation per action, for the document (the server routes
    them through `callAction`)."""
    return tuple(
        _op(
            f"POST /api/v1/actions/{quote(key, safe='')} call_{_name(key)}",
            "act",
            f"Call {key}: {spec.title}",
            *_CALLED,
            tag="actions",
            description=f"{spec.description}\n\n{_CALL_DESCRIPTION}",
            parameters=(_WAIT, _IDEMPOTENCY_KEY),
            body=options_schema_name(key),
            body_required=False,
            **_CALL_ERRORS,
        )
        for key, spec in sorted(registry.actions.items())
    )


def operations(registry: Registry) -> tuple[Operation, ...]:
    """Every operation of the document: `OPERATIONS` and the typed action calls."""
    return OPERATIONS + action_operations(registry)


# ------------------------------------------------------------------ schemas


def _nullable(kind: str, **extra: Any) -> JsonObject:
    return {"type": [kind, "null"], **extra}


def _object(properties: JsonObject, description: str = "") -> JsonObject:
    """An object the server answers: every key always there (null when it has no value),
    extra keys allowed so that a new one breaks no client."""
    schema: JsonObject = {"type": "object"}
    if description:
        schema["description"] = description
    schema["required"] = list(properties)
    return {**schema, "properties": properties}


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str, *, paged: bool = False) -> JsonObject:
    found: JsonObject = {"items": {"type": "array", "items": _ref(item)}}
    if paged:
        found["next_cursor"] = _nullable("string", description="`cursor` of the next page")
    return _object(found)


_TIME: JsonObject = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: JsonObject = _nullable("string", format="date-time")
_TEXT: JsonObject = {"type": "string"}
_COUNT: JsonObject = {"type": "integer", "minimum": 0}
_OBJECT: JsonObject = {"type": "object"}
_KEY: JsonObject = {"type": "string", "description": "The event's key"}


def _shared_schemas() -> JsonObject:
    """The JSON shapes of the answers (and of the generic call's body)."""
    details = {"description": "More, or null; validation_failed lists {path, message} items"}
    error = {"code": {"type": "string", "enum": list(ERROR_CODES)}, "message": _TEXT}
    step = {
        "index": _COUNT,
        "id": _TEXT,
        "action": _TEXT,
        "status": {"type": "string", "enum": list(STEP_STATUSES)},
        "attempt": _COUNT,
        "options": _nullable("object", description="The options it ran with"),
        "output": _nullable("object"),
        "error": _nullable("string"),
        "started_at": _TIME,
        "finished_at": _TIME_OR_NULL,
    }
    run = {
        "id": _TEXT,
        "automation": {"type": "string", "description": "api.<action> for an API call"},
        "status": {"type": "string", "enum": list(RUN_STATUSES)},
        "error": _nullable("string"),
        "event_key": _TEXT,
        "replay_of": _nullable("string"),
        "started_at": _TIME,
        "finished_at": _TIME_OR_NULL,
        "steps": {"type": "array", "items": _ref("Step")},
    }
    event = {
        "kind": _TEXT,
        "provider": _TEXT,
        "source": _TEXT,
        "occurred_at": _TIME,
        "submitted_by_connector": {"type": "boolean"},
        "generation": _nullable("object", description="The generation, in the provider's form"),
        "data": _OBJECT,
    }
    sample = {"id": _KEY, "trigger": _TEXT, "kind": _TEXT, "occurred_at": _TIME}
    hook = {
        "id": _TEXT,
        "trigger": _TEXT,
        "target_url": _TEXT,
        "filter": _OBJECT,
        "created_at": _TIME,
        "pending": _COUNT,
        "delivered": _COUNT,
        "failed": _COUNT,
        "last_error": _nullable("string"),
        "last_status": _nullable("integer"),
        "last_attempt_at": _TIME_OR_NULL,
    }
    secret = {"type": "string", "pattern": "^whsec_", "description": "Shown once: keep it"}
    described = {
        "key": _TEXT,
        "title": _TEXT,
        "description": _TEXT,
        "options_schema": {**_OBJECT, "description": "JSON Schema 2020-12"},
    }
    subscribable = {"type": "boolean", "description": "false: it fires on its own schedule"}
    return {
        "Error": _object({"error": _object({**error, "details": details})}, "Not a 2xx"),
        "Health": _object({"status": {"type": "string", "enum": ["ok", "degraded"]}}),
        "HealthOrError": {"anyOf": [_ref("Health"), _ref("Error")]},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
        "Action": _object(described, "An action that can be called"),
        "ActionList": _list("Action"),
        "ActionOptions": {**_OBJECT, "description": "Its options: see its call_<key> operation"},
        "Trigger": _object({**described, "subscribable": subscribable}, "A trigger"),
        "TriggerList": _list("Trigger"),
        "Step": _object(step, "One action step of a run"),
        "Run": _object(run, "One automation run for one event"),
        "RunResult": _object({"run": _ref("Run")}),
        "RunsPage": _list("Run", paged=True),
        "Event": _object({"id": _KEY, **event, "received_at": _TIME}, "A recorded event"),
        "EventData": _object({"key": _TEXT, **event}, "An event as automations see it"),
        "EventsPage": _list("Event", paged=True),
        "Sample": _object({**sample, "data": _ref("EventData")}, "An event as a hook sends it"),
        "SampleList": _list("Sample"),
        "Hook": _object(hook, "A REST hook and how its deliveries went"),
        "HookList": _list("Hook"),
        "HookCreated": {"allOf": [_ref("Hook"), _object({"secret": secret})]},
    }


_FILTER_TEXT = "The trigger's options (its options_schema); null or {}: every event"


# An http(s) URL with a host and no user name or password, as the server checks it (a
# host without spaces or control characters; one with no IDNA form is refused too).
TARGET_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s\\x00-\\x1f\\x7f-\\x9f]+([/?#][\\s\\S]*)?$"


def _hook_create(registry: Registry) -> JsonObject:
    """The body of createHook, as strict as the server: unknown keys, a trigger that
    fires on its own schedule (no events to follow) or a bad URL are a 422."""
    trigger: JsonObject = {"type": "string", "description": "A subscribable trigger's key"}
    keys = sorted(key for key, spec in registry.triggers.items() if spec.matches is not None)
    if keys:
        trigger["enum"] = keys
    url = {"type": "string", "maxLength": 2048, "pattern": TARGET_URL_PATTERN}
    return {
        "type": "object",
        "required": ["trigger", "target_url"],
        "properties": {
            "trigger": trigger,
            "target_url": url,
            "filter": _nullable("object", description=_FILTER_TEXT),
        },
        "additionalProperties": False,
    }


_REPLAY_TEXT = "`true` when this answers an earlier call with the same Idempotency-Key"
_HEADERS: JsonObject = {
    "Location": {"description": "The path of what was made", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": _REPLAY_TEXT, "schema": {"enum": ["true"]}},
}


# ------------------------------------------------------------------ the document


def _parameter(parameter: Parameter) -> JsonObject:
    found: JsonObject = {"name": parameter.name, "in": parameter.location}
    required = {"required": True} if parameter.required else {}
    return {
        **found,
        **required,
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }


def _response(response: Response) -> JsonObject:
    found: JsonObject = {"description": response.description}
    if response.headers:
        found["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"} for name in response.headers
        }
    if response.schema is not None:
        found["content"] = {"application/json": {"schema": _ref(response.schema)}}
    return found


def _operation(operation: Operation) -> JsonObject:
    scopes = [operation.scope] if operation.scope else []
    needs = f"Needs a token with the `{operation.scope}` scope." if scopes else "Needs no token."
    text = f"{operation.description}\n\n{needs}" if operation.description else needs
    found: JsonObject = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": text,
        "tags": [operation.tag],
        "x-scopes": scopes,
    }
    if operation.scope is None:
        found["security"] = []
    if operation.parameters:
        found["parameters"] = [_parameter(parameter) for parameter in operation.parameters]
    if operation.body is not None:
        found["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _ref(operation.body)}},
        }
    found["responses"] = {str(r.status): _response(r) for r in operation.responses}
    return found


_INFO = (
    "Call actions, follow runs and events, subscribe to triggers with REST hooks. A token "
    "(`Authorization: Bearer ...`, one of the `api:` section's) has the `read` scope (every "
    "GET), the `act` scope (calls, replays, hooks), or both."
)


def openapi_document(registry: Registry) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the API, JSON-ready, for `registry`'s actions and
    triggers; the same registry gives the same document."""
    schemas = _shared_schemas()
    schemas["HookCreate"] = _hook_create(registry)
    for key, spec in sorted(registry.actions.items()):
        schemas[options_schema_name(key)] = spec_schema(spec)
    paths: JsonObject = {}
    for operation in operations(registry):
        item = paths.setdefault(operation.path, {})
        item[operation.method.lower()] = _operation(operation)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "ftconnect HTTP API",
            "version": __version__,
            "description": _INFO,
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": _HEADERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    return copy.deepcopy(document)  # shares no object with this module's constants
