"""Finished generations onto Home Assistant's bus, once each, from a webhook or the poller.

The connector decides what is new: every report (the connector's poller, or a
webhook delivery received here) goes through `Runtime.submit_event`, which
journals it by event key (provider, generation id, terminal status) and tells
its `event_listeners` only the first time, across restarts too, since the
journal lives under Home Assistant's config directory. `EventBridge` is such a
listener: it fires `finetuning_track_completed` or
`finetuning_generation_failed`.

The webhook is the fast path. It is registered through Home Assistant's
`webhook` component only when Home Assistant has an external URL the provider
can reach (public https; loopback only when the API itself is on loopback, i.e.
the sandbox): otherwise the poller alone reports. Finetuning.ai does not sign
its deliveries, so, as the library's own listener does, authenticity rests on
secrets in the URL: the webhook id (Home Assistant's) and a `token` query
parameter compared in constant time. Both are made once and kept in 0600 files
beside the journal, so generations submitted before a restart can still be
delivered after it, and both are registered with the library's scrubber, so
neither reaches a log or the journal. The body is read, checked and parsed by
the library's code (`token_matches`, `read_body`, `finetuning_delivery`). Since a
delivery is unsigned, only its id is believed: the generation is read from the
provider (bounded) before anything is recorded, and that record is what is
journaled and fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from aiohttp import web
from homeassistant.components import webhook
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers.network import NoURLAvailableError
from yarl import URL

from connector.dispatch.listener import WEBHOOK_TOKEN
from connector.dispatch.runtime import Runtime
from connector.errors import ConnectorError, NotFoundError, RequestValidationError
from connector.events import GENERATION_FAILED, TRACK_COMPLETED, Event
from connector.ingress.server import Reject, json_response, read_body
from connector.ingress.webhooks import (
    BODY_READ_TIMEOUT,
    MAX_BODY,
    finetuning_delivery,
    token_matches,
)
from connector.providers.finetuning.models import Generation, GenerationStatus
from connector.providers.hosts import is_local, is_loopback
from connector.redaction import register_secret

from .const import DOMAIN, EVENT_GENERATION_FAILED, EVENT_TRACK_COMPLETED
from .models import FinetuningConfigEntry

__all__ = [
    "WEBHOOK_ID_SECRET",
    "EventBridge",
    "async_setup_webhook",
    "attach_bridge",
    "event_data",
]

_LOGGER = logging.getLogger(__name__)

WEBHOOK_ID_SECRET = "homeassistant_webhook_id"
"""The state-dir secret file holding the Home Assistant webhook id of the account."""
TOKEN_PARAMETER = "token"
# A delivery is checked with the provider within this (its own delivery timeout is 10 s).
FETCH_TIMEOUT = 8.0

BUS_EVENTS = {TRACK_COMPLETED: EVENT_TRACK_COMPLETED, GENERATION_FAILED: EVENT_GENERATION_FAILED}


def event_data(
    generation: Generation, *, device_id: str, entry_id: str, source: str
) -> dict[str, Any]:
    """The bus event's data (both events): the generation, and where it came from."""
    return {
        "device_id": device_id,
        "entry_id": entry_id,
        "generation_id": generation.id,
        "title": generation.title,
        "tags": generation.prompt,
        "duration": generation.duration,
        "audio_url": generation.audio_url,
        "status": generation.status.value,
        "error_message": (
            generation.error_message if generation.status is GenerationStatus.FAILED else None
        ),
        "source": source,
    }


class EventBridge:
    """A connector event listener: each new terminal Finetuning.ai generation, on the bus.

    Called by the runtime on the event loop, once per event key, right after the
    event is journaled, and it fires there and then: nothing is awaited between
    the journal's "seen" and the bus, so no crash, cancellation or unload can fall
    between them. Every report already carries the full record (a poll reads it;
    the webhook handler fetches it before submitting), so there is nothing to add.
    The sensors' refreshes follow in a task of their own.
    """

    def __init__(self, hass: HomeAssistant, entry: FinetuningConfigEntry) -> None:
        self.hass = hass
        self.entry = entry

    def __call__(self, event: Event) -> None:
        name = BUS_EVENTS.get(event.kind)
        generation = event.generation
        if name is None or generation is None or event.provider != "finetuning":
            return
        data = self.entry.runtime_data
        self.hass.bus.async_fire(
            name,
            event_data(
                generation,
                device_id=data.device_id,
                entry_id=self.entry.entry_id,
                source=event.source,
            ),
        )
        if self.entry.state is ConfigEntryState.LOADED:
            self.entry.async_create_task(self.hass, data.refresh_sensors(), f"{DOMAIN} refresh")


def attach_bridge(
    hass: HomeAssistant, entry: FinetuningConfigEntry, stack: contextlib.AsyncExitStack
) -> None:
    """Bridge the connector's events to the bus until the stack closes.

    Call it before pushing the connector's stop onto `stack`: the stack closes last
    in, first out, so the bridge stays attached until the connector has stopped and
    whatever is journaled while it stops still reaches the bus.
    """
    runtime = entry.runtime_data.connector.runtime
    bridge = EventBridge(hass, entry)
    runtime.event_listeners.append(bridge)
    stack.callback(runtime.event_listeners.remove, bridge)


async def async_setup_webhook(
    hass: HomeAssistant, entry: FinetuningConfigEntry, stack: contextlib.AsyncExitStack
) -> None:
    """Register the webhook when the provider can reach it; unregistered as `stack` closes
    (pushed after the connector's stop, so deliveries stop first)."""
    data = entry.runtime_data
    runtime = data.connector.runtime
    try:
        base = webhook.async_generate_url(hass, "", allow_internal=False)
    except NoURLAvailableError:
        _LOGGER.debug("no external URL: finished generations are found by polling")
        return
    if not _reachable(runtime, URL(base)):
        _LOGGER.info(
            "the external URL is not one Finetuning.ai can call (it needs public https): "
            "finished generations are found by polling"
        )
        return
    store = data.connector.store
    # Made once, in 0600 files beside the journal (file I/O: off the event loop).
    webhook_id = await hass.async_add_executor_job(
        store.secret, WEBHOOK_ID_SECRET, webhook.async_generate_id
    )
    token = await hass.async_add_executor_job(
        store.secret, WEBHOOK_TOKEN, lambda: secrets.token_urlsafe(32)
    )
    register_secret(webhook_id)
    register_secret(token)
    url = str(
        URL(webhook.async_generate_url(hass, webhook_id, allow_internal=False)).update_query(
            {TOKEN_PARAMETER: token}
        )
    )
    webhook.async_register(
        hass,
        DOMAIN,
        f"Finetuning.ai ({entry.title})",
        webhook_id,
        _handler(entry, token),
        local_only=False,  # the provider calls from the internet
        allowed_methods=("POST",),
    )
    stack.callback(webhook.async_unregister, hass, webhook_id)
    data.webhook_url = url

    # Providers are told Home Assistant's webhook instead of a listener of the library's.
    runtime.external_webhook_urls["finetuning"] = url
    _LOGGER.debug("finished generations are delivered by webhook, polling as a safety net")


def _reachable(runtime: Runtime, base: URL) -> bool:
    """Whether the provider will call this URL: public https, or loopback to a loopback API
    (the sandbox), as the library's `GenerationRequest` demands."""
    if runtime.api_is_local and is_loopback(base.host):
        return True
    return base.scheme == "https" and not is_local(base.host)


def _handler(entry: FinetuningConfigEntry, token: str) -> Any:
    """The webhook handler: check the token, parse with the library, check the delivery
    against the provider, record what the provider says through the runtime (which
    dedups), answer 200 only once the event is durable (and on the bus)."""
    expected = token.encode("utf-8", "surrogatepass")
    log = logging.LoggerAdapter(_LOGGER)

    async def handle(hass: HomeAssistant, webhook_id: str, request: web.Request) -> web.Response:
        if not token_matches(request, expected):
            # No detail, to the caller or in the log: a wrong token is secret-shaped. DEBUG:
            # anyone can post to a public URL, and each refusal must not flood the log.
            _LOGGER.debug("a Finetuning.ai webhook was refused: missing or wrong token")
            return json_response({"error": "unauthorized"}, 401)
        try:
            body = await read_body(request, max_body=MAX_BODY, timeout=BODY_READ_TIMEOUT, log=log)
            delivered = finetuning_delivery(body, log)
        except Reject as reject:
            return json_response({"error": reject.reason}, reject.status)
        generation, answer = await _checked(entry, delivered.id)
        if generation is None:
            return answer
        event = Event.for_generation(generation, source="webhook")
        try:
            new = await entry.runtime_data.connector.runtime.submit_event(event)
        except Exception:
            _LOGGER.exception("event %s: not recorded, answered 503", event.key)
            return json_response({"error": "not recorded, retry later"}, 503)
        _LOGGER.debug("event %s recorded from a webhook (new: %s)", event.key, bool(new))
        return json_response({"ok": True, "new": bool(new)}, 200)

    return handle


async def _checked(
    entry: FinetuningConfigEntry, generation_id: str
) -> tuple[Generation | None, web.Response]:
    """The account's own record of a delivered generation, or why there is none.

    Deliveries are unsigned: whoever holds the URL could post any status, audio
    URL or id. Only the provider's answer is recorded, so a forged "completed" for
    a track still processing (or one the account does not have) records nothing,
    and the real completion is still new when it comes. The record also has what a
    delivery lacks (the title). 503 when the provider cannot be asked in time.
    """
    try:
        async with asyncio.timeout(FETCH_TIMEOUT):
            generation = await entry.runtime_data.client.get_generation(generation_id)
    except NotFoundError:
        _LOGGER.debug("generation %s: not in the account, nothing recorded", generation_id)
        return None, json_response({"error": "no such generation"}, 404)
    except RequestValidationError:
        return None, json_response({"error": "not a generation payload: bad id"}, 400)
    except (ConnectorError, TimeoutError) as err:
        _LOGGER.warning(
            "generation %s: could not be checked with Finetuning.ai, answered 503 (the "
            "poller will report it): %s",
            generation_id,
            err,
        )
        return None, json_response({"error": "cannot check it now, retry later"}, 503)
    if not generation.is_terminal:
        _LOGGER.debug("generation %s: not final yet, nothing recorded", generation_id)
        return None, json_response({"ok": True, "final": False}, 202)
    return generation, json_response({"ok": True}, 200)
