"""The API's operations, declared once: the OpenAPI 3.1 document and the server's routes.

`OPERATIONS` lists every route the server answers (method, path, operation id,
the scope a token needs, parameters, body, every status it can answer), and
`openapi_document` turns it into the document served at
/api/v1/openapi.json, so the two cannot drift apart.

The document also has one typed operation per installed action,
`POST /api/v1/actions/<key>` (`call_<key>`), whose body is that action's
option schema as a call takes it (`connector.api.schemas`: JSON Schema
2020-12, which OpenAPI 3.1 takes as it is): a no-code tool that imports the
document gets a form per action. The server routes them all through the
generic `callAction`; they exist for the document only (`action_operations`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from connector.api.errors import ERROR_CODES
from connector.api.schemas import (
    HEADERS,
    RUN_STATUSES,
    JsonObject,
    call_options_schema,
    hook_create_schema,
    ref,
    shared_schemas,
)
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
    follow from what it takes: 400 always (a query parameter it does not take, or a
    malformed one, or a body that is not a JSON object), 401 and 403 for a scope,
    408, 413 and 415 for a body, and 503 (the journal, or anything unexpected) always."""
    method, path, operation_id = head.split()
    errors: list[Response] = []
    text = "invalid_request: a query parameter it does not take, or one malformed or out of "
    text += "range" + (", or the body is not a JSON object" if body else "")
    errors.append(Response(400, text, "Error"))
    if scope is not None:
        errors.append(Response(401, "unauthorized: no bearer token, or an unknown one", "Error"))
        forbidden = f"forbidden: the token lacks the `{scope}` scope"
        if scope == "act":
            forbidden += ", or may not call the action (its `actions`)"
        errors.append(Response(403, forbidden, "Error"))
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
            # An empty body stands for {}: needed only when the action requires an option.
            body_required=bool(call_options_schema(spec).get("required")),
            **_CALL_ERRORS,
        )
        for key, spec in sorted(registry.actions.items())
    )


def operations(registry: Registry) -> tuple[Operation, ...]:
    """Every operation of the document: `OPERATIONS` and the typed action calls."""
    return OPERATIONS + action_operations(registry)


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
        found["content"] = {"application/json": {"schema": ref(response.schema)}}
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
            "content": {"application/json": {"schema": ref(operation.body)}},
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
    schemas = shared_schemas()
    schemas["HookCreate"] = hook_create_schema(registry)
    for key, spec in sorted(registry.actions.items()):
        schemas[options_schema_name(key)] = call_options_schema(spec)
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
            "headers": HEADERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    return copy.deepcopy(document)  # shares no object with this module's constants
