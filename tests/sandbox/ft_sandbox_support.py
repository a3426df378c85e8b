"""Helpers for the Finetuning.ai sandbox tests: a thin JSON caller and a webhook receiver.

Deliberately independent of the project's client: these tests check the
sandbox's wire format with a plain aiohttp.ClientSession.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_DEFAULT: Any = object()


@dataclass
class Reply:
    """One HTTP answer: status, headers, the parsed JSON body (None if not JSON) and raw bytes."""

    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes

    @property
    def data(self) -> Any:
        """`body["data"]`, asserting the success envelope."""
        assert isinstance(self.body, dict), self.raw
        assert set(self.body) == {"data"}, self.body
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any]:
        """`body["error"]`, asserting the error envelope."""
        assert isinstance(self.body, dict), self.raw
        assert set(self.body) == {"error"}, self.body
        error = self.body["error"]
        assert isinstance(error, dict)
        assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, error
        return error


class Api:
    """Calls the sandbox with one API key (or none, or another one per call)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str | None):
        self.session = session
        self.base_url = base_url
        self.api_key = api_key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = _DEFAULT,
        data: bytes | str | None = None,
        key: str | None = _DEFAULT,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request and read the whole answer."""
        sent: dict[str, str] = dict(headers or {})
        api_key = self.api_key if key is _DEFAULT else key
        if api_key is not None:
            sent["X-API-Key"] = api_key
        kwargs: dict[str, Any] = {"headers": sent}
        if json_body is not _DEFAULT:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        async with self.session.request(method, self.base_url + path, **kwargs) as response:
            raw = await response.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            return Reply(response.status, dict(response.headers), body, raw)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        """GET `path`."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = _DEFAULT, **kwargs: Any) -> Reply:
        """POST `body` as JSON to `path`."""
        return await self.request("POST", path, json_body=body, **kwargs)

    async def create(self, **fields: Any) -> Reply:
        """POST /v1/generations with `fields` (tags defaulted)."""
        return await self.post("/v1/generations", {"tags": "lofi chill piano night", **fields})


@dataclass
class Hit:
    """One request a receiver got."""

    headers: dict[str, str]
    body: Any
    path_qs: str


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 (port 0) answering `status` after `delay` seconds."""

    status: int = 200
    delay: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> Receiver:
        """Start listening."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    def url(self, path: str = "/hook?token=s3cret") -> str:
        """A URL on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.hits.append(Hit(dict(request.headers), body, request.path_qs))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"ok": self.status < 400}, status=self.status)

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
