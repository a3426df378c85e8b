"""The Finetuning.ai sandbox: health, /v1/me, auth, plans, routing, headers, audio, control."""

from __future__ import annotations

import io
import re
from typing import Any

import aiohttp
import pytest
from ft_sandbox_support import Api
from mutagen.mp3 import MP3

from connector.sandbox import (
    AccountConfig,
    ManualClock,
    Sandbox,
    SandboxConfig,
    SandboxHandle,
    run_sandbox,
)

KEY_RE = re.compile(r"ft_live_[0-9a-f]{32}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


async def test_handle_exposes_urls_and_credentials(sb: SandboxHandle) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sb.url)
    assert sb.tempolor_url == sb.url + "/v1/tempolor"
    assert KEY_RE.fullmatch(sb.api_key)
    assert sb.api_key == sb.api_keys["Demo User"]
    assert set(sb.api_keys) == {"Demo User", "Second User", "Free User"}
    assert sb.tempolor_token == sb.tempolor_tokens["Demo User"]
    assert sb.tempolor_token.startswith("user:")
    assert isinstance(sb.sandbox, Sandbox)
    assert sb.config is sb.sandbox.config


async def test_health_needs_no_key(api: Api) -> None:
    reply = await api.get("/health", key=None)
    assert reply.status == 200
    assert reply.body == {"status": "ok"}


async def test_me_reports_the_account_and_consistent_limits(api: Api, sb: SandboxHandle) -> None:
    sb.sandbox.set_credits("Demo User", generations_used=47, pack_credits=5)
    created = await api.create()
    assert created.status == 202
    reply = await api.get("/v1/me")
    assert reply.status == 200
    me = reply.data
    assert set(me) == {"id", "email", "name", "tier", "limits"}
    assert UUID_RE.fullmatch(me["id"])
    assert (me["email"], me["name"], me["tier"]) == ("demo@sandbox.local", "Demo User", "pro")
    assert me["limits"] == {
        "monthlyGenerations": 2000,
        "generationsUsed": 48,
        "monthlyRemaining": 1952,
        "packCredits": 5,
        "totalRemaining": 1957,
        "queueDepth": 1,
    }


async def test_lifetime_tier_has_api_access() -> None:
    config = SandboxConfig(
        accounts=[AccountConfig(name="Life", email="l@x", tier="lifetime", seed_tracks=0)]
    )
    async with run_sandbox(config) as sb, aiohttp.ClientSession() as session:
        reply = await Api(session, sb.url, sb.api_key).get("/v1/me")
        assert reply.status == 200
        assert reply.data["tier"] == "lifetime"


async def test_a_missing_key_is_missing_api_key(api: Api) -> None:
    for reply in (await api.get("/v1/me", key=None), await api.get("/v1/me", key="")):
        assert reply.status == 401
        assert reply.error["code"] == "MISSING_API_KEY"


@pytest.mark.parametrize(
    "key",
    [
        "ft_live_" + "0" * 32,  # well-formed, unknown
        "ft_live_" + "A" * 32,  # upper-case hex
        "ft_live_" + "0" * 31,  # too short
        "ft_test_" + "0" * 32,  # wrong prefix
        "Bearer ft_live_" + "0" * 32,
    ],
)
async def test_a_malformed_or_unknown_key_is_invalid_api_key(api: Api, key: str) -> None:
    reply = await api.get("/v1/me", key=key)
    assert reply.status == 401
    assert reply.error == {
        "code": "INVALID_API_KEY",
        "message": "API key is malformed, revoked, or does not exist",
    }


async def test_a_bearer_header_is_not_a_key(api: Api) -> None:
    reply = await api.get("/v1/me", key=None, headers={"Authorization": f"Bearer {api.api_key}"})
    assert reply.error["code"] == "MISSING_API_KEY"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me"),
        ("GET", "/v1/generations"),
        ("POST", "/v1/generations"),
        ("GET", "/v1/generations/x"),
        ("POST", "/v1/generations/bulk-delete"),
        ("GET", "/v1/playlists"),
        ("GET", "/v1/playlists/x"),
        ("POST", "/v1/playlists/x/tracks"),
        ("POST", "/v1/playlists/x/tracks/bulk-remove"),
        ("POST", "/v1/playlists/x/tracks/move"),
    ],
)
async def test_every_endpoint_needs_a_key_and_a_pro_plan(
    api: Api, sb: SandboxHandle, method: str, path: str
) -> None:
    missing = await api.request(method, path, key=None, json_body={"tags": "x"})
    assert (missing.status, missing.error["code"]) == (401, "MISSING_API_KEY")
    free = await api.request(method, path, key=sb.api_keys["Free User"], json_body={"tags": "x"})
    assert free.status == 403
    assert free.error == {
        "code": "PRO_PLAN_REQUIRED",
        "message": "Your subscription does not include API access",
    }


async def test_a_plan_change_takes_effect_at_once(api: Api, sb: SandboxHandle) -> None:
    sb.sandbox.set_tier("Demo User", "free")
    assert (await api.get("/v1/me")).status == 403
    sb.sandbox.set_tier("Demo User", "pro")
    assert (await api.get("/v1/me")).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/v1/nope"),
        ("GET", "/v1"),
        ("DELETE", "/v1/generations"),
        ("PUT", "/v1/playlists/x"),
        ("GET", "/v1/generations/x/y"),
    ],
)
async def test_unknown_routes_are_not_found_in_the_envelope(
    api: Api, method: str, path: str
) -> None:
    for key in (None, api.api_key):
        reply = await api.request(method, path, key=key)
        assert reply.status == 404
        assert reply.error["code"] == "NOT_FOUND"
        assert reply.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path", "key", "body"),
    [
        ("GET", "/health", None, None),
        ("GET", "/nope", None, None),
        ("GET", "/v1/me", None, None),
        ("GET", "/v1/me", "ft_live_" + "0" * 32, None),
        ("GET", "/v1/me", "free", None),
        ("GET", "/v1/me", "demo", None),
        ("GET", "/v1/generations?limit=0", "demo", None),
        ("GET", "/v1/generations/unknown", "demo", None),
        ("POST", "/v1/generations", "demo", {"tags": ""}),
        ("POST", "/v1/generations/bulk-delete", "demo", {"ids": ["x"]}),
        ("GET", "/v1/playlists", "demo", None),
        ("POST", "/v1/playlists/x/tracks", "demo", {"trackIds": ["y"]}),
        ("GET", "/audio/unknown.mp3", None, None),
        ("GET", "/_sandbox/state", None, None),
    ],
)
async def test_every_response_carries_rate_limit_headers(
    api: Api, sb: SandboxHandle, method: str, path: str, key: str | None, body: Any
) -> None:
    keys = {"demo": sb.api_key, "free": sb.api_keys["Free User"]}
    kwargs: dict[str, Any] = {"key": keys.get(key or "", key)}
    if body is not None:
        kwargs["json_body"] = body
    reply = await api.request(method, path, **kwargs)
    limit = int(reply.headers["X-RateLimit-Limit"])
    remaining = int(reply.headers["X-RateLimit-Remaining"])
    expected_limit = 10 if (method, path) == ("POST", "/v1/generations") else 60
    assert limit == expected_limit
    assert 0 <= remaining <= limit
    if key in (None, "free") or key.startswith("ft_live_"):
        assert remaining == limit  # not counted
    else:
        assert remaining == limit - 1


async def test_a_body_that_is_not_a_json_object_is_a_validation_error(api: Api) -> None:
    for raw in ("", "not json", "[1, 2]", '"tags"', "NaN", '{"tags": NaN}'):
        reply = await api.request(
            "POST",
            "/v1/generations",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 400, raw
        assert reply.error["code"] == "VALIDATION_ERROR", raw
    for path in ("/v1/generations/bulk-delete", "/v1/playlists/x/tracks"):
        reply = await api.request("POST", path, data="{")
        assert reply.error["code"] == "VALIDATION_ERROR"


async def test_audio_is_served_on_both_url_forms_without_a_key(
    api: Api, sb: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    track = sb.sandbox.add_track("Demo User", prompt="warm rhodes, slow", duration=42.0)
    detail = (await api.get(f"/v1/generations/{track.id}")).data
    assert detail["audioUrl"] == f"{sb.url}/audio/{track.id}.mp3"
    for url in (detail["audioUrl"], f"{sb.url}/{track.id}.mp3"):
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "audio/mpeg"
            data = await response.read()
        assert len(data) == detail["fileSize"]
        length = MP3(io.BytesIO(data)).info.length
        assert length == pytest.approx(detail["duration"], abs=1e-3)
        assert detail["duration"] == pytest.approx(42.0, abs=0.02)
    assert sb.sandbox.generation(track.id).download_count == 2  # type: ignore[union-attr]


async def test_audio_of_unknown_unfinished_or_deleted_tracks_is_not_found(
    api: Api, sb: SandboxHandle
) -> None:
    pending = (await api.create()).data["id"]
    done = sb.sandbox.add_track("Demo User")
    await api.post("/v1/generations/bulk-delete", {"ids": [done.id]})
    for path in ("/audio/nope.mp3", f"/audio/{pending}.mp3", f"/{pending}.mp3", f"/{done.id}.mp3"):
        reply = await api.get(path, key=None)
        assert reply.status == 404
        assert reply.error["code"] == "NOT_FOUND"


async def test_seeded_accounts_have_tracks_and_three_playlists(api: Api, sb: SandboxHandle) -> None:
    listing = (await api.get("/v1/generations")).data["generations"]
    assert len(listing) == 6
    assert all(g["status"] == "completed" for g in listing)
    assert {g["isPublic"] for g in listing} == {True, False}
    playlists = (await api.get("/v1/playlists")).data["playlists"]
    assert [(p["name"], p["isPublic"]) for p in playlists] == [
        ("Focus Beats", False),
        ("Public Picks", True),
        ("Inbox", False),  # empty: where the README files new tracks before moving them
    ]
    free = sb.sandbox.generations("Free User")
    assert len(free) == 1


async def test_control_surface_needs_no_key_and_reports_everything(
    api: Api, sb: SandboxHandle
) -> None:
    created = (await api.create(tags="state check")).data
    state = (await api.get("/_sandbox/state", key=None)).body
    assert state["base_url"] == sb.url
    assert {a["name"] for a in state["accounts"]} == set(sb.api_keys)
    demo = next(a for a in state["accounts"] if a["name"] == "Demo User")
    assert demo["credits_spent"] == 1
    assert demo["api_key"] == sb.api_key
    mine = next(g for g in state["generations"] if g["id"] == created["id"])
    assert (mine["account"], mine["status"], mine["deleted"]) == ("Demo User", "pending", False)
    assert any(r["path"] == "/v1/generations" and r["status"] == 202 for r in state["requests"])
    assert len(state["playlists"]) == 9  # three per seeded account

    one = (await api.get(f"/_sandbox/generations/{created['id']}", key=None)).body
    assert one["prompt"] == "state check"
    assert one["webhook_attempts"] == []
    assert (await api.get("/_sandbox/generations/nope", key=None)).status == 404


async def test_control_routes_complete_and_fail_generations(api: Api, sb: SandboxHandle) -> None:
    first = (await api.create()).data["id"]
    second = (await api.create()).data["id"]
    done = await api.post(f"/_sandbox/generations/{first}/complete", {"duration": 33.3}, key=None)
    assert done.status == 200
    assert done.body["status"] == "completed"
    assert done.body["duration"] == pytest.approx(33.3, abs=0.02)
    failed = await api.post(
        f"/_sandbox/generations/{second}/fail", {"errorMessage": "boom"}, key=None
    )
    assert (failed.body["status"], failed.body["error_message"]) == ("failed", "boom")
    bad = await api.post(f"/_sandbox/generations/{second}/complete", {"duration": -1}, key=None)
    assert bad.status == 400
    again = await api.post(f"/_sandbox/generations/{first}/fail", key=None)
    assert again.status == 409
    unknown = await api.post("/_sandbox/generations/nope/complete", key=None)
    assert unknown.status == 404
    detail = (await api.get(f"/v1/generations/{second}")).data
    assert (detail["status"], detail["errorMessage"]) == ("failed", "boom")


async def test_control_routes_seed_tracks_and_change_accounts(api: Api, sb: SandboxHandle) -> None:
    made = await api.post(
        "/_sandbox/tracks",
        {"account": "Demo User", "prompt": "dub techno", "duration": 20, "isPublic": True},
        key=None,
    )
    assert made.status == 201
    detail = (await api.get(f"/v1/generations/{made.body['id']}")).data
    assert (detail["title"], detail["isPublic"]) == ("Dub Techno", True)
    bad = await api.post("/_sandbox/tracks", {"account": "Nobody"}, key=None)
    assert bad.status == 400

    changed = await api.post(
        "/_sandbox/accounts/Demo User", {"generations_used": 2000, "pack_credits": 0}, key=None
    )
    assert changed.body["total_remaining"] == 0
    assert (await api.create()).error["code"] == "MONTHLY_LIMIT_REACHED"
    assert (await api.post("/_sandbox/accounts/Nobody", {}, key=None)).status == 404


async def test_start_up_is_deterministic_from_the_seed(clock: ManualClock) -> None:
    def world(sandbox: Sandbox) -> list[Any]:
        return [
            [(a.user_id, a.api_key) for a in sandbox.accounts],
            [(g.id, g.seed, g.keyscale, g.duration, g.is_public) for g in sandbox.generations()],
            [(p.id, p.name, p.track_ids) for p in sandbox.playlists()],
        ]

    first = Sandbox(SandboxConfig(seed=5), clock=clock)
    again = Sandbox(SandboxConfig(seed=5), clock=clock)
    other = Sandbox(SandboxConfig(seed=6), clock=clock)
    assert world(first) == world(again)
    assert world(first)[0] != world(other)[0]
    assert world(first)[1] != world(other)[1]
    for sandbox in (first, again, other):
        await sandbox.aclose()


async def test_tempolor_is_mounted_with_its_own_auth(
    sb: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {sb.tempolor_token}"}
    async with http.get(f"{sb.tempolor_url}/accounts", headers=headers) as response:
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers
    async with http.get(f"{sb.tempolor_url}/accounts") as response:
        assert response.status == 401
    assert [r.path for r in sb.sandbox.requests][-2:] == ["/v1/tempolor/accounts"] * 2


async def test_create_app_learns_its_address_from_the_first_request(clock: ManualClock) -> None:
    from aiohttp import web

    from connector.sandbox import create_app

    sandbox = Sandbox(SandboxConfig(), clock=clock)
    runner = web.AppRunner(create_app(sandbox))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        track = sandbox.generations("Demo User")[0]
        async with aiohttp.ClientSession() as session:
            api = Api(session, base, sandbox.accounts[0].api_key)
            detail = (await api.get(f"/v1/generations/{track.id}")).data
        assert detail["audioUrl"] == f"{base}/audio/{track.id}.mp3"
    finally:
        await runner.cleanup()


async def test_state_includes_tempolor_jobs(
    api: Api, sb: SandboxHandle, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {sb.tempolor_token}"}
    async with http.post(
        f"{sb.tempolor_url}/music/song", json={"prompt": "a folk song"}, headers=headers
    ) as response:
        assert response.status == 200
    state = (await api.get("/_sandbox/state", key=None)).body
    [job] = state["tempolor"]["jobs"]
    assert job["owner"] == "Demo User"
    assert state["tempolor"]["callbacks"] == []
