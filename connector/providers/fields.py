"""Checks for request fields, shared by both providers' request models.

Each check takes the raw value a caller gave and returns it normalised, or
raises `ValueError` with a message that names what is allowed; pydantic turns
that into a field error, and `request_problems` turns those into one
`RequestValidationError` (one line per field), raised before anything is sent.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from connector.errors import FieldProblem, RequestValidationError

__all__ = ["bounded_text", "choice", "in_range", "is_number", "request_problems"]


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def in_range(name: str, value: Any, bounds: tuple[int, int], unit: str = "") -> Any:
    """A number (or numeric text) within `bounds`, inclusive; whole floats become ints."""
    low, high = bounds
    if isinstance(value, str):
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise ValueError(
                f"must be a number from {low} to {high}{unit} (got {value!r})"
            ) from None
    if not is_number(value):
        raise ValueError(f"must be a number from {low} to {high}{unit} (got {value!r})")
    if value != value or not low <= value <= high:  # NaN fails too
        raise ValueError(f"must be between {low} and {high}{unit} (got {value!r})")
    return int(value) if isinstance(value, float) and value.is_integer() else value


def bounded_text(value: Any, limit: int, *, required: bool) -> Any:
    """Text of at most `limit` characters; `required` text must not be blank."""
    if value is None:
        if required:
            raise ValueError("is required")
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be text (got {type(value).__name__})")
    if required and not value.strip():
        raise ValueError("must not be empty")
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters (got {len(value)})")
    return value


def choice(value: Any, allowed: tuple[str, ...], normalise: Callable[[str], str]) -> Any:
    """One of `allowed` after `normalise` (None passes: the server's default)."""
    if value is None:
        return None
    if isinstance(value, str):
        candidate = normalise(value)
        if candidate in allowed:
            return candidate
    raise ValueError(f"must be one of {', '.join(allowed)} (got {value!r})")


def request_problems(
    err: PydanticValidationError, what: str, known: Iterable[str]
) -> RequestValidationError:
    """Turn pydantic's errors into ours: one line per field, naming the allowed range.

    An unknown field gets a "did you mean" from `known`, the model's field names.
    """
    problems: list[FieldProblem] = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(body)"
        message = item["msg"]
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, list(known), n=1)
            message = "is not a valid option" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif item["type"] == "missing":
            message = "is required"
        problems.append(FieldProblem(field, message))
    return RequestValidationError(problems, what=what)
