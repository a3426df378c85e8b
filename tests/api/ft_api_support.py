"""Helpers of the API's end-to-end tests: the config, a client that checks every answer.

The config has one API token per combination of scopes (and a second full
one, to show idempotency keys are per token). The sandbox is fast (tracks end
in a fraction of a second) unless a test asks for a held one, whose tracks
wait until the test completes them through the sandbox's ground truth.

`ApiClient` checks every answer against the OpenAPI document the server
serves (the status is one its operation declares, the body fits the declared
schema) and keeps every answer, so a test can search all of them for a
secret at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from multidict import CIMultiDict
from referencing import Registry as RefRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from connector.api.hooks import HookDeliverer
from connector.app import Connector
from connector.sandbox import SandboxConfig

# Tokens of the `api:` section: one per combination of scopes, and a second full one.
FULL = "full-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "other-token-cccccccccccccccccccccccccccc"
READER = "read-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
ACTOR = "act-token-dddddddddddddddddddddddddddddd"
BUTTON = "button-token-eeeeeeeeeeeeeeeeeeeeeeeeeee"  # read and act, `generate` only
TOKENS = (FULL, OTHER, READER, ACTOR, BUTTON)
# The sandbox account the connector's key belongs to.
ACCOUNT = "Demo User"

# Rate limits out of the way: the poller polls every 50 ms while a track runs.
_ROOMY: dict[str, Any] = {"read_limit": 100_000, "generation_limit": 1_000}
FAST = SandboxConfig(pending_delay=0.05, processing_delay=0.1, **_ROOMY)
# Tracks that never finish on their own: the test completes them (`complete_now`).
HELD = SandboxConfig(pending_delay=3600.0, processing_delay=3600.0, **_ROOMY)

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
    - name: other
      token: {other}
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
{automations}
"""

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def config_text(automations: str = "  []") -> str:
    return CONFIG.format(
        full=FULL,
        other=OTHER,
        reader=READER,
        actor=ACTOR,
        button=BUTTON,
        automations=automations,
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Answer:
    """One answer of the API: status, headers, the raw body and its JSON (None if none)."""

    status: int
    headers: Mapping[str, str]
    text: str
    body: Any

    def error(self, status: int, code: str) -> dict[str, Any]:
        """The `error` of an error answer, checked: this status and code, the API's shape."""
        assert self.status == status, self.text
        assert self.headers.get("Content-Type", "").startswith("application/json")
        assert isinstance(self.body, dict), self.text
        assert set(self.body) == {"error"}, self.body
        error = self.body["error"]
        assert set(error) == {"code", "message", "details"}, error
        assert error["code"] == code, error
        assert isinstance(error["message"], str)
        assert error["message"].strip()
        return dict(error)


class Document:
    """The served OpenAPI document, as a judge of answers."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._refs = RefRegistry().with_resource("urn:api", resource)
        self._paths: list[tuple[re.Pattern[str], str, bool]] = []
        for path in document["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
            self._paths.append((re.compile(f"^{pattern}$"), path, "{" in path))
        # A literal path (a typed action call) before the templates it also matches.
        self._paths.sort(key=lambda found: found[2])

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The documented path and operation a request went to (None: none)."""
        for pattern, template, _templated in self._paths:
            if pattern.match(path):
                operation = self.document["paths"][template].get(method.lower())
                if operation is not None:
                    return template, operation
        return None

    def check(self, method: str, path: str, answer: Answer) -> None:
        """The status is declared by the operation, and the body fits its schema."""
        found = self.operation(method, path)
        if found is None:
            return  # no such operation: the router's 404 or 405, checked by the tests
        template, operation = found
        responses = operation["responses"]
        where = f"{method} {template}"
        assert str(answer.status) in responses, f"{where} answered undeclared {answer.status}"
        declared = responses[str(answer.status)]
        if "content" not in declared:
            assert answer.text == "", f"{where} {answer.status} should have no body"
            return
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in (
                "paths",
                template,
                method.lower(),
                "responses",
                str(answer.status),
                "content",
                "application/json",
                "schema",
            )
        )
        validator = Draft202012Validator(
            {"$ref": f"urn:api#/{pointer}"}, registry=self._refs, format_checker=FormatChecker()
        )
        problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(answer.body)]
        assert not problems, f"{where} {answer.status} does not fit its schema: {problems[:5]}"


@dataclass
class ApiClient:
    """Requests to the API listener over a real loopback socket; checks and keeps answers."""

    base: str
    session: aiohttp.ClientSession
    token: str = FULL
    answers: list[Answer] = field(default_factory=list)
    _document: Document | None = None

    async def document(self) -> Document:
        if self._document is None:
            async with self.session.get(f"{self.base}/api/v1/openapi.json") as response:
                assert response.status == 200
                self._document = Document(await response.json())
        return self._document

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Answer:
        """`token` "": this client's token; another string: that one; None: no header."""
        sent: CIMultiDict[str] = CIMultiDict()
        chosen = self.token if token == "" else token
        if chosen is not None:
            sent.extend(auth(chosen))
        for name, value in (headers or {}).items():  # a header given twice is sent twice
            if name.lower() == "authorization":
                sent.popall(name, None)
            sent.add(name, value)
        document = await self.document()
        async with self.session.request(method, self.base + path, headers=sent, **kwargs) as r:
            text = await r.text()
            answer = Answer(r.status, dict(r.headers), text, json.loads(text) if text else None)
            requested = r.url.path
        self.answers.append(answer)
        document.check(method, requested, answer)
        return answer

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("DELETE", path, **kwargs)

    async def call(self, action: str, options: Mapping[str, Any], **kwargs: Any) -> Answer:
        return await self.post(f"/api/v1/actions/{action}", json=dict(options), **kwargs)

    async def run(self, run_id: str) -> dict[str, Any]:
        answer = await self.get(f"/api/v1/runs/{run_id}")
        assert answer.status == 200, answer.text
        run: dict[str, Any] = answer.body["run"]
        return run

    async def finished(self, run_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """The run once it is no longer running (read over the API)."""
        found: dict[str, Any] = {}

        async def ended() -> bool:
            found.update(await self.run(run_id))
            return bool(found["status"] != "running")

        await eventually(ended, timeout=timeout)
        return found

    async def all_pages(self, path: str, **params: str) -> list[list[dict[str, Any]]]:
        """Every page of a paged list, following `next_cursor` to its end."""
        pages: list[list[dict[str, Any]]] = []
        cursor: str | None = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            answer = await self.get(path, params=query)
            assert answer.status == 200, answer.text
            assert set(answer.body) == {"items", "next_cursor"}
            pages.append(answer.body["items"])
            cursor = answer.body["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 100, "paging does not end"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 60.0,
    interval: float = 0.02,
) -> None:
    """Wait until `check()` holds; fail (not hang) if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def fast_hooks(connector: Connector, **settings: Any) -> HookDeliverer:
    """Replace the connector's REST-hook deliverer by one with `settings` (a short backoff),
    wired to the runtime as `open_connector` wires its own. Before `start()`."""
    runtime = connector.runtime
    old = connector.hooks
    hooks = HookDeliverer(connector.store, runtime.registry, connector.session, **settings)
    runtime.outbox_targets = hooks.targets
    if old is not None:
        runtime.outbox_listeners.remove(old.wake)
    runtime.outbox_listeners.append(hooks.wake)
    connector.hooks = hooks
    return hooks


@dataclass
class Started:
    """A started connector with its API, and a client holding the full token."""

    connector: Connector
    client: ApiClient

    @property
    def truth(self) -> Any:
        """The sandbox's ground truth (`connector.sandbox.Sandbox`)."""
        assert self.connector.sandbox is not None
        return self.connector.sandbox.sandbox

    def ours(self) -> list[Any]:
        """The generations the connector made (the seeded ones are another app's)."""
        return [g for g in self.truth.generations(ACCOUNT) if not g.seeded]

    def seeded(self) -> list[str]:
        """Ids of the account's tracks that existed before the connector started."""
        return [g.id for g in self.truth.generations(ACCOUNT) if g.seeded]

    @property
    def state_dir(self) -> Path:
        return Path(self.connector.store.state_dir)


OpenApi = Callable[..., AbstractAsyncContextManager[Started]]
