"""What a careless caller gets wrong, answered so they can fix it (found by using the API
as a new user would): misspelt query parameters, unknown event kinds, an n8n expression
sent as text, GET on a call, a trailing slash, trigger options beside `filter`, and the
daemon's log saying who was refused and why."""

from __future__ import annotations

import logging

import pytest
from ft_api_support import FULL, Started

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}


async def test_a_misspelt_query_parameter_is_400_and_calls_nothing(api: Started) -> None:
    answer = await api.client.post(
        "/api/v1/actions/generate", params={"wiat": "60"}, json={"tags": "lofi"}
    )
    message = answer.error(400, "invalid_request")["message"]
    assert "'wiat'" in message
    assert "did you mean 'wait'?" in message
    assert api.ours() == []  # no credit spent on a typo
    runs = await api.client.get("/api/v1/runs", params={"stauts": "failed"})
    assert "'stauts'" in runs.error(400, "invalid_request")["message"]
    health = await api.client.get("/api/v1/health", params={"x": "1"})
    assert "it takes none" in health.error(400, "invalid_request")["message"]


async def test_an_unknown_event_kind_is_400_with_the_kinds(api: Started) -> None:
    answer = await api.client.get("/api/v1/events", params={"kind": "track_complete"})
    message = answer.error(400, "invalid_request")["message"]
    assert "did you mean 'track_completed'?" in message
    assert "run_failed" in message
    assert "action_called" in message
    known = await api.client.get("/api/v1/events", params={"kind": "run_failed"})
    assert known.status == 200


async def test_samples_of_a_trigger_that_fires_on_its_own_are_only_its_own_events(
    api: Started,
) -> None:
    await api.client.call("generate", {"tags": "sampled lofi", "duration": 5, "wait": True})
    for key in ("schedule", "credits_low"):
        answer = await api.client.get(f"/api/v1/triggers/{key}/samples")
        assert answer.status == 200
        assert answer.body["items"] == []  # no schedule ran: nothing, not other events
    completed = await api.client.get("/api/v1/triggers/track_completed/samples")
    assert {item["kind"] for item in completed.body["items"]} == {"track_completed"}


async def test_an_unevaluated_expression_as_idempotency_key_is_refused(api: Started) -> None:
    answer = await api.client.post(
        "/api/v1/actions/generate",
        json={"tags": "lofi"},
        headers={"Idempotency-Key": "{{ $execution.id }}-{{ $itemIndex }}"},
    )
    assert "Expression" in answer.error(400, "invalid_request")["message"]
    assert api.ours() == []


async def test_wrong_method_and_trailing_slash_say_what_to_do(api: Started) -> None:
    get = await api.client.get("/api/v1/actions/generate")
    assert "use POST" in get.error(405, "method_not_allowed")["message"]
    slash = await api.client.get("/api/v1/runs/")
    assert "trailing slash" in slash.error(404, "not_found")["message"]


async def test_trigger_options_beside_filter_are_pointed_under_it(api: Started) -> None:
    answer = await api.client.post(
        "/api/v1/hooks",
        json={
            "trigger": "track_completed",
            "target_url": "http://127.0.0.1:9/in",
            "tags_contain": "lofi",
        },
    )
    details = answer.error(422, "validation_failed")["details"]
    assert {"path": "tags_contain", "message": details[0]["message"]} == details[0]
    assert "put it under 'filter'" in details[0]["message"]


async def test_each_refusal_is_logged_with_who_and_why_never_the_token(
    api: Started, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector.api")
    await api.client.call("generate", {"tags": "lofi", "durration": 30})
    await api.client.get("/api/v1/runs", headers={"Authorization": "Bearer not-a-token"})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("connector.api")]
    refused = [line for line in lines if " 422 validation_failed" in line]
    assert refused
    assert "POST /api/v1/actions/generate" in refused[0]
    assert "(full)" in refused[0]
    assert any(" 401 unauthorized" in line for line in lines)
    assert all(FULL not in line for line in lines)
