"""Trigger: on a schedule (cron or a fixed interval), e.g. "make a track every morning"."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from connector.automation.cron import CronError, CronExpression
from connector.automation.registry import TriggerSpec
from connector.automation.validators import positive_seconds
from connector.events import SCHEDULE
from connector.providers.finetuning.models import iso_utc

if TYPE_CHECKING:
    from connector.dispatch.runtime import TriggerContext


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid(f"expected a cron expression like '30 7 * * *' (got {value!r})")
    try:
        # Parsed, and asked for its next time once: "0 7 31 2 *" parses but never fires,
        # which `check` must say rather than the daemon at start.
        CronExpression.parse(value).next_after(datetime.now(UTC))
    except CronError as err:
        raise vol.Invalid(str(err)) from None
    return value


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise vol.Invalid(f"unknown time zone {value!r} (use a name like Europe/Paris)") from None
    return str(value)


def _exactly_one(options: dict[str, Any]) -> dict[str, Any]:
    if ("cron" in options) == ("interval" in options):
        raise vol.Invalid("give exactly one of 'cron' or 'interval'")
    return options


def _zone(options: Mapping[str, Any]) -> tzinfo:
    name = options.get("timezone")
    if name:
        return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC


async def run(context: TriggerContext, options: Mapping[str, Any]) -> None:
    """Fire at every scheduled moment until the runtime stops."""
    zone = _zone(options)
    cron = CronExpression.parse(options["cron"]) if "cron" in options else None
    interval = timedelta(seconds=float(options.get("interval", 0)))
    due = datetime.now(zone) + interval if cron is None else None
    while True:
        now = datetime.now(zone)
        due = cron.next_after(now) if cron is not None else due
        assert due is not None
        await asyncio.sleep(max(0.0, (due - datetime.now(zone)).total_seconds()))
        key = f"schedule:{context.automation_id}:{context.trigger_index}:{due.isoformat()}"
        await context.fire(
            SCHEDULE,
            key,
            {
                "scheduled_for": iso_utc(due),
                "cron": options.get("cron"),
                "interval": options.get("interval"),
            },
        )
        if cron is None:
            due = due + interval


TRIGGER = TriggerSpec(
    key="schedule",
    title="Schedule",
    description="Fires on a cron schedule (minute hour day month weekday) or every `interval` "
    "seconds. `trigger.data.scheduled_for` is the planned moment.",
    schema=vol.Schema(
        vol.All(
            {
                vol.Optional("cron", description="cron expression, e.g. '30 7 * * *'"): _cron,
                vol.Optional("interval", description="seconds between firings"): positive_seconds,
                vol.Optional(
                    "timezone", description="IANA time zone for cron (default: this machine's)"
                ): _timezone,
            },
            _exactly_one,
        )
    ),
    example={"trigger": "schedule", "cron": "30 7 * * *", "timezone": "Europe/Paris"},
    source=run,
)
