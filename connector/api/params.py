"""Reading a request's parameters strictly: numbers, cursors and the Idempotency-Key.

A bad `limit` is a 400 that names the range, never a default silently used;
numbers are plain digits (Python's `int()` would take `1_0` and ` 1`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from connector.api.errors import ApiError
from connector.api.views import CursorError, decode_cursor

__all__ = ["body_hash", "cursor", "idempotency_key", "number"]

_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def number(
    request: web.Request,
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    whole: bool = False,
) -> float:
    values = request.query.getall(name, [])
    if not values:
        return default
    what = "a whole number" if whole else "a number"
    problem = ApiError(400, f"{name} must be {what} from {low:g} to {high:g}")
    if len(values) > 1:
        raise problem
    if not _DECIMAL.fullmatch(values[0]) or (whole and "." in values[0]):
        raise problem  # int() and float() take "1_0", " 1", "1e3": the document does not
    value = int(values[0]) if whole else float(values[0])
    if not math.isfinite(value) or not low <= value <= high:
        raise problem
    return value


def cursor(request: web.Request) -> tuple[float, str] | None:
    cursor = request.query.get("cursor")
    if not cursor:
        return None
    try:
        return decode_cursor(cursor)
    except CursorError as err:
        raise ApiError(400, str(err)) from None


def idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall("Idempotency-Key", [])
    if not values:
        return None
    value = values[0]
    if "{{" in value or "}}" in value:
        raise ApiError(
            400,
            "Idempotency-Key looks like an expression that was not evaluated (it holds {{ }}): "
            "in n8n, switch the header's value to Expression",
        )
    if (
        len(values) > 1
        or not 1 <= len(value) <= 255
        or not value.isascii()
        or not value.isprintable()
        or value != value.strip()
    ):
        raise ApiError(
            400, "Idempotency-Key must be 1 to 255 printable ASCII characters, given once"
        )
    return value


def body_hash(action: str, options: Mapping[str, Any]) -> str:
    canonical = json.dumps([action, options], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
