"""Pieces shared by the playlist and bulk actions."""

from __future__ import annotations

from typing import Any

from connector.errors import BulkOperationError
from connector.plugin import id_list, templatable
from connector.providers.finetuning.models import BulkResult

TRACKS = templatable(id_list)

ALREADY_IN_PLAYLIST = "Track already in playlist"
NOT_IN_PLAYLIST = "Track not found in playlist or not authorized"
NOT_OWNED = "Track not found or not owned by you"


def bulk_output(
    result: BulkResult, *, done_reasons: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The step output of a bulk call; raises when nothing at all was achieved.

    Items refused for a reason in `done_reasons` (e.g. already in the playlist)
    count as done: the state the user asked for holds.
    """
    done = [e.id for e in result.errors if e.reason in done_reasons]
    failures = [e for e in result.errors if e.reason not in done_reasons]
    if failures and not result.succeeded and not done:
        reasons = "; ".join(f"{e.id}: {e.reason}" for e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise BulkOperationError(f"no item succeeded: {reasons}{more}", code="BULK_FAILED")
    return {
        "succeeded": list(result.succeeded),
        "already_done": done,
        "errors": [{"id": e.id, "reason": e.reason} for e in failures],
        "requests": result.requests,
    }
