"""Helpers of the web page's tests: the config, a cookie-keeping client, ground truth.

`Browser` is an aiohttp session with its own cookie jar that sends what a
browser sends with a form (`Origin`, `Sec-Fetch-Site`) unless told otherwise,
and never follows redirects on its own: the tests assert each one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from connector.app import Connector
from connector.sandbox import SandboxConfig

FULL = "web-full-token-aaaaaaaaaaaaaaaaaaaaaaaa"
READER = "web-read-token-bbbbbbbbbbbbbbbbbbbbbbbb"
ACTOR = "web-act-token-cccccccccccccccccccccccccc"
BUTTON = "web-button-token-dddddddddddddddddddddd"  # read and act, `generate` only
TOKENS = (FULL, READER, ACTOR, BUTTON)

FAST = SandboxConfig(
    pending_delay=0.05, processing_delay=0.1, read_limit=100_000, generation_limit=1_000
)

CONFIG = """
poll:
  idle_interval: 0.5
  active_interval: 0.05
api:
  listen: 127.0.0.1:8124
  tokens:
    - name: full
      token: {full}
      scopes: [read, act]
    - name: reader
      token: {reader}
    - name: actor
      token: {actor}
      scopes: [act]
    - name: button
      token: {button}
      scopes: [read, act]
      actions: [generate]
automations:
  - id: file_in_focus
    alias: File every finished track in Focus Beats
    triggers:
      - trigger: track_completed
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{{{ trigger.generation.id }}}}"
  - id: file_nowhere
    alias: File every finished track in a playlist that does not exist
    triggers:
      - trigger: track_completed
    actions:
      - action: add_to_playlist
        playlist: No Such Playlist
        tracks: "{{{{ trigger.generation.id }}}}"
"""

PAGES = ("/", "/runs", "/events", "/hooks", "/ui/app.js")


def config_text() -> str:
    return CONFIG.format(full=FULL, reader=READER, actor=ACTOR, button=BUTTON)


@dataclass
class Page:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def rows(self, attribute: str) -> list[str]:
        """The values of `attribute` on the page's table rows, in order."""
        return re.findall(rf'<tr {attribute}="([^"]+)"', self.text)

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, "the page has no form with a CSRF token"
        return found.group(1)


@dataclass
class Browser:
    base: str
    session: aiohttp.ClientSession
    seen: list[str]

    async def get(self, path: str, **headers: str) -> Page:
        async with self.session.get(
            self.base + path, allow_redirects=False, headers=headers
        ) as answer:
            page = Page(answer.status, dict(answer.headers), await answer.text())
        self.seen.append(page.text)
        return page

    async def post(
        self,
        path: str,
        form: Mapping[str, str],
        *,
        origin: str | None = "",
        site: str | None = "same-origin",
    ) -> Page:
        headers = {}
        if origin is not None:
            headers["Origin"] = origin or self.base
        if site is not None:
            headers["Sec-Fetch-Site"] = site
        async with self.session.post(
            self.base + path, data=dict(form), allow_redirects=False, headers=headers
        ) as answer:
            page = Page(answer.status, dict(answer.headers), await answer.text())
        self.seen.append(page.text)
        return page

    async def sign_in(self, token: str, next_path: str | None = None) -> Page:
        form = {"token": token}
        if next_path is not None:
            form["next"] = next_path
        return await self.post("/signin", form)

    def cookie(self) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == "ftc_session":
                return cookie.value
        return None


@dataclass
class Site:
    connector: Connector
    base: str
    api_session: aiohttp.ClientSession
    sessions: list[aiohttp.ClientSession]
    seen: list[str] = field(default_factory=list)

    def browser(self) -> Browser:
        # unsafe=True: the jar keeps cookies of an IP address host (127.0.0.1).
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(session)
        return Browser(self.base, session, self.seen)

    async def signed_in(self, token: str = FULL) -> Browser:
        browser = self.browser()
        page = await browser.sign_in(token)
        assert page.status == 303, page.text[:500]
        return browser

    async def api(self, method: str, path: str, token: str = FULL, **kwargs: Any) -> Any:
        async with self.api_session.request(
            method, self.base + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        ) as answer:
            body = await answer.json()
            self.seen.append(str(body))
            assert answer.status < 300, body
            return body

    async def generate(self, tags: str = "lofi chill piano", duration: int = 5) -> str:
        """Generate a track through the API and wait until the automations it starts
        have ended; the generation's id."""
        body = await self.api(
            "POST",
            "/api/v1/actions/generate?wait=30",
            json={"tags": tags, "duration": duration, "wait": True},
        )
        generation_id: str = body["run"]["steps"][0]["output"]["id"]
        store = self.connector.runtime.store

        def ended() -> bool:
            runs = [
                run
                for run in store.runs(limit=200)
                if run.event_key == f"finetuning:{generation_id}:completed"
            ]
            return len(runs) == 2 and all(run.status != "running" for run in runs)

        assert await eventually(ended), "the automations did not run"
        return generation_id


async def eventually(predicate: Callable[[], bool], *, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()
