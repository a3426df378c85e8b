"""Diagnostics of one account: what a bug report needs, and no secret.

Redacted twice: Home Assistant's `async_redact_data` removes the fields known
to be secret or personal (the key, the webhook id and token, the email), then
the library's scrubber replaces any value it knows to be a secret wherever it
hides (a URL's path or query, an error message). The webhook URL is shown
without its path and query.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from yarl import URL

from connector.providers.finetuning.models import iso_utc
from connector.redaction import scrub

from .const import CONF_API_KEY
from .models import FinetuningConfigEntry

TO_REDACT = {
    CONF_API_KEY,
    "token",
    "webhook_id",
    "webhook_token",
    "secret",
    "email",
    "name",
    "title",
}
# The recent events the summary counts (by kind and source).
RECENT_EVENTS = 200


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: FinetuningConfigEntry
) -> dict[str, Any]:
    """The entry, the account, the journal, the poller, the webhook and the coordinators."""
    data = entry.runtime_data
    connector = data.connector
    runtime = connector.runtime
    store = connector.store
    account = data.account.data
    poller = runtime.poller
    recent = await hass.async_add_executor_job(lambda: store.events(limit=RECENT_EVENTS))
    pending = await hass.async_add_executor_job(store.pending)
    unfinished = await hass.async_add_executor_job(store.unfinished_runs)
    size = await hass.async_add_executor_job(store.size_bytes)
    webhook = URL(data.webhook_url) if data.webhook_url else None
    report: dict[str, Any] = {
        "entry": async_redact_data(
            {
                "data": dict(entry.data),
                "options": dict(entry.options),
                "title": entry.title,
                "unique_id": entry.unique_id,
            },
            TO_REDACT,
        ),
        "client": repr(data.client),  # the key's documented prefix at most
        "account": async_redact_data(
            account.model_dump(mode="json") if account is not None else None, TO_REDACT
        ),
        "journal": {
            "size_bytes": size,
            "recent_events": len(recent),
            "recent_by_kind": dict(Counter(row.kind for row in recent)),
            "recent_by_source": dict(Counter(row.source for row in recent)),
            "pending_generations": len(pending),
            "unfinished_runs": len(unfinished),
            "problem": runtime.journal.problem,
        },
        "poller": _poller(poller) if poller is not None else None,
        "runtime": {key: value for key, value in runtime.health().items() if key != "journal"},
        "webhook": {
            "enabled": webhook is not None,
            "origin": str(webhook.origin()) if webhook is not None else None,
        },
        "coordinators": {
            "account": _coordinator(data.account),
            "generations": {
                **_coordinator(data.generations),
                "in_progress": len(data.generations.data or []),
            },
        },
    }
    result: dict[str, Any] = scrub(report)
    return result


def _poller(poller: Any) -> dict[str, Any]:
    state = poller.state
    return {
        "seeded": state.seeded,
        "in_progress": len(state.in_progress),
        "submitted": len(state.submitted),
        "newest_seen": iso_utc(state.newest_seen) if state.newest_seen else None,
        "polls": poller.polls,
        "requests": poller.requests,
        "interval_seconds": poller.interval,
    }


def _coordinator(coordinator: Any) -> dict[str, Any]:
    return {
        "last_update_success": coordinator.last_update_success,
        "update_interval_seconds": (
            coordinator.update_interval.total_seconds() if coordinator.update_interval else None
        ),
        "last_exception": str(coordinator.last_exception) if coordinator.last_exception else None,
    }
