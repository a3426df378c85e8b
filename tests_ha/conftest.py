"""Shared set-up of the Home Assistant integration's tests (run by `.ci/ha-tests`).

Home Assistant's test plugin blocks sockets; `sandbox` asks for `socket_enabled`,
and the plugin only lets connections reach 127.0.0.1, where the sandbox listens.
The sandbox runs in the test's event loop, which is also Home Assistant's.

Fixture teardown runs in reverse: `setup_entry` unloads the entry before the
sandbox stops, so nothing polls a server that is gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.finetuning.const import CONF_API_KEY, CONF_BASE_URL, DOMAIN

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

MAIN_ACCOUNT = "Demo User"
"""The sandbox's first account with API access: the one `sandbox_key` belongs to."""


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant's loader find `custom_components/finetuning`."""


@pytest.fixture(autouse=True)
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A config directory of the test's own, so each test starts with an empty journal.

    The plugin's default config dir is shared by every test (inside the installed
    plugin); the connector's journal lives under the config dir.
    """
    path = tmp_path / "config"
    path.mkdir()
    hass.config.config_dir = str(path)
    return path


@pytest.fixture
async def sandbox(socket_enabled: None) -> AsyncIterator[SandboxHandle]:
    """A running sandbox on 127.0.0.1 (a free port), with near-zero lifecycle delays.

    Its accounts are the default ones: "Demo User" and "Second User" (Pro) and
    "Free User" (a plan without API access). `.sandbox` is the ground truth.
    """
    from connector.sandbox import SandboxConfig, run_sandbox

    config = SandboxConfig(pending_delay=0.01, processing_delay=0.05)
    async with run_sandbox(config, host="127.0.0.1") as handle:
        yield handle


@pytest.fixture
def sandbox_key(sandbox: SandboxHandle) -> str:
    """The API key of the sandbox's main Pro account ("Demo User")."""
    return sandbox.api_keys[MAIN_ACCOUNT]


@pytest.fixture
def sandbox_url(sandbox: SandboxHandle) -> str:
    """The sandbox's base URL (http://127.0.0.1:<port>)."""
    return sandbox.url


def make_entry(sandbox: SandboxHandle, account_name: str) -> MockConfigEntry:
    """A config entry for one sandbox account, as the config flow would create it.

    The unique id is the account id `/v1/me` answers (one entry per account).
    """
    account = sandbox.sandbox.account(account_name)
    return MockConfigEntry(
        domain=DOMAIN,
        title=account.email,
        data={CONF_API_KEY: account.api_key, CONF_BASE_URL: sandbox.url},
        unique_id=account.user_id,
    )


@pytest.fixture
def config_entry(hass: HomeAssistant, sandbox: SandboxHandle) -> MockConfigEntry:
    """The main account's entry, added to Home Assistant but not set up."""
    entry = make_entry(sandbox, MAIN_ACCOUNT)
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
async def setup_entry(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> AsyncIterator[MockConfigEntry]:
    """The main account's entry, set up and loaded; unloaded again before the sandbox stops."""
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED
    yield config_entry
    if config_entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()
