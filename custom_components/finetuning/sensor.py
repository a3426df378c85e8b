"""Sensors: the account's credits left, and the generations in progress.

Both hang on the account's "Finetuning.ai" device and are named by translation
keys. Their entity ids are asked for explicitly (`sensor.finetuning_credits`):
derived from the device name they would read `sensor.finetuning_ai_credits`, and
automations and dashboards are written against the short, documented ids. A
second account gets Home Assistant's usual `_2` suffix.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import SensorEntity, SensorStateClass
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from connector.providers.finetuning.models import iso_utc

from .const import DOMAIN
from .coordinator import AccountCoordinator, GenerationsCoordinator
from .models import FinetuningConfigEntry

# The coordinators fetch; the entities only read what they hold.
PARALLEL_UPDATES = 0

# The attribute lists at most this many generations (a state attribute is kept small).
MAX_LISTED = 20


async def async_setup_entry(
    hass: HomeAssistant,
    entry: FinetuningConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """The two sensors of one account."""
    data = entry.runtime_data
    device = DeviceInfo(identifiers={(DOMAIN, entry.unique_id or data.account_id)})
    async_add_entities(
        [
            CreditsSensor(data.account, entry, device),
            InProgressSensor(data.generations, entry, device),
        ]
    )


class CreditsSensor(CoordinatorEntity[AccountCoordinator], SensorEntity):
    """Credits left: the monthly allowance remaining plus pack credits."""

    _attr_has_entity_name = True
    _attr_translation_key = "credits"
    _attr_native_unit_of_measurement = "credits"
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_icon = "mdi:music-circle"

    def __init__(
        self, coordinator: AccountCoordinator, entry: FinetuningConfigEntry, device: DeviceInfo
    ) -> None:
        super().__init__(coordinator)
        self._attr_unique_id = f"{entry.unique_id or entry.entry_id}_credits"
        self._attr_device_info = device
        self.entity_id = f"sensor.{DOMAIN}_credits"

    @property
    def native_value(self) -> int:
        return self.coordinator.data.limits.total_remaining

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        account = self.coordinator.data
        limits = account.limits
        return {
            "monthly_generations": limits.monthly_generations,
            "generations_used": limits.generations_used,
            "monthly_remaining": limits.monthly_remaining,
            "pack_credits": limits.pack_credits,
            "queue_depth": limits.queue_depth,
            "tier": account.tier,
        }


class InProgressSensor(CoordinatorEntity[GenerationsCoordinator], SensorEntity):
    """How many generations are pending or processing; which ones, as attributes."""

    _attr_has_entity_name = True
    _attr_translation_key = "generations_in_progress"
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_icon = "mdi:progress-clock"

    def __init__(
        self, coordinator: GenerationsCoordinator, entry: FinetuningConfigEntry, device: DeviceInfo
    ) -> None:
        super().__init__(coordinator)
        self._attr_unique_id = f"{entry.unique_id or entry.entry_id}_generations_in_progress"
        self._attr_device_info = device
        self.entity_id = f"sensor.{DOMAIN}_generations_in_progress"

    @property
    def native_value(self) -> int:
        return len(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        listed = self.coordinator.data[:MAX_LISTED]
        return {
            "generation_ids": [g.id for g in listed],
            "titles": [g.title for g in listed],
            "generations": [
                {
                    "id": g.id,
                    "title": g.title,
                    "tags": g.prompt,
                    "status": g.status.value,
                    "created_at": iso_utc(g.created_at) if g.created_at else None,
                }
                for g in listed
            ],
        }
