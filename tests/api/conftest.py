"""Fixtures of the API's end-to-end tests: a started connector serving its HTTP API.

The API listener binds port 0 on loopback: the YAML `api.listen` refuses port
0, so the file is parsed with a real port and the port swapped afterwards, as
a caller that builds its config in code would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ft_api_support import FAST, ApiClient, OpenApi, Started, config_text, fast_hooks

from connector.app import open_connector
from connector.automation.loader import parse_config
from connector.sandbox import SandboxConfig


@pytest.fixture
def open_api(tmp_path: Path) -> OpenApi:
    """`async with open_api(automations=..., sandbox=..., hooks=...) as started:` a started
    connector whose API listens on a free loopback port; `hooks` are HookDeliverer
    settings (a deliverer with them replaces the default one)."""

    @asynccontextmanager
    async def opened(
        *,
        automations: str = "  []",
        sandbox: SandboxConfig = FAST,
        hooks: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Started]:
        config = parse_config(config_text(automations), base_dir=tmp_path)
        assert config.api is not None
        config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=0))
        async with open_connector(config, sandbox=sandbox) as connector:
            if hooks is not None:
                fast_hooks(connector, **hooks)
            await connector.start()
            assert connector.api is not None
            async with aiohttp.ClientSession() as session:
                yield Started(connector, ApiClient(connector.api.url, session))

    return opened


@pytest.fixture
async def api(open_api: OpenApi) -> AsyncIterator[Started]:
    """A started connector with no automations, on a fast sandbox."""
    async with open_api() as started:
        yield started
