"""The API's error answers: one JSON shape, a code a client can branch on, never a 500.

Every answer that is not a success is
`{"error": {"code": "...", "message": "...", "details": ...}}`: `code` is
stable (what a flow branches on), `message` is for people and says what was
wrong and where, `details` carries the field problems of a 422 (each with its
`path`, as `ftconnect check` names them) or is null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from connector.ingress.server import json_response

__all__ = ["ERROR_CODES", "ApiError", "error_response"]

# The code of each status when nothing more precise is said.
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "validation_failed",
    503: "unavailable",
}
# Every `error.code` the server answers with, and its status (the document's enum).
ERROR_CODES: Mapping[str, int] = {
    **{code: status for status, code in CODES.items()},
    "idempotency_key_reused": 422,  # an Idempotency-Key reused with another body
}


class ApiError(Exception):
    """An answer other than success: status, code, message and details."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_response(err: ApiError) -> web.Response:
    body = {"error": {"code": err.code, "message": err.message, "details": err.details}}
    return json_response(body, err.status, err.headers or None)
