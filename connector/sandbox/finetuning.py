"""Route handlers of the Finetuning.ai public API v1.2 stand-in.

Shapes follow the Finetuning.ai public API v1.2 reference to the letter, quirks included: the
create response's createdAt is ISO without milliseconds and its
`parameters.timesignature` a string; the GET shapes use "YYYY-MM-DD HH:MM:SS"
for createdAt, ISO with milliseconds for completedAt and a numeric
timesignature; `errors` is omitted when every item of a bulk request succeeded.

Authentication, rate limits and faults are middlewares (`app.py`): a handler
here finds the authenticated `Account` in the request's `NOTES`.
"""

from __future__ import annotations

import json
import math
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import ApiError
from .formats import iso_millis, iso_seconds, number, sql_seconds
from .ratelimits import RateDecision
from .records import (
    GENERATION_TYPES,
    KEYS,
    LANGUAGES,
    SCALES,
    STATUSES,
    Account,
    Generation,
    GenerationParams,
    Playlist,
)
from .state import Sandbox
from .webhook_urls import webhook_problem

SANDBOX: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)


@dataclass
class Notes:
    """What the middlewares and the handler learn about one request, for the log and headers."""

    account: Account | None = None  # the authenticated account
    created_id: str | None = None  # id of the generation a create committed
    rate: RateDecision | None = None  # the decision behind the rate headers
    bucket: str | None = None  # the rate bucket the request was checked against
    fault: str | None = None  # the fault applied, if any
    dropped: bool = False  # the connection was closed unanswered


NOTES: ContextVar[Notes] = ContextVar("finetuning_sandbox_notes")
"""The `Notes` of the request being served; the request log (outermost middleware) sets a
fresh one per request. A context variable rather than the request's own mapping: typed
request keys (`web.RequestKey`) came with aiohttp 3.14, and 3.14 warns on plain string keys."""

MAX_IDS = 100


def _validation(message: str, field: str | None = None, **extra: Any) -> ApiError:
    details: dict[str, Any] | None = None
    if field is not None:
        details = {"field": field, **extra}
    return ApiError(400, "VALIDATION_ERROR", message, details=details)


def not_found(message: str = "Resource not found") -> ApiError:
    """404 NOT_FOUND in the error envelope."""
    return ApiError(404, "NOT_FOUND", message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or 400 VALIDATION_ERROR."""
    raw = await request.read()
    if not raw.strip():
        raise _validation("Request body is required and must be a JSON object")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _validation("Request body must be valid JSON") from exc
    if not isinstance(body, dict):
        raise _validation("Request body must be a JSON object")
    return body


def _account() -> Account:
    account = NOTES.get().account
    if account is None:  # unreachable behind the auth middleware
        raise ApiError(401, "MISSING_API_KEY", "X-API-Key header was not provided")
    return account


def _data(payload: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": payload}, status=status)


# --------------------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_string(body: dict[str, Any], name: str, max_length: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _validation(f"{name} must be a string", name)
    if len(value) > max_length:
        raise _validation(f"{name} must be at most {max_length} characters", name)
    return value


def _ranged_number(
    body: dict[str, Any], name: str, low: int, high: int, default: int, unit: str = ""
) -> int | float:
    value = body.get(name)
    if value is None:
        return default
    suffix = f" {unit}" if unit else ""
    if not _is_number(value):
        raise _validation(f"{name} must be a number between {low} and {high}{suffix}", name)
    if not low <= value <= high:
        raise _validation(f"{name} must be between {low} and {high}{suffix}", name)
    return number(value)


def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise _validation(f"{name} must be one of: {', '.join(allowed)}", name)
    return value


def _timesignature(body: dict[str, Any]) -> int:
    value = body.get("timesignature")
    if value is None:
        return 4
    message = 'timesignature must be between 2 and 7 (a string such as "4")'
    if isinstance(value, str):
        if not re.fullmatch(r"[2-7]", value):
            raise _validation(message, "timesignature")
        return int(value)
    # The integer form is accepted too (responses use both forms).
    if _is_number(value) and float(value).is_integer() and 2 <= value <= 7:
        return int(value)
    raise _validation(message, "timesignature")


def _seed(body: dict[str, Any]) -> int | None:
    value = body.get("seed")
    if value is None:
        return None
    if not _is_number(value) or not float(value).is_integer():
        raise _validation("seed must be an integer number", "seed")
    if abs(value) > 2**53:
        raise _validation("seed must be between -9007199254740992 and 9007199254740992", "seed")
    return int(value)


def parse_generation_body(body: dict[str, Any], *, strict_webhooks: bool) -> GenerationParams:
    """Validate a POST /v1/generations body (v1.2 ranges); unknown fields are ignored."""
    tags = body.get("tags")
    if tags is None:
        raise _validation("tags is required", "tags")
    if not isinstance(tags, str):
        raise _validation("tags must be a string", "tags")
    if not tags.strip():
        raise _validation("tags must not be empty", "tags")
    if len(tags) > 700:
        raise _validation("tags must be at most 700 characters", "tags")
    lyrics = _optional_string(body, "lyrics", 2000)
    duration = _ranged_number(body, "duration", 5, 210, 60, "seconds")
    bpm = _ranged_number(body, "bpm", 60, 200, 120)
    language = _enum(body, "language", LANGUAGES)
    key = _enum(body, "key", KEYS)
    scale = _enum(body, "scale", SCALES)
    timesignature = _timesignature(body)
    seed = _seed(body)
    webhook = _optional_string(body, "webhook", 2048)
    if webhook is not None:
        problem = webhook_problem(webhook, strict=strict_webhooks)
        if problem is not None:
            raise _validation(problem, "webhook")
    return GenerationParams(
        tags=tags,
        lyrics=lyrics,
        duration=duration,
        bpm=bpm,
        language=language,
        key=key,
        scale=scale,
        timesignature=timesignature,
        seed=seed,
        webhook=webhook,
    )


def parse_id_list(body: dict[str, Any], name: str) -> list[str]:
    """A bulk body's id array: 1 to 100 strings, or 400 VALIDATION_ERROR."""
    value = body.get(name)
    if value is None:
        raise _validation(f"{name} is required", name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _validation(f"{name} must be an array of strings", name)
    if not value:
        raise _validation(f"{name} must contain at least 1 item", name)
    if len(value) > MAX_IDS:
        raise _validation(f"{name} must contain at most {MAX_IDS} items", name, max=MAX_IDS)
    return value


def _query_int(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if high is None:
        message = f"{name} must be an integer greater than or equal to {low}"
    else:
        message = f"{name} must be an integer between {low} and {high}"
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise _validation(message, name)
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise _validation(message, name)
    return value


def _query_enum(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise _validation(f"{name} must be one of: {', '.join(allowed)}", name)
    return raw


# --------------------------------------------------------------------------- rendering


def render_created(generation: Generation, credits_remaining: int) -> dict[str, Any]:
    """The 202 body of POST /v1/generations."""
    return {
        "id": generation.id,
        "status": generation.status,
        "prompt": generation.prompt,
        "parameters": {
            "bpm": number(generation.bpm),
            "duration": number(generation.requested_duration),
            "timesignature": str(generation.timesignature),
            "language": generation.language,
            "keyscale": generation.keyscale,
            "seed": generation.seed,
        },
        "webhook": generation.webhook,
        "creditsRemaining": credits_remaining,
        "createdAt": iso_seconds(generation.created_at),
    }


def render_generation(sandbox: Sandbox, generation: Generation) -> dict[str, Any]:
    """A generation as GET /v1/generations/:id and the list show it."""
    completed_at = generation.completed_at
    return {
        "id": generation.id,
        "title": generation.title,
        "prompt": generation.prompt,
        "status": generation.status,
        "type": generation.type,
        "audioUrl": sandbox.audio_url(generation),
        "duration": generation.duration if generation.status == "completed" else None,
        "fileSize": generation.file_size if generation.status == "completed" else None,
        "isPublic": generation.is_public,
        "playCount": generation.play_count,
        "downloadCount": generation.download_count,
        "likeCount": generation.like_count,
        "parameters": {
            "bpm": number(generation.bpm),
            "duration": number(generation.requested_duration),
            "keyscale": generation.keyscale,
            "timesignature": generation.timesignature,
            "seed": generation.seed,
        },
        "errorMessage": generation.error_message if generation.status == "failed" else None,
        "generationTime": generation.generation_time,
        "createdAt": sql_seconds(generation.created_at),
        "completedAt": iso_millis(completed_at) if completed_at is not None else None,
    }


def render_playlist_track(sandbox: Sandbox, generation: Generation) -> dict[str, Any]:
    """A track inside GET /v1/playlists/:id."""
    return {
        "id": generation.id,
        "title": generation.title,
        "prompt": generation.prompt,
        "status": generation.status,
        "audioUrl": sandbox.audio_url(generation),
        "duration": generation.duration if generation.status == "completed" else None,
        "isPublic": generation.is_public,
        "createdAt": sql_seconds(generation.created_at),
    }


def render_playlist(
    sandbox: Sandbox, playlist: Playlist, *, viewer: str | None = None
) -> dict[str, Any]:
    """A playlist as the list shows it; with `viewer`, the detail shape (isOwner, tracks)."""
    tracks = [t for t in sandbox.playlist_tracks(playlist) if not t.deleted]
    total = sum(t.duration or 0.0 for t in tracks if t.status == "completed")
    data: dict[str, Any] = {
        "id": playlist.id,
        "name": playlist.name,
        "description": playlist.description,
        "trackCount": len(tracks),
        "totalDuration": round(total),
        "isPublic": playlist.is_public,
    }
    if viewer is not None:
        data["isOwner"] = playlist.owner == viewer
    data["createdAt"] = sql_seconds(playlist.created_at)
    data["updatedAt"] = sql_seconds(playlist.updated_at)
    if viewer is not None:
        data["tracks"] = [render_playlist_track(sandbox, t) for t in tracks]
    return data


def _partial(done_key: str, done: list[str], errors: list[dict[str, str]]) -> dict[str, Any]:
    payload: dict[str, Any] = {done_key: done}
    if errors:
        payload["errors"] = errors
    return payload


# --------------------------------------------------------------------------- handlers


async def health(request: web.Request) -> web.Response:
    """GET /health (no key): liveness, as `ft doctor` uses it."""
    return web.json_response({"status": "ok"})


async def get_me(request: web.Request) -> web.Response:
    """GET /v1/me: the account and its limits."""
    sandbox = request.app[SANDBOX]
    account = _account()
    return _data(
        {
            "id": account.user_id,
            "email": account.email,
            "name": account.name,
            "tier": account.tier,
            "limits": {
                "monthlyGenerations": account.monthly_generations,
                "generationsUsed": account.generations_used,
                "monthlyRemaining": account.monthly_remaining,
                "packCredits": account.pack_credits,
                "totalRemaining": account.total_remaining,
                "queueDepth": sandbox.queue_depth(account.name),
            },
        }
    )


async def create_generation(request: web.Request) -> web.Response:
    """POST /v1/generations: validate, spend a credit, enqueue; 202."""
    sandbox = request.app[SANDBOX]
    account = _account()
    body = await read_json_object(request)
    params = parse_generation_body(body, strict_webhooks=sandbox.config.strict_webhooks)
    generation = sandbox.create_generation(account.name, params)
    NOTES.get().created_id = generation.id
    return _data(render_created(generation, account.total_remaining), status=202)


async def list_generations(request: web.Request) -> web.Response:
    """GET /v1/generations: newest first, offset pagination, status and type filters."""
    sandbox = request.app[SANDBOX]
    account = _account()
    limit = _query_int(request, "limit", 20, 1, 100)
    offset = _query_int(request, "offset", 0, 0, None)
    status = _query_enum(request, "status", STATUSES)
    type_ = _query_enum(request, "type", GENERATION_TYPES)
    rows = sandbox.list_generations(account.name, status=status, type_=type_)
    page = rows[offset : offset + limit]
    has_more = offset + limit < len(rows)
    return _data(
        {
            "generations": [render_generation(sandbox, g) for g in page],
            "hasMore": has_more,
            "nextOffset": offset + limit if has_more else None,
        }
    )


async def get_generation(request: web.Request) -> web.Response:
    """GET /v1/generations/:id: one of your generations, else 404."""
    sandbox = request.app[SANDBOX]
    generation = sandbox.visible_generation(_account().name, request.match_info["id"])
    if generation is None:
        raise not_found("Generation not found")
    return _data(render_generation(sandbox, generation))


async def bulk_delete(request: web.Request) -> web.Response:
    """POST /v1/generations/bulk-delete: always 200, per-item errors keyed by `id`."""
    sandbox = request.app[SANDBOX]
    ids = parse_id_list(await read_json_object(request), "ids")
    deleted, errors = sandbox.delete_generations(_account().name, ids)
    return _data(_partial("deleted", deleted, errors))


async def list_playlists(request: web.Request) -> web.Response:
    """GET /v1/playlists: all of your playlists, no pagination."""
    sandbox = request.app[SANDBOX]
    playlists = sandbox.playlists(_account().name)
    return _data({"playlists": [render_playlist(sandbox, p) for p in playlists]})


async def get_playlist(request: web.Request) -> web.Response:
    """GET /v1/playlists/:id: yours, or another user's public one, with its tracks."""
    sandbox = request.app[SANDBOX]
    account = _account()
    playlist = sandbox.visible_playlist(account.name, request.match_info["id"])
    if playlist is None:
        raise not_found("Playlist not found")
    return _data(render_playlist(sandbox, playlist, viewer=account.name))


async def add_tracks(request: web.Request) -> web.Response:
    """POST /v1/playlists/:id/tracks: 200 when ≥1 added, else 400 ADD_FAILED with details."""
    sandbox = request.app[SANDBOX]
    track_ids = parse_id_list(await read_json_object(request), "trackIds")
    added, errors = sandbox.add_tracks(_account().name, request.match_info["id"], track_ids)
    if not added:
        raise ApiError(400, "ADD_FAILED", errors[0]["error"], details=errors)
    return _data(_partial("added", added, errors))


async def remove_tracks(request: web.Request) -> web.Response:
    """POST /v1/playlists/:id/tracks/bulk-remove: always 200."""
    sandbox = request.app[SANDBOX]
    track_ids = parse_id_list(await read_json_object(request), "trackIds")
    removed, errors = sandbox.remove_tracks(_account().name, request.match_info["id"], track_ids)
    return _data(_partial("removed", removed, errors))


async def move_tracks(request: web.Request) -> web.Response:
    """POST /v1/playlists/:id/tracks/move: 200 when ≥1 moved, else 400 MOVE_FAILED."""
    sandbox = request.app[SANDBOX]
    body = await read_json_object(request)
    track_ids = parse_id_list(body, "trackIds")
    target = body.get("targetPlaylistId")
    if target is None:
        raise _validation("targetPlaylistId is required", "targetPlaylistId")
    if not isinstance(target, str) or not target:
        raise _validation("targetPlaylistId must be a non-empty string", "targetPlaylistId")
    source = request.match_info["id"]
    if target == source:
        raise _validation(
            "targetPlaylistId must differ from the source playlist", "targetPlaylistId"
        )
    moved, errors = sandbox.move_tracks(_account().name, source, target, track_ids)
    if not moved:
        raise ApiError(400, "MOVE_FAILED", errors[0]["error"], details=errors)
    return _data(_partial("moved", moved, errors))


async def serve_audio(request: web.Request) -> web.Response:
    """GET /audio/{id}.mp3 and /{id}.mp3: the MP3 of a completed generation (no key)."""
    sandbox = request.app[SANDBOX]
    generation = sandbox.generation(request.match_info["id"])
    if generation is None or generation.deleted or generation.status != "completed":
        raise not_found("Audio not found")
    data = sandbox.audio_bytes(generation)
    if request.method == "GET":
        generation.download_count += 1
    return web.Response(
        body=data,
        content_type="audio/mpeg",
        headers={"Content-Disposition": f'inline; filename="{generation.id}.mp3"'},
    )


def add_routes(app: web.Application) -> None:
    """Register the Finetuning.ai routes (and the audio host) on `app`."""
    router = app.router
    router.add_get("/health", health)
    router.add_get("/v1/me", get_me)
    router.add_post("/v1/generations", create_generation)
    router.add_get("/v1/generations", list_generations)
    router.add_post("/v1/generations/bulk-delete", bulk_delete)
    router.add_get("/v1/generations/{id}", get_generation)
    router.add_get("/v1/playlists", list_playlists)
    router.add_get("/v1/playlists/{id}", get_playlist)
    router.add_post("/v1/playlists/{id}/tracks", add_tracks)
    router.add_post("/v1/playlists/{id}/tracks/bulk-remove", remove_tracks)
    router.add_post("/v1/playlists/{id}/tracks/move", move_tracks)
    router.add_get("/audio/{id}.mp3", serve_audio)
    router.add_get("/{id}.mp3", serve_audio)
