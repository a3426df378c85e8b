"""Playlists: lookups and the per-track add, remove and move rules of the playlist endpoints.

A mixin of `Sandbox` working on the stores of `World`. Bulk operations go
track by track and answer a per-item error for each track refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from .records import Generation, Playlist
from .world import World

# Reasons of the playlist endpoints, spelled exactly as the API reference writes them.
PLAYLIST_NOT_FOUND = "Playlist not found"
NOT_AUTHORIZED = "Not authorized to modify this playlist"
TRACK_NOT_FOUND = "Track not found"
PRIVATE_INTO_PUBLIC = "Cannot add private track to public playlist"
ALREADY_IN_PLAYLIST = "Track already in playlist"
FOREIGN_INTO_PRIVATE = "Cannot add another user's track to a private playlist"
NOT_IN_PLAYLIST = "Track not found in playlist or not authorized"


class PlaylistsMixin(World):
    """Looking up playlists and moving tracks in, out and between them."""

    def playlist(self, playlist_id: str) -> Playlist | None:
        """Any playlist by id."""
        return self._playlists.get(playlist_id)

    def playlists(self, account: str | None = None) -> list[Playlist]:
        """Playlists in creation order, optionally of one owner."""
        return [p for p in self._playlists.values() if account is None or p.owner == account]

    def visible_playlist(self, account: str, playlist_id: str) -> Playlist | None:
        """The account's own playlist, or another user's public one."""
        playlist = self._playlists.get(playlist_id)
        if playlist is None or (playlist.owner != account and not playlist.is_public):
            return None
        return playlist

    def playlist_tracks(self, playlist: Playlist) -> list[Generation]:
        """The playlist's tracks, in playlist order."""
        return [self._generations[t] for t in playlist.track_ids if t in self._generations]

    def add_playlist(
        self,
        account: str,
        name: str,
        *,
        is_public: bool = False,
        description: str | None = None,
        track_ids: Iterable[str] = (),
        created_at: float | None = None,
    ) -> Playlist:
        """Create a playlist directly (the API itself cannot create playlists)."""
        if account not in self._accounts:
            raise KeyError(account)
        now = self.clock.time() if created_at is None else created_at
        playlist = Playlist(
            id=self._new_id("playlist"),
            owner=account,
            name=name,
            description=description,
            is_public=is_public,
            created_at=now,
            updated_at=now,
            track_ids=list(track_ids),
        )
        self._playlists[playlist.id] = playlist
        return playlist

    def _add_problem(self, account: str, playlist_id: str, track_id: str) -> str | None:
        playlist = self.visible_playlist(account, playlist_id)
        if playlist is None:
            return PLAYLIST_NOT_FOUND
        if playlist.owner != account:
            return NOT_AUTHORIZED
        track = self._generations.get(track_id)
        if track is None or track.deleted or (track.account != account and not track.is_public):
            return TRACK_NOT_FOUND
        if playlist.is_public and not track.is_public:
            return PRIVATE_INTO_PUBLIC
        if not playlist.is_public and track.account != account:
            return FOREIGN_INTO_PRIVATE
        if track_id in playlist.track_ids:
            return ALREADY_IN_PLAYLIST
        return None

    def add_tracks(
        self, account: str, playlist_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Add tracks one by one: (added ids, per-item errors keyed by `trackId`)."""
        added: list[str] = []
        errors: list[dict[str, str]] = []
        for track_id in track_ids:
            problem = self._add_problem(account, playlist_id, track_id)
            if problem is not None:
                errors.append({"trackId": track_id, "error": problem})
                continue
            playlist = self._playlists[playlist_id]
            playlist.track_ids.append(track_id)
            playlist.updated_at = self.clock.time()
            added.append(track_id)
        return added, errors

    def remove_tracks(
        self, account: str, playlist_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Take tracks out of an own playlist: (removed ids, per-item errors)."""
        removed: list[str] = []
        errors: list[dict[str, str]] = []
        playlist = self._playlists.get(playlist_id)
        for track_id in track_ids:
            if playlist is None or playlist.owner != account or track_id not in playlist.track_ids:
                errors.append({"trackId": track_id, "error": NOT_IN_PLAYLIST})
                continue
            playlist.track_ids.remove(track_id)
            playlist.updated_at = self.clock.time()
            removed.append(track_id)
        return removed, errors

    def move_tracks(
        self, account: str, source_id: str, target_id: str, track_ids: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Add each track to the target and, only if that worked, remove it from the source."""
        moved: list[str] = []
        errors: list[dict[str, str]] = []
        for track_id in track_ids:
            source = self.visible_playlist(account, source_id)
            if source is None:
                problem: str | None = PLAYLIST_NOT_FOUND
            elif source.owner != account:
                problem = NOT_AUTHORIZED
            elif track_id not in source.track_ids:
                problem = NOT_IN_PLAYLIST
            else:
                problem = self._add_problem(account, target_id, track_id)
            if source is None or problem is not None:
                errors.append({"trackId": track_id, "error": problem or PLAYLIST_NOT_FOUND})
                continue
            target = self._playlists[target_id]
            now = self.clock.time()
            target.track_ids.append(track_id)
            target.updated_at = now
            source.track_ids.remove(track_id)
            source.updated_at = now
            moved.append(track_id)
        return moved, errors
