"""Helpers of the browser tests: a real `ftconnect run`, its API, and Debian's Chromium.

The daemon is the real `python -m connector.cli run FILE` on the embedded
sandbox (no key anywhere: the environment is cleaned of every key), with the
automations of examples/demo.yaml plus one that fails for sure, and an API
listener with three tokens: read+act, read only, act only. `settle` calls
`generate` through the API (a lofi track and one the sandbox fails) and waits
until every run those start has ended, so the pages have runs of each kind.

The browser is Debian's `chromium` package, never one Playwright downloads,
started with the flags that keep it from calling Google's hosts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import pytest
import yaml
from playwright.sync_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = ROOT / "examples" / "demo.yaml"
SCREENSHOTS = ROOT / "docs" / "screenshots"
SCREENSHOT_MAX_BYTES = 300_000

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The `api:` tokens: one with both scopes, one that only reads, one that only acts.
OPERATOR = ("operator", "operator-token-4f1c9a7e2b6d8c3a5e0f")
VIEWER = ("viewer", "viewer-token-8d2e6b1f4a9c7e3d0b5a")
BUTTON = ("button", "button-token-1a7c3e9b5d2f8a6c4e0b")
TOKENS = [
    {"name": OPERATOR[0], "token": OPERATOR[1], "scopes": ["read", "act"]},
    {"name": VIEWER[0], "token": VIEWER[1], "scopes": ["read"]},
    {"name": BUTTON[0], "token": BUTTON[1], "scopes": ["act"]},
]

# The automation that fails for sure: it waits for a short sting (so a replay is seen
# `running` for a few seconds), then files it into a playlist that does not exist.
FAILING = "file_into_missing_playlist"
MISSING_PLAYLIST = "No Such Playlist"
FAILING_AUTOMATION = {
    "id": FAILING,
    "alias": "Answer long lofi tracks with a sting, filed in a playlist that does not exist",
    "triggers": [{"trigger": "track_completed", "tags_contain": "lofi"}],
    "conditions": ["{{ trigger.generation.duration >= 20 }}"],
    "actions": [
        {"action": "generate", "id": "sting", "tags": "short sting", "duration": 5, "wait": True},
        {
            "action": "add_to_playlist",
            "playlist": MISSING_PLAYLIST,
            "tracks": "{{ steps.sting.id }}",
        },
    ],
}
# What settle asks for through the API: a long lofi track, and one the sandbox fails.
LOFI = {"tags": "lofi chill piano", "duration": 30}
DOOMED = {"tags": "glitchy ambient #fail", "duration": 20}
# A REST hook whose catch URL's path is its credential: the page must not show it.
HOOK_PATH_SECRET = "catch-8b3f0d6e1a9c4b7e"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Call `probe` until it returns something other than None or False; AssertionError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def demo_automations() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    return list(loaded["automations"])


def demo_ids() -> list[str]:
    return [automation["id"] for automation in demo_automations()]


def write_config(directory: Path, port: int) -> Path:
    demo = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    config = {
        "poll": demo["poll"],
        "state_dir": str(directory / "state"),
        "api": {"listen": f"127.0.0.1:{port}", "tokens": TOKENS},
        "automations": [*demo["automations"], FAILING_AUTOMATION],
    }
    path = directory / "automations.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def keyless_environment() -> dict[str, str]:
    """This process's environment without any key, token or server of the connector:
    the daemon must run on its embedded sandbox."""
    prefixes = ("FINETUNING_", "TEMPOLOR_", "FTCONNECT_", "USEAPI_")
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}


class ApiError(AssertionError):
    pass


@dataclass
class Api:
    """The daemon's JSON API, with the read+act token."""

    url: str
    token: str = OPERATOR[1]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        if status != 200:
            raise ApiError(f"GET {path}: {status} {body}")
        return body

    def post(self, path: str, body: Any) -> Any:
        status, answer = self.call("POST", path, body)
        if status not in (200, 201, 202):
            raise ApiError(f"POST {path}: {status} {answer}")
        return answer

    def runs(self, query: str = "") -> list[dict[str, Any]]:
        return list(self.get(f"/api/v1/runs?limit=200{query}")["items"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v1/runs/{run_id}")["run"])

    def events(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/events?limit=200")["items"])


class Daemon:
    """One `ftconnect run FILE` process; its output in a log file."""

    def __init__(self, config: Path, log: Path, url: str) -> None:
        self.config = config
        self.log = log
        self.url = url
        self.process: subprocess.Popen[bytes] | None = None
        self._handle: IO[bytes] | None = None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        return f"\n--- ftconnect run's log (end) ---\n{self.output()[-4000:]}"

    def start(self) -> None:
        self._handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "run", str(self.config)],
            cwd=self.config.parent,
            env=keyless_environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )
        process = self.process

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"ftconnect run exited {process.returncode}{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=5) as answer:
                    return answer.status == 200
            except OSError:
                return False

        try:
            eventually(healthy, timeout=60, what="GET /api/v1/health to answer 200")
        except AssertionError as err:
            raise AssertionError(f"{err}{self.tail()}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class Site:
    """A settled daemon: its URL, its API, the runs it made and the hook it has."""

    url: str
    daemon: Daemon
    api: Api
    hook_id: str = ""
    hook_port: int = 0
    settled_runs: list[dict[str, Any]] = field(default_factory=list)

    def page(self, path: str) -> str:
        return f"{self.url}{path}"

    def failed_run(self) -> dict[str, Any]:
        """A failed run of the failing automation not yet replayed (each replay of one
        fails again, so there is always one)."""
        runs = self.api.runs(f"&status=failed&automation={FAILING}")
        assert runs, f"no failed run of {FAILING}: {self.api.runs()}{self.daemon.tail()}"
        return self.api.run(runs[0]["id"])

    def run_of(self, automation: str, status: str = "succeeded") -> dict[str, Any]:
        runs = self.api.runs(f"&status={status}&automation={automation}")
        assert runs, f"no {status} run of {automation}{self.daemon.tail()}"
        return self.api.run(runs[0]["id"])


def add_hook(site: Site) -> None:
    """A hook to a loopback port nobody listens on: its deliveries fail and are retried,
    so the hooks page has something to say. Its path is its credential."""
    site.hook_port = free_port()
    target = f"http://127.0.0.1:{site.hook_port}/{HOOK_PATH_SECRET}?key={HOOK_PATH_SECRET}"
    answer = site.api.post("/api/v1/hooks", {"trigger": "track_completed", "target_url": target})
    site.hook_id = str(answer["id"])


def settle(site: Site) -> None:
    """Make the demo's automations run and wait until every run they start has ended."""
    api = site.api
    for body in (LOFI, DOOMED):
        api.post("/api/v1/actions/generate", body)

    def ended() -> list[dict[str, Any]] | None:
        runs = api.runs()
        by_automation: dict[str, list[str]] = {}
        for run in runs:
            by_automation.setdefault(run["automation"], []).append(run["status"])
        done = (
            all(run["status"] != "running" for run in runs)
            # three tracks end: the lofi one, its reprise and the failing automation's sting
            and len(by_automation.get("file_finished_tracks", [])) == 3
            and "succeeded" in by_automation.get("lofi_reprise", [])
            and "succeeded" in by_automation.get("clean_up_failures", [])
            and "failed" in by_automation.get(FAILING, [])
            and by_automation.get("api.generate", []) == ["succeeded", "succeeded"]
        )
        return runs if done else None

    try:
        first = eventually(ended, timeout=90, what="the demo's runs to end")
        # Quiet: nothing new started since (a late event would start another run).
        time.sleep(1.5)
        again = eventually(ended, timeout=30, what="the demo's runs to end")
        assert [r["id"] for r in again] == [r["id"] for r in first], "runs still starting"
    except AssertionError as err:
        raise AssertionError(f"{err}: {api.runs()}{site.daemon.tail()}") from None
    site.settled_runs = first


class _Catch(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def catcher() -> Iterator[str]:
    """A loopback URL that takes any POST (204): `notify_webhook` runs that cost the
    provider nothing, to make many runs quickly."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/catch"
    finally:
        server.shutdown()
        server.server_close()


def host_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return None
    return parts.hostname or ""


def foreign_requests(urls: Iterable[str]) -> list[str]:
    """The request URLs that leave 127.0.0.1."""
    return [url for url in urls if host_of(url) not in (None, "127.0.0.1")]


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get update && apt-get install -y chromium` (as root; .ci/run does), never "
            "with `playwright install`."
        )


def check_screenshot(png: bytes, width: int) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert int.from_bytes(png[16:20], "big") == width, "the screenshot's width"
    assert len(png) < SCREENSHOT_MAX_BYTES, f"screenshot of {len(png)} bytes: too big"


@dataclass
class Visit:
    """A browser context (fresh cookies) with every request URL its pages made."""

    context: BrowserContext
    requests: list[str] = field(default_factory=list)

    def page(self) -> Page:
        return self.context.new_page()

    def assert_local(self) -> None:
        assert self.requests, "no request recorded"
        assert foreign_requests(self.requests) == [], "requests that left 127.0.0.1"


def sign_in(page: Page, url: str, token: str) -> int:
    """Open `url` (the sign-in page, or a page that sends there), sign in with `token`
    through the form; the status of the form's answer (303 when let in)."""
    page.goto(url)
    page.get_by_label("API token").fill(token)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return answer.value.status


def session_cookies(page: Page) -> list[dict[str, Any]]:
    return [dict(c) for c in page.context.cookies() if c["name"] == "ftc_session" and c["value"]]
