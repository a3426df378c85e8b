"""Action: take tracks out of a playlist; they stay in the library."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.plugin import PLAYLIST, ActionContext, ActionSpec

from ._common import NOT_IN_PLAYLIST, TRACKS, bulk_output


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Resolve the playlist and remove in chunks of 100 (a resumed step reconciles)."""
    playlist_id = await context.finetuning.resolve_playlist(options["playlist"])
    result = await context.finetuning.remove_tracks(playlist_id, options["tracks"])
    # After a crash mid-step, "not in the playlist" may be our own earlier removal.
    done = frozenset({NOT_IN_PLAYLIST}) if context.resuming else frozenset()
    return {"playlist_id": playlist_id, **bulk_output(result, done_reasons=done)}


ACTION = ActionSpec(
    key="remove_from_playlist",
    title="Remove from playlist",
    description="Takes tracks out of one of your playlists (by name or id). The tracks stay in "
    "your library; use bulk_delete to delete them.",
    schema=vol.Schema(
        {
            vol.Required("playlist", description="playlist name or id"): PLAYLIST,
            vol.Required("tracks", description="track id, or a list of ids"): TRACKS,
        }
    ),
    example={
        "action": "remove_from_playlist",
        "playlist": "Inbox",
        "tracks": "{{ trigger.generation.id }}",
    },
    run=run,
)
