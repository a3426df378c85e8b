"""The JSON Schemas of the API's bodies, for its OpenAPI document (`connector.api.openapi`).

The shapes the server answers (the views of `connector.api.views`), the body
of a new hook, and each action's options as a call takes them. Response
schemas state what the server sends, no more: nullable fields say so, and
objects leave extra keys allowed, so a new field breaks no client. Request
schemas are as strict as the server's checks, no stricter.
"""

from __future__ import annotations

from typing import Any

from connector.api.errors import ERROR_CODES
from connector.automation.jsonschema import spec_schema
from connector.automation.loader import SECRET_OPTIONS
from connector.automation.registry import Registry
from connector.automation.specs import ActionSpec

__all__ = [
    "HEADERS",
    "RUN_STATUSES",
    "STEP_STATUSES",
    "TARGET_URL_PATTERN",
    "JsonObject",
    "call_options_schema",
    "hook_create_schema",
    "ref",
    "shared_schemas",
]

JsonObject = dict[str, Any]
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "replayed")
STEP_STATUSES = ("running", "succeeded", "failed", "skipped")


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


def ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str, *, paged: bool = False) -> JsonObject:
    found: JsonObject = {"items": {"type": "array", "items": ref(item)}}
    if paged:
        found["next_cursor"] = _nullable("string", description="`cursor` of the next page")
    return _object(found)


_TIME: JsonObject = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: JsonObject = _nullable("string", format="date-time")
_TEXT: JsonObject = {"type": "string"}
_COUNT: JsonObject = {"type": "integer", "minimum": 0}
_OBJECT: JsonObject = {"type": "object"}
_KEY: JsonObject = {"type": "string", "description": "The event's key"}


def shared_schemas() -> JsonObject:
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
        "steps": {"type": "array", "items": ref("Step")},
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
        "HealthOrError": {"anyOf": [ref("Health"), ref("Error")]},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
        "Action": _object(described, "An action that can be called"),
        "ActionList": _list("Action"),
        "ActionOptions": {**_OBJECT, "description": "Its options: see its call_<key> operation"},
        "Trigger": _object({**described, "subscribable": subscribable}, "A trigger"),
        "TriggerList": _list("Trigger"),
        "Step": _object(step, "One action step of a run"),
        "Run": _object(run, "One automation run for one event"),
        "RunResult": _object({"run": ref("Run")}),
        "RunsPage": _list("Run", paged=True),
        "Event": _object({"id": _KEY, **event, "received_at": _TIME}, "A recorded event"),
        "EventData": _object({"key": _TEXT, **event}, "An event as automations see it"),
        "EventsPage": _list("Event", paged=True),
        "Sample": _object({**sample, "data": ref("EventData")}, "An event as a hook sends it"),
        "SampleList": _list("Sample"),
        "Hook": _object(hook, "A REST hook and how its deliveries went"),
        "HookList": _list("Hook"),
        "HookCreated": {"allOf": [ref("Hook"), _object({"secret": secret})]},
    }


_FILTER_TEXT = "The trigger's options (its options_schema); null or {}: every event"


# An http(s) URL with a host and no user name or password, as the server checks it (a
# host without spaces or control characters; one with no IDNA form is refused too).
TARGET_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s\\x00-\\x1f\\x7f-\\x9f]+([/?#][\\s\\S]*)?$"


def hook_create_schema(registry: Registry) -> JsonObject:
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
HEADERS: JsonObject = {
    "Location": {"description": "The path of what was made", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": _REPLAY_TEXT, "schema": {"enum": ["true"]}},
}


def call_options_schema(spec: ActionSpec) -> JsonObject:
    """An action's options as a call takes them: its `spec_schema`, less what a call
    refuses (`connector.automation.calls`): secret options, and templates (no value is
    marked templatable, no example holds one)."""
    schema = _untemplated(spec_schema(spec))
    assert isinstance(schema, dict)
    properties = schema.get("properties", {})
    for name in SECRET_OPTIONS:
        properties.pop(name, None)
    if "required" in schema:
        schema["required"] = [n for n in schema["required"] if n not in SECRET_OPTIONS]
    examples = [
        {k: v for k, v in example.items() if k not in SECRET_OPTIONS}
        for example in schema.get("examples", [])
        if isinstance(example, dict) and not _has_template(example)
    ]
    if examples:
        schema["examples"] = examples
    else:
        schema.pop("examples", None)
    return schema


def _untemplated(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untemplated(v) for k, v in value.items() if k != "x-template"}
    if isinstance(value, list):
        return [_untemplated(item) for item in value]
    return value


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_has_template(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    return False
