"""How the journal writes values: JSON text, epoch seconds, ISO 8601 for readers.

Values given as JSON (event data, step outputs, cursors, intents) are encoded
leniently so journalling an outcome never fails after the action has already
happened: datetimes become ISO 8601 strings, sets and tuples lists, pydantic
models their JSON form, enums their value, anything else `str()`. They come
back as those JSON types. Times are stored as epoch seconds (REAL columns).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from connector.providers.finetuning.models import iso_utc
from connector.redaction import scrub

__all__ = ["encode_json", "epoch", "iso", "loads", "utc", "utc_required"]


def _json_default(value: Any) -> Any:
    # Lenient on purpose (see the module docstring): a step's outcome must be
    # journalled even if an action returned something JSON does not know.
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)


def _plain(value: Any) -> Any:
    """`value` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return _plain(_json_default(value))


def encode_json(value: Any) -> str:
    """JSON text as the store writes it (lenient; see the module docstring).

    Strict JSON (a non-finite float becomes null, so every reader of the journal
    gets standard JSON), and every registered secret is removed first: the
    journal is read by `ftconnect runs/events --json` and the web page, and a
    secret written once would stay in the file's free pages.

    For callers building `options_json` for `step_started` the same way.
    """
    return json.dumps(scrub(_plain(value)), separators=(",", ":"), allow_nan=False)


def loads(text: str | None) -> Any:
    """The JSON value of a column (None stays None)."""
    return json.loads(text) if text is not None else None


def epoch(value: datetime) -> float:
    """Epoch seconds of `value`; a naive datetime is UTC, as everywhere in the connector."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def utc(value: float | None) -> datetime | None:
    """The UTC datetime of epoch seconds (None stays None)."""
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def utc_required(value: float) -> datetime:
    """The UTC datetime of epoch seconds from a NOT NULL column."""
    return datetime.fromtimestamp(value, UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 (UTC, `Z`) for `--json` output (None stays None)."""
    return iso_utc(value) if value is not None else None
