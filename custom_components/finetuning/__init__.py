"""Finetuning.ai for Home Assistant: a thin layer over the `connector` library.

Each config entry (one account) runs one library connector, built in code
(`connector.app.open_connector` with a `ConnectorConfig` that has no
automations): its journal lives under Home Assistant's config directory, one
folder per account, so a completion that fired before a restart is known after
it. Home Assistant's shared aiohttp session is handed to the library, which
never closes a session it was given. The connector's poller (and, when Home
Assistant has an external URL, a webhook registered through Home Assistant's
`webhook` component: see `events.py`) reports finished generations; each new one
is fired once on the bus. Services are registered in `async_setup`, so they exist
(and say why they cannot run) before any entry is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from connector.app import NEVER, open_connector
from connector.automation.model import ConnectorConfig, PollConfig, ProviderConfig
from connector.automation.problems import ConfigError
from connector.automation.registry import Registry, default_registry
from connector.endpoint import EndpointError
from connector.errors import ConnectorError, InvalidApiKeyError, MissingApiKeyError
from connector.journal.connection import JournalError

from .const import (
    CONF_ACTIVE_POLL_INTERVAL,
    CONF_API_KEY,
    CONF_BASE_URL,
    CONF_LIBRARY_FOLDER,
    CONF_POLL_INTERVAL,
    DEFAULT_ACTIVE_POLL_INTERVAL,
    DEFAULT_BASE_URL,
    DEFAULT_POLL_INTERVAL,
    DEVICE_NAME,
    DOMAIN,
    MANUFACTURER,
)
from .coordinator import AccountCoordinator, GenerationsCoordinator
from .events import async_setup_webhook, attach_bridge
from .models import FinetuningConfigEntry, FinetuningData
from .services import async_setup_services

_LOGGER = logging.getLogger(__name__)

PLATFORMS: list[Platform] = [Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

# Runs still going when an entry unloads (or Home Assistant stops) get this long; the rest
# resume at the next start.
STOP_GRACE = 5.0
# A connector for Home Assistant runs the services' calls only: a few at once is plenty.
MAX_CONCURRENT_RUNS = 4
RETENTION_DAYS = 30


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the services once, whatever the entries."""
    async_setup_services(hass)
    return True


def state_dir_for(hass: HomeAssistant, entry: FinetuningConfigEntry) -> Path:
    """`<config>/finetuning/<account id>`: the account's journal, kept across restarts.

    Per account, not per entry: removing and adding the account again keeps
    what already fired from firing again.
    """
    account = entry.unique_id or entry.entry_id
    return Path(hass.config.path(DOMAIN, re.sub(r"[^A-Za-z0-9._-]", "_", account)))


def connector_config(hass: HomeAssistant, entry: FinetuningConfigEntry) -> ConnectorConfig:
    """The connector's configuration, made in code: no automations, no listener of its
    own (Home Assistant's webhook component receives deliveries), no TemPolor."""
    options = entry.options
    return ConnectorConfig(
        source=None,
        finetuning=ProviderConfig(
            api_key=entry.data[CONF_API_KEY],
            base_url=entry.data.get(CONF_BASE_URL) or DEFAULT_BASE_URL,
        ),
        tempolor=None,
        webhook=None,
        poll=PollConfig(
            idle_interval=float(options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL)),
            active_interval=float(
                options.get(CONF_ACTIVE_POLL_INTERVAL, DEFAULT_ACTIVE_POLL_INTERVAL)
            ),
            backfill=False,
        ),
        state_dir=state_dir_for(hass, entry),
        max_concurrent_runs=MAX_CONCURRENT_RUNS,
        retention_days=RETENTION_DAYS,
    )


async def async_setup_entry(hass: HomeAssistant, entry: FinetuningConfigEntry) -> bool:
    """Open the account's connector, check the key, start it, then the sensors.

    Everything opened goes onto one exit stack, closed when the entry unloads, when
    Home Assistant stops (config entries are not unloaded then), or at once when the
    setup fails part way, whatever the exception.
    """
    config = connector_config(hass, entry)
    # Discovering the plugins imports modules: done once, off the event loop.
    registry = await hass.async_add_executor_job(default_registry)
    stack = contextlib.AsyncExitStack()
    lock = asyncio.Lock()

    async def close() -> None:
        # Home Assistant's stop and an unload may both ask: the second waits, then finds
        # nothing left to close.
        async with lock:
            await stack.aclose()

    try:
        await _async_open(hass, entry, config, registry, stack)
        stop_heard = False

        async def stop_with_home_assistant(_event: Event) -> None:
            nonlocal stop_heard
            stop_heard = True
            await close()

        remove = hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, stop_with_home_assistant)
        # Once heard, the listener is gone already: removing it again would log an error.
        entry.async_on_unload(lambda: None if stop_heard else remove())
        stack.callback(entry.add_update_listener(_options_updated))
        await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    except BaseException:
        await close()
        raise
    entry.async_on_unload(close)
    return True


def _translated(
    kind: type[ConfigEntryError | ConfigEntryAuthFailed | ConfigEntryNotReady],
    key: str,
    err: Exception,
) -> ConfigEntryError | ConfigEntryAuthFailed | ConfigEntryNotReady:
    return kind(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={"error": str(err)},
    )


async def _async_open(
    hass: HomeAssistant,
    entry: FinetuningConfigEntry,
    config: ConnectorConfig,
    registry: Registry,
    stack: contextlib.AsyncExitStack,
) -> None:
    """The setup proper: each piece it opens is pushed onto `stack`."""
    try:
        connector = await stack.enter_async_context(
            open_connector(
                config,
                api_key=config.finetuning.api_key,
                base_url=config.finetuning.base_url,
                sandbox=NEVER,
                session=async_get_clientsession(hass),
                registry=registry,
            )
        )
    except ConfigError as err:  # a malformed key or base URL in the entry's data
        raise _translated(ConfigEntryAuthFailed, "auth_failed", err) from err
    except EndpointError as err:  # a base URL that is not http(s)
        raise _translated(ConfigEntryError, "endpoint_failed", err) from err
    except JournalError as err:
        raise _translated(ConfigEntryError, "journal_failed", err) from err

    options = config.poll
    account = AccountCoordinator(
        hass, entry, connector.finetuning, interval=max(options.idle_interval, 60.0)
    )
    generations = GenerationsCoordinator(
        hass,
        entry,
        connector.finetuning,
        idle_interval=options.idle_interval,
        active_interval=options.active_interval,
    )
    # A server that refuses connections at setup is ConfigEntryNotReady at once: Home
    # Assistant retries the setup with its own backoff, so the client's (about 15 s
    # of reconnecting) would only hold up the start. Later requests retry as usual.
    client = connector.finetuning
    connect_retries, client.connect_retries = client.connect_retries, 0
    try:
        await account.async_config_entry_first_refresh()
    finally:
        client.connect_retries = connect_retries
    account_id = account.data.id
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, entry.unique_id or account_id)},
        entry_type=dr.DeviceEntryType.SERVICE,
        manufacturer=MANUFACTURER,
        name=DEVICE_NAME,
    )
    entry.runtime_data = FinetuningData(
        connector=connector,
        client=connector.finetuning,
        account=account,
        generations=generations,
        device_id=device.id,
        account_id=account_id,
        library_folder=entry.options.get(CONF_LIBRARY_FOLDER) or "",
        options=dict(entry.options),
    )
    # The stack closes last in, first out: the webhook goes first (no new deliveries),
    # then the connector stops, and only then is the bridge detached, so whatever is
    # journaled while the connector stops still reaches the bus.
    attach_bridge(hass, entry, stack)
    stack.push_async_callback(connector.stop, grace=STOP_GRACE)
    # Before start(): what finished while Home Assistant was down is reported by the
    # first poll, and must reach the bus.
    await async_setup_webhook(hass, entry, stack)
    try:
        await connector.start()
    except (InvalidApiKeyError, MissingApiKeyError) as err:
        raise _translated(ConfigEntryAuthFailed, "auth_failed", err) from err
    except ConnectorError as err:  # the API down, the journal locked by another process
        raise _translated(ConfigEntryNotReady, "start_failed", err) from err
    await generations.async_config_entry_first_refresh()


async def async_unload_entry(hass: HomeAssistant, entry: FinetuningConfigEntry) -> bool:
    """Unload the sensors; the connector stops with the entry's unload callbacks."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def _options_updated(hass: HomeAssistant, entry: FinetuningConfigEntry) -> None:
    """New poll intervals or library folder: the connector is rebuilt with them.

    Only for the options: a reauth updates the data and reloads the entry itself.
    """
    if dict(entry.options) == entry.runtime_data.options:
        return
    await hass.config_entries.async_reload(entry.entry_id)
