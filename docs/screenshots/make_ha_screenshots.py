"""Take the README's Home Assistant screenshots in a real Home Assistant, against the sandbox.

Writes docs/screenshots/ha-device.png (the device *Finetuning.ai*: its credits and
its generations in progress) and docs/screenshots/ha-media-browser.png (Media →
Finetuning.ai → Latest tracks), 1280 pixels wide.

Nothing is staged: the sandbox is `python -m connector.sandbox` on a free loopback
port; Home Assistant is a real `hass` with its real frontend, in a throwaway
config folder whose `custom_components` is this repository's; the account is
added through the config flow's REST API with the sandbox's key, tracks are made
with the `finetuning.generate` service, and Debian's Chromium (through
Playwright) signs in with the tokens onboarding handed out. One generation is
started just before the device page is taken, so the in-progress sensor shows it.

What it needs:

* a Python 3.13 virtual environment holding Home Assistant and this repository,
  e.g. ``python3.13 -m venv /tmp/havenv && /tmp/havenv/bin/pip install
  homeassistant==2025.4.4 home-assistant-frontend==20250411.0 -e .``;
* Playwright for Python in the interpreter that runs this script (the project's
  .venv has it) and the `chromium` package at /usr/bin/chromium;
* nothing beyond loopback: the pages ask Home Assistant's brand-image host for
  logos, and show none when it cannot be reached (as in these screenshots).

Run it from the repository's root:

    .venv/bin/python docs/screenshots/make_ha_screenshots.py --ha-python /tmp/havenv/bin/python

It is not a test (pytest collects only tests/) and starts nothing it does not stop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from playwright.sync_api import Locator, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 300_000
CHROMIUM = "/usr/bin/chromium"
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
WIDTH, HEIGHT = 1280, 800
IDLE_MOUSE = (760, 680)  # an empty spot, so no row is shown hovered
# Pending for a second, processing for 25: long enough to take a page while one runs.
SANDBOX_DELAY = "1,25"

CONFIGURATION = """\
homeassistant:
  name: Home
  time_zone: UTC
  country: US
  unit_system: metric
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
frontend:
config:
media_source:
webhook:
logger:
  default: warning
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll `check` until it returns something truthy; fail saying `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


class Sandbox:
    """`python -m connector.sandbox` on a free port; its URL and key come from its banner."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector.sandbox", "--port", "0", "--delay", SANDBOX_DELAY],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = ""
        self.api_key = ""

    def read_banner(self) -> None:
        """The URL and the key, from the lines the sandbox prints when it listens."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if found := re.search(r"listening on (http://\S+)", line):
                self.url = found[1]
            if found := re.search(r"API key[^:]*: (\S+)", line):
                self.api_key = found[1]
            if self.url and self.api_key:
                break
        if not (self.url and self.api_key):
            raise RuntimeError("the sandbox did not start")
        # Keep reading its output so it never blocks on a full pipe.
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


class HomeAssistant:
    """A real `hass` in `config_dir`, its REST API, and the onboarding's tokens."""

    def __init__(self, ha_python: str, config_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        (config_dir / "custom_components").symlink_to(ROOT / "custom_components")
        self.log = config_dir / "hass.out"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [ha_python, "-m", "homeassistant", "-c", str(config_dir), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.tokens: dict[str, Any] = {}

    def wait_ready(self) -> None:
        wait_for("Home Assistant's HTTP server", self._onboarding_open, timeout=300)

    def _onboarding_open(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"hass exited; its log: {self.log}")
        with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=5) as resp:
            return bool(resp.status == 200)

    def request(self, method: str, path: str, body: Any = None, form: bool = False) -> Any:
        headers = {}
        if self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens['access_token']}"
        data = None
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=180) as resp:
            text = resp.read().decode()
        return json.loads(text) if text.startswith(("{", "[")) else text

    def onboard(self) -> None:
        """Every onboarding step through the REST API, as the frontend's wizard does."""
        client_id = f"{self.url}/"
        user = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Demo",
                "username": "demo",
                "password": "demo-password-for-screenshots",
                "language": "en",
            },
        )
        self.tokens = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id},
            form=True,
        )
        self.request("POST", "/api/onboarding/core_config", {})
        self.request("POST", "/api/onboarding/analytics", {})
        self.request(
            "POST",
            "/api/onboarding/integration",
            {"client_id": client_id, "redirect_uri": f"{self.url}/?auth_callback=1"},
        )

    def add_account(self, sandbox: Sandbox) -> str:
        """The config flow, in advanced mode so the form has the base URL; the entry's id."""
        flow = self.request(
            "POST",
            "/api/config/config_entries/flow",
            {"handler": "finetuning", "show_advanced_options": True},
        )
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"api_key": sandbox.api_key, "base_url": sandbox.url},
        )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"the config flow did not create the entry: {result}")
        entry_id: str = result["result"]["entry_id"]
        return entry_id

    def generate(self, tags: str, duration: int, wait: bool) -> Any:
        return self.request(
            "POST",
            "/api/services/finetuning/generate?return_response",
            {"tags": tags, "duration": duration, "wait": wait},
        )

    def state(self, entity_id: str) -> str:
        state: str = self.request("GET", f"/api/states/{entity_id}")["state"]
        return state

    def stored_tokens(self) -> str:
        """The tokens as the frontend keeps them in localStorage (`hassTokens`)."""
        return json.dumps(
            {
                "access_token": self.tokens["access_token"],
                "refresh_token": self.tokens["refresh_token"],
                "expires_in": self.tokens["expires_in"],
                "token_type": "Bearer",
                "clientId": f"{self.url}/",
                "hassUrl": self.url,
                "expires": int(time.time() * 1000) + self.tokens["expires_in"] * 1000,
            }
        )


def stop(proc: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, then SIGKILL if it lingers: this process only, by its id."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def shoot(page: Page, name: str) -> Path:
    path = OUT / name
    page.screenshot(path=str(path))
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{path} is {size} bytes, over {MAX_BYTES}")
    print(f"wrote {path.relative_to(ROOT)} ({size} bytes)")
    return path


def tile(page: Page, title: str) -> Locator:
    """The media browser's folder tile with exactly this title."""
    return page.locator("div.title", has_text=re.compile(f"^{re.escape(title)}$"))


def take_screenshots(hass: HomeAssistant, device_id: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        # Signed in as the frontend itself would be after the login page.
        context.add_init_script(
            f"window.localStorage.setItem('hassTokens', {json.dumps(hass.stored_tokens())});"
        )
        page = context.new_page()
        try:
            # Media → Finetuning.ai → Latest tracks, clicked through as a person would.
            page.goto(f"{hass.url}/media-browser/browser")
            tile(page, "Finetuning.ai").click()
            tile(page, "Latest tracks").click()
            # Tracks have no thumbnails, so the folder is shown as a list, not tiles.
            page.get_by_text("Night Drive Synthwave", exact=True).first.wait_for()
            page.mouse.move(*IDLE_MOUSE)
            page.wait_for_timeout(1000)
            shoot(page, "ha-media-browser.png")

            # One generation running while the device page is taken.
            hass.generate("ambient rain, field recording, slow", 120, wait=False)
            wait_for(
                "the in-progress sensor to count it",
                lambda: hass.state("sensor.finetuning_generations_in_progress") == "1",
                timeout=20,
            )
            page.goto(f"{hass.url}/config/devices/device/{device_id}")
            page.get_by_text("Generations in progress", exact=True).wait_for()
            page.get_by_text("credits").first.wait_for()
            page.mouse.move(*IDLE_MOUSE)
            page.wait_for_timeout(1500)
            shoot(page, "ha-device.png")
            if hass.state("sensor.finetuning_generations_in_progress") != "1":
                raise RuntimeError("the generation ended before the device page was taken")
        except Exception:
            failed = Path(tempfile.gettempdir()) / "ha-screenshots-failed.png"
            page.screenshot(path=str(failed))
            print(f"the page when it failed: {failed}", file=sys.stderr)
            raise
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ha-python",
        required=True,
        help="the Python of a virtual environment with Home Assistant and this repository",
    )
    args = parser.parse_args()
    sandbox: Sandbox | None = None
    hass: HomeAssistant | None = None
    with tempfile.TemporaryDirectory(prefix="ha-screenshots-") as tmp:
        try:
            sandbox = Sandbox()
            sandbox.read_banner()
            hass = HomeAssistant(args.ha_python, Path(tmp))
            hass.wait_ready()
            hass.onboard()
            hass.add_account(sandbox)
            # Two finished tracks of our own, made side by side.
            with ThreadPoolExecutor(2) as pool:
                made = [
                    pool.submit(hass.generate, "night drive synthwave, neon", 150, True),
                    pool.submit(hass.generate, "lofi piano, rainy morning", 90, True),
                ]
                for future in made:
                    future.result()
            device_id = hass.request(
                "POST",
                "/api/template",
                {"template": "{{ device_id('sensor.finetuning_credits') }}"},
            )
            if not re.fullmatch(r"[0-9a-f]{32}", device_id):
                raise RuntimeError(f"no device for sensor.finetuning_credits: {device_id!r}")
            take_screenshots(hass, device_id)
        except Exception:
            if hass is not None:
                print(f"hass log (tail):\n{hass.log.read_text()[-4000:]}", file=sys.stderr)
            raise
        finally:
            stop(hass.proc if hass else None)
            stop(sandbox.proc if sandbox else None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
