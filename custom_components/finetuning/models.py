"""What a loaded config entry holds (`entry.runtime_data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from homeassistant.config_entries import ConfigEntry

if TYPE_CHECKING:
    from connector.app import Connector
    from connector.providers.finetuning.client import FinetuningClient

    from .coordinator import AccountCoordinator, GenerationsCoordinator

__all__ = ["FinetuningConfigEntry", "FinetuningData"]


@dataclass
class FinetuningData:
    """One account's running pieces.

    `connector` is the started library connector (its journal lives under Home
    Assistant's config dir), `client` its Finetuning.ai client (every provider call
    of the integration goes through it, so the rate budgets are shared), `account`
    and `generations` the coordinators behind the sensors, `device_id` the
    "Finetuning.ai" device the entities, events and device triggers hang on.
    """

    connector: Connector
    client: FinetuningClient
    account: AccountCoordinator
    generations: GenerationsCoordinator
    device_id: str
    account_id: str
    library_folder: str
    options: dict[str, Any] = field(default_factory=dict)
    """The entry's options this connector was built with (a change rebuilds it)."""
    webhook_url: str | None = None
    """The URL providers are given (secret: never logged), None while the poller alone
    reports."""

    async def refresh_sensors(self) -> None:
        """Read the generations in progress and the credits again now (a track was
        submitted or ended): the sensors change at once, not a poll later."""
        await self.generations.async_request_refresh()
        await self.account.async_request_refresh()


FinetuningConfigEntry: TypeAlias = ConfigEntry[FinetuningData]
