"""Action: move tracks from one playlist to another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.automation.templates import Template
from connector.errors import FieldProblem, RequestValidationError
from connector.plugin import PLAYLIST, ActionContext, ActionSpec

from ._common import TRACKS, bulk_output


def check(options: Mapping[str, Any]) -> None:
    """Refuse, at load time, a move whose source and target are written the same."""
    source, target = options.get("from"), options.get("to")
    if (
        isinstance(source, str)
        and isinstance(target, str)
        and source.casefold() == target.casefold()
    ):
        raise vol.Invalid("'from' and 'to' name the same playlist")
    if isinstance(source, Template) and source == target:
        raise vol.Invalid("'from' and 'to' are the same template")


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Each track is added to the target, then removed from the source if that worked.

    Before moving, the step journals which of its tracks the target already
    held. If a crash cuts the step short, the next attempt counts a track found
    in the target as moved by the earlier attempt only if it was not there
    before: a track that was in both playlists from the start stays an error.
    """
    client = context.finetuning
    source = await client.resolve_playlist(options["from"])
    target = await client.resolve_playlist(options["to"])
    if source == target:
        raise RequestValidationError([FieldProblem("to", "is the same playlist as 'from'")])
    tracks = list(options["tracks"])
    intent = context.intent() if context.resuming else None
    if intent is None or not isinstance(intent.get("in_target_before"), list):
        # Nothing of this step was sent yet: what the target holds now, it held before.
        held = set((await client.get_playlist(target)).track_ids)
        intent = {"in_target_before": [t for t in tracks if t in held]}
        await context.record_intent(intent)
    in_target_before = set(intent["in_target_before"])
    result = await client.move_tracks(source, target, tracks)
    if context.resuming:
        # An earlier attempt may have moved some: they are in the target now, and were not.
        target_ids = set((await client.get_playlist(target)).track_ids)
        moved_before = {
            e.id for e in result.errors if e.id in target_ids and e.id not in in_target_before
        }
        result = result.model_copy(
            update={
                "succeeded": [*result.succeeded, *sorted(moved_before)],
                "errors": [e for e in result.errors if e.id not in moved_before],
            }
        )
    return {"from_playlist_id": source, "to_playlist_id": target, **bulk_output(result)}


ACTION = ActionSpec(
    key="move_tracks",
    title="Move tracks",
    description="Moves tracks from one playlist to another (by name or id). A track the target "
    "refuses (privacy rules, already there) stays in the source and is reported.",
    schema=vol.Schema(
        {
            vol.Required("from", description="source playlist name or id"): PLAYLIST,
            vol.Required("to", description="target playlist name or id"): PLAYLIST,
            vol.Required("tracks", description="track id, or a list of ids"): TRACKS,
        }
    ),
    example={
        "action": "move_tracks",
        "from": "Inbox",
        "to": "Focus Beats",
        "tracks": "{{ trigger.generation.id }}",
    },
    run=run,
    check=check,
)
