"""What the API answers: runs, steps, events, hooks and pages as JSON, one shape each.

The shapes are the ones `connector.api.openapi` declares; every time is ISO
8601 UTC with `Z`. A page's cursor is opaque to the caller: the position of
its last item (time and id), so paging is stable while new items arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from connector.journal.codec import epoch, iso
from connector.journal.events import EventRow
from connector.journal.hooks import HookRow
from connector.journal.runs import RunRow, StepRow

__all__ = ["CursorError", "decode_cursor", "encode_cursor", "event_view", "hook_view", "run_view"]


class CursorError(ValueError):
    """A `cursor` this API did not give."""


def run_view(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.run_id,
        "automation": row.automation_id,
        "status": row.status,
        "error": row.error,
        "event_key": row.event_key,
        "replay_of": row.replay_of,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "steps": [step_view(step) for step in row.steps],
    }


def step_view(step: StepRow) -> dict[str, Any]:
    return {
        "index": step.step_index,
        "id": step.step_id,
        "action": step.action,
        "status": step.status,
        "attempt": step.attempt,
        "options": step.options if isinstance(step.options, Mapping) else None,
        "output": step.output,
        "error": step.error,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
    }


def event_view(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.key,
        "kind": row.kind,
        "provider": row.provider,
        "source": row.source,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "submitted_by_connector": row.submitted_by_connector,
        "generation": row.generation if isinstance(row.generation, Mapping) else None,
        "data": row.data if isinstance(row.data, Mapping) else {},
    }


def hook_view(row: HookRow, *, secret: str | None = None) -> dict[str, Any]:
    """A hook as the API shows it. Its target URL in full only with its secret (the
    answer that creates it): a catch URL's path or query is often its credential, and
    any token that reads may list the hooks; later, scheme, host and port say which."""
    view: dict[str, Any] = {
        "id": row.hook_id,
        "trigger": row.trigger,
        "target_url": row.target_url if secret is not None else masked_url(row.target_url),
        "filter": dict(row.filter),
        "created_at": iso(row.created_at),
        "pending": row.pending,
        "delivered": row.delivered,
        "failed": row.failed,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "last_attempt_at": iso(row.last_attempt_at),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def masked_url(url: str) -> str:
    """`scheme://host:port/…`: where a URL goes, without its path, query or user."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    host = f"[{host}]" if ":" in host else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def page(items: Sequence[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": list(items), "next_cursor": next_cursor}


def encode_cursor(at: datetime, item_id: str) -> str:
    raw = json.dumps([epoch(at), item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (epoch, id) a cursor stands for; CursorError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise CursorError("cursor is not one this API gave (pass next_cursor as is)") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int | float)
        or isinstance(value[0], bool)
        or not math.isfinite(value[0])
        or not isinstance(value[1], str)
    ):
        raise CursorError("cursor is not one this API gave (pass next_cursor as is)")
    return float(value[0]), value[1]
