"""Reading and validating a TemPolor (useapi.net) request: the body, each parameter's rules.

Every refusal is a `TempolorApiError` 400 with useapi.net's wording
("Parameter <name> ..."). What a request taught the sandbox (who called, the
body as parsed) goes into its `Notes`, for the recorder's request log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from .errors import TempolorApiError
from .tempolor_records import INSTRUMENTAL_MODELS, SONG_MODELS, TONALITIES


@dataclass
class Notes:
    """Per-request notes for the recorder: who called, and the body as parsed."""

    account: str | None = None
    body: dict[str, Any] | None = None


# The notes of the request being served, set per request by the TemPolor middleware
# (`tempolor.py`). A context variable rather than the request's own mapping: typed request keys
# (`web.RequestKey`) came with aiohttp 3.14, and 3.14 warns on plain string keys.
NOTES: ContextVar[Notes] = ContextVar("tempolor_sandbox_notes")


async def read_params(request: web.Request) -> dict[str, Any]:
    """The body as a dict, from JSON or multipart/form-data (or urlencoded)."""
    params: dict[str, Any]
    if not request.body_exists:
        params = {}
    elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        params = {}
        for name, value in form.items():
            if isinstance(value, str):
                params[name] = value
            elif isinstance(value, web.FileField):  # a part sent as a file: take its text
                params[name] = value.file.read().decode("utf-8", errors="replace")
            else:
                params[name] = bytes(value).decode("utf-8", errors="replace")
    else:
        try:
            data = json.loads(await request.text())
        except ValueError:
            raise TempolorApiError(
                400, "Request body must be JSON or multipart/form-data"
            ) from None
        if not isinstance(data, dict):
            raise TempolorApiError(400, "Request body must be a JSON object")
        params = data
    NOTES.get().body = params
    return params


def text_param(
    params: Mapping[str, Any], name: str, max_length: int, *, required: bool = False
) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise TempolorApiError(400, f"Parameter {name} is required")
        return ""
    if not isinstance(value, str):
        raise TempolorApiError(400, f"Parameter {name} must be a string")
    if required and not value.strip():
        raise TempolorApiError(400, f"Parameter {name} is required")
    if len(value) > max_length:
        raise TempolorApiError(
            400,
            f"Parameter {name} must be at most {max_length} characters long (got {len(value)})",
        )
    return value


def choice_param(
    params: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str
) -> str:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise TempolorApiError(400, f"Parameter {name} must be one of: {', '.join(choices)}")
    return str(value)


def integer_param(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value)
    ):
        number = int(value)
    if number is None or not low <= number <= high:
        raise TempolorApiError(400, f"Parameter {name} must be an integer from {low} to {high}")
    return number


def reply_url_param(params: Mapping[str, Any]) -> str:
    value = text_param(params, "replyUrl", 1024)
    if value:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise TempolorApiError(400, "Parameter replyUrl must be an http or https URL")
    return value


def identifier_param(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TempolorApiError(400, f"Parameter {name} must be a string")
    return str(value)


def song_params(params: Mapping[str, Any]) -> dict[str, Any]:
    validated: dict[str, Any] = {
        "prompt": text_param(params, "prompt", 2000, required=True),
        "lyrics": text_param(params, "lyrics", 3000),
        "model": choice_param(params, "model_song", SONG_MODELS, "v3.5"),
    }
    for name in ("artistVoiceItemId", "clonedVoiceItemId", "midiItemId"):
        validated[name] = identifier_param(params, name)
    return validated


def instrumental_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt": text_param(params, "prompt", 2000, required=True),
        "model": choice_param(params, "model_instrumental", INSTRUMENTAL_MODELS, "i3.5 beta"),
        "tonality": choice_param(params, "tonality", TONALITIES, ""),
        "bpm": integer_param(params, "bpm", 50, 190),
        "chords": text_param(params, "chords", 200),
    }


def parse_request_params(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        raise TempolorApiError(400, "Parameter requestParams is required")
    if isinstance(value, str):  # multipart bodies carry it as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise TempolorApiError(400, "Parameter requestParams must be a JSON object") from None
    if not isinstance(value, dict):
        raise TempolorApiError(400, "Parameter requestParams must be a JSON object")
    return value
