"""Rendering the web page: Jinja templates shipped in the package, and the headers
every page is answered with.

Templates autoescape everything, and the page loads nothing from outside the
machine: its one script is `/ui/app.js` (behind sign-in), its style is inline
under a per-answer nonce, and the Content-Security-Policy says so, so a value
that slipped through escaping still could not load or run anything.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from connector.providers.finetuning.models import iso_utc

__all__ = ["Renderer", "page_headers"]


def page_headers(nonce: str) -> dict[str, str]:
    """The security headers of every HTML answer (the sign-in page's too)."""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; "
            f"style-src 'nonce-{nonce}'; img-src 'self' data:; "
            # A track's audio comes from where the provider keeps it.
            "media-src 'self' http: https:; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null`
        # on the page's own forms. Nothing leaves for another site either way.
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def when(value: datetime | None) -> str:
    """A time as people read it: `2026-12-02 14:39:48 UTC`."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    """A `<time datetime>`: the journal's and the API's ISO 8601 UTC form, or empty."""
    return "" if value is None else iso_utc(value)


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`."""
    if value is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    return f"{seconds_text(max(0.0, seconds))} ago"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def took(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return "—"
    return seconds_text(max(0.0, (finished - started).total_seconds()))


def pretty(value: Any) -> str:
    """JSON as a person reads it: indented, keys sorted, non-ASCII kept."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def playable(url: Any) -> str | None:
    """An audio URL the player may load (http or https), else None."""
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return url
    return None


class Renderer:
    """Templates from `connector/web/templates`, the inline style, the page's script."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("connector.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            when=when, iso=iso, ago=ago, took=took, pretty=pretty, seconds=seconds_text
        )
        self._env.globals["playable"] = playable
        static = resources.files("connector.web") / "static"
        self.style = (static / "app.css").read_text(encoding="utf-8")
        self.script = (static / "app.js").read_text(encoding="utf-8").encode()

    def page(
        self,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        html = self._env.get_template(template).render(
            **context, nonce=nonce, style=self.style, now=datetime.now(UTC)
        )
        all_headers = page_headers(nonce)
        all_headers.update(headers or {})
        return web.Response(
            text=html, status=status, content_type="text/html", charset="utf-8", headers=all_headers
        )
