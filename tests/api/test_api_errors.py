"""Every error status of the HTTP API, end to end, each answered as
`{"error": {"code", "message", "details"}}` with a message that says what was wrong
and where (`Answer.error` checks the shape; `ApiClient` checks each answer against
the status list and schemas of the served OpenAPI document)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ft_api_support import ACTOR, FULL, READER, Started
from multidict import CIMultiDict

pytestmark = pytest.mark.e2e

BEARER = 'Bearer realm="ftconnect"'
JSON = {"Content-Type": "application/json"}


def _details(error: dict[str, Any]) -> dict[str, str]:
    """A 422's details as path -> message."""
    details = error["details"]
    assert isinstance(details, list)
    assert details
    found: dict[str, str] = {}
    for item in details:
        assert set(item) == {"path", "message"}, item
        found[item["path"]] = item["message"]
    return found


async def _nothing_ran(api: Started) -> None:
    """A refused request journals nothing: no run, no event beyond the seeded tracks."""
    runs = await api.client.get("/api/v1/runs")
    assert runs.body["items"] == []
    events = await api.client.get("/api/v1/events", params={"limit": "200"})
    assert {event["source"] for event in events.body["items"]} <= {"seed"}
    assert api.ours() == []


# -- 400 ----------------------------------------------------------------------------------


async def test_a_body_that_is_not_json_or_not_an_object_is_400(api: Started) -> None:
    client = api.client
    broken = await client.post("/api/v1/actions/generate", data=b'{"tags": ', headers=JSON)
    assert "JSON" in broken.error(400, "invalid_request")["message"]
    for body in ([1, 2], "lofi", 42, None):
        answer = await client.post(
            "/api/v1/actions/generate", data=json.dumps(body).encode(), headers=JSON
        )
        assert "JSON object" in answer.error(400, "invalid_request")["message"]
    hook = await client.post("/api/v1/hooks", data=b"[]", headers=JSON)
    assert "JSON object" in hook.error(400, "invalid_request")["message"]
    empty = await client.post("/api/v1/hooks", data=b"", headers=JSON)
    assert "empty" in empty.error(400, "invalid_request")["message"]
    nan = await client.post(
        "/api/v1/actions/generate", data=b'{"tags": "x", "duration": NaN}', headers=JSON
    )
    nan.error(400, "invalid_request")
    await _nothing_ran(api)


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("/api/v1/runs", {"limit": "0"}, ["limit", "1", "200"]),
        ("/api/v1/runs", {"limit": "201"}, ["limit", "1", "200"]),
        ("/api/v1/runs", {"limit": "ten"}, ["limit", "whole number"]),
        ("/api/v1/runs", {"limit": "2.5"}, ["limit", "whole number"]),
        ("/api/v1/runs", {"status": "done"}, ["status", "running", "succeeded", "failed"]),
        ("/api/v1/runs", {"cursor": "!!not-ours!!"}, ["cursor", "next_cursor"]),
        ("/api/v1/events", {"limit": "-1"}, ["limit", "1", "200"]),
        ("/api/v1/events", {"cursor": "bm9wZQ"}, ["cursor"]),  # base64 of "nope"
        (
            "/api/v1/events",
            {"cursor": base64.urlsafe_b64encode(b'{"at": 1}').decode()},
            ["cursor"],
        ),
        ("/api/v1/triggers/track_completed/samples", {"limit": "101"}, ["limit", "1", "100"]),
    ],
)
async def test_a_bad_query_parameter_is_400_naming_it_and_its_range(
    api: Started, path: str, params: dict[str, str], names: list[str]
) -> None:
    answer = await api.client.get(path, params=params)
    message = answer.error(400, "invalid_request")["message"]
    for name in names:
        assert name in message, message
    assert answer.body["error"]["details"] is None


async def test_a_repeated_query_parameter_is_400(api: Started) -> None:
    answer = await api.client.get("/api/v1/runs?limit=5&limit=6")
    assert "limit" in answer.error(400, "invalid_request")["message"]


@pytest.mark.parametrize("wait", ["301", "-1", "nan", "inf", "soon", ""])
async def test_a_bad_wait_is_400_and_nothing_runs(api: Started, wait: str) -> None:
    answer = await api.client.call("generate", {"tags": "x"}, params={"wait": wait})
    message = answer.error(400, "invalid_request")["message"]
    assert "wait" in message
    assert "0 to 300" in message
    await _nothing_ran(api)


@pytest.mark.parametrize(
    "headers",
    [
        {"Idempotency-Key": "k" * 256},
        {"Idempotency-Key": "ключ"},
        CIMultiDict([("Idempotency-Key", "one"), ("Idempotency-Key", "two")]),
    ],
    ids=["too-long", "not-ascii", "twice"],
)
async def test_a_bad_idempotency_key_is_400_and_nothing_runs(api: Started, headers: Any) -> None:
    answer = await api.client.call("generate", {"tags": "x"}, headers=headers)
    message = answer.error(400, "invalid_request")["message"]
    assert "Idempotency-Key" in message
    assert "255" in message
    await _nothing_ran(api)


# -- 401 and 403 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "missing Authorization"),
        (f"Bearer {FULL}x", "not one of api.tokens"),
        ("Bearer wrong-token-zzzzzzzzzzzzzzzzzzzzzzzz", "not one of api.tokens"),
        (f"Basic {base64.b64encode(f'full:{FULL}'.encode()).decode()}", "Bearer <token>"),
        (f"Token {FULL}", "Bearer <token>"),
        (FULL, "Bearer <token>"),
        ("Bearer ", "Bearer <token>"),
    ],
    ids=["missing", "longer", "wrong", "basic", "token-scheme", "bare", "empty"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/runs"), ("POST", "/api/v1/actions/generate"), ("GET", "/api/v1/hooks/x")],
)
async def test_no_or_a_wrong_token_is_401_with_a_bearer_challenge(
    api: Started, authorization: str | None, says: str, method: str, path: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = await api.client.request(method, path, token=None, headers=headers, json={"tags": "x"})
    assert says in answer.error(401, "unauthorized")["message"]
    assert answer.headers["WWW-Authenticate"] == BEARER
    await _nothing_ran(api)


async def test_a_read_token_cannot_act_and_an_act_token_cannot_read(api: Started) -> None:
    made = await api.client.call("bulk_delete", {"tracks": ["x"], "confirm": True, "dry_run": True})
    assert made.status == 202
    run_id = made.body["run"]["id"]
    await api.client.finished(run_id)
    hook = await api.client.post(
        "/api/v1/hooks", json={"trigger": "run_failed", "target_url": "http://127.0.0.1:9/"}
    )
    hook_id = hook.body["id"]
    acts = [
        ("POST", "/api/v1/actions/generate", {"tags": "x"}),
        ("POST", f"/api/v1/runs/{run_id}/replay", None),
        ("POST", "/api/v1/hooks", {"trigger": "run_failed", "target_url": "http://x/"}),
        ("DELETE", f"/api/v1/hooks/{hook_id}", None),
    ]
    for method, path, body in acts:
        answer = await api.client.request(method, path, token=READER, json=body)
        message = answer.error(403, "forbidden")["message"]
        assert "'reader'" in message
        assert "'act'" in message
        assert "WWW-Authenticate" not in answer.headers
    reads = [
        "/api/v1/actions",
        "/api/v1/runs",
        f"/api/v1/runs/{run_id}",
        "/api/v1/events",
        "/api/v1/triggers",
        "/api/v1/triggers/track_completed/samples",
        "/api/v1/hooks",
        f"/api/v1/hooks/{hook_id}",
    ]
    for path in reads:
        answer = await api.client.get(path, token=ACTOR)
        message = answer.error(403, "forbidden")["message"]
        assert "'actor'" in message
        assert "'read'" in message
    # Nothing was done by the refused requests: one run, the hook still there.
    runs = await api.client.get("/api/v1/runs")
    assert [run["id"] for run in runs.body["items"]] == [run_id]
    hooks = await api.client.get("/api/v1/hooks")
    assert [item["id"] for item in hooks.body["items"]] == [hook_id]
    # And each token does what its scope allows.
    read = await api.client.get(f"/api/v1/runs/{run_id}", token=READER)
    assert read.status == 200
    acted = await api.client.delete(f"/api/v1/hooks/{hook_id}", token=ACTOR)
    assert acted.status == 204


# -- 404 and 405 --------------------------------------------------------------------------


# Off /api/ the listener serves the web page (HTML, tests/web): `/` is its overview.
@pytest.mark.parametrize(
    "path", ["/api/v1/nothing", "/api/v2/runs", "/api/v3", "/api/v1/runs/a/b/c"]
)
async def test_an_unknown_path_is_404_pointing_at_the_document(api: Started, path: str) -> None:
    for token in (FULL, None):
        answer = await api.client.get(path, token=token)
        assert "/api/v1/openapi.json" in answer.error(404, "not_found")["message"]


async def test_an_unknown_action_is_404_with_a_did_you_mean(api: Started) -> None:
    answer = await api.client.call("generat", {"tags": "x"})
    message = answer.error(404, "not_found")["message"]
    assert "'generat'" in message
    assert "did you mean 'generate'?" in message
    assert "move_tracks" in message  # the known ones are listed
    await _nothing_ran(api)


async def test_an_unknown_run_hook_or_trigger_is_404(api: Started) -> None:
    client = api.client
    (await client.get("/api/v1/runs/0123456789abcdef")).error(404, "not_found")
    (await client.post("/api/v1/runs/0123456789abcdef/replay")).error(404, "not_found")
    (await client.get("/api/v1/hooks/hook_0123")).error(404, "not_found")
    (await client.delete("/api/v1/hooks/hook_0123")).error(404, "not_found")
    trigger = await client.get("/api/v1/triggers/track_complete/samples")
    message = trigger.error(404, "not_found")["message"]
    assert "did you mean 'track_completed'?" in message


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/runs", {"GET"}),
        ("PUT", "/api/v1/hooks/hook_1", {"GET", "DELETE"}),
        ("GET", "/api/v1/runs/abc/replay", {"POST"}),
        ("GET", "/api/v1/actions/generate", {"POST"}),
        ("POST", "/api/v1/events", {"GET"}),
    ],
)
async def test_a_wrong_method_is_405_with_allow(
    api: Started, method: str, path: str, allowed: set[str]
) -> None:
    answer = await api.client.request(method, path)
    assert method in answer.error(405, "method_not_allowed")["message"]
    assert set(answer.headers["Allow"].split(",")) - {"HEAD"} == allowed


# -- 413 and 415 --------------------------------------------------------------------------


async def test_a_body_over_64_kib_is_413(api: Started) -> None:
    big = json.dumps({"tags": "x", "body": "y" * (64 * 1024)}).encode()
    declared = await api.client.post("/api/v1/actions/notify_webhook", data=big, headers=JSON)
    assert "65536" in declared.error(413, "payload_too_large")["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"tags": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    streamed = await api.client.post("/api/v1/actions/generate", data=chunks(), headers=JSON)
    streamed.error(413, "payload_too_large")
    hook = await api.client.post("/api/v1/hooks", data=big, headers=JSON)
    hook.error(413, "payload_too_large")
    await _nothing_ran(api)


async def test_a_body_just_under_the_limit_is_read(api: Started) -> None:
    frame = len(json.dumps({"tags": "", "durration": ""}))
    body = json.dumps({"tags": "", "durration": "y" * (64 * 1024 - frame)}).encode()
    assert len(body) == 64 * 1024
    answer = await api.client.post("/api/v1/actions/generate", data=body, headers=JSON)
    assert "durration" in _details(answer.error(422, "validation_failed"))


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
async def test_a_body_that_is_not_json_typed_is_415(api: Started, content_type: str) -> None:
    answer = await api.client.post(
        "/api/v1/actions/generate",
        data=b'{"tags": "x"}',
        headers={"Content-Type": content_type},
    )
    assert "application/json" in answer.error(415, "unsupported_media_type")["message"]
    form = await api.client.post("/api/v1/hooks", data={"trigger": "run_failed"})
    form.error(415, "unsupported_media_type")
    await _nothing_ran(api)


# -- 422 ----------------------------------------------------------------------------------


async def test_options_are_checked_as_in_yaml_with_field_paths_and_did_you_mean(
    api: Started,
) -> None:
    answer = await api.client.call(
        "generate", {"tags": ["x"], "durration": 30, "bpm": "fast", "key": "H"}
    )
    error = answer.error(422, "validation_failed")
    found = _details(error)
    assert found["durration"] == "is not a valid option for 'generate' (did you mean 'duration'?)"
    assert found["tags"] == "expected text (got ['x'])"
    assert found["bpm"].startswith("must be a number from")
    assert "'fast'" in found["bpm"]
    assert found["key"].startswith("must be one of C, C#")
    assert "durration: is not a valid option" in error["message"]

    ranged = await api.client.call("generate", {"tags": "x", "duration": 9999})
    assert _details(ranged.error(422, "validation_failed")) == {
        "duration": "must be between 5 and 210 seconds (got 9999)"
    }
    missing = await api.client.call("generate", {})
    assert "tags" in _details(missing.error(422, "validation_failed"))
    entry = await api.client.call("generate", {"tags": "x", "action": "generate", "id": "a"})
    found = _details(entry.error(422, "validation_failed"))
    assert set(found) == {"action", "id"}
    assert "named in the URL" in found["action"]
    await _nothing_ran(api)


async def test_bulk_delete_without_confirm_true_is_422(api: Started) -> None:
    for options in ({"tracks": ["x"]}, {"tracks": ["x"], "confirm": False, "dry_run": True}):
        answer = await api.client.call("bulk_delete", options)
        (message,) = _details(answer.error(422, "validation_failed")).values()
        assert "confirm: true" in message
    await _nothing_ran(api)


async def test_a_secret_or_a_template_in_a_call_is_422(api: Started) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signed = await api.client.call(
        "notify_webhook", {"url": "http://127.0.0.1:9/x", "secret": secret}
    )
    error = signed.error(422, "validation_failed")
    assert "journal" in _details(error)["secret"]
    assert secret not in signed.text
    templated = await api.client.call("generate", {"tags": "{{ trigger.generation.title }}"})
    assert _details(templated.error(422, "validation_failed")) == {
        "tags": "cannot be a template in an API call: send the value itself"
    }
    nested = await api.client.call(
        "notify_webhook", {"url": "http://127.0.0.1:9/x", "body": {"a": ["{{ trigger.key }}"]}}
    )
    assert set(_details(nested.error(422, "validation_failed"))) == {"body.a[0]"}
    await _nothing_ran(api)


async def test_a_bad_hook_is_422_with_each_problem_at_its_path(api: Started) -> None:
    answer = await api.client.post(
        "/api/v1/hooks",
        json={
            "trigger": "track_completed",
            "targt_url": "http://x/",
            "filter": {"tags_contan": "x", "min_duration": "long"},
        },
    )
    found = _details(answer.error(422, "validation_failed"))
    assert found["targt_url"] == "is not a field of a hook (did you mean 'target_url'?)"
    assert found["target_url"].startswith("is required")
    assert found["filter.min_duration"] == "must be a number from 0 to 3600 seconds (got 'long')"
    # The filter is a trigger's options: refused in the words a YAML user reads.
    assert found["filter.tags_contan"] == (
        "is not a valid option for 'track_completed' (did you mean 'tags_contain'?)"
    )

    typo = await api.client.post(
        "/api/v1/hooks", json={"trigger": "track_complete", "target_url": "ftp://x/"}
    )
    found = _details(typo.error(422, "validation_failed"))
    assert "did you mean 'track_completed'?" in found["trigger"]
    assert found["target_url"] == "must be an http(s) URL"

    source = await api.client.post(
        "/api/v1/hooks", json={"trigger": "schedule", "target_url": "http://u:p@x/"}
    )
    found = _details(source.error(422, "validation_failed"))
    assert "own schedule" in found["trigger"]
    assert "user name or password" in found["target_url"]
    not_a_filter = await api.client.post(
        "/api/v1/hooks", json={"trigger": "run_failed", "target_url": "http://x/", "filter": [1]}
    )
    assert "filter" in _details(not_a_filter.error(422, "validation_failed"))
    hooks = await api.client.get("/api/v1/hooks")
    assert hooks.body["items"] == []
