"""Bulk calls (delete, playlist add/remove/move) and their report: ids done on stdout (or
--json), per-item failures on stderr, exit 0 when at least one item succeeded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from connector.cli.context import Context
from connector.cli.output import EXIT_ERROR, EXIT_OK, print_json

if TYPE_CHECKING:
    from connector.providers.finetuning.models import BulkResult

PRIVATE_INTO_PUBLIC = "Cannot add private track to public playlist"
ALREADY_IN_PLAYLIST = "Track already in playlist"  # as actions/_common.py (a test keeps them equal)
PRIVATE_INTO_PUBLIC_HINT = (
    "make the track public in the web app first; the API never changes a track's visibility"
)


async def bulk(
    ctx: Context,
    call: Callable[[], Awaitable[BulkResult]],
    *,
    done_key: str,
    id_key: str = "trackId",
    already: tuple[str, str] | None = None,
) -> int:
    """Run a bulk call and report it: ids done on stdout (or --json), failures on stderr.

    `already` = (JSON key, words): items refused because they are already as asked
    (a track already in the playlist) count as done and are said apart.
    """
    from connector.errors import ProviderError
    from connector.providers.finetuning.models import BulkResult

    try:
        result = await call()
    except ProviderError as err:
        # A later chunk failed: what earlier chunks did has happened and must be shown.
        partial = err.partial_result
        if isinstance(partial, BulkResult) and partial.succeeded:
            _report(ctx, partial, done_key=done_key, id_key=id_key, already=already)
            ctx.note(f"{len(partial.succeeded)} {done_key} before the error")
        raise
    done_already = _report(ctx, result, done_key=done_key, id_key=id_key, already=already)
    total = len(result.succeeded) + len(result.errors)
    if not result.succeeded and not done_already:
        ctx.fail(f"nothing {done_key}: all {total} failed")
        return EXIT_ERROR
    there = f" ({len(done_already)} {already[1]})" if already and done_already else ""
    ctx.note(f"{done_key} {len(result.succeeded)} of {total}{there}")
    return EXIT_OK


def _report(
    ctx: Context,
    result: BulkResult,
    *,
    done_key: str,
    id_key: str,
    already: tuple[str, str] | None = None,
) -> list[str]:
    """Print what a bulk call did; returns the ids that were already as asked."""
    done_already = [e.id for e in result.errors if already and e.reason == ALREADY_IN_PLAYLIST]
    failures = [e for e in result.errors if e.id not in done_already]
    for error in failures:
        ctx.warn(f"{error.id}: {error.reason}")
    if already:
        for item in done_already:
            ctx.note(f"{item}: {already[1]}")
    if any(error.reason == PRIVATE_INTO_PUBLIC for error in failures):
        ctx.hint(PRIVATE_INTO_PUBLIC_HINT)
    if ctx.args.json:
        # The API's own shape, merged over chunks; `errors` always present for scripts.
        errors = [{id_key: e.id, "error": e.reason} for e in failures]
        data: dict[str, Any] = {done_key: result.succeeded, "errors": errors}
        if already and done_already:
            data[already[0]] = done_already
        print_json(data)
    else:
        for item in result.succeeded:
            print(item)
    return done_already
