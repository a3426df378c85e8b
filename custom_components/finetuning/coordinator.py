"""The two coordinators behind the sensors: the account (credits) and generations in progress.

Both read through the connector's one `FinetuningClient`, so their requests share the
read budget with the poller and the services: Home Assistant never makes the account
exceed the provider's limits. A key the provider no longer accepts is raised as
`ConfigEntryAuthFailed`, which makes Home Assistant start the reauth flow; any other
provider failure is an `UpdateFailed` (the entities go unavailable until it passes).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from connector.errors import ConnectorError, InvalidApiKeyError, MissingApiKeyError
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Account, Generation, GenerationStatus

from .const import DOMAIN

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

_LOGGER = logging.getLogger(__name__)

IN_PROGRESS = (GenerationStatus.PENDING, GenerationStatus.PROCESSING)
# One page per status: more than this many in progress at once is beyond any queue limit.
IN_PROGRESS_PAGE = 100


def _failed(err: ConnectorError, what: str) -> Exception:
    """The coordinator's error for a provider failure: reauth for a dead key, else UpdateFailed.

    The message is the library's, which never holds a secret.
    """
    if isinstance(err, InvalidApiKeyError | MissingApiKeyError):
        return ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="auth_failed",
            translation_placeholders={"error": str(err)},
        )
    return UpdateFailed(
        translation_domain=DOMAIN,
        translation_key="update_failed",
        translation_placeholders={"what": what, "error": str(err)},
    )


class AccountCoordinator(DataUpdateCoordinator[Account]):
    """GET /v1/me at the idle poll interval: the credits sensor's data."""

    config_entry: ConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        client: FinetuningClient,
        *,
        interval: float,
    ) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} account",
            update_interval=timedelta(seconds=interval),
        )
        self.client = client

    async def _async_update_data(self) -> Account:
        try:
            return await self.client.get_account()
        except ConnectorError as err:
            raise _failed(err, "the account") from err


class GenerationsCoordinator(DataUpdateCoordinator[list[Generation]]):
    """The generations still pending or processing, newest first.

    Fast (the active interval) while there are some, slow (the idle interval)
    otherwise; completions and submissions ask for a refresh at once, so the count
    drops when a track finishes, not a poll later.
    """

    config_entry: ConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        client: FinetuningClient,
        *,
        idle_interval: float,
        active_interval: float,
    ) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} generations in progress",
            update_interval=timedelta(seconds=idle_interval),
        )
        self.client = client
        self.idle_interval = timedelta(seconds=idle_interval)
        self.active_interval = timedelta(seconds=active_interval)

    async def _async_update_data(self) -> list[Generation]:
        found: dict[str, Generation] = {}
        try:
            for status in IN_PROGRESS:
                page = await self.client.list_generations(limit=IN_PROGRESS_PAGE, status=status)
                for generation in page.generations:
                    # A generation that moved on between the two requests is still
                    # in progress as far as this tick knows; the status it had is kept.
                    found.setdefault(generation.id, generation)
        except ConnectorError as err:
            raise _failed(err, "the generations in progress") from err
        generations = sorted(
            found.values(),
            key=lambda g: g.created_at.timestamp() if g.created_at else 0.0,
            reverse=True,
        )
        self.update_interval = self.active_interval if generations else self.idle_interval
        return generations
