"""The config flow against the sandbox: every error, success, duplicates, reauth, options."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.finetuning.const import (
    CONF_ACTIVE_POLL_INTERVAL,
    CONF_API_KEY,
    CONF_BASE_URL,
    CONF_LIBRARY_FOLDER,
    CONF_POLL_INTERVAL,
    DOMAIN,
)

from .conftest import MAIN_ACCOUNT

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

ADVANCED = {"source": SOURCE_USER, "show_advanced_options": True}
UNKNOWN_KEY = "ft_live_" + "0123456789abcdef" * 2  # well formed, no account has it


async def _user_flow(hass: HomeAssistant, data: dict[str, str]) -> dict:
    result = await hass.config_entries.flow.async_init(DOMAIN, context=ADVANCED)
    assert result["type"] is FlowResultType.FORM
    return await hass.config_entries.flow.async_configure(result["flow_id"], data)


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def not_an_api(socket_enabled: None) -> AsyncIterator[str]:
    """A loopback server that answers every request 200 with plain text: not the API."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_form_hides_base_url_unless_advanced(hass: HomeAssistant) -> None:
    plain = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert [str(key) for key in plain["data_schema"].schema] == [CONF_API_KEY]
    advanced = await hass.config_entries.flow.async_init(DOMAIN, context=ADVANCED)
    assert [str(key) for key in advanced["data_schema"].schema] == [CONF_API_KEY, CONF_BASE_URL]


async def test_success_creates_one_entry_per_account(
    hass: HomeAssistant, sandbox: SandboxHandle, sandbox_key: str
) -> None:
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    result = await _user_flow(hass, {CONF_API_KEY: f"  {sandbox_key} ", CONF_BASE_URL: sandbox.url})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == account.email
    assert result["data"] == {CONF_API_KEY: sandbox_key, CONF_BASE_URL: sandbox.url}
    entry = result["result"]
    assert entry.unique_id == account.user_id
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    # The same account again, even through another spelling of the server: refused.
    again = await _user_flow(hass, {CONF_API_KEY: sandbox_key, CONF_BASE_URL: sandbox.url + "/"})
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_duplicate_of_a_configured_account_is_refused(
    hass: HomeAssistant, config_entry: MockConfigEntry, sandbox_key: str, sandbox_url: str
) -> None:
    result = await _user_flow(hass, {CONF_API_KEY: sandbox_key, CONF_BASE_URL: sandbox_url})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_another_account_is_a_second_entry(
    hass: HomeAssistant, config_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    second = sandbox.sandbox.account("Second User")
    result = await _user_flow(hass, {CONF_API_KEY: second.api_key, CONF_BASE_URL: sandbox.url})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == second.user_id
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_everyday_form_takes_no_base_url(hass: HomeAssistant, sandbox: SandboxHandle) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    # A malformed key is answered before any server is asked (the default one included).
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "ft_live_short"}
    )
    assert result["errors"] == {CONF_API_KEY: "invalid_key_format"}
    with pytest.raises(InvalidData):  # the field is on the advanced form only
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_API_KEY: "ft_live_short", CONF_BASE_URL: sandbox.url}
        )


@pytest.mark.parametrize(
    "key",
    ["", "not a key", "ft_live_short", "ft_live_" + "g" * 32, "sk_live_" + "0" * 32],
)
async def test_malformed_key_is_refused_without_a_request(
    hass: HomeAssistant, sandbox: SandboxHandle, key: str
) -> None:
    before = len(sandbox.sandbox.requests)
    result = await _user_flow(hass, {CONF_API_KEY: key, CONF_BASE_URL: sandbox.url})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_API_KEY: "invalid_key_format"}
    assert len(sandbox.sandbox.requests) == before


async def test_unknown_key_is_invalid_auth(hass: HomeAssistant, sandbox: SandboxHandle) -> None:
    result = await _user_flow(hass, {CONF_API_KEY: UNKNOWN_KEY, CONF_BASE_URL: sandbox.url})
    assert result["errors"] == {"base": "invalid_auth"}
    me = [r for r in sandbox.sandbox.requests if r.path == "/v1/me"]
    assert [r.status for r in me] == [401]


async def test_plan_without_api_access(hass: HomeAssistant, sandbox: SandboxHandle) -> None:
    free = sandbox.sandbox.account("Free User")
    result = await _user_flow(hass, {CONF_API_KEY: free.api_key, CONF_BASE_URL: sandbox.url})
    assert result["errors"] == {"base": "no_api_access"}
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_unreachable_server(
    hass: HomeAssistant, socket_enabled: None, sandbox_key: str
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = await _user_flow(hass, {CONF_API_KEY: sandbox_key, CONF_BASE_URL: url})
    assert result["errors"] == {"base": "cannot_connect"}


async def test_answer_that_is_not_the_api_is_unknown(
    hass: HomeAssistant, not_an_api: str, sandbox_key: str
) -> None:
    result = await _user_flow(hass, {CONF_API_KEY: sandbox_key, CONF_BASE_URL: not_an_api})
    assert result["errors"] == {"base": "unknown"}


async def test_base_url_must_be_http(hass: HomeAssistant, sandbox_key: str) -> None:
    result = await _user_flow(hass, {CONF_API_KEY: sandbox_key, CONF_BASE_URL: "ftp://example"})
    assert result["errors"] == {CONF_BASE_URL: "invalid_base_url"}


async def test_an_error_can_be_corrected(
    hass: HomeAssistant, sandbox: SandboxHandle, sandbox_key: str
) -> None:
    result = await _user_flow(hass, {CONF_API_KEY: UNKNOWN_KEY, CONF_BASE_URL: sandbox.url})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: sandbox_key, CONF_BASE_URL: sandbox.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


# -- reauth ---------------------------------------------------------------------------------


@pytest.fixture
def stale_entry(hass: HomeAssistant, sandbox: SandboxHandle) -> MockConfigEntry:
    """The main account's entry, holding a key the provider no longer accepts."""
    account = sandbox.sandbox.account(MAIN_ACCOUNT)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=account.email,
        data={CONF_API_KEY: UNKNOWN_KEY, CONF_BASE_URL: sandbox.url},
        unique_id=account.user_id,
    )
    entry.add_to_hass(hass)
    return entry


async def test_reauth_with_a_working_key(
    hass: HomeAssistant, stale_entry: MockConfigEntry, sandbox_key: str, sandbox_url: str
) -> None:
    # Setting up with the dead key starts the reauth flow by itself.
    assert not await hass.config_entries.async_setup(stale_entry.entry_id)
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(flows) == 1
    assert flows[0]["step_id"] == "reauth_confirm"
    flow_id = flows[0]["flow_id"]

    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_API_KEY: "nope"})
    assert result["errors"] == {CONF_API_KEY: "invalid_key_format"}
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_API_KEY: UNKNOWN_KEY})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_API_KEY: sandbox_key})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert stale_entry.data == {CONF_API_KEY: sandbox_key, CONF_BASE_URL: sandbox_url}
    assert stale_entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(stale_entry.entry_id)


async def test_reauth_with_another_accounts_key_is_refused(
    hass: HomeAssistant, stale_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    result = await stale_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    other = sandbox.sandbox.account("Second User").api_key
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: other}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert stale_entry.data[CONF_API_KEY] == UNKNOWN_KEY


async def test_coordinator_auth_failure_starts_reauth(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    """The entry's key revoked while it is loaded: the next refresh of the credits starts
    reauth, instead of leaving a dead sensor."""
    key = setup_entry.data[CONF_API_KEY]
    # Revoked at the provider: the sandbox no longer knows the key (it has no public
    # way to revoke one; its key index is what authenticates).
    assert sandbox.sandbox._by_key.pop(key) is not None
    account = setup_entry.runtime_data.account
    await account.async_refresh()
    await hass.async_block_till_done()
    assert not account.last_update_success
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    assert flows[0]["context"]["entry_id"] == setup_entry.entry_id
    assert hass.states.get("sensor.finetuning_credits").state == "unavailable"


# -- options --------------------------------------------------------------------------------


async def test_options_store_intervals_and_library(
    hass: HomeAssistant, setup_entry: MockConfigEntry, tmp_path: Path
) -> None:
    library = tmp_path / "music"
    library.mkdir()
    result = await hass.config_entries.options.async_init(setup_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_POLL_INTERVAL: 120, CONF_ACTIVE_POLL_INTERVAL: 2, CONF_LIBRARY_FOLDER: str(library)},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert setup_entry.options == {
        CONF_POLL_INTERVAL: 120,
        CONF_ACTIVE_POLL_INTERVAL: 2,
        CONF_LIBRARY_FOLDER: str(library),
    }
    await hass.async_block_till_done()
    # The connector was rebuilt with them.
    data = setup_entry.runtime_data
    assert data.library_folder == str(library)
    assert data.connector.runtime.poller is not None
    assert data.connector.runtime.poller.idle_interval == 120.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({CONF_POLL_INTERVAL: 4, CONF_ACTIVE_POLL_INTERVAL: 3}, CONF_POLL_INTERVAL),
        ({CONF_POLL_INTERVAL: 3601, CONF_ACTIVE_POLL_INTERVAL: 3}, CONF_POLL_INTERVAL),
        ({CONF_POLL_INTERVAL: 60, CONF_ACTIVE_POLL_INTERVAL: 0}, CONF_ACTIVE_POLL_INTERVAL),
        ({CONF_POLL_INTERVAL: 60, CONF_ACTIVE_POLL_INTERVAL: 301}, CONF_ACTIVE_POLL_INTERVAL),
    ],
)
async def test_options_intervals_have_ranges(
    hass: HomeAssistant, setup_entry: MockConfigEntry, options: dict, field: str
) -> None:
    result = await hass.config_entries.options.async_init(setup_entry.entry_id)
    with pytest.raises(InvalidData) as caught:
        await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert field in caught.value.schema_errors


async def test_options_library_must_exist_and_be_writable(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = await hass.config_entries.options.async_init(setup_entry.entry_id)
    flow_id = result["flow_id"]
    base = {CONF_POLL_INTERVAL: 60, CONF_ACTIVE_POLL_INTERVAL: 3}

    async def attempt(folder: str) -> dict:
        return await hass.config_entries.options.async_configure(
            flow_id, {**base, CONF_LIBRARY_FOLDER: folder}
        )

    result = await attempt(str(tmp_path / "missing"))
    assert result["errors"] == {CONF_LIBRARY_FOLDER: "library_not_found"}
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    result = await attempt(str(a_file))
    assert result["errors"] == {CONF_LIBRARY_FOLDER: "library_not_found"}
    result = await attempt("relative/music")
    assert result["errors"] == {CONF_LIBRARY_FOLDER: "library_not_absolute"}

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        # Root ignores permission bits: let the check see the folder as the kernel
        # would for any other user.
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda path, mode: False if str(path) == str(locked) else real_access(path, mode),
        )
    result = await attempt(str(locked))
    assert result["errors"] == {CONF_LIBRARY_FOLDER: "library_not_writable"}
    locked.chmod(0o700)
    # The form keeps what was typed; nothing was stored.
    assert CONF_LIBRARY_FOLDER not in setup_entry.options


async def test_options_empty_library_turns_downloads_off(
    hass: HomeAssistant, setup_entry: MockConfigEntry, tmp_path: Path
) -> None:
    hass.config_entries.async_update_entry(
        setup_entry, options={CONF_LIBRARY_FOLDER: str(tmp_path)}
    )
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(setup_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_POLL_INTERVAL: 60, CONF_ACTIVE_POLL_INTERVAL: 3}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_LIBRARY_FOLDER not in setup_entry.options
