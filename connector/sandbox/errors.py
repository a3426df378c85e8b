"""The error answers of the two fake APIs, each in its provider's envelope.

Raised by the state and the route handlers; a middleware renders them (the
Finetuning one in `app.py`, the TemPolor one in `tempolor.py`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class ApiError(Exception):
    """A Finetuning.ai error, answered as `{"error": {"code", "message"[, "details"]}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class TempolorApiError(Exception):
    """A TemPolor (useapi.net) error, answered as ``{"error": <message>, "code": <status>}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        """The JSON error response."""
        return web.json_response({"error": self.message, "code": self.status}, status=self.status)
