"""Fixtures of the web page's tests: a started connector serving its API and page on
loopback, and browsers-without-a-browser (aiohttp sessions with their own cookie jar)
that sign in, follow redirects as a browser does, and keep every answer so a test
can search them all for a secret. The real-browser tests are in tests/browser."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ft_web_support import FAST, Site, config_text

from connector.app import open_connector
from connector.automation.loader import parse_config


@pytest.fixture
async def site(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Site]:
    """A started connector (the demo-like automations of `config_text`) on a fast sandbox."""
    caplog.set_level(logging.DEBUG)
    config = parse_config(config_text(), base_dir=tmp_path)
    assert config.api is not None
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=0))
    async with open_connector(config, sandbox=FAST) as connector:
        await connector.start()
        assert connector.api is not None
        async with aiohttp.ClientSession() as api_session:
            sessions: list[aiohttp.ClientSession] = []
            site = Site(connector, connector.api.url, api_session, sessions)
            try:
                yield site
            finally:
                for session in sessions:
                    await session.close()
