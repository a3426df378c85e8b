"""Config flow: an API key, checked against GET /v1/me before the entry exists.

The key's shape is checked first, by the library (`check_api_key`), so a typo
is answered at once without a request. Then /v1/me decides: an unknown key, a
plan without API access, a server that cannot be reached, each its own error.
The account id it answers is the entry's unique id, so one account is one entry.

`base_url` (the sandbox's address, for development) is a field of the form only
in advanced mode. It is not a thing to set for normal use (the service has one
address), and Home Assistant forms have no hidden fields: the advanced-mode
switch is Home Assistant's way of keeping developer settings off the everyday
form. Entries made without it still store the default base URL, so the data
always has both keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from yarl import URL

from connector.errors import (
    AuthenticationError,
    ConnectorError,
    InvalidApiKeyError,
    MissingApiKeyError,
    ProPlanRequiredError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
)
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.credentials import check_api_key
from connector.providers.finetuning.models import Account

from .const import (
    CONF_ACTIVE_POLL_INTERVAL,
    CONF_API_KEY,
    CONF_BASE_URL,
    CONF_LIBRARY_FOLDER,
    CONF_POLL_INTERVAL,
    DEFAULT_ACTIVE_POLL_INTERVAL,
    DEFAULT_BASE_URL,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
    MAX_ACTIVE_POLL_INTERVAL,
    MAX_POLL_INTERVAL,
    MIN_ACTIVE_POLL_INTERVAL,
    MIN_POLL_INTERVAL,
)

_LOGGER = logging.getLogger(__name__)

_KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


class CheckFailed(Exception):
    """The key cannot be used: `field` and `error` are the form's error (a strings.json key)."""

    def __init__(self, field: str, error: str) -> None:
        super().__init__(error)
        self.field = field
        self.error = error


async def check_account(hass: HomeAssistant, api_key: str, base_url: str) -> Account:
    """GET /v1/me with this key: the account, or CheckFailed saying what is wrong.

    One quick attempt (a person waits at the form): no retries after a refused
    connection, one after a server error.
    """
    try:
        key = check_api_key(api_key)
    except InvalidApiKeyError as err:
        raise CheckFailed(CONF_API_KEY, "invalid_key_format") from err
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise CheckFailed(CONF_BASE_URL, "invalid_base_url")
    client = FinetuningClient(
        key,
        base_url=base_url,
        session=async_get_clientsession(hass),
        max_retries=1,
        connect_retries=0,
        backoff_base=0.5,
    )
    try:
        return await client.get_account()
    except (InvalidApiKeyError, MissingApiKeyError) as err:
        raise CheckFailed("base", "invalid_auth") from err
    except ProPlanRequiredError as err:
        raise CheckFailed("base", "no_api_access") from err
    except AuthenticationError as err:
        # Another 401/403 the library has no class for: a 403 is a plan without access.
        raise CheckFailed("base", "no_api_access" if err.status == 403 else "invalid_auth") from err
    except (ProviderConnectionError, ServerError, RateLimitError) as err:
        raise CheckFailed("base", "cannot_connect") from err
    except ConnectorError as err:
        _LOGGER.warning("checking the key: unexpected answer from the server: %s", err)
        raise CheckFailed("base", "unknown") from err
    except Exception as err:
        _LOGGER.exception("checking the key failed unexpectedly")
        raise CheckFailed("base", "unknown") from err


def _title(account: Account) -> str:
    return account.email or account.name or "Finetuning.ai"


class FinetuningConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Finetuning.ai account; reauthenticate it when its key stops working."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            api_key = user_input[CONF_API_KEY].strip()
            base_url = (user_input.get(CONF_BASE_URL) or DEFAULT_BASE_URL).strip().rstrip("/")
            try:
                account = await check_account(self.hass, api_key, base_url)
            except CheckFailed as err:
                errors[err.field] = err.error
            else:
                await self.async_set_unique_id(account.id)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title=_title(account),
                    data={CONF_API_KEY: api_key, CONF_BASE_URL: base_url},
                )
        fields: dict[Any, Any] = {vol.Required(CONF_API_KEY): _KEY_SELECTOR}
        if self.show_advanced_options:
            fields[vol.Optional(CONF_BASE_URL, default=DEFAULT_BASE_URL)] = TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            )
        return self.async_show_form(step_id="user", data_schema=vol.Schema(fields), errors=errors)

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Started by the integration when the provider refuses the key."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        entry = self._get_reauth_entry()
        if user_input is not None:
            api_key = user_input[CONF_API_KEY].strip()
            base_url = entry.data.get(CONF_BASE_URL) or DEFAULT_BASE_URL
            try:
                account = await check_account(self.hass, api_key, base_url)
            except CheckFailed as err:
                errors[err.field] = err.error
            else:
                # A key of another account would silently swap whose tracks these are.
                await self.async_set_unique_id(account.id)
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_API_KEY: api_key}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_API_KEY): _KEY_SELECTOR}),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> FinetuningOptionsFlow:
        return FinetuningOptionsFlow()


def library_problem(folder: str) -> tuple[str, str | None]:
    """The folder with `~` expanded, and why it cannot take downloads (a strings.json
    error key) or None. Blocking (it looks at the file system)."""
    path = os.path.expanduser(folder)
    if not os.path.isabs(path):
        return path, "library_not_absolute"
    if not os.path.isdir(path):
        return path, "library_not_found"
    if not os.access(path, os.W_OK | os.X_OK):
        return path, "library_not_writable"
    return path, None


class FinetuningOptionsFlow(OptionsFlow):
    """Poll intervals (idle and while our generations run) and the downloads folder."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        current = dict(self.config_entry.options)
        if user_input is not None:
            options: dict[str, int | str] = {
                CONF_POLL_INTERVAL: int(user_input[CONF_POLL_INTERVAL]),
                CONF_ACTIVE_POLL_INTERVAL: int(user_input[CONF_ACTIVE_POLL_INTERVAL]),
            }
            folder = (user_input.get(CONF_LIBRARY_FOLDER) or "").strip()
            if folder:
                path, problem = await self.hass.async_add_executor_job(library_problem, folder)
                if problem is not None:
                    errors[CONF_LIBRARY_FOLDER] = problem
                options[CONF_LIBRARY_FOLDER] = path
            if not errors:
                return self.async_create_entry(data=options)
            current = {**current, **user_input}
        library = current.get(CONF_LIBRARY_FOLDER)
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_POLL_INTERVAL,
                    default=current.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_POLL_INTERVAL,
                        max=MAX_POLL_INTERVAL,
                        step=1,
                        unit_of_measurement="s",
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(
                    CONF_ACTIVE_POLL_INTERVAL,
                    default=current.get(CONF_ACTIVE_POLL_INTERVAL, DEFAULT_ACTIVE_POLL_INTERVAL),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_ACTIVE_POLL_INTERVAL,
                        max=MAX_ACTIVE_POLL_INTERVAL,
                        step=1,
                        unit_of_measurement="s",
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Optional(
                    CONF_LIBRARY_FOLDER,
                    description={"suggested_value": library} if library else None,
                ): TextSelector(),
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema, errors=errors)
