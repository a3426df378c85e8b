"""Fixtures of the browser tests: one settled `ftconnect run` and one Chromium per module.

The tests are plain sync functions on Playwright's sync API (it runs its own
event loop, so it cannot run inside pytest-asyncio's). A failing test gets the
end of the daemon's log in its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ft_browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Api,
    Daemon,
    Site,
    Visit,
    add_hook,
    free_port,
    require_chromium,
    settle,
    write_config,
)
from playwright.sync_api import Browser, expect, sync_playwright

expect.set_options(timeout=15_000)
_SITES: dict[str, Site] = {}


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Site]:
    """A real `ftconnect run` on the embedded sandbox, its demo runs ended."""
    directory = tmp_path_factory.mktemp("ftconnect")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daemon = Daemon(write_config(directory, port), directory / "daemon.log", url)
    started = Site(url=url, daemon=daemon, api=Api(url))
    _SITES[request.module.__name__] = started
    try:
        daemon.start()
        add_hook(started)
        settle(started)
        yield started
    finally:
        daemon.stop()
        _SITES.pop(request.module.__name__, None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Callable[..., Visit]]:
    """`visit(**context options)`: a new context, 1280x800 unless told, recording requests."""
    opened: list[Visit] = []

    def open_context(**options: Any) -> Visit:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        made = Visit(context)
        context.on("request", lambda request: made.requests.append(request.url))

        opened.append(made)
        return made

    yield open_context
    for made in opened:
        made.context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    running = _SITES.get(getattr(getattr(item, "module", None), "__name__", ""))
    if report.failed and running is not None:
        report.sections.append(("ftconnect run's log (end)", running.daemon.output()[-6000:]))
    return report
