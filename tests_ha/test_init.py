"""Setting up and unloading an entry: the connector, its journal, the device, the errors."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from connector.journal.lock import holder
from custom_components.finetuning.const import (
    CONF_ACTIVE_POLL_INTERVAL,
    CONF_API_KEY,
    CONF_BASE_URL,
    CONF_POLL_INTERVAL,
    DOMAIN,
)
from custom_components.finetuning.services import SERVICES

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

from .conftest import MAIN_ACCOUNT


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_setup_runs_the_connector_and_unload_stops_it(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle, config_dir: Path
) -> None:
    data = setup_entry.runtime_data
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    assert data.account_id == account.user_id
    assert data.connector.running
    assert data.client is data.connector.finetuning
    # The journal lives under Home Assistant's config dir, one folder per account.
    state_dir = config_dir / DOMAIN / account.user_id
    assert data.connector.store.state_dir == state_dir
    assert (state_dir / "state.db").is_file()
    # The client talks to the entry's server with the entry's key.
    assert str(data.client.base_url).rstrip("/") == sandbox.url
    # The device every entity, event and trigger hangs on.
    device = dr.async_get(hass).async_get(data.device_id)
    assert device is not None
    assert device.name == "Finetuning.ai"
    assert device.manufacturer == "Finetuning.ai"
    assert device.entry_type is dr.DeviceEntryType.SERVICE
    assert (DOMAIN, account.user_id) in device.identifiers
    # No external URL: the poller alone reports.
    assert data.webhook_url is None
    connector = data.connector

    assert await hass.config_entries.async_unload(setup_entry.entry_id)
    await hass.async_block_till_done()
    assert setup_entry.state is ConfigEntryState.NOT_LOADED
    assert not connector.running


async def test_options_set_the_poll_intervals(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_POLL_INTERVAL: 42, CONF_ACTIVE_POLL_INTERVAL: 2}
    )
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    poller = config_entry.runtime_data.connector.runtime.poller
    assert poller is not None
    assert (poller.idle_interval, poller.active_interval) == (42.0, 2.0)
    assert config_entry.runtime_data.generations.update_interval.total_seconds() == 42.0
    assert await hass.config_entries.async_unload(config_entry.entry_id)


async def test_changed_options_rebuild_the_connector(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    before = setup_entry.runtime_data.connector
    hass.config_entries.async_update_entry(
        setup_entry, options={CONF_POLL_INTERVAL: 30, CONF_ACTIVE_POLL_INTERVAL: 1}
    )
    await hass.async_block_till_done()
    assert setup_entry.state is ConfigEntryState.LOADED
    after = setup_entry.runtime_data.connector
    assert after is not before
    assert not before.running
    assert after.running
    assert after.runtime.poller is not None
    assert after.runtime.poller.idle_interval == 30.0


async def test_services_exist_before_any_entry(hass: HomeAssistant) -> None:
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, DOMAIN, {})
    for name in SERVICES:
        assert hass.services.has_service(DOMAIN, name)


@pytest.mark.parametrize(
    "key",
    [
        "ft_live_" + "0" * 32,  # the right shape, but the provider refuses it
        "not-a-key",  # refused by the library before any request
    ],
)
async def test_refused_key_starts_reauth(
    hass: HomeAssistant, sandbox: SandboxHandle, key: str
) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        data={CONF_API_KEY: key, CONF_BASE_URL: sandbox.url},
        unique_id="someone",
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert flows[0]["context"]["entry_id"] == entry.entry_id


async def test_plan_without_api_access_retries_later(
    hass: HomeAssistant, sandbox: SandboxHandle
) -> None:
    free = sandbox.sandbox.account("Free User")
    entry = MockConfigEntry(
        domain=DOMAIN,
        data={CONF_API_KEY: free.api_key, CONF_BASE_URL: sandbox.url},
        unique_id=free.user_id,
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)


async def test_unreachable_server_retries_later(
    hass: HomeAssistant, sandbox: SandboxHandle, sandbox_key: str
) -> None:
    # A loopback port nothing listens on: the connection is refused at once.
    entry = MockConfigEntry(
        domain=DOMAIN,
        data={CONF_API_KEY: sandbox_key, CONF_BASE_URL: f"http://127.0.0.1:{free_port()}"},
        unique_id="unreachable",
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY


# -- the integration's files ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / DOMAIN


async def test_manifest_pins_this_projects_release(hass: HomeAssistant) -> None:
    from homeassistant.loader import async_get_integration

    library = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    integration = await async_get_integration(hass, DOMAIN)
    manifest = integration.manifest
    assert manifest["name"] == "Finetuning.ai"
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "cloud_push"
    assert manifest["integration_type"] == "service"
    assert manifest["dependencies"] == ["webhook"]
    assert manifest["requirements"] == [f"finetuning-connector=={library['version']}"]
    assert manifest["version"] == library["version"]
    for key in ("codeowners", "documentation", "issue_tracker"):
        assert manifest[key] == library[key]
    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    assert hacs == {"name": "Finetuning.ai", "homeassistant": "2025.4.0", "render_readme": True}


def test_translations_match_strings_and_cover_every_key_used() -> None:
    strings = json.loads((INTEGRATION / "strings.json").read_text(encoding="utf-8"))
    english = json.loads((INTEGRATION / "translations" / "en.json").read_text(encoding="utf-8"))
    assert english == strings
    code = "\n".join(p.read_text(encoding="utf-8") for p in INTEGRATION.glob("*.py"))
    used = set(re.findall(r'(?:translation_key=|_invalid\(|_failed\()"(\w+)"', code))
    # The media source's errors: `_error(Kind, "key", ...)`.
    used |= set(re.findall(r'_error\(\s*\w+,\s*"(\w+)"', code))
    assert "media_track_not_completed" in used
    assert used
    assert used <= set(strings["exceptions"]), used - set(strings["exceptions"])
    errors = set(re.findall(r'(?:CheckFailed\([^)]*, |return path, )"(\w+)"', code))
    assert errors <= set(strings["config"]["error"]) | set(strings["options"]["error"])
    assert {"invalid_key_format", "invalid_auth", "no_api_access", "cannot_connect"} <= errors
    assert set(strings["device_automation"]["trigger_type"]) == {
        "track_completed",
        "generation_failed",
    }
    assert set(strings["entity"]["sensor"]) == {"credits", "generations_in_progress"}


async def test_a_stopped_connector_says_so(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    await setup_entry.runtime_data.connector.stop()
    with pytest.raises(HomeAssistantError) as caught:
        await hass.services.async_call(
            DOMAIN, "generate", {"tags": "too late"}, blocking=True, return_response=True
        )
    assert caught.value.translation_key == "not_running"


# -- stopping and failing part way ----------------------------------------------------------


async def test_home_assistant_stop_stops_the_connector(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Config entries are not unloaded when Home Assistant stops: the connector must stop
    with it (its runs get their grace, its journal is closed and its lock released)."""
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    connector = config_entry.runtime_data.connector
    try:
        await hass.async_stop()
        assert not connector.running
        # The journal closed and its lock free for the next start of Home Assistant.
        assert connector.store.closed
        assert holder(connector.store.state_dir) is None
    finally:
        await connector.stop(grace=0)


async def test_a_bad_server_address_is_a_setup_error(hass: HomeAssistant, sandbox_key: str) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        data={CONF_API_KEY: sandbox_key, CONF_BASE_URL: "ftp://127.0.0.1/"},
        unique_id="bad-address",
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.error_reason_translation_key == "endpoint_failed"
    assert entry.reason is not None
    assert "ftp://" in entry.reason
    assert sandbox_key not in entry.reason
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)


async def test_a_setup_that_fails_part_way_closes_what_it_opened(
    hass: HomeAssistant, config_entry: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error after the connector started (Home Assistant then runs none of
    the entry's unload callbacks): the connector is stopped and its journal released, so
    the next setup works."""

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a platform that cannot load")

    monkeypatch.setattr(hass.config_entries, "async_forward_entry_setups", broken)
    assert not await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    connector = config_entry.runtime_data.connector
    assert not connector.running
    assert connector.store.closed
    assert holder(connector.store.state_dir) is None
    monkeypatch.undo()
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED
    assert config_entry.runtime_data.connector.running
    assert await hass.config_entries.async_unload(config_entry.entry_id)
