"""Diagnostics: what a bug report needs, with no secret in it (checked byte by byte)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from yarl import URL

from custom_components.finetuning.const import CONF_API_KEY, DOMAIN
from custom_components.finetuning.diagnostics import async_get_config_entry_diagnostics
from custom_components.finetuning.events import WEBHOOK_ID_SECRET

from .conftest import MAIN_ACCOUNT

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle


def secrets_of(entry: MockConfigEntry, webhook_id: str | None) -> list[str]:
    """Every secret of the entry, and the spellings they could be found in."""
    key = entry.data[CONF_API_KEY]
    found = [key, key.removeprefix("ft_live_"), key[-16:]]
    if entry.runtime_data.webhook_url:
        token = URL(entry.runtime_data.webhook_url).query["token"]
        found += [token, entry.runtime_data.webhook_url]
    if webhook_id:
        found.append(webhook_id)
    return found


async def diagnostics_json(hass: HomeAssistant, entry: MockConfigEntry) -> tuple[Any, bytes]:
    result = await async_get_config_entry_diagnostics(hass, entry)
    return result, json.dumps(result).encode()


async def test_diagnostics_report_without_secrets(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    await hass.services.async_call(
        DOMAIN, "generate", {"tags": "for the report"}, blocking=True, return_response=True
    )
    result, raw = await diagnostics_json(hass, setup_entry)
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    assert result["entry"]["data"][CONF_API_KEY] == "**REDACTED**"
    assert result["entry"]["data"]["base_url"] == sandbox.url
    assert result["account"]["limits"]["total_remaining"] == account.total_remaining
    assert result["account"]["tier"] == "pro"
    assert result["journal"]["size_bytes"] > 0
    assert result["journal"]["pending_generations"] == 1
    assert result["journal"]["unfinished_runs"] == 0
    assert result["journal"]["recent_by_kind"]["action_called"] == 1
    assert result["poller"]["seeded"] is True
    assert result["poller"]["polls"] >= 1
    assert result["webhook"] == {"enabled": False, "origin": None}
    assert result["coordinators"]["account"]["last_update_success"] is True
    for secret in secrets_of(setup_entry, None):
        assert secret.encode() not in raw
    # Nothing personal either.
    assert account.email.encode() not in raw
    assert account.name.encode() not in raw


async def test_diagnostics_hide_the_webhook(
    hass: HomeAssistant, hass_client_no_auth: Any, config_entry: MockConfigEntry
) -> None:
    assert await async_setup_component(hass, "webhook", {})
    client = await hass_client_no_auth()
    await hass.config.async_update(external_url=str(client.make_url("/")).rstrip("/"))
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    store = config_entry.runtime_data.connector.store
    webhook_id = await hass.async_add_executor_job(store.secret, WEBHOOK_ID_SECRET, lambda: "x")
    assert config_entry.runtime_data.webhook_url

    result, raw = await diagnostics_json(hass, config_entry)
    assert result["webhook"]["enabled"] is True
    assert result["webhook"]["origin"] == str(client.make_url("/")).rstrip("/")
    for secret in secrets_of(config_entry, webhook_id):
        assert secret.encode() not in raw
    assert await hass.config_entries.async_unload(config_entry.entry_id)


async def test_diagnostics_through_home_assistant(
    hass: HomeAssistant, hass_client: Any, setup_entry: MockConfigEntry
) -> None:
    """The download a user attaches to a bug report, as Home Assistant serves it."""
    assert await async_setup_component(hass, "diagnostics", {})
    client = await hass_client()
    answer = await client.get(f"/api/diagnostics/config_entry/{setup_entry.entry_id}")
    assert answer.status == 200
    raw = await answer.read()
    body = json.loads(raw)
    assert body["data"]["entry"]["data"][CONF_API_KEY] == "**REDACTED**"
    for secret in secrets_of(setup_entry, None):
        assert secret.encode() not in raw
