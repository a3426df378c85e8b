"""Every service against the sandbox, checked against its ground truth after the call.

The sandbox starts each account with six completed tracks, "Focus Beats" (the
first three), "Public Picks" (public ones) and an empty "Inbox".
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from mutagen.id3 import ID3
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.finetuning.const import CONF_LIBRARY_FOLDER, DOMAIN

from .conftest import MAIN_ACCOUNT, make_entry

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle
    from connector.sandbox.records import Generation, Playlist


async def call(hass: HomeAssistant, service: str, data: dict[str, Any]) -> Any:
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )


def tracks(sandbox: SandboxHandle, account: str = MAIN_ACCOUNT) -> list[Generation]:
    return sandbox.sandbox.generations(account, include_deleted=False)


def playlist(sandbox: SandboxHandle, name: str, account: str = MAIN_ACCOUNT) -> Playlist:
    (found,) = [p for p in sandbox.sandbox.playlists(account) if p.name == name]
    return found


def posts(sandbox: SandboxHandle) -> int:
    return sum(1 for r in sandbox.sandbox.requests if r.method == "POST")


# -- generate -------------------------------------------------------------------------------


async def test_generate_returns_the_generation(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    credits = account.total_remaining
    response = await call(
        hass,
        "generate",
        {"tags": "lofi chill piano, rainy morning", "duration": 90, "bpm": 80, "seed": 7},
    )
    made = sandbox.sandbox.generation(response["id"])
    assert made is not None
    assert made.account == MAIN_ACCOUNT
    assert (made.prompt, made.requested_duration, made.bpm, made.seed) == (
        "lofi chill piano, rainy morning",
        90,
        80,
        7,
    )
    assert account.total_remaining == credits - 1
    assert response["credits_remaining"] == credits - 1
    assert response["status"] in ("pending", "processing")
    assert response["generation"]["id"] == made.id
    assert response["generation"]["prompt"] == made.prompt
    # Journaled as a run of the library's action, as any call of it would be.
    runs = setup_entry.runtime_data.connector.store.runs(automation_id="api.generate")
    assert [(r.status, r.steps[0].output["id"]) for r in runs] == [("succeeded", made.id)]
    # Ours: the poller watches it fast until it ends.
    poller = setup_entry.runtime_data.connector.runtime.poller
    assert poller is not None
    assert made.id in poller.state.submitted


async def test_generate_wait_returns_the_finished_track(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    response = await call(hass, "generate", {"tags": "synthwave night drive", "wait": True})
    made = sandbox.sandbox.generation(response["id"])
    assert made is not None
    assert made.status == "completed"
    assert response["status"] == "completed"
    assert response["generation"]["duration"] == made.duration
    assert response["generation"]["audioUrl"]
    assert response["generation"]["title"] == made.title


async def test_generate_wait_on_a_failing_generation_raises(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "generate", {"tags": "doomed #fail", "wait": True})
    assert not isinstance(caught.value, ServiceValidationError)
    assert caught.value.translation_key == "generation_failed"
    (made,) = [g for g in tracks(sandbox) if g.prompt == "doomed #fail"]
    assert made.status == "failed"
    assert caught.value.translation_placeholders == {
        "generation_id": made.id,
        "error": made.error_message,
    }
    assert str(caught.value) == f"Generation {made.id} failed: {made.error_message}"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"tags": "too long", "duration": 500}, "duration"),
        ({"tags": "too fast", "bpm": 900}, "bpm"),
        ({"tags": "odd", "timesignature": 9}, "timesignature"),
        ({"tags": "where", "language": "xx"}, "language"),
        ({"tags": "x" * 701}, "tags"),
    ],
)
async def test_generate_with_bad_options_spends_nothing(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    data: dict[str, Any],
    path: str,
) -> None:
    before = posts(sandbox)
    credits = sandbox.sandbox.account(MAIN_ACCOUNT).total_remaining
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "generate", data)
    assert caught.value.translation_key == "invalid_options"
    assert caught.value.translation_placeholders["problems"].startswith(f"{path}: ")
    assert str(caught.value).startswith("Invalid options for generate: ")
    assert posts(sandbox) == before
    assert sandbox.sandbox.account(MAIN_ACCOUNT).total_remaining == credits


async def test_generate_without_credits_is_a_provider_error(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    sandbox.sandbox.set_credits(MAIN_ACCOUNT, monthly_generations=0, pack_credits=0)
    count = len(tracks(sandbox))
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "generate", {"tags": "no credits left"})
    assert not isinstance(caught.value, ServiceValidationError)
    assert caught.value.translation_key == "action_failed"
    assert "MONTHLY_LIMIT_REACHED" in caught.value.translation_placeholders["error"]
    assert len(tracks(sandbox)) == count


# -- playlists ------------------------------------------------------------------------------


async def test_add_to_playlist_by_name(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    inbox = playlist(sandbox, "Inbox")
    chosen = [t.id for t in tracks(sandbox)[3:5]]
    response = await call(hass, "add_to_playlist", {"playlist": "inbox", "tracks": chosen})
    assert inbox.track_ids == chosen
    assert response["playlist_id"] == inbox.id
    assert response["succeeded"] == chosen
    # Again: already there counts as done, nothing doubles.
    response = await call(hass, "add_to_playlist", {"playlist": inbox.id, "tracks": chosen[0]})
    assert inbox.track_ids == chosen
    assert response["already_done"] == [chosen[0]]


async def test_remove_from_playlist(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    focus = playlist(sandbox, "Focus Beats")
    first, *rest = focus.track_ids
    response = await call(
        hass, "remove_from_playlist", {"playlist": "Focus Beats", "tracks": first}
    )
    assert focus.track_ids == rest
    assert response["succeeded"] == [first]
    track = sandbox.sandbox.generation(first)
    assert track is not None
    assert not track.deleted  # out of the playlist, still in the library


async def test_move_tracks(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    focus, inbox = playlist(sandbox, "Focus Beats"), playlist(sandbox, "Inbox")
    moving = focus.track_ids[:2]
    kept = focus.track_ids[2:]
    response = await call(
        hass,
        "move_tracks",
        {"from_playlist": "Focus Beats", "to_playlist": "Inbox", "tracks": ",".join(moving)},
    )
    assert focus.track_ids == kept
    assert inbox.track_ids == moving
    assert response["from_playlist_id"] == focus.id
    assert response["to_playlist_id"] == inbox.id
    assert response["succeeded"] == moving


async def test_move_to_the_same_playlist_is_refused(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    focus = playlist(sandbox, "Focus Beats")
    with pytest.raises(ServiceValidationError) as caught:
        await call(
            hass,
            "move_tracks",
            {"from_playlist": "Focus Beats", "to_playlist": focus.id, "tracks": focus.track_ids},
        )
    assert caught.value.translation_key == "same_playlist"


async def test_unknown_playlist_is_the_users_error(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    track = tracks(sandbox)[0].id
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "add_to_playlist", {"playlist": "Focus Beat", "tracks": track})
    assert caught.value.translation_key == "playlist_not_found"
    assert "Focus Beats" in caught.value.translation_placeholders["error"]  # did you mean


async def test_refused_tracks_are_a_provider_error(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    inbox = playlist(sandbox, "Inbox")
    with pytest.raises(HomeAssistantError) as caught:
        await call(
            hass,
            "add_to_playlist",
            {"playlist": "Inbox", "tracks": "0" * 8 + "-0000-0000-0000-" + "0" * 12},
        )
    assert not isinstance(caught.value, ServiceValidationError)
    assert caught.value.translation_key == "action_failed"
    assert inbox.track_ids == []


# -- bulk delete ----------------------------------------------------------------------------


async def test_bulk_delete_requires_confirm(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    victim = tracks(sandbox)[0].id
    before = posts(sandbox)
    # A dry run too, as the library's action has it: `confirm` says the step was meant.
    refused = (
        {"tracks": victim},
        {"tracks": victim, "confirm": False},
        {"tracks": victim, "dry_run": True},
    )
    for data in refused:
        with pytest.raises(ServiceValidationError) as caught:
            await call(hass, "bulk_delete", data)
        assert caught.value.translation_key == "confirm_required"
    assert posts(sandbox) == before
    generation = sandbox.sandbox.generation(victim)
    assert generation is not None
    assert not generation.deleted


async def test_bulk_delete_dry_run_then_for_real(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    victims = [t.id for t in tracks(sandbox)[:2]]
    response = await call(
        hass, "bulk_delete", {"tracks": victims, "confirm": True, "dry_run": True}
    )
    assert response["dry_run"] is True
    assert response["would_delete"] == victims
    assert all(not g.deleted for g in map(sandbox.sandbox.generation, victims) if g)

    response = await call(hass, "bulk_delete", {"tracks": victims, "confirm": True})
    assert response["succeeded"] == victims
    for victim in victims:
        generation = sandbox.sandbox.generation(victim)
        assert generation is not None
        assert generation.deleted
    assert victims[0] not in playlist(sandbox, "Focus Beats").track_ids


# -- download -------------------------------------------------------------------------------


async def test_download_track_into_the_library_folder(
    hass: HomeAssistant, config_entry: MockConfigEntry, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    library = tmp_path / "music"
    library.mkdir()
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_LIBRARY_FOLDER: str(library)}
    )
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    track = tracks(sandbox)[0]
    response = await call(hass, "download_track", {"track": track.id, "album": "Focus"})
    path = Path(response["path"])
    assert await hass.async_add_executor_job(path.is_file)
    assert path.is_relative_to(library)
    assert path.parent == library / "Finetuning" / "Focus"
    assert response["generation_id"] == track.id
    tags = await hass.async_add_executor_job(ID3, path)
    assert str(tags["TIT2"]) == track.title
    assert str(tags["TALB"]) == "Focus"
    # The same track again: already there, not fetched again.
    again = await call(hass, "download_track", {"track": track.id, "album": "Focus"})
    assert again["already_present"] is True
    assert again["path"] == response["path"]
    assert await hass.config_entries.async_unload(config_entry.entry_id)


async def test_download_track_needs_a_library_folder(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "download_track", {"track": tracks(sandbox)[0].id})
    assert caught.value.translation_key == "no_library_folder"
    assert "options" in str(caught.value)


# -- which account --------------------------------------------------------------------------


async def test_no_loaded_entry(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "generate", {"tags": "anyone?"})
    assert caught.value.translation_key == "no_loaded_entry"


async def test_several_accounts_need_config_entry_id(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    second = make_entry(sandbox, "Second User")
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    inbox = playlist(sandbox, "Inbox", "Second User")
    own = tracks(sandbox, "Second User")[0].id

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "add_to_playlist", {"playlist": "Inbox", "tracks": own})
    assert caught.value.translation_key == "several_entries"
    assert inbox.track_ids == []

    await call(
        hass,
        "add_to_playlist",
        {"config_entry_id": second.entry_id, "playlist": "Inbox", "tracks": own},
    )
    assert inbox.track_ids == [own]
    assert playlist(sandbox, "Inbox").track_ids == []  # the main account's is untouched

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "generate", {"config_entry_id": "nope", "tags": "x"})
    assert caught.value.translation_key == "entry_not_found"
    assert await hass.config_entries.async_unload(second.entry_id)
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "generate", {"config_entry_id": second.entry_id, "tags": "x"})
    assert caught.value.translation_key == "entry_not_loaded"


async def test_service_descriptions_load(hass: HomeAssistant, setup_entry: MockConfigEntry) -> None:
    """services.yaml parses, and names every field the schemas take."""
    from homeassistant.helpers.service import async_get_all_descriptions

    from custom_components.finetuning.services import SCHEMAS

    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    assert set(descriptions) == set(SCHEMAS)
    for name, schema in SCHEMAS.items():
        assert set(descriptions[name]["fields"]) == {str(key) for key in schema.schema}, name
        assert descriptions[name]["name"]  # translated


# -- the journal ----------------------------------------------------------------------------


async def test_a_failing_journal_is_a_translated_error(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    """No journal, no call: the run could not be recorded, so nothing is sent."""
    before = posts(sandbox)
    setup_entry.runtime_data.connector.store.close()
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "generate", {"tags": "nowhere to write it"})
    assert caught.value.translation_key == "journal_failed"
    assert "closed" in str(caught.value)
    assert posts(sandbox) == before


async def test_service_calls_read_the_journal_off_the_event_loop(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The integration's own blocking calls (the option checks look at the file system,
    a run's row is a SQLite read) run in the executor, not on Home Assistant's loop."""
    from connector.journal.store import Store
    from custom_components.finetuning import services

    seen: dict[str, bool] = {}

    def spy(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] = asyncio._get_running_loop() is not None
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    spy(services, "check_call")
    spy(Store, "run")
    response = await call(hass, "generate", {"tags": "off the loop", "wait": True})
    assert response["status"] == "completed"
    assert seen == {"check_call": False, "run": False}
