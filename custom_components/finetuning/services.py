"""The services: the library's actions, called as Home Assistant services.

Each service runs the library's action of the same name through the connector's
runtime, as its HTTP API does (`Runtime.call_action`): the options are checked
by the action's own schema and checks (`check_call`, the same messages a YAML
step gets), the call is journaled as a run, and the run is awaited for its
output, which is the service's response data. Journaled, a `generate` cut short
by a restart resumes instead of spending a second credit.

Errors: what the user got wrong (an option, a playlist name, no `confirm`, no
library folder) is a `ServiceValidationError`; what the provider refused or
failed is a `HomeAssistantError`. Both carry translation keys (`strings.json`,
`exceptions`); the placeholders hold the library's messages, which never hold a
secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv

from connector.automation.calls import check_call
from connector.errors import AmbiguousPlaylistError, ConnectorError, PlaylistNotFoundError
from connector.journal.connection import JournalError

from .const import ATTR_CONFIG_ENTRY_ID, DOMAIN
from .models import FinetuningConfigEntry

__all__ = ["SERVICES", "async_setup_services"]

SERVICE_GENERATE = "generate"
SERVICE_ADD_TO_PLAYLIST = "add_to_playlist"
SERVICE_REMOVE_FROM_PLAYLIST = "remove_from_playlist"
SERVICE_MOVE_TRACKS = "move_tracks"
SERVICE_BULK_DELETE = "bulk_delete"
SERVICE_DOWNLOAD_TRACK = "download_track"
SERVICES = (
    SERVICE_GENERATE,
    SERVICE_ADD_TO_PLAYLIST,
    SERVICE_REMOVE_FROM_PLAYLIST,
    SERVICE_MOVE_TRACKS,
    SERVICE_BULK_DELETE,
    SERVICE_DOWNLOAD_TRACK,
)

# How long a call waits for its run: a run still going then keeps going (it is journaled).
CALL_TIMEOUT = 300.0
# With `wait: true`, on top of the generation's own `wait_timeout`.
WAIT_MARGIN = 60.0
DEFAULT_WAIT_TIMEOUT = 600

# Types only: ranges and choices are the library's (`check_call`), so one place says
# what is allowed, with the same message in YAML, the HTTP API and here.
_ENTRY: dict[vol.Marker, Any] = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}
_TRACKS = vol.All(cv.ensure_list_csv, [cv.string], vol.Length(min=1))
_NUMBER = vol.Coerce(float)
_WHOLE = vol.Coerce(int)

SCHEMAS: dict[str, vol.Schema] = {
    SERVICE_GENERATE: vol.Schema(
        {
            **_ENTRY,
            vol.Required("tags"): cv.string,
            vol.Optional("lyrics"): cv.string,
            vol.Optional("duration"): _NUMBER,
            vol.Optional("bpm"): _NUMBER,
            vol.Optional("language"): cv.string,
            vol.Optional("key"): cv.string,
            vol.Optional("scale"): cv.string,
            vol.Optional("timesignature"): _WHOLE,
            vol.Optional("seed"): _WHOLE,
            vol.Optional("wait", default=False): cv.boolean,
            vol.Optional("wait_timeout", default=DEFAULT_WAIT_TIMEOUT): _NUMBER,
        }
    ),
    SERVICE_ADD_TO_PLAYLIST: vol.Schema(
        {**_ENTRY, vol.Required("playlist"): cv.string, vol.Required("tracks"): _TRACKS}
    ),
    SERVICE_REMOVE_FROM_PLAYLIST: vol.Schema(
        {**_ENTRY, vol.Required("playlist"): cv.string, vol.Required("tracks"): _TRACKS}
    ),
    SERVICE_MOVE_TRACKS: vol.Schema(
        {
            **_ENTRY,
            vol.Required("from_playlist"): cv.string,
            vol.Required("to_playlist"): cv.string,
            vol.Required("tracks"): _TRACKS,
        }
    ),
    SERVICE_BULK_DELETE: vol.Schema(
        {
            **_ENTRY,
            vol.Required("tracks"): _TRACKS,
            vol.Optional("confirm", default=False): cv.boolean,
            vol.Optional("dry_run", default=False): cv.boolean,
        }
    ),
    SERVICE_DOWNLOAD_TRACK: vol.Schema(
        {
            **_ENTRY,
            vol.Required("track"): cv.string,
            vol.Optional("album"): cv.string,
            vol.Optional("artist"): cv.string,
            vol.Optional("path_template"): cv.string,
        }
    ),
}


def _invalid(key: str, **placeholders: Any) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={k: str(v) for k, v in placeholders.items()},
    )


def _failed(key: str, **placeholders: Any) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={k: str(v) for k, v in placeholders.items()},
    )


def entry_for(hass: HomeAssistant, call: ServiceCall) -> FinetuningConfigEntry:
    """The account a call is for: the one named, or the only one loaded."""
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise _invalid("entry_not_found", entry_id=entry_id)
        if entry.state is not ConfigEntryState.LOADED:
            raise _invalid("entry_not_loaded", title=entry.title)
        return entry
    loaded = hass.config_entries.async_loaded_entries(DOMAIN)
    if not loaded:
        raise _invalid("no_loaded_entry")
    if len(loaded) > 1:
        raise _invalid("several_entries", titles=", ".join(e.title for e in loaded))
    return loaded[0]


async def run_action(
    hass: HomeAssistant,
    entry: FinetuningConfigEntry,
    action: str,
    options: dict[str, Any],
    *,
    timeout: float = CALL_TIMEOUT,
) -> dict[str, Any]:
    """Run one library action as a journaled run and return its step's output."""
    runtime = entry.runtime_data.connector.runtime
    # The checks look at the file system (a library folder exists): off the event loop.
    base_dir = Path(hass.config.config_dir)
    checked = await hass.async_add_executor_job(
        partial(check_call, runtime.registry, action, options, base_dir=base_dir)
    )
    if isinstance(checked, list):
        problems = "; ".join(f"{p.path}: {p.message}" for p in checked)
        raise _invalid("invalid_options", action=action, problems=problems)
    _spec, validated = checked
    try:
        run_id, _new = await runtime.call_action(action, validated, requested_by="homeassistant")
    except RuntimeError as err:
        raise _failed("not_running", action=action) from err
    except JournalError as err:
        raise _failed("journal_failed", error=str(err)) from err
    await runtime.wait_for_run(run_id, timeout)
    try:
        row = await hass.async_add_executor_job(runtime.store.run, run_id)
    except JournalError as err:
        raise _failed("journal_failed", error=str(err)) from err
    if row is None or row.status == "running":
        raise _failed("still_running", action=action, run_id=run_id)
    if row.status != "succeeded" or not row.steps:
        raise _failed("action_failed", action=action, error=row.error or row.status)
    return dict(row.steps[0].output or {})


async def _resolve_playlist(entry: FinetuningConfigEntry, reference: str) -> str:
    """A playlist name or id as its id; an unknown or ambiguous name is the user's error."""
    try:
        return await entry.runtime_data.client.resolve_playlist(reference)
    except PlaylistNotFoundError as err:
        raise _invalid("playlist_not_found", playlist=reference, error=err.message) from err
    except AmbiguousPlaylistError as err:
        raise _invalid("playlist_ambiguous", playlist=reference, error=err.message) from err
    except ConnectorError as err:
        raise _failed("provider_error", error=str(err)) from err


def _options(call: ServiceCall, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in call.data.items() if k not in (ATTR_CONFIG_ENTRY_ID, *drop)}


async def _generate(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    options = _options(call)
    wait = options["wait"]
    if wait:
        # A failed generation is answered as this service's own error, below.
        options["continue_on_error"] = True
    else:
        options.pop("wait_timeout")
    timeout = float(call.data["wait_timeout"]) + WAIT_MARGIN if wait else CALL_TIMEOUT
    try:
        output = await run_action(hass, entry, SERVICE_GENERATE, options, timeout=timeout)
    finally:
        await entry.runtime_data.refresh_sensors()
    if wait and output.get("status") == "failed":
        generation = output.get("generation") or {}
        raise _failed(
            "generation_failed",
            generation_id=output.get("id"),
            error=generation.get("errorMessage") or "no reason given",
        )
    return output


async def _add(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    options = _options(call)
    options["playlist"] = await _resolve_playlist(entry, call.data["playlist"])
    return await run_action(hass, entry, SERVICE_ADD_TO_PLAYLIST, options)


async def _remove(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    options = _options(call)
    options["playlist"] = await _resolve_playlist(entry, call.data["playlist"])
    return await run_action(hass, entry, SERVICE_REMOVE_FROM_PLAYLIST, options)


async def _move(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    source = await _resolve_playlist(entry, call.data["from_playlist"])
    target = await _resolve_playlist(entry, call.data["to_playlist"])
    if source == target:
        raise _invalid("same_playlist", playlist=call.data["to_playlist"])
    options = {"from": source, "to": target, "tracks": call.data["tracks"]}
    return await run_action(hass, entry, SERVICE_MOVE_TRACKS, options)


async def _bulk_delete(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    if call.data["confirm"] is not True:
        raise _invalid("confirm_required")
    try:
        return await run_action(hass, entry, SERVICE_BULK_DELETE, _options(call))
    finally:
        await entry.runtime_data.generations.async_request_refresh()


async def _download(hass: HomeAssistant, entry: FinetuningConfigEntry, call: ServiceCall) -> Any:
    library = entry.runtime_data.library_folder
    if not library:
        raise _invalid("no_library_folder")
    options = {**_options(call), "library": library}
    return await run_action(hass, entry, SERVICE_DOWNLOAD_TRACK, options)


Handler = Callable[[HomeAssistant, FinetuningConfigEntry, ServiceCall], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {
    SERVICE_GENERATE: _generate,
    SERVICE_ADD_TO_PLAYLIST: _add,
    SERVICE_REMOVE_FROM_PLAYLIST: _remove,
    SERVICE_MOVE_TRACKS: _move,
    SERVICE_BULK_DELETE: _bulk_delete,
    SERVICE_DOWNLOAD_TRACK: _download,
}


def async_setup_services(hass: HomeAssistant) -> None:
    """Register every service (once, from `async_setup`)."""

    def bind(handler: Handler) -> Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]:
        async def service(call: ServiceCall) -> ServiceResponse:
            entry = entry_for(hass, call)
            output = await handler(hass, entry, call)
            return output if call.return_response else None

        return service

    for name, handler in HANDLERS.items():
        hass.services.async_register(
            DOMAIN,
            name,
            bind(handler),
            schema=SCHEMAS[name],
            supports_response=SupportsResponse.OPTIONAL,
        )
