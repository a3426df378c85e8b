"""The media source against the sandbox: what the browser lists is what the sandbox holds.

Every listing is checked against the sandbox's ground truth (ids, titles, order),
with tracks that must not show (failed, still running, another account's) added
first. Resolving is checked by playing: the URL it gives serves the MP3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.components import media_source
from homeassistant.components.media_player import BrowseError, MediaClass
from homeassistant.components.media_source import Unresolvable
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_unordered import unordered

from custom_components.finetuning.const import DOMAIN
from custom_components.finetuning.media_source import LATEST_LIMIT, audio_mime

from .conftest import MAIN_ACCOUNT, make_entry

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle
    from connector.sandbox.records import Generation

ROOT = f"media-source://{DOMAIN}"


@pytest.fixture(autouse=True)
async def media_source_loaded(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, media_source.DOMAIN, {})


@pytest.fixture
def extra_tracks(sandbox: SandboxHandle) -> dict[str, Generation]:
    """Tracks that must not be listed, next to the seeded completed ones."""
    sb = sandbox.sandbox
    return {
        "failed": sb.add_track(MAIN_ACCOUNT, status="failed", error_message="model crashed"),
        "processing": sb.add_track(MAIN_ACCOUNT, status="processing"),
        "other_account": sb.add_track("Second User", prompt="someone else's song"),
        "newest": sb.add_track(MAIN_ACCOUNT, prompt="brand new dawn, soft synths"),
    }


async def browse(hass: HomeAssistant, identifier: str = "") -> Any:
    return await media_source.async_browse_media(
        hass, f"{ROOT}/{identifier}" if identifier else ROOT
    )


def latest_truth(sandbox: SandboxHandle, account: str = MAIN_ACCOUNT) -> list[tuple[str, str]]:
    """(id, title) of the account's completed tracks, newest first, as the sandbox holds them."""
    rows = [
        g
        for g in sandbox.sandbox.generations(account, include_deleted=False)
        if g.status == "completed"
    ]
    rows.sort(key=lambda g: (g.created_at, g.seq), reverse=True)
    return [(g.id, g.title) for g in rows[:LATEST_LIMIT]]


def tracks_of(node: Any, entry_id: str) -> list[tuple[str, str]]:
    """(id, title) of a browsed folder's tracks, checking each is a playable track."""
    found = []
    for child in node.children:
        assert child.can_play
        assert not child.can_expand
        assert child.media_class == MediaClass.TRACK
        assert child.media_content_type == "audio/mpeg"
        prefix = f"{ROOT}/{entry_id}/track/"
        assert child.media_content_id.startswith(prefix)
        found.append((child.media_content_id.removeprefix(prefix), child.title))
    return found


async def test_root_with_one_account_shows_its_folders(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    root = await browse(hass)
    entry_id = setup_entry.entry_id
    assert root.title == "Finetuning.ai"
    assert root.can_expand
    assert not root.can_play
    assert root.media_content_id == ROOT
    playlists = sandbox.sandbox.playlists(MAIN_ACCOUNT)
    assert len(playlists) == 3
    children = [(c.media_content_id, c.title) for c in root.children]
    assert children[0] == (f"{ROOT}/{entry_id}/latest", "Latest tracks")
    assert children[1:] == unordered(
        [(f"{ROOT}/{entry_id}/playlist/{p.id}", p.name) for p in playlists]
    )
    assert all(c.can_expand and not c.can_play for c in root.children)
    # The account's own node answers the same.
    account = await browse(hass, entry_id)
    assert [c.media_content_id for c in account.children] == [
        c.media_content_id for c in root.children
    ]


async def test_latest_tracks_are_the_completed_ones_newest_first(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    extra_tracks: dict[str, Generation],
) -> None:
    node = await browse(hass, f"{setup_entry.entry_id}/latest")
    assert node.title == "Latest tracks"
    listed = tracks_of(node, setup_entry.entry_id)
    assert listed == latest_truth(sandbox)
    ids = [track_id for track_id, _ in listed]
    assert ids[0] == extra_tracks["newest"].id
    assert len(ids) == 7  # the six seeded, and the newest
    for absent in ("failed", "processing", "other_account"):
        assert extra_tracks[absent].id not in ids


async def test_a_playlist_lists_its_completed_tracks_in_order(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    extra_tracks: dict[str, Generation],
) -> None:
    sb = sandbox.sandbox
    seeded = [g for g in sb.generations(MAIN_ACCOUNT) if g.status == "completed"]
    order = [extra_tracks["newest"], extra_tracks["failed"], seeded[2], extra_tracks["processing"]]
    playlist = sb.add_playlist(MAIN_ACCOUNT, "Mixed bag", track_ids=[g.id for g in order])
    node = await browse(hass, f"{setup_entry.entry_id}/playlist/{playlist.id}")
    assert node.title == "Mixed bag"
    assert node.media_class == MediaClass.PLAYLIST
    assert tracks_of(node, setup_entry.entry_id) == [
        (g.id, g.title) for g in sb.playlist_tracks(playlist) if g.status == "completed"
    ]
    assert [track_id for track_id, _ in tracks_of(node, setup_entry.entry_id)] == [
        extra_tracks["newest"].id,
        seeded[2].id,
    ]
    # A seeded playlist too, and the empty one.
    for seeded_playlist in sb.playlists(MAIN_ACCOUNT)[:3]:
        node = await browse(hass, f"{setup_entry.entry_id}/playlist/{seeded_playlist.id}")
        assert node.title == seeded_playlist.name
        assert tracks_of(node, setup_entry.entry_id) == [
            (g.id, g.title) for g in sb.playlist_tracks(seeded_playlist)
        ]


async def test_several_accounts_each_show_their_own(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    extra_tracks: dict[str, Generation],
) -> None:
    second = make_entry(sandbox, "Second User")
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()

    root = await browse(hass)
    assert root.title == "Finetuning.ai"
    assert [(c.media_content_id, c.title) for c in root.children] == [
        (f"{ROOT}/{setup_entry.entry_id}", "demo@sandbox.local"),
        (f"{ROOT}/{second.entry_id}", "second@sandbox.local"),
    ]
    for entry, account in ((setup_entry, MAIN_ACCOUNT), (second, "Second User")):
        node = await browse(hass, entry.entry_id)
        assert node.title == entry.title
        assert [c.title for c in node.children[1:]] == unordered(
            [p.name for p in sandbox.sandbox.playlists(account)]
        )
        latest = await browse(hass, f"{entry.entry_id}/latest")
        assert tracks_of(latest, entry.entry_id) == latest_truth(sandbox, account)
    second_latest = await browse(hass, f"{second.entry_id}/latest")
    second_ids = [track_id for track_id, _ in tracks_of(second_latest, second.entry_id)]
    assert extra_tracks["other_account"].id in second_ids
    assert await hass.config_entries.async_unload(second.entry_id)


async def test_resolving_a_track_fetches_it_afresh_and_plays(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    track = next(g for g in sandbox.sandbox.generations(MAIN_ACCOUNT) if g.status == "completed")
    path = f"/v1/generations/{track.id}"
    asked_before = sum(1 for r in sandbox.sandbox.requests if r.path == path)

    played = await media_source.async_resolve_media(
        hass, f"{ROOT}/{setup_entry.entry_id}/track/{track.id}", None
    )
    assert played.url == f"{sandbox.url}/audio/{track.id}.mp3"
    assert played.mime_type == "audio/mpeg"
    assert sum(1 for r in sandbox.sandbox.requests if r.path == path) == asked_before + 1

    async with async_get_clientsession(hass).get(played.url) as response:
        assert response.status == 200
        assert response.content_type == played.mime_type
        assert await response.read() == sandbox.sandbox.audio_bytes(track)

    # Browsing the track itself shows the one playable item.
    node = await browse(hass, f"{setup_entry.entry_id}/track/{track.id}")
    assert node.can_play
    assert node.title == track.title


async def test_browse_and_play_through_the_frontend_api(
    hass: HomeAssistant, hass_ws_client: Any, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "media_source/browse_media", "media_content_id": f"{ROOT}/latest"}
    )
    answer = await client.receive_json()
    assert not answer["success"]
    assert answer["error"]["message"] == (
        "No Finetuning.ai account is set up with the entry id latest"
    )

    latest_id = f"{ROOT}/{setup_entry.entry_id}/latest"
    await client.send_json_auto_id(
        {"type": "media_source/browse_media", "media_content_id": latest_id}
    )
    answer = await client.receive_json()
    assert answer["success"], answer
    children = answer["result"]["children"]
    first = children[0]
    assert (first["title"], first["can_play"]) == (latest_truth(sandbox)[0][1], True)

    await client.send_json_auto_id(
        {"type": "media_source/resolve_media", "media_content_id": first["media_content_id"]}
    )
    answer = await client.receive_json()
    assert answer["success"], answer
    track_id = latest_truth(sandbox)[0][0]
    assert answer["result"] == {
        "url": f"{sandbox.url}/audio/{track_id}.mp3",
        "mime_type": "audio/mpeg",
    }


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("nope", "No Finetuning.ai account is set up with the entry id nope"),
        ("nope/latest", "No Finetuning.ai account is set up with the entry id nope"),
        ("{entry}/oldest", "{entry}/oldest names nothing in the Finetuning.ai media source"),
        ("{entry}/playlist", "{entry}/playlist names nothing in the Finetuning.ai media source"),
        ("{entry}/playlist/", "{entry}/playlist/ names nothing in the Finetuning.ai media source"),
        (
            "{entry}/playlist/pl_missing",
            "The Finetuning.ai account demo@sandbox.local has no playlist pl_missing",
        ),
        (
            "{entry}/track/00000000-0000-4000-8000-000000000000",
            "The Finetuning.ai account demo@sandbox.local has no track "
            "00000000-0000-4000-8000-000000000000",
        ),
    ],
)
async def test_browse_errors_say_what_is_wrong(
    hass: HomeAssistant, setup_entry: MockConfigEntry, identifier: str, message: str
) -> None:
    entry_id = setup_entry.entry_id
    with pytest.raises(BrowseError) as caught:
        await browse(hass, identifier.format(entry=entry_id))
    assert str(caught.value).startswith(message.format(entry=entry_id))


async def test_resolve_errors_say_what_is_wrong(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    extra_tracks: dict[str, Generation],
) -> None:
    entry_id = setup_entry.entry_id

    async def resolve(identifier: str) -> str:
        with pytest.raises(Unresolvable) as caught:
            await media_source.async_resolve_media(hass, f"{ROOT}/{identifier}", None)
        return str(caught.value)

    processing, failed = extra_tracks["processing"].id, extra_tracks["failed"].id
    assert await resolve(f"{entry_id}/track/{processing}") == (
        f"The Finetuning.ai track {processing} cannot be played: it is processing, not completed"
    )
    assert await resolve(f"{entry_id}/track/{failed}") == (
        f"The Finetuning.ai track {failed} cannot be played: it is failed, not completed"
    )
    # Another account's track is not this account's to play.
    other = extra_tracks["other_account"].id
    assert await resolve(f"{entry_id}/track/{other}") == (
        f"The Finetuning.ai account demo@sandbox.local has no track {other}"
    )
    assert await resolve(f"{entry_id}/latest") == (
        f"{entry_id}/latest is a folder, not a Finetuning.ai track"
    )
    assert await resolve(entry_id) == f"{entry_id} is a folder, not a Finetuning.ai track"
    assert await resolve("nope/track/x") == (
        "No Finetuning.ai account is set up with the entry id nope"
    )


async def test_provider_refusals_are_reported_without_the_key(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle, sandbox_key: str
) -> None:
    sandbox.sandbox.set_tier(MAIN_ACCOUNT, "free")
    with pytest.raises(BrowseError) as caught:
        await browse(hass, f"{setup_entry.entry_id}/latest")
    message = str(caught.value)
    assert message.startswith("The Finetuning.ai request failed: HTTP 403 PRO_PLAN_REQUIRED")
    assert sandbox_key not in message
    assert sandbox_key[8:] not in message
    sandbox.sandbox.set_tier(MAIN_ACCOUNT, "pro")


async def test_an_unloaded_account_is_not_browsable(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    assert await hass.config_entries.async_unload(setup_entry.entry_id)
    root = await browse(hass)
    assert root.children == []
    with pytest.raises(BrowseError, match=r"No Finetuning\.ai account is set up"):
        await browse(hass, setup_entry.entry_id)


def test_audio_mime_follows_the_file_name() -> None:
    assert audio_mime("http://127.0.0.1:1/audio/abc.mp3") == "audio/mpeg"
    assert audio_mime("https://cdn.example/abc.wav?sig=1") == "audio/x-wav"
    assert audio_mime("https://cdn.example/abc.flac") == "audio/flac"
    # A name that says nothing, or says something that is not audio: the provider's MP3.
    assert audio_mime("https://cdn.example/stream") == "audio/mpeg"
    assert audio_mime("https://cdn.example/abc.json") == "audio/mpeg"
