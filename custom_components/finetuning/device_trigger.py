"""Device triggers: "Track completed" and "Generation failed" in the automation editor.

Each trigger type is the integration's bus event of the same meaning, narrowed to
one "Finetuning.ai" device (one account) by the `device_id` every event carries.
Home Assistant's own event trigger does the listening, so an automation sees the
same `trigger.event.data` (generation id, title, audio URL, ...) as one written
in YAML against the event.
"""

from __future__ import annotations

from typing import Final

import voluptuous as vol
from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.device_automation.exceptions import DeviceNotFound
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from .const import (
    DOMAIN,
    EVENT_GENERATION_FAILED,
    EVENT_TRACK_COMPLETED,
    TRIGGER_GENERATION_FAILED,
    TRIGGER_TRACK_COMPLETED,
)

EVENT_FOR_TRIGGER: Final[dict[str, str]] = {
    TRIGGER_TRACK_COMPLETED: EVENT_TRACK_COMPLETED,
    TRIGGER_GENERATION_FAILED: EVENT_GENERATION_FAILED,
}
"""The bus event behind each trigger type (the editor's order)."""

TRIGGER_SCHEMA: Final = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {vol.Required(CONF_TYPE): vol.In(list(EVENT_FOR_TRIGGER))}
)


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, str]]:
    """Both triggers, for a device of this integration (DeviceNotFound for any other)."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None or not any(domain == DOMAIN for domain, _ in device.identifiers):
        raise DeviceNotFound(f"{device_id} is not a Finetuning.ai device")
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: trigger_type,
        }
        for trigger_type in EVENT_FOR_TRIGGER
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen for the trigger type's bus event from this device only."""
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: CONF_EVENT,
            event_trigger.CONF_EVENT_TYPE: EVENT_FOR_TRIGGER[config[CONF_TYPE]],
            CONF_EVENT_DATA: {CONF_DEVICE_ID: config[CONF_DEVICE_ID]},
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
