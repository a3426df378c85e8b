"""The API's one declaration: the OpenAPI 3.1 document is valid, has a typed call per
installed action, agrees with `OPERATIONS` both ways, puts the bearer scheme where it
belongs, and its response schemas take the JSON shapes the server answers (nulls
included) while refusing broken ones."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
import schemathesis
import voluptuous as vol
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from referencing import Registry as RefRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.core.result import Ok

from connector.api.errors import ERROR_CODES
from connector.api.openapi import (
    IDEMPOTENCY_KEY_PATTERN,
    OPERATIONS,
    action_operations,
    openapi_document,
    operations,
    options_schema_name,
)
from connector.api.schemas import call_options_schema
from connector.automation.jsonschema import spec_schema
from connector.automation.registry import Registry
from connector.automation.specs import ActionSpec
from connector.version import __version__

METHODS = {"get", "post", "delete", "put", "patch"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover()


@pytest.fixture(scope="module")
def document(registry: Registry) -> dict[str, Any]:
    return openapi_document(registry)


def _operations(document: Mapping[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (METHOD, path, operation object)."""
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert method in METHODS, f"{path}: {method} is not a method"
            assert operation["operationId"] not in found, operation["operationId"]
            found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def _validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for one components/schemas entry, its $refs resolved in the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    refs = RefRegistry().with_resource("urn:api", resource)
    schema = {"$ref": f"urn:api#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=refs, format_checker=FormatChecker())


def _errors(document: dict[str, Any], name: str, value: Any) -> list[str]:
    return [error.message for error in _validator(document, name).iter_errors(value)]


# -- the document as a whole -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == __version__


def test_an_empty_registry_and_odd_action_keys_still_make_a_valid_document() -> None:
    validate(openapi_document(Registry()))
    odd = ActionSpec(
        key="my plugin/send{x}",
        title="Odd",
        description="A plugin's action with a key no URL or name takes as it is.",
        schema=vol.Schema({vol.Required("to"): str}),
        example={"to": "x"},
        run=_never,
    )
    registry = Registry()
    registry.add_action(odd, "test")
    document = openapi_document(registry)
    validate(document)
    method, path, operation = _operations(document)["call_my_plugin_send_x_"]
    assert (method, path) == ("POST", "/api/v1/actions/my%20plugin%2Fsend%7Bx%7D")
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/options.my_plugin_send_x_"}
    assert document["components"]["schemas"]["options.my_plugin_send_x_"] == spec_schema(odd)


async def _never(context: Any, options: Mapping[str, Any]) -> Mapping[str, Any]:
    raise AssertionError("never run")


def test_the_document_is_json_and_the_same_every_time(registry: Registry) -> None:
    first = openapi_document(registry)
    text = json.dumps(first, allow_nan=False)
    assert json.loads(text) == first
    first["components"]["schemas"]["Run"]["properties"].clear()  # a caller's change...
    first["paths"]["/api/v1/runs"]["get"]["parameters"][0]["schema"]["enum"].clear()
    second = openapi_document(registry)
    assert json.dumps(second, allow_nan=False) == text  # ...reaches no later document


def test_schemathesis_reads_every_operation(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    labels = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an Err is an operation it could not read
        labels.add(result.ok().label)
    expected = {f"{method} {path}" for method, path, _ in _operations(document).values()}
    assert labels == expected


# -- the operations --------------------------------------------------------------------------


def test_operations_and_the_document_agree_both_ways(
    registry: Registry, document: dict[str, Any]
) -> None:
    declared = {(op.operation_id, op.method, op.path) for op in operations(registry)}
    found = {(op_id, method, path) for op_id, (method, path, _) in _operations(document).items()}
    assert declared == found
    assert len(declared) == len(operations(registry))  # no id declared twice
    for operation in operations(registry):
        answered = _operations(document)[operation.operation_id][2]["responses"]
        assert sorted(int(status) for status in answered) == sorted(operation.statuses)


def test_the_fixed_operations_are_the_ones_the_server_routes() -> None:
    assert [(op.operation_id, op.method, op.path, op.scope) for op in OPERATIONS] == [
        ("getOpenApi", "GET", "/api/v1/openapi.json", None),
        ("getHealth", "GET", "/api/v1/health", None),
        ("listActions", "GET", "/api/v1/actions", "read"),
        ("callAction", "POST", "/api/v1/actions/{key}", "act"),
        ("listRuns", "GET", "/api/v1/runs", "read"),
        ("getRun", "GET", "/api/v1/runs/{run_id}", "read"),
        ("replayRun", "POST", "/api/v1/runs/{run_id}/replay", "act"),
        ("listEvents", "GET", "/api/v1/events", "read"),
        ("listTriggers", "GET", "/api/v1/triggers", "read"),
        ("listTriggerSamples", "GET", "/api/v1/triggers/{key}/samples", "read"),
        ("listHooks", "GET", "/api/v1/hooks", "read"),
        ("createHook", "POST", "/api/v1/hooks", "act"),
        ("getHook", "GET", "/api/v1/hooks/{hook_id}", "read"),
        ("deleteHook", "DELETE", "/api/v1/hooks/{hook_id}", "act"),
    ]


def test_every_action_has_a_typed_call_whose_body_is_its_option_schema(
    registry: Registry, document: dict[str, Any]
) -> None:
    assert registry.actions, "the built-in actions are installed"
    by_id = _operations(document)
    assert {op.operation_id for op in action_operations(registry)} == {
        f"call_{key}" for key in registry.actions
    }
    for key, spec in registry.actions.items():
        method, path, operation = by_id[f"call_{key}"]
        assert (method, path) == ("POST", f"/api/v1/actions/{key}")
        body = operation["requestBody"]
        # An empty body is {}: refused (so required) only when an option is.
        assert body["required"] is bool(call_options_schema(spec).get("required"))
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{options_schema_name(key)}"
        options = document["components"]["schemas"][options_schema_name(key)]
        assert options == call_options_schema(spec)
        assert set(options["properties"]) == set(spec_schema(spec)["properties"]) - {"secret"}
        assert "x-template" not in json.dumps(options)
        assert "{{" not in json.dumps(options.get("examples", []))
        statuses = {"200", "202", "400", "401", "403", "408", "413", "415", "422", "503"}
        assert set(operation["responses"]) == statuses
        assert [p["name"] for p in operation["parameters"]] == ["wait", "Idempotency-Key"]


def test_the_generic_call_takes_any_key_and_answers_404_for_an_unknown_one(
    document: dict[str, Any],
) -> None:
    _, _, operation = _operations(document)["callAction"]
    key = operation["parameters"][0]
    assert key == {
        "name": "key",
        "in": "path",
        "required": True,
        "description": key["description"],
        "schema": {"type": "string"},
    }
    assert "404" in operation["responses"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["type"] == "object"


def test_statuses_follow_what_each_operation_takes(document: dict[str, Any]) -> None:
    by_id = _operations(document)
    statuses = {op_id: set(op["responses"]) for op_id, (_, _, op) in by_id.items()}
    # 400 everywhere: a query parameter an operation does not take is refused.
    assert statuses["getOpenApi"] == {"200", "400", "503"}
    assert statuses["getHealth"] == {"200", "400", "503"}
    assert statuses["listHooks"] == {"200", "400", "401", "403", "503"}
    assert statuses["getRun"] == {"200", "400", "401", "403", "404", "503"}
    assert statuses["replayRun"] == {"200", "202", "400", "401", "403", "404", "409", "503"}
    body = {"400", "401", "403", "408", "413", "415", "422", "503"}
    assert statuses["createHook"] == {"201", *body}
    assert statuses["callAction"] == {"200", "202", "404", *body}
    assert statuses["deleteHook"] == {"204", "400", "401", "403", "404", "503"}
    assert statuses["listTriggerSamples"] == {"200", "400", "401", "403", "404", "503"}
    assert "content" not in by_id["deleteHook"][2]["responses"]["204"]
    for op_id, (_, path, operation) in by_id.items():
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if int(status) >= 400 and (op_id, status) != ("getHealth", "503"):
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{path} {status}"


def test_calls_answer_location_and_idempotent_replayed_headers(document: dict[str, Any]) -> None:
    headers = document["components"]["headers"]
    assert headers["Idempotent-Replayed"]["schema"] == {"enum": ["true"]}
    assert headers["Location"]["schema"] == {"type": "string"}
    by_id = _operations(document)
    for op_id in ["callAction", "call_generate"]:
        for status in ["200", "202"]:
            answered = by_id[op_id][2]["responses"][status]["headers"]
            assert answered == {
                "Location": {"$ref": "#/components/headers/Location"},
                "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"},
            }
    assert set(by_id["createHook"][2]["responses"]["201"]["headers"]) == {"Location"}


# -- security --------------------------------------------------------------------------------


def test_a_bearer_token_is_needed_everywhere_but_the_document_and_health(
    document: dict[str, Any],
) -> None:
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    assert document["security"] == [{"bearer": []}]
    for op_id, (method, path, operation) in _operations(document).items():
        if op_id in {"getOpenApi", "getHealth"}:
            assert operation["security"] == []
            assert operation["x-scopes"] == []
            assert "401" not in operation["responses"]
            continue
        assert "security" not in operation, f"{path} overrides the global security"
        scope = "read" if method == "GET" else "act"  # act does not imply read
        assert operation["x-scopes"] == [scope], path
        assert f"`{scope}` scope" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])


# -- parameters ------------------------------------------------------------------------------


def _parameter(document: dict[str, Any], op_id: str, name: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = _operations(document)[op_id][2]["parameters"]
    (found,) = [p for p in parameters if p["name"] == name]
    return found


def test_query_parameters_carry_their_ranges_and_defaults(document: dict[str, Any]) -> None:
    for op_id in ["listRuns", "listEvents"]:
        limit = _parameter(document, op_id, "limit")
        assert limit["in"] == "query"
        assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
        assert _parameter(document, op_id, "cursor")["schema"] == {"type": "string"}
    samples = _parameter(document, "listTriggerSamples", "limit")["schema"]
    assert samples == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    wait = _parameter(document, "callAction", "wait")["schema"]
    assert wait == {"type": "number", "minimum": 0, "maximum": 300, "default": 0}
    status = _parameter(document, "listRuns", "status")["schema"]
    assert status["enum"] == ["running", "succeeded", "failed", "skipped", "replayed"]
    assert _parameter(document, "listRuns", "automation")["schema"] == {"type": "string"}
    assert _parameter(document, "listEvents", "kind")["schema"] == {"type": "string"}
    for op_id, name in [("getRun", "run_id"), ("replayRun", "run_id"), ("getHook", "hook_id")]:
        path = _parameter(document, op_id, name)
        assert path["required"] is True
        assert path["schema"] == {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}


def test_the_idempotency_key_is_printable_ascii_of_1_to_255(document: dict[str, Any]) -> None:
    header = _parameter(document, "call_generate", "Idempotency-Key")
    assert header["in"] == "header"
    assert "required" not in header
    schema = header["schema"]
    assert (schema["type"], schema["minLength"], schema["maxLength"]) == ("string", 1, 255)
    validator = Draft202012Validator(schema)
    for good in ["a", "order-42", "two words", "~!{}", "x" * 255]:
        assert validator.is_valid(good), good
    for bad in ["", " a", "a ", "é", "a\tb", "x" * 256]:
        assert not validator.is_valid(bad), repr(bad)
    assert schema["pattern"] == IDEMPOTENCY_KEY_PATTERN
    assert re.fullmatch(IDEMPOTENCY_KEY_PATTERN, "a b")


def test_a_hook_names_a_subscribable_trigger_and_an_http_url(
    registry: Registry, document: dict[str, Any]
) -> None:
    body = document["components"]["schemas"]["HookCreate"]
    assert body["required"] == ["trigger", "target_url"]
    subscribable = sorted(k for k, spec in registry.triggers.items() if spec.matches is not None)
    assert "track_completed" in subscribable
    assert "schedule" not in subscribable  # it fires for its own automation: no events
    assert body["properties"]["trigger"]["enum"] == subscribable
    ok = {"trigger": "track_completed", "target_url": "https://hooks.example/x", "filter": {}}
    for fine in [ok, {**ok, "filter": None}, {**ok, "target_url": "HTTP://10.0.0.2:81/a@b?c"}]:
        assert _errors(document, "HookCreate", fine) == [], fine
    for wrong in [
        {**ok, "trigger": "nope"},
        {**ok, "trigger": "schedule"},
        {**ok, "target_url": "ftp://hooks.example/x"},
        {**ok, "target_url": "https://user:pass@hooks.example/x"},
        {**ok, "target_url": "https:///x"},
        {**ok, "target_url": "https://h/" + "x" * 2048},
        {**ok, "filter": []},
        {**ok, "extra": 1},
        {"target_url": ok["target_url"]},
    ]:
        assert _errors(document, "HookCreate", wrong), wrong
    assert (
        "enum"
        not in openapi_document(Registry())["components"]["schemas"]["HookCreate"]["properties"][
            "trigger"
        ]
    )


# -- response shapes -------------------------------------------------------------------------

T0 = "2026-12-02T04:34:46.000Z"
STEP = {
    "index": 0,
    "id": "generate",
    "action": "generate",
    "status": "running",
    "attempt": 1,
    "options": None,
    "output": None,
    "error": None,
    "started_at": T0,
    "finished_at": None,
}
RUN = {
    "id": "r_1",
    "automation": "api.generate",
    "status": "running",
    "error": None,
    "event_key": "api:1",
    "replay_of": None,
    "started_at": T0,
    "finished_at": None,
    "steps": [STEP, {**STEP, "status": "succeeded", "options": {"a": 1}, "output": {"b": 2}}],
}
EVENT_DATA = {
    "key": "finetuning:g1:completed",
    "kind": "track_completed",
    "provider": "finetuning",
    "source": "webhook",
    "generation": {"id": "g1", "provider": "finetuning"},
    "data": {},
    "submitted_by_connector": False,
    "occurred_at": T0,
}
EVENT = {**{k: v for k, v in EVENT_DATA.items() if k != "key"}, "id": "k", "received_at": T0}
HOOK = {
    "id": "h_1",
    "trigger": "track_completed",
    "target_url": "https://hooks.example/x",
    "filter": {},
    "created_at": T0,
    "pending": 0,
    "delivered": 3,
    "failed": 0,
    "last_error": None,
    "last_status": None,
    "last_attempt_at": None,
}
SAMPLE = {"id": "k", "trigger": "t", "kind": "k", "occurred_at": T0, "data": EVENT_DATA}
DESCRIBED = {"key": "k", "title": "t", "description": "d", "options_schema": {"type": "object"}}
GOOD: list[tuple[str, Any]] = [
    ("RunResult", {"run": RUN}),
    ("RunResult", {"run": {**RUN, "status": "failed", "error": "boom", "finished_at": T0}}),
    ("RunsPage", {"items": [RUN], "next_cursor": None}),
    ("RunsPage", {"items": [], "next_cursor": "b2xk"}),
    ("EventsPage", {"items": [EVENT, {**EVENT, "generation": None}], "next_cursor": None}),
    ("SampleList", {"items": [SAMPLE]}),
    ("Hook", HOOK),
    ("Hook", {**HOOK, "last_error": "HTTP 500", "last_status": 500, "last_attempt_at": T0}),
    ("HookList", {"items": [HOOK]}),
    ("HookCreated", {**HOOK, "secret": "whsec_abc"}),
    ("Error", {"error": {"code": "not_found", "message": "no run r_2", "details": None}}),
    ("Error", {"error": {"code": "validation_failed", "message": "bad", "details": [{}]}}),
    ("Health", {"status": "degraded"}),
    ("HealthOrError", {"error": {"code": "unavailable", "message": "m", "details": None}}),
    ("ActionList", {"items": [DESCRIBED]}),
    ("TriggerList", {"items": [{**DESCRIBED, "subscribable": False}]}),
    ("RunResult", {"run": RUN, "later": "an added key breaks no client"}),
]
BAD: list[tuple[str, Any]] = [
    ("RunResult", {"run": {k: v for k, v in RUN.items() if k != "finished_at"}}),
    ("RunResult", {"run": {**RUN, "finished_at": 12}}),
    ("RunResult", {"run": {**RUN, "status": "lost"}}),
    ("RunResult", {"run": {**RUN, "started_at": "yesterday"}}),
    ("RunResult", {"run": {**RUN, "steps": [{**STEP, "options": []}]}}),
    ("RunsPage", {"items": [RUN]}),
    ("EventsPage", {"items": [EVENT_DATA], "next_cursor": None}),
    ("HookCreated", HOOK),
    ("Hook", {**HOOK, "pending": -1}),
    ("Error", {"error": {"code": "teapot", "message": "m", "details": None}}),
    ("Error", {"message": "m"}),
    ("Health", {"status": "fine"}),
    ("TriggerList", {"items": [DESCRIBED]}),
]


@pytest.mark.parametrize(("name", "value"), GOOD)
def test_response_schemas_take_what_the_server_answers(
    document: dict[str, Any], name: str, value: Any
) -> None:
    assert _errors(document, name, value) == []


@pytest.mark.parametrize(("name", "value"), BAD)
def test_response_schemas_refuse_broken_answers(
    document: dict[str, Any], name: str, value: Any
) -> None:
    assert _errors(document, name, value) != []


def test_the_error_codes_are_the_designed_ones(document: dict[str, Any]) -> None:
    code = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
    assert code["enum"] == list(ERROR_CODES)
    assert ERROR_CODES["validation_failed"] == ERROR_CODES["idempotency_key_reused"] == 422
    assert ERROR_CODES["conflict"] == 409
    # A call repeated while the first is in flight joins its run: no code says "wait".
    assert "idempotency_conflict" not in ERROR_CODES
