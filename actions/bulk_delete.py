"""Action: permanently delete tracks (guarded: needs `confirm: true`, supports `dry_run`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.errors import NotFoundError
from connector.plugin import ActionContext, ActionSpec

from ._common import NOT_OWNED, TRACKS, bulk_output

DRY_RUN_LOOKUPS = 25  # beyond this, a dry run lists ids without looking each one up


def check(options: Mapping[str, Any]) -> None:
    """Deleting is permanent: the automation must say so explicitly to load."""
    if options.get("confirm") is not True:
        raise vol.Invalid(
            "bulk_delete deletes tracks permanently; add 'confirm: true' to this step to allow "
            "it (or 'dry_run: true' with 'confirm: true' to only report what it would delete)"
        )


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Delete in chunks of 100; with dry_run, report what would be deleted instead."""
    ids: list[str] = list(dict.fromkeys(options["tracks"]))
    client = context.finetuning
    if options["dry_run"]:
        if len(ids) > DRY_RUN_LOOKUPS:
            return {"dry_run": True, "would_delete": ids, "checked": False}
        found, missing = [], []
        for track_id in ids:
            try:
                await client.get_generation(track_id)
            except NotFoundError:
                missing.append(track_id)
            else:
                found.append(track_id)
        return {"dry_run": True, "would_delete": found, "not_found": missing, "checked": True}
    result = await client.delete_generations(ids)
    # After a crash mid-step, "not found" may be our own earlier deletion.
    done = frozenset({NOT_OWNED}) if context.resuming else frozenset()
    return {"dry_run": False, **bulk_output(result, done_reasons=done)}


ACTION = ActionSpec(
    key="bulk_delete",
    title="Delete tracks",
    description="Permanently deletes tracks (from the library, every playlist and public pages). "
    "Refuses to load without `confirm: true`; `dry_run: true` only reports.",
    schema=vol.Schema(
        {
            vol.Required("tracks", description="track id, or a list of ids"): TRACKS,
            # Optional in the schema so that check() can explain why it is needed.
            vol.Optional(
                "confirm", default=False, description="must be true: deleting cannot be undone"
            ): bool,
            vol.Optional(
                "dry_run", default=False, description="only report what would be deleted"
            ): bool,
        }
    ),
    example={
        "action": "bulk_delete",
        "tracks": "{{ trigger.generation.id }}",
        "confirm": True,
    },
    run=run,
    destructive=True,
    check=check,
)
