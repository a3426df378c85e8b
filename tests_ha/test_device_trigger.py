"""Device triggers: what the automation editor offers, and automations that use them.

The bus events come from a real entry against the sandbox: once fired by hand
(to check the device filter exactly), once by the integration itself when a
generation it submitted finishes. The entry here polls each second while its
generations run (`config_entry` below), so that test waits about a second.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import voluptuous as vol
from homeassistant.components import automation
from homeassistant.components.device_automation import DeviceAutomationType, DeviceNotFound
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.translation import async_get_translations
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automations,
)
from pytest_unordered import unordered

from custom_components.finetuning import device_trigger
from custom_components.finetuning.const import (
    CONF_ACTIVE_POLL_INTERVAL,
    DOMAIN,
    EVENT_GENERATION_FAILED,
    EVENT_TRACK_COMPLETED,
)

from .conftest import MAIN_ACCOUNT, make_entry

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

TRIGGER_TYPES = ("track_completed", "generation_failed")
WAIT = 30.0  # seconds an awaited automation run may take before the test gives up


class Runs:
    """The runs of the test automations: a `test.record` service that remembers its calls."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.calls: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

        @callback
        def record(call: ServiceCall) -> None:
            self.calls.append(dict(call.data))
            self._arrived.set()

        hass.services.async_register("test", "record", record)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT):
            while len(self.calls) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.calls


async def _automations(hass: HomeAssistant, device_id: str) -> Runs:
    """One automation per trigger type on the device, each recording the event it saw."""
    runs = Runs(hass)
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: [
                {
                    "alias": trigger_type,
                    "triggers": {
                        "trigger": "device",
                        "domain": DOMAIN,
                        "device_id": device_id,
                        "type": trigger_type,
                    },
                    "actions": {
                        "action": "test.record",
                        "data": {
                            "trigger_type": trigger_type,
                            "generation_id": "{{ trigger.event.data.generation_id }}",
                            "title": "{{ trigger.event.data.title }}",
                            "error_message": "{{ trigger.event.data.error_message }}",
                        },
                    },
                }
                for trigger_type in TRIGGER_TYPES
            ]
        },
    )
    await hass.async_block_till_done()
    return runs


async def test_editor_offers_both_triggers(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    device_id = setup_entry.runtime_data.device_id
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device_id)
    # The sensors' own triggers (domain "sensor") are listed too: ours are these two.
    ours = [trigger for trigger in triggers if trigger["domain"] == DOMAIN]
    assert ours == unordered(
        [
            {
                "platform": "device",
                "domain": DOMAIN,
                "device_id": device_id,
                "type": trigger_type,
                "metadata": {},
            }
            for trigger_type in TRIGGER_TYPES
        ]
    )


async def test_editor_names_the_triggers(hass: HomeAssistant, setup_entry: MockConfigEntry) -> None:
    texts = await async_get_translations(hass, "en", "device_automation", [DOMAIN])
    prefix = f"component.{DOMAIN}.device_automation.trigger_type"
    assert texts[f"{prefix}.track_completed"] == "Track completed"
    assert texts[f"{prefix}.generation_failed"] == "Generation failed"


async def test_triggers_are_only_for_finetuning_devices(
    hass: HomeAssistant, setup_entry: MockConfigEntry
) -> None:
    other_entry = MockConfigEntry(domain="other")
    other_entry.add_to_hass(hass)
    other = dr.async_get(hass).async_get_or_create(
        config_entry_id=other_entry.entry_id, identifiers={("other", "lamp")}
    )
    with pytest.raises(DeviceNotFound, match=r"is not a Finetuning\.ai device"):
        await device_trigger.async_get_triggers(hass, other.id)
    with pytest.raises(DeviceNotFound):
        await device_trigger.async_get_triggers(hass, "no-such-device")


async def test_trigger_schema_refuses_unknown_types(hass: HomeAssistant) -> None:
    config = {"platform": "device", "domain": DOMAIN, "device_id": "d", "type": "track_started"}
    with pytest.raises(vol.Invalid, match=r"value must be one of.*'type'"):
        device_trigger.TRIGGER_SCHEMA(config)
    for trigger_type in TRIGGER_TYPES:
        assert device_trigger.TRIGGER_SCHEMA({**config, "type": trigger_type})["type"] == (
            trigger_type
        )


async def test_automation_runs_for_its_device_and_event_only(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    second = make_entry(sandbox, "Second User")
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    device_id = setup_entry.runtime_data.device_id
    other_device_id = second.runtime_data.device_id
    assert other_device_id != device_id
    runs = await _automations(hass, device_id)

    # The other account's events, and an event of neither type, run nothing.
    hass.bus.async_fire(
        EVENT_TRACK_COMPLETED, {"device_id": other_device_id, "generation_id": "other-1"}
    )
    hass.bus.async_fire(
        EVENT_GENERATION_FAILED, {"device_id": other_device_id, "generation_id": "other-2"}
    )
    hass.bus.async_fire("finetuning_other", {"device_id": device_id, "generation_id": "x"})
    await hass.async_block_till_done()
    assert runs.calls == []

    hass.bus.async_fire(
        EVENT_TRACK_COMPLETED,
        {"device_id": device_id, "generation_id": "gen-1", "title": "Rain", "error_message": None},
    )
    hass.bus.async_fire(
        EVENT_GENERATION_FAILED,
        {"device_id": device_id, "generation_id": "gen-2", "title": "Storm", "error_message": "x"},
    )
    await hass.async_block_till_done()
    assert runs.calls == [
        {
            "trigger_type": "track_completed",
            "generation_id": "gen-1",
            "title": "Rain",
            "error_message": None,
        },
        {
            "trigger_type": "generation_failed",
            "generation_id": "gen-2",
            "title": "Storm",
            "error_message": "x",
        },
    ]
    assert await hass.config_entries.async_unload(second.entry_id)


@pytest.fixture
def config_entry(hass: HomeAssistant, sandbox: SandboxHandle) -> MockConfigEntry:
    """The main account's entry, polling each second while its generations run."""
    entry = make_entry(sandbox, MAIN_ACCOUNT)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, options={CONF_ACTIVE_POLL_INTERVAL: 1})
    return entry


async def test_automation_runs_when_a_generation_finishes(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    runs = await _automations(hass, setup_entry.runtime_data.device_id)
    completed = await hass.services.async_call(
        DOMAIN, "generate", {"tags": "lofi piano, rain"}, blocking=True, return_response=True
    )
    failed = await hass.services.async_call(
        DOMAIN, "generate", {"tags": "glitch #fail"}, blocking=True, return_response=True
    )
    assert completed is not None
    assert failed is not None
    calls = await runs.wait_for(2)

    truth = {
        generation_id: sandbox.sandbox.generation(generation_id)
        for generation_id in (completed["id"], failed["id"])
    }
    assert truth[completed["id"]].status == "completed"
    assert truth[failed["id"]].status == "failed"
    assert sorted(calls, key=lambda call: call["trigger_type"]) == [
        {
            "trigger_type": "generation_failed",
            "generation_id": failed["id"],
            "title": truth[failed["id"]].title,
            "error_message": truth[failed["id"]].error_message,
        },
        {
            "trigger_type": "track_completed",
            "generation_id": completed["id"],
            "title": truth[completed["id"]].title,
            "error_message": None,
        },
    ]
    # One run per generation, not one per report of it.
    await hass.async_block_till_done()
    assert len(runs.calls) == 2
