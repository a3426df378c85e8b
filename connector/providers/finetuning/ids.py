"""Finetuning.ai ids: the playlist-id shape and the id lists of the bulk endpoints.

Ids are opaque strings to the connector: never validated by shape (the docs show
`gen_…` and UUIDs for generations, UUIDs and `pl_…` for playlists). The one use of
a shape is telling a playlist id from a playlist name. Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from connector.errors import FieldProblem, RequestValidationError

__all__ = ["MAX_BULK_IDS", "UUID_PATTERN", "chunked", "looks_like_playlist_id", "validate_ids"]

MAX_BULK_IDS = 100
"""The most ids one bulk request (delete, add, remove, move) may carry."""

UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def looks_like_playlist_id(reference: str) -> bool:
    """Whether `reference` is shaped like a playlist id (a UUID or `pl_…`) rather than a name."""
    return bool(UUID_PATTERN.fullmatch(reference)) or reference.startswith("pl_")


def validate_ids(ids: Iterable[str], *, field: str = "ids") -> list[str]:
    """Check a list of ids for a bulk call and drop repeats, keeping the order."""
    if isinstance(ids, str):
        raise RequestValidationError([FieldProblem(field, "must be a list of ids, not one string")])
    unique: list[str] = []
    seen: set[str] = set()
    for position, item in enumerate(ids):
        if not isinstance(item, str) or not item.strip():
            raise RequestValidationError(
                [FieldProblem(f"{field}[{position}]", f"must be a non-empty id (got {item!r})")]
            )
        if item not in seen:
            seen.add(item)
            unique.append(item)
    if not unique:
        raise RequestValidationError([FieldProblem(field, "must hold at least one id")])
    return unique


def chunked(ids: list[str], size: int = MAX_BULK_IDS) -> list[list[str]]:
    """Split ids into the chunks of at most 100 that one bulk request may carry."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]
