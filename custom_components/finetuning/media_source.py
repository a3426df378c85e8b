"""Completed tracks in Home Assistant's media browser, playable on any media player.

Identifiers (after `media-source://finetuning/`):

* `<entry_id>`: one account: "Latest tracks" and one folder per playlist;
* `<entry_id>/latest`: the account's completed tracks, newest first;
* `<entry_id>/playlist/<playlist_id>`: a playlist's completed tracks, in its order;
* `<entry_id>/track/<generation_id>`: one track.

The root lists the accounts when several are set up, and the one account's
folders directly otherwise. Every listing asks the provider afresh (through the
entry's client, so its rate budgets are shared), and resolving a track fetches
the generation again: audio URLs may expire, so one seen while browsing is never
handed to a player.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Final

from homeassistant.components.media_player.const import MediaClass, MediaType
from homeassistant.components.media_player.errors import BrowseError
from homeassistant.components.media_source import (
    BrowseMediaSource,
    MediaSource,
    MediaSourceItem,
    PlayMedia,
    Unresolvable,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from yarl import URL

from connector.errors import ConnectorError, NotFoundError
from connector.providers.finetuning.models import GenerationStatus

from .const import DOMAIN, MANUFACTURER

if TYPE_CHECKING:
    from connector.providers.finetuning.models import Generation

    from .models import FinetuningConfigEntry

LATEST_LIMIT: Final = 50
"""Tracks under "Latest tracks" (one page of the provider's list)."""

DEFAULT_MIME: Final = "audio/mpeg"
"""What the provider serves (MP3); used when a URL's name does not tell."""

LATEST: Final = "latest"
PLAYLIST: Final = "playlist"
TRACK: Final = "track"


async def async_get_media_source(hass: HomeAssistant) -> MediaSource:
    """The integration's media source (one for every account)."""
    return FinetuningMediaSource(hass)


def audio_mime(audio_url: str) -> str:
    """The MIME type of a track's audio, from its URL's file name (MP3 when it does not tell)."""
    guessed, _ = mimetypes.guess_type(URL(audio_url).path)
    return guessed if guessed and guessed.startswith("audio/") else DEFAULT_MIME


def _error(
    kind: type[BrowseError] | type[Unresolvable], key: str, message: str, **placeholders: str
) -> BrowseError | Unresolvable:
    """An error with its English message, translatable through strings.json's `exceptions`."""
    return kind(
        message,
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


class FinetuningMediaSource(MediaSource):
    """Every configured account's playlists and latest completed tracks."""

    name = MANUFACTURER

    def __init__(self, hass: HomeAssistant) -> None:
        super().__init__(DOMAIN)
        self.hass = hass

    # ------------------------------------------------------------------ browsing

    async def async_browse_media(self, item: MediaSourceItem) -> BrowseMediaSource:
        """The node an identifier names, with its children."""
        if not item.identifier:
            return await self._browse_root()
        entry, kind, target = self._parse(item.identifier, BrowseError)
        if kind is None:
            return await self._browse_account(entry, entry.entry_id, self._node_title(entry))
        if kind == LATEST:
            return await self._browse_latest(entry)
        if kind == PLAYLIST:
            return await self._browse_playlist(entry, target)
        return await self._browse_track(entry, target)

    async def _browse_root(self) -> BrowseMediaSource:
        entries = self._entries()
        if len(entries) == 1:
            return await self._browse_account(entries[0], None, MANUFACTURER)
        root = _folder(None, MANUFACTURER, MediaClass.DIRECTORY, MediaClass.DIRECTORY)
        root.children = [
            _folder(entry.entry_id, entry.title, MediaClass.DIRECTORY, MediaClass.DIRECTORY)
            for entry in entries
        ]
        return root

    async def _browse_account(
        self, entry: FinetuningConfigEntry, identifier: str | None, title: str
    ) -> BrowseMediaSource:
        """An account's folders; the root is one (identifier None) when it is the only one."""
        try:
            playlists = await entry.runtime_data.client.list_playlists()
        except ConnectorError as err:
            raise _provider_error(BrowseError, err) from err
        node = _folder(identifier, title, MediaClass.DIRECTORY, MediaClass.PLAYLIST)
        node.children = [
            _folder(f"{entry.entry_id}/{LATEST}", "Latest tracks", MediaClass.DIRECTORY),
            *(
                _folder(f"{entry.entry_id}/{PLAYLIST}/{playlist.id}", playlist.name)
                for playlist in playlists
            ),
        ]
        return node

    async def _browse_latest(self, entry: FinetuningConfigEntry) -> BrowseMediaSource:
        try:
            page = await entry.runtime_data.client.list_generations(
                limit=LATEST_LIMIT, status=GenerationStatus.COMPLETED
            )
        except ConnectorError as err:
            raise _provider_error(BrowseError, err) from err
        node = _folder(f"{entry.entry_id}/{LATEST}", "Latest tracks", MediaClass.DIRECTORY)
        node.children = [
            _track(entry.entry_id, g.id, g.title, g.audio_url)
            for g in page.generations
            if g.status is GenerationStatus.COMPLETED and g.audio_url
        ]
        return node

    async def _browse_playlist(
        self, entry: FinetuningConfigEntry, playlist_id: str
    ) -> BrowseMediaSource:
        try:
            playlist = await entry.runtime_data.client.get_playlist(playlist_id)
        except NotFoundError as err:
            raise _error(
                BrowseError,
                "media_playlist_not_found",
                f"The Finetuning.ai account {entry.title} has no playlist {playlist_id}",
                account=entry.title,
                playlist_id=playlist_id,
            ) from err
        except ConnectorError as err:
            raise _provider_error(BrowseError, err) from err
        node = _folder(f"{entry.entry_id}/{PLAYLIST}/{playlist.id}", playlist.name)
        node.children = [
            _track(entry.entry_id, t.id, t.title, t.audio_url)
            for t in playlist.tracks
            if t.status == GenerationStatus.COMPLETED and t.audio_url
        ]
        return node

    async def _browse_track(self, entry: FinetuningConfigEntry, track_id: str) -> BrowseMediaSource:
        generation = await self._completed(entry, track_id, BrowseError)
        assert generation.audio_url is not None  # _completed checked it
        return _track(entry.entry_id, generation.id, generation.title, generation.audio_url)

    # ------------------------------------------------------------------ playing

    async def async_resolve_media(self, item: MediaSourceItem) -> PlayMedia:
        """A track's audio URL, fetched now (a URL seen while browsing may have expired)."""
        entry, kind, target = self._parse(item.identifier, Unresolvable)
        if kind != TRACK:
            raise _error(
                Unresolvable,
                "media_not_a_track",
                f"{item.identifier} is a folder, not a Finetuning.ai track",
                identifier=item.identifier,
            )
        generation = await self._completed(entry, target, Unresolvable)
        assert generation.audio_url is not None  # _completed checked it
        return PlayMedia(generation.audio_url, audio_mime(generation.audio_url))

    # ------------------------------------------------------------------ helpers

    def _entries(self) -> list[FinetuningConfigEntry]:
        return sorted(
            self.hass.config_entries.async_loaded_entries(DOMAIN),
            key=lambda entry: (entry.title, entry.entry_id),
        )

    def _node_title(self, entry: FinetuningConfigEntry) -> str:
        return entry.title if len(self._entries()) > 1 else MANUFACTURER

    def _parse(
        self, identifier: str, kind: type[BrowseError] | type[Unresolvable]
    ) -> tuple[FinetuningConfigEntry, str | None, str]:
        """The entry, the node's kind (None: the account) and its target id."""
        parts = identifier.split("/")
        entry_id = parts[0]
        entry = self.hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
            raise _error(
                kind,
                "media_unknown_account",
                f"No Finetuning.ai account is set up with the entry id {entry_id}",
                entry_id=entry_id,
            )
        if len(parts) == 1:
            return entry, None, ""
        if parts[1:] == [LATEST]:
            return entry, LATEST, ""
        if len(parts) == 3 and parts[1] in (PLAYLIST, TRACK) and parts[2]:
            return entry, parts[1], parts[2]
        raise _error(
            kind,
            "media_unknown_identifier",
            f"{identifier} names nothing in the Finetuning.ai media source (expected "
            "<entry_id>, <entry_id>/latest, <entry_id>/playlist/<id> or <entry_id>/track/<id>)",
            identifier=identifier,
        )

    async def _completed(
        self,
        entry: FinetuningConfigEntry,
        generation_id: str,
        kind: type[BrowseError] | type[Unresolvable],
    ) -> Generation:
        try:
            generation = await entry.runtime_data.client.get_generation(generation_id)
        except NotFoundError as err:
            raise _error(
                kind,
                "media_track_not_found",
                f"The Finetuning.ai account {entry.title} has no track {generation_id}",
                account=entry.title,
                generation_id=generation_id,
            ) from err
        except ConnectorError as err:
            raise _provider_error(kind, err) from err
        if generation.status is not GenerationStatus.COMPLETED or not generation.audio_url:
            raise _error(
                kind,
                "media_track_not_completed",
                f"The Finetuning.ai track {generation_id} cannot be played: it is "
                f"{generation.status.value}, not completed",
                generation_id=generation_id,
                status=generation.status.value,
            )
        return generation


def _provider_error(
    kind: type[BrowseError] | type[Unresolvable], err: ConnectorError
) -> BrowseError | Unresolvable:
    # The connector's errors are already redacted (no key in them).
    return _error(
        kind, "media_provider_error", f"The Finetuning.ai request failed: {err}", error=str(err)
    )


def _folder(
    identifier: str | None,
    title: str,
    media_class: MediaClass = MediaClass.PLAYLIST,
    children_class: MediaClass = MediaClass.TRACK,
) -> BrowseMediaSource:
    playlist = media_class is MediaClass.PLAYLIST
    return BrowseMediaSource(
        domain=DOMAIN,
        identifier=identifier,
        media_class=media_class,
        media_content_type=MediaType.PLAYLIST if playlist else MediaType.MUSIC,
        title=title,
        can_play=False,
        can_expand=True,
        children_media_class=children_class,
    )


def _track(entry_id: str, track_id: str, title: str | None, audio_url: str) -> BrowseMediaSource:
    return BrowseMediaSource(
        domain=DOMAIN,
        identifier=f"{entry_id}/{TRACK}/{track_id}",
        media_class=MediaClass.TRACK,
        media_content_type=audio_mime(audio_url),
        title=title or track_id,
        can_play=True,
        can_expand=False,
    )
