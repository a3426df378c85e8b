"""The Finetuning.ai sandbox: playlists, their privacy rules, bulk delete, partial success."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ft_sandbox_support import Api

from connector.sandbox import ManualClock, SandboxHandle
from connector.sandbox.records import Generation, Playlist

SQL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


class World:
    """The seeded tracks and playlists of the two Pro accounts, by role."""

    def __init__(self, sb: SandboxHandle) -> None:
        sandbox = sb.sandbox
        self.a: list[Generation] = sandbox.generations("Demo User")
        self.b: list[Generation] = sandbox.generations("Second User")
        a_lists = {p.name: p for p in sandbox.playlists("Demo User")}
        b_lists = {p.name: p for p in sandbox.playlists("Second User")}
        self.a_private: Playlist = a_lists["Focus Beats"]
        self.a_public: Playlist = a_lists["Public Picks"]
        self.b_private: Playlist = b_lists["Focus Beats"]
        self.b_public: Playlist = b_lists["Public Picks"]


@pytest.fixture
def world(sb: SandboxHandle) -> World:
    """Seeded: tracks 0, 2, 4 public; Focus Beats (private) = 0-2; Public Picks = 0, 2."""
    return World(sb)


def ids(tracks: list[Generation], *indexes: int) -> list[str]:
    return [tracks[i].id for i in indexes]


# --------------------------------------------------------------------------- read


async def test_the_seeded_world_is_as_documented(world: World) -> None:
    assert [t.is_public for t in world.a] == [True, False] * 3
    assert world.a_private.track_ids == ids(world.a, 0, 1, 2)
    assert world.a_public.track_ids == ids(world.a, 0, 2)
    assert (world.a_private.is_public, world.a_public.is_public) == (False, True)


async def test_list_playlists_shape(api: Api, world: World) -> None:
    playlists = (await api.get("/v1/playlists")).data["playlists"]
    assert len(playlists) == 3
    focus = playlists[0]
    assert set(focus) == {
        "id",
        "name",
        "description",
        "trackCount",
        "totalDuration",
        "isPublic",
        "createdAt",
        "updatedAt",
    }
    assert focus["id"] == world.a_private.id
    assert (focus["name"], focus["isPublic"], focus["trackCount"]) == ("Focus Beats", False, 3)
    assert focus["totalDuration"] == round(sum(t.duration or 0 for t in world.a[:3]))
    assert isinstance(focus["totalDuration"], int)
    assert focus["description"] == "Deep-work soundtrack"
    assert playlists[1]["description"] is None
    assert SQL_TIME.fullmatch(focus["createdAt"])
    assert SQL_TIME.fullmatch(focus["updatedAt"])
    assert focus["createdAt"] == "2025-01-08 10:30:00"


async def test_get_own_playlist_with_tracks(api: Api, sb: SandboxHandle, world: World) -> None:
    data = (await api.get(f"/v1/playlists/{world.a_private.id}")).data
    assert list(data) == [
        "id",
        "name",
        "description",
        "trackCount",
        "totalDuration",
        "isPublic",
        "isOwner",
        "createdAt",
        "updatedAt",
        "tracks",
    ]
    assert data["isOwner"] is True
    assert [t["id"] for t in data["tracks"]] == ids(world.a, 0, 1, 2)
    track = data["tracks"][1]
    assert set(track) == {
        "id",
        "title",
        "prompt",
        "status",
        "audioUrl",
        "duration",
        "isPublic",
        "createdAt",
    }
    assert track["audioUrl"] == f"{sb.url}/audio/{world.a[1].id}.mp3"
    assert track["isPublic"] is False
    assert SQL_TIME.fullmatch(track["createdAt"])


async def test_other_users_public_playlists_are_readable_private_ones_are_not(
    api: Api, world: World
) -> None:
    public = (await api.get(f"/v1/playlists/{world.b_public.id}")).data
    assert public["isOwner"] is False
    assert [t["id"] for t in public["tracks"]] == world.b_public.track_ids
    for playlist_id in (world.b_private.id, "nope"):
        reply = await api.get(f"/v1/playlists/{playlist_id}")
        assert reply.status == 404
        assert reply.error["code"] == "NOT_FOUND"


# --------------------------------------------------------------------------- add


async def test_add_reports_each_reason_and_omits_errors_when_all_succeed(
    api: Api, world: World, sb: SandboxHandle, clock: ManualClock
) -> None:
    clock.advance(90.0)
    track_ids = [
        world.a[4].id,  # own public: added
        world.a[1].id,  # own private into a public playlist
        world.a[0].id,  # already there
        "nope",  # unknown
        world.b[1].id,  # another user's private track: invisible
        world.b[4].id,  # another user's public track: allowed in a public playlist
    ]
    reply = await api.post(f"/v1/playlists/{world.a_public.id}/tracks", {"trackIds": track_ids})
    assert reply.status == 200
    assert reply.data == {
        "added": [world.a[4].id, world.b[4].id],
        "errors": [
            {"trackId": world.a[1].id, "error": "Cannot add private track to public playlist"},
            {"trackId": world.a[0].id, "error": "Track already in playlist"},
            {"trackId": "nope", "error": "Track not found"},
            {"trackId": world.b[1].id, "error": "Track not found"},
        ],
    }
    detail = (await api.get(f"/v1/playlists/{world.a_public.id}")).data
    assert detail["trackCount"] == 4
    assert detail["updatedAt"] == "2025-01-15 10:31:30"
    added_all = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks", {"trackIds": ids(world.a, 3, 5)}
    )
    assert added_all.status == 200
    assert added_all.data == {"added": ids(world.a, 3, 5)}


async def test_a_duplicate_in_one_request_is_already_in_playlist(api: Api, world: World) -> None:
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks", {"trackIds": ids(world.a, 4, 4)}
    )
    assert reply.data == {
        "added": [world.a[4].id],
        "errors": [{"trackId": world.a[4].id, "error": "Track already in playlist"}],
    }


@pytest.mark.parametrize(
    ("playlist", "track", "reason"),
    [
        ("a_private", "b:0", "Cannot add another user's track to a private playlist"),
        ("a_public", "a:1", "Cannot add private track to public playlist"),
        ("b_public", "a:4", "Not authorized to modify this playlist"),
        ("b_private", "a:4", "Playlist not found"),
        ("missing", "a:4", "Playlist not found"),
        ("a_private", "a:0", "Track already in playlist"),
    ],
)
async def test_when_nothing_is_added_the_answer_is_add_failed(
    api: Api, world: World, playlist: str, track: str, reason: str
) -> None:
    owner, index = track.split(":")
    track_id = (world.a if owner == "a" else world.b)[int(index)].id
    playlist_id = getattr(world, playlist).id if playlist != "missing" else "missing"
    reply = await api.post(f"/v1/playlists/{playlist_id}/tracks", {"trackIds": [track_id]})
    assert reply.status == 400
    assert reply.error == {
        "code": "ADD_FAILED",
        "message": reason,
        "details": [{"trackId": track_id, "error": reason}],
    }


async def test_a_deleted_track_cannot_be_added(api: Api, world: World) -> None:
    await api.post("/v1/generations/bulk-delete", {"ids": [world.a[5].id]})
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks", {"trackIds": [world.a[5].id]}
    )
    assert reply.error["details"] == [{"trackId": world.a[5].id, "error": "Track not found"}]


ID_LIST_CASES: list[tuple[Any, str]] = [
    ({}, "trackIds is required"),
    ({"trackIds": None}, "trackIds is required"),
    ({"trackIds": "abc"}, "trackIds must be an array of strings"),
    ({"trackIds": [1, 2]}, "trackIds must be an array of strings"),
    ({"trackIds": []}, "trackIds must contain at least 1 item"),
    ({"trackIds": [f"t{i}" for i in range(101)]}, "trackIds must contain at most 100 items"),
]


@pytest.mark.parametrize("suffix", ["tracks", "tracks/bulk-remove", "tracks/move"])
@pytest.mark.parametrize(("body", "message"), ID_LIST_CASES)
async def test_track_id_lists_are_validated(
    api: Api, world: World, suffix: str, body: dict[str, Any], message: str
) -> None:
    body = {**body, "targetPlaylistId": world.a_public.id}
    reply = await api.post(f"/v1/playlists/{world.a_private.id}/{suffix}", body)
    assert reply.status == 400
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["message"] == message


async def test_a_hundred_ids_are_accepted(api: Api, world: World) -> None:
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks/bulk-remove",
        {"trackIds": [world.a[0].id] + [f"x{i}" for i in range(99)]},
    )
    assert reply.status == 200
    assert reply.data["removed"] == [world.a[0].id]
    assert len(reply.data["errors"]) == 99


# --------------------------------------------------------------------------- remove


async def test_bulk_remove_is_always_200(api: Api, world: World, sb: SandboxHandle) -> None:
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks/bulk-remove",
        {"trackIds": [world.a[0].id, world.a[5].id]},
    )
    assert reply.status == 200
    assert reply.data == {
        "removed": [world.a[0].id],
        "errors": [
            {"trackId": world.a[5].id, "error": "Track not found in playlist or not authorized"}
        ],
    }
    assert sb.sandbox.generation(world.a[0].id) is not None  # still in the library
    for playlist_id in (world.b_public.id, world.b_private.id, "nope"):
        reply = await api.post(
            f"/v1/playlists/{playlist_id}/tracks/bulk-remove", {"trackIds": [world.b[0].id]}
        )
        assert reply.status == 200
        assert reply.data["removed"] == []
        assert reply.data["errors"][0]["error"] == "Track not found in playlist or not authorized"
    everything = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks/bulk-remove",
        {"trackIds": ids(world.a, 1, 2)},
    )
    assert everything.data == {"removed": ids(world.a, 1, 2)}
    assert (await api.get(f"/v1/playlists/{world.a_private.id}")).data["trackCount"] == 0


# --------------------------------------------------------------------------- move


async def test_move_adds_to_target_then_removes_from_source(
    api: Api, world: World, sb: SandboxHandle
) -> None:
    other = sb.sandbox.add_playlist("Demo User", "Late Night")
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks/move",
        {"trackIds": [*ids(world.a, 0, 1), "zzz"], "targetPlaylistId": other.id},
    )
    assert reply.status == 200
    assert reply.data == {
        "moved": ids(world.a, 0, 1),
        "errors": [{"trackId": "zzz", "error": "Track not found in playlist or not authorized"}],
    }
    assert world.a_private.track_ids == ids(world.a, 2)
    assert other.track_ids == ids(world.a, 0, 1)
    clean = await api.post(
        f"/v1/playlists/{other.id}/tracks/move",
        {"trackIds": ids(world.a, 0), "targetPlaylistId": world.a_private.id},
    )
    assert clean.data == {"moved": ids(world.a, 0)}


async def test_a_track_that_cannot_be_added_stays_in_the_source(api: Api, world: World) -> None:
    reply = await api.post(
        f"/v1/playlists/{world.a_private.id}/tracks/move",
        {"trackIds": ids(world.a, 1, 2), "targetPlaylistId": world.a_public.id},
    )
    assert reply.status == 400
    assert reply.error == {
        "code": "MOVE_FAILED",
        "message": "Cannot add private track to public playlist",
        "details": [
            {"trackId": world.a[1].id, "error": "Cannot add private track to public playlist"},
            {"trackId": world.a[2].id, "error": "Track already in playlist"},
        ],
    }
    assert world.a_private.track_ids == ids(world.a, 0, 1, 2)
    assert world.a_public.track_ids == ids(world.a, 0, 2)


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        ("b_public", "a_private", "Not authorized to modify this playlist"),
        ("b_private", "a_private", "Playlist not found"),
        ("a_private", "b_public", "Not authorized to modify this playlist"),
        ("a_private", "b_private", "Playlist not found"),
        ("a_private", "missing", "Playlist not found"),
    ],
)
async def test_move_between_playlists_you_cannot_modify_fails(
    api: Api, world: World, source: str, target: str, reason: str
) -> None:
    source_list = getattr(world, source)
    track = source_list.track_ids[0] if source.startswith("a") else world.b[0].id
    target_id = getattr(world, target).id if target != "missing" else "missing"
    reply = await api.post(
        f"/v1/playlists/{source_list.id}/tracks/move",
        {"trackIds": [track], "targetPlaylistId": target_id},
    )
    assert reply.status == 400
    assert reply.error["code"] == "MOVE_FAILED"
    assert reply.error["details"] == [{"trackId": track, "error": reason}]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (None, "targetPlaylistId is required"),
        (5, "targetPlaylistId must be a non-empty string"),
        ("", "targetPlaylistId must be a non-empty string"),
        ("same", "targetPlaylistId must differ from the source playlist"),
    ],
)
async def test_move_needs_a_different_target(
    api: Api, world: World, target: Any, message: str
) -> None:
    body: dict[str, Any] = {"trackIds": [world.a[0].id]}
    if target is not None:
        body["targetPlaylistId"] = world.a_private.id if target == "same" else target
    reply = await api.post(f"/v1/playlists/{world.a_private.id}/tracks/move", body)
    assert reply.status == 400
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["message"] == message


# --------------------------------------------------------------------------- bulk delete


async def test_bulk_delete_is_partial_and_always_200(
    api: Api, second: Api, world: World, sb: SandboxHandle, clock: ManualClock
) -> None:
    # Another user's public playlist holding one of our public tracks.
    added = await second.post(
        f"/v1/playlists/{world.b_public.id}/tracks", {"trackIds": [world.a[0].id]}
    )
    assert added.data == {"added": [world.a[0].id]}
    clock.advance(60.0)
    reply = await api.post(
        "/v1/generations/bulk-delete",
        {"ids": [world.a[0].id, world.b[3].id, "nope", world.a[0].id]},
    )
    assert reply.status == 200
    reason = "Track not found or not owned by you"
    assert reply.data == {
        "deleted": [world.a[0].id],
        "errors": [
            {"id": world.b[3].id, "error": reason},
            {"id": "nope", "error": reason},
            {"id": world.a[0].id, "error": reason},
        ],
    }
    # Gone from every playlist, whoever owns it.
    for playlist in (world.a_private, world.a_public, world.b_public):
        assert world.a[0].id not in playlist.track_ids
    focus = (await api.get(f"/v1/playlists/{world.a_private.id}")).data
    assert focus["trackCount"] == 2
    assert focus["totalDuration"] == round(sum(t.duration or 0 for t in world.a[1:3]))
    assert focus["updatedAt"] == "2025-01-15 10:31:00"
    assert (await api.get(f"/v1/generations/{world.a[0].id}")).status == 404
    listed = (await api.get("/v1/generations")).data["generations"]
    assert world.a[0].id not in {g["id"] for g in listed}
    # The ground truth keeps it.
    kept = sb.sandbox.generation(world.a[0].id)
    assert kept is not None
    assert kept.deleted
    assert (await second.get(f"/v1/generations/{world.b[3].id}")).status == 200

    nothing = await api.post("/v1/generations/bulk-delete", {"ids": ["nope"]})
    assert nothing.status == 200
    assert nothing.data == {"deleted": [], "errors": [{"id": "nope", "error": reason}]}
    everything = await api.post("/v1/generations/bulk-delete", {"ids": ids(world.a, 1, 2)})
    assert everything.data == {"deleted": ids(world.a, 1, 2)}


async def test_deleting_a_pending_generation_stops_it(
    api: Api, sb: SandboxHandle, clock: ManualClock
) -> None:
    gid = (await api.create()).data["id"]
    reply = await api.post("/v1/generations/bulk-delete", {"ids": [gid]})
    assert reply.data == {"deleted": [gid]}
    assert (await api.get("/v1/me")).data["limits"]["queueDepth"] == 0
    clock.advance(10.0)
    await sb.sandbox.settle()
    assert sb.sandbox.generation(gid).status == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "ids is required"),
        ({"ids": "abc"}, "ids must be an array of strings"),
        ({"ids": ["a", None]}, "ids must be an array of strings"),
        ({"ids": []}, "ids must contain at least 1 item"),
        ({"ids": [str(i) for i in range(101)]}, "ids must contain at most 100 items"),
    ],
)
async def test_bulk_delete_validates_ids(api: Api, body: dict[str, Any], message: str) -> None:
    reply = await api.post("/v1/generations/bulk-delete", body)
    assert reply.status == 400
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["message"] == message
    if isinstance(body.get("ids"), list) and len(body["ids"]) > 100:
        assert reply.error["details"] == {"field": "ids", "max": 100}
