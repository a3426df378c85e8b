"""Trigger: on a schedule (cron or a fixed interval), e.g. "make a track every morning"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from connector.automation.cron import CronError, CronExpression
from connector.plugin import SCHEDULE, TriggerContext, TriggerSpec, exported, positive_seconds
from connector.providers.finetuning.models import iso_utc


@exported({"type": "string"})
def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid(f"expected a cron expression like '30 7 * * *' (got {value!r})")
    try:
        # Parsed, and asked for its next time once: an expression that never fires
        # is one `check` must name, rather than the daemon at start.
        CronExpression.parse(value).next_after(datetime.now(UTC))
    except CronError as err:
        raise vol.Invalid(str(err)) from None
    return value


@exported({"type": "string"})
def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise vol.Invalid(f"unknown time zone {value!r} (use a name like Europe/Paris)") from None
    return str(value)


@exported({"oneOf": [{"required": ["cron"]}, {"required": ["interval"]}]})
def _exactly_one(options: dict[str, Any]) -> dict[str, Any]:
    if ("cron" in options) == ("interval" in options):
        raise vol.Invalid("give exactly one of 'cron' or 'interval'")
    return options


def _zone(options: Mapping[str, Any]) -> tzinfo:
    name = options.get("timezone")
    if name:
        return ZoneInfo(name)
    return datetime.now().astimezone().tzinfo or UTC


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run(
    context: TriggerContext,
    options: Mapping[str, Any],
    *,
    clock: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Fire at every scheduled moment until the runtime stops.

    Waits are counted in real (UTC) time, so a change to or from summer time
    neither shifts a firing by an hour nor repeats one; the planned moment is
    written in the schedule's zone. A wake-up a little early does not fire the
    same moment twice. After a wake-up long late (a suspended machine) a cron
    schedule skips the moments it missed; an interval fires each missed one at
    once, back to back, then keeps its step.
    """
    zone = _zone(options)
    cron = CronExpression.parse(options["cron"]) if "cron" in options else None
    interval = timedelta(seconds=float(options.get("interval", 0)))
    due = clock()
    while True:
        if cron is not None:
            due = cron.next_after(max(clock(), due).astimezone(zone)).astimezone(UTC)
        else:
            due += interval
        await sleep(max(0.0, (due - clock()).total_seconds()))
        planned = due.astimezone(zone)
        key = f"schedule:{context.automation_id}:{context.trigger_index}:{planned.isoformat()}"
        await context.fire(
            SCHEDULE,
            key,
            {
                "scheduled_for": iso_utc(planned),
                "cron": options.get("cron"),
                "interval": options.get("interval"),
            },
        )


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
