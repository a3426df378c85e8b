"""What fuzzing the live API found (tests/api/test_api_schemathesis.py), one request each.

Each test is the smallest request that showed a defect, sent with plain aiohttp
to a started connector, and the answer the document promises for it.
"""

from __future__ import annotations

import re

import pytest
from ft_api_support import Started

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "target",
    [
        "https://\x80/in",  # no IDNA form: no HTTP client can even build the request
        "http://\u2028/in",
        "http://exa mple.com/in",  # a space in the host: no name can resolve
        "http://\x18example.com/in",  # a control character likewise
        "http:///in",
    ],
)
async def test_a_hook_target_no_request_can_reach_is_refused_when_subscribing(
    api: Started, target: str
) -> None:
    # It was subscribed (201), and every delivery then failed for good.
    answer = await api.client.post(
        "/api/v1/hooks", json={"trigger": "track_completed", "target_url": target}
    )
    error = answer.error(422, "validation_failed")
    assert error["details"] == [{"path": "target_url", "message": error["details"][0]["message"]}]
    assert "URL" in error["details"][0]["message"]
    listed = await api.client.get("/api/v1/hooks")
    assert listed.body["items"] == []
    assert not re.search(await _target_pattern(api), target)  # the document says so too


@pytest.mark.parametrize(
    "target",
    [
        "https://bücher.example/in",  # a name with an IDNA form is fine
        "http://127.0.0.1:8123/api/webhook/x?token=abc",
        "http://[::1]:9/in",
        "HTTP://Example.COM",
        "http://my_service:5678/webhook",  # a container's name may hold "_"
    ],
)
async def test_a_hook_target_a_request_can_reach_is_subscribed(api: Started, target: str) -> None:
    answer = await api.client.post(
        "/api/v1/hooks", json={"trigger": "track_completed", "target_url": target}
    )
    assert answer.status == 201, answer.text
    assert answer.body["target_url"] == target
    assert re.search(await _target_pattern(api), target)


async def _target_pattern(api: Started) -> str:
    """The pattern the served document gives createHook's `target_url`."""
    answer = await api.client.get("/api/v1/openapi.json", token=None)
    schema = answer.body["components"]["schemas"]["HookCreate"]["properties"]["target_url"]
    pattern: str = schema["pattern"]
    return pattern


async def test_a_folder_under_an_unknown_users_home_is_a_problem_not_a_crash(
    api: Started,
) -> None:
    # `~name` expands to that user's home; for a user this machine does not have,
    # pathlib raises RuntimeError, which was answered 503 (the journal looked broken).
    answer = await api.client.call("download_track", {"library": "~no-such-user-7f3a/music"})
    error = answer.error(422, "validation_failed")
    assert [problem["path"] for problem in error["details"]] == ["library"]
    assert "no-such-user-7f3a" in error["details"][0]["message"]


@pytest.mark.parametrize("tracks", [[{}], [None], [True], [["a", None]], [{"id": None}]])
async def test_track_ids_that_are_not_ids_are_refused(api: Started, tracks: list[object]) -> None:
    # The document says the ids are text; `[{}]` was started as a run for the id "{}",
    # `[None]` for the id "None".
    answer = await api.client.call(
        "move_tracks", {"tracks": tracks, "from": "Inbox", "to": "Focus Beats"}
    )
    error = answer.error(422, "validation_failed")
    assert [problem["path"] for problem in error["details"]] == ["tracks"]
