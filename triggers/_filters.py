"""Filters shared by the generation triggers (track_completed, generation_failed)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.plugin import PROVIDER, Event


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise vol.Invalid(f"expected a word or a list of words (got {value!r})")


def _regex(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid(f"expected a regular expression (got {value!r})")
    try:
        re.compile(value)
    except re.error as err:
        raise vol.Invalid(f"is not a valid regular expression: {err}") from None
    return value


FILTER_OPTIONS: dict[Any, Any] = {
    vol.Optional("provider", description="only this provider (finetuning or tempolor)"): PROVIDER,
    vol.Optional(
        "tags_contain",
        description="only when the tags (prompt) contain every one of these words, any case",
    ): _words,
    vol.Optional(
        "tags_match", description="only when the tags match this regular expression, any case"
    ): _regex,
    vol.Optional(
        "only_submitted_by_connector",
        default=False,
        description="only generations this connector submitted (not the web app or other tools)",
    ): bool,
}


def passes_filters(event: Event, options: Mapping[str, Any]) -> bool:
    """Whether a generation event passes the provider, tag and origin filters."""
    generation = event.generation
    if generation is None:
        return False
    if options.get("provider") and event.provider != options["provider"]:
        return False
    tags = (generation.prompt or "").casefold()
    if any(word.casefold() not in tags for word in options.get("tags_contain") or []):
        return False
    pattern = options.get("tags_match")
    if pattern and not re.search(pattern, generation.prompt or "", re.IGNORECASE):
        return False
    return not (options.get("only_submitted_by_connector") and not event.submitted_by_connector)
