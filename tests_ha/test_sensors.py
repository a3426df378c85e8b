"""The credits and in-progress sensors, compared with the sandbox's ground truth.

Generations here stay in progress until the test finishes them (`complete_now`):
this module's `sandbox` has hour-long lifecycle delays, so counts hold still.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .conftest import MAIN_ACCOUNT, make_entry

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

CREDITS = "sensor.finetuning_credits"
IN_PROGRESS = "sensor.finetuning_generations_in_progress"


@pytest.fixture
async def sandbox(socket_enabled: None) -> AsyncIterator[SandboxHandle]:
    """A sandbox whose generations stay pending until a test moves them on."""
    from connector.sandbox import SandboxConfig, run_sandbox

    config = SandboxConfig(pending_delay=3600, processing_delay=3600)
    async with run_sandbox(config, host="127.0.0.1") as handle:
        yield handle


def _submit(sandbox: SandboxHandle, tags: str) -> str:
    """A generation made in the sandbox as another program would: it spends a credit."""
    from connector.sandbox.records import GenerationParams

    return sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags=tags)).id


async def test_credits_sensor_shows_the_accounts_credits(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    state = hass.states.get(CREDITS)
    assert state is not None
    assert int(state.state) == account.total_remaining
    assert state.attributes["unit_of_measurement"] == "credits"
    assert state.attributes["friendly_name"] == "Finetuning.ai Credits"
    assert state.attributes["monthly_remaining"] == account.monthly_remaining
    assert state.attributes["pack_credits"] == account.pack_credits
    assert state.attributes["generations_used"] == account.generations_used
    assert state.attributes["tier"] == account.tier

    # Credits spent elsewhere, and a pack bought: the next refresh shows the truth.
    _submit(sandbox, "spent by another program")
    sandbox.sandbox.set_credits(MAIN_ACCOUNT, pack_credits=25)
    await setup_entry.runtime_data.account.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(CREDITS)
    assert state is not None
    assert int(state.state) == account.total_remaining
    assert state.attributes["pack_credits"] == 25


async def test_sensors_belong_to_the_device(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    registry = er.async_get(hass)
    for entity_id, key in ((CREDITS, "credits"), (IN_PROGRESS, "generations_in_progress")):
        entity = registry.async_get(entity_id)
        assert entity is not None
        assert entity.device_id == setup_entry.runtime_data.device_id
        assert entity.translation_key == key
        assert entity.unique_id == f"{setup_entry.unique_id}_{key}"


async def test_in_progress_sensor_counts_and_lists_generations(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    state = hass.states.get(IN_PROGRESS)
    assert state is not None
    assert state.state == "0"
    assert state.attributes["friendly_name"] == "Finetuning.ai Generations in progress"
    assert state.attributes["generation_ids"] == []

    first = _submit(sandbox, "lofi chill piano")
    second = _submit(sandbox, "synthwave night drive")
    coordinator = setup_entry.runtime_data.generations
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    truth = {
        g.id
        for g in sandbox.sandbox.generations(MAIN_ACCOUNT, include_deleted=False)
        if g.status in ("pending", "processing")
    }
    assert truth == {first, second}
    state = hass.states.get(IN_PROGRESS)
    assert state is not None
    assert int(state.state) == len(truth)
    assert set(state.attributes["generation_ids"]) == truth
    titles = {g.id: g.title for g in sandbox.sandbox.generations(MAIN_ACCOUNT)}
    assert sorted(state.attributes["titles"]) == sorted(titles[i] for i in truth)
    listed = {g["id"]: g for g in state.attributes["generations"]}
    assert listed[first]["tags"] == "lofi chill piano"
    assert listed[first]["status"] == "pending"
    # Fast polling while something runs.
    assert coordinator.update_interval == coordinator.active_interval

    sandbox.sandbox.complete_now(first)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(IN_PROGRESS)
    assert state is not None
    assert state.state == "1"
    assert state.attributes["generation_ids"] == [second]

    sandbox.sandbox.fail_now(second)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(IN_PROGRESS)
    assert state is not None
    assert state.state == "0"
    assert coordinator.update_interval == coordinator.idle_interval


async def test_provider_error_makes_sensors_unavailable_without_reauth(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    coordinator = setup_entry.runtime_data.account
    sandbox.sandbox.set_tier(MAIN_ACCOUNT, "free")  # 403: the plan lost API access
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(CREDITS)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    assert not hass.config_entries.flow.async_progress_by_handler("finetuning")
    assert "PRO_PLAN_REQUIRED" in str(coordinator.last_exception)

    sandbox.sandbox.set_tier(MAIN_ACCOUNT, "pro")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(CREDITS)
    assert state is not None
    assert int(state.state) == sandbox.sandbox.account(MAIN_ACCOUNT).total_remaining


async def test_second_account_gets_its_own_sensors(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    second = make_entry(sandbox, "Second User")
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(f"{CREDITS}_2")
    assert state is not None
    assert int(state.state) == sandbox.sandbox.account("Second User").total_remaining
    assert hass.states.get(f"{IN_PROGRESS}_2") is not None
    assert second.runtime_data.device_id != setup_entry.runtime_data.device_id
    assert await hass.config_entries.async_unload(second.entry_id)
