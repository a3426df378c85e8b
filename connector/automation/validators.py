"""Validators shared by the schemas of triggers, actions and the file's sections (voluptuous).

Fields that may hold a template are wrapped with `templatable(...)`: at load
time a `Template` passes as is; at run time the rendered value is validated
again by the same schema, so a template that renders out of range fails that
run with the field's own message.

The validators carry attributes the JSON Schema export reads (`inner`,
`choices`, `bounds`, or a whole `json_schema` attached with `exported`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import voluptuous as vol

from connector.automation.templates import Template
from connector.providers import PROVIDERS

_V = TypeVar("_V", bound=Callable[..., Any])


def exported(json_schema: dict[str, Any]) -> Callable[[_V], _V]:
    """Attach to a validator the JSON Schema it stands for.

    `connector.automation.jsonschema` reads it for the export and for the README's config
    reference; `x-allowed` there is the "allowed" column in words.
    """

    def attach(validator: _V) -> _V:
        validator.json_schema = json_schema  # type: ignore[attr-defined]
        return validator

    return attach


def optional(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None, or a value `validator` accepts."""

    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    validate.__name__ = "optional"
    validate.inner = validator  # type: ignore[attr-defined]  # read by the JSON Schema export
    return validate


def templatable(validator: Any) -> Any:
    """Accept a compiled template (checked after rendering) or a value `validator` accepts."""
    inner = vol.Schema(validator)

    def validate(value: Any) -> Any:
        if isinstance(value, Template):
            return value
        return inner(value)

    validate.__name__ = "templatable"
    validate.inner = validator  # type: ignore[attr-defined]  # read by the JSON Schema export
    return validate


def id_list(value: Any) -> list[str]:
    """One id, a comma-separated string of ids, or a list of ids -> a list of ids.

    A list may also hold lists of ids or objects with an `id` (what a template that
    renders another step's generations gives); anything else in it (null, true, an
    object without an id) is refused rather than turned into an id such as "None"."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = []
        for item in value:
            nested = item if isinstance(item, list | tuple) else [item]
            items.extend(_one_id(i) for i in nested)
    elif isinstance(value, dict) and "id" in value:
        items = [_one_id(value)]
    else:
        raise vol.Invalid(f"expected an id or a list of ids, got {type(value).__name__}")
    ids = [item for item in items if item]
    if not ids:
        raise vol.Invalid("expected at least one id")
    return ids


def _one_id(item: Any) -> str:
    """One id of a list: text, a whole number, or an object's `id` that is one."""
    if isinstance(item, dict) and "id" in item:
        item = item["id"]
    if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
        return str(item).strip()
    shown = "an object without an id" if isinstance(item, dict) else repr(item)
    raise vol.Invalid(f"expected ids (text), got {shown} in the list")


def expand_home(text: str) -> Path | None:
    """`text` as a path with a leading `~` or `~user` expanded; None when that user has
    no home here (pathlib raises for it)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return None


def no_home(text: str) -> str:
    """The problem of a path `expand_home` could not expand."""
    user = text[1:].split("/", 1)[0]
    who = f"user {user!r}" if user else "the current user"
    return f"{text!r} starts with ~, but {who} has no home folder on this machine"


def one_of(*choices: str) -> Callable[[Any], str]:
    """A string among `choices`, compared case-insensitively, with a message listing them."""
    lowered = {choice.lower(): choice for choice in choices}

    def validate(value: Any) -> str:
        if isinstance(value, str) and value.lower() in lowered:
            return lowered[value.lower()]
        raise vol.Invalid(f"must be one of {', '.join(choices)} (got {value!r})")

    validate.__name__ = "one_of"
    validate.choices = choices  # type: ignore[attr-defined]  # read by the JSON Schema export
    return validate


def number_range(low: float, high: float, unit: str = "") -> Any:
    """A number in [low, high], with a message naming the range."""

    def validate(value: Any) -> float | int:
        number: float | int
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                number = float(value) if "." in str(value) else int(value)
            except (TypeError, ValueError):
                raise vol.Invalid(
                    f"must be a number from {low:g} to {high:g}{unit} (got {value!r})"
                ) from None
        else:
            number = value
        if not low <= number <= high:
            raise vol.Invalid(f"must be between {low:g} and {high:g}{unit} (got {value!r})")
        return number

    validate.__name__ = "number_range"
    validate.bounds = (low, high)  # type: ignore[attr-defined]  # read by the JSON Schema export
    return validate


def positive_seconds(value: Any) -> float:
    """A duration in seconds: a number > 0."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise vol.Invalid(f"must be a number of seconds (got {value!r})") from None
    if seconds <= 0:
        raise vol.Invalid(f"must be more than 0 seconds (got {value!r})")
    return seconds


PROVIDER = one_of(*PROVIDERS)


# An option that names a playlist (by id or by name): `check` looks these up in
# the account, so actions must declare their playlist options with this object.
PLAYLIST = templatable(vol.All(str, vol.Length(min=1)))
