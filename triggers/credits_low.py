"""Trigger: remaining credits fell to a threshold (fires once, re-arms when they rise)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.errors import ProviderError
from connector.plugin import CREDITS_LOW, TriggerContext, TriggerSpec, number_range

_LOGGER = logging.getLogger(__name__)


async def run(context: TriggerContext, options: Mapping[str, Any]) -> None:
    """Check /v1/me every `interval` seconds (it costs no credit, one read)."""
    threshold = options["threshold"]
    armed = True
    crossings = 0
    while True:
        try:
            account = await context.finetuning.get_account()
        except ProviderError as err:
            _LOGGER.warning("credits_low: cannot read the account: %s", err)
        else:
            remaining = account.limits.total_remaining
            if remaining <= threshold and armed:
                crossings += 1
                armed = False
                await context.fire(
                    CREDITS_LOW,
                    f"credits_low:{context.automation_id}:{context.trigger_index}:{crossings}",
                    {
                        "remaining": remaining,
                        "threshold": threshold,
                        "limits": account.limits.to_wire(),
                    },
                )
            elif remaining > threshold:
                armed = True
        await asyncio.sleep(options["interval"])


TRIGGER = TriggerSpec(
    key="credits_low",
    title="Credits low",
    description="Fires once when the account's remaining credits fall to `threshold` or below, "
    "and again only after they have risen above it. `trigger.data.remaining` holds the balance.",
    schema=vol.Schema(
        {
            vol.Required("threshold", description="fire at this many credits or fewer"): vol.All(
                vol.Coerce(int), vol.Range(min=0)
            ),
            vol.Optional(
                "interval", default=300, description="seconds between balance checks (min 10)"
            ): number_range(10, 86400, " seconds"),
        }
    ),
    example={"trigger": "credits_low", "threshold": 50},
    source=run,
)
