"""Action: add tracks to a playlist (by name or id), any number of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.plugin import PLAYLIST, ActionContext, ActionSpec

from ._common import ALREADY_IN_PLAYLIST, TRACKS, bulk_output


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Resolve the playlist, add in chunks of 100; "already in playlist" counts as done."""
    playlist_id = await context.finetuning.resolve_playlist(options["playlist"])
    result = await context.finetuning.add_tracks(playlist_id, options["tracks"])
    return {
        "playlist_id": playlist_id,
        **bulk_output(result, done_reasons=frozenset({ALREADY_IN_PLAYLIST})),
    }


ACTION = ActionSpec(
    key="add_to_playlist",
    title="Add to playlist",
    description="Adds tracks to one of your playlists, found by name (any case) or id. Public "
    "playlists take public tracks only; private playlists take your own tracks only.",
    schema=vol.Schema(
        {
            vol.Required("playlist", description="playlist name or id"): PLAYLIST,
            vol.Required("tracks", description="track id, or a list of ids"): TRACKS,
        }
    ),
    example={
        "action": "add_to_playlist",
        "playlist": "Focus Beats",
        "tracks": "{{ trigger.generation.id }}",
    },
    run=run,
    output_example={"playlist_id": "…", "succeeded": ["…"], "already_done": [], "errors": []},
)
