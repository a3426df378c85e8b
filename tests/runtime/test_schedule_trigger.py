"""The schedule trigger's loop, on a made-up clock: what it waits, what it fires."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from connector.triggers import schedule


class Enough(Exception):
    """Stops the trigger's endless loop once a test has seen what it needs."""


@dataclass
class Clock:
    """A UTC clock that only moves when the trigger sleeps (`early` wakes it that soon)."""

    now: datetime
    early: timedelta = timedelta(0)
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds) - self.early


@dataclass
class Context:
    """A trigger context that records what is fired, and stops after `wanted` events."""

    wanted: int
    automation_id: str = "morning"
    trigger_index: int = 0
    fired: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def finetuning(self) -> Any:
        raise AssertionError("the schedule trigger needs no client")

    async def fire(self, kind: str, key: str, data: Mapping[str, Any]) -> bool:
        assert kind == "schedule"
        self.fired.append((key, dict(data)))
        if len(self.fired) == self.wanted:
            raise Enough
        return True


async def fire(options: dict[str, Any], start: str, events: int, **clock: Any) -> tuple:
    """Run the trigger from `start` (UTC) until it has fired `events` times."""
    context = Context(events)
    fake = Clock(datetime.fromisoformat(start).replace(tzinfo=UTC), **clock)
    with pytest.raises(Enough):
        await schedule.run(context, options, clock=fake, sleep=fake.sleep)
    return [data["scheduled_for"] for _, data in context.fired], fake.waits, context.fired


async def test_a_cron_schedule_waits_real_time_to_the_next_moment() -> None:
    planned, waits, fired = await fire(
        {"cron": "30 7 * * 1-5", "timezone": "Europe/Paris"}, "2026-11-20T06:00", 2
    )

    assert planned == ["2026-11-20T06:30:00.000Z", "2026-11-23T06:30:00.000Z"]  # Fri, Mon
    assert waits == [1800.0, 3 * 86400.0]
    assert fired[0][0] == "schedule:morning:0:2026-11-20T07:30:00+01:00"
    assert fired[0][1] == {
        "scheduled_for": "2026-11-20T06:30:00.000Z",
        "cron": "30 7 * * 1-5",
        "interval": None,
    }


async def test_the_wait_across_the_change_back_to_winter_time_is_real_time() -> None:
    # 02:10 summer time in Paris on the night of the change; 03:00 comes 1 h 50 min later.
    planned, waits, _ = await fire(
        {"cron": "0 3 * * *", "timezone": "Europe/Paris"}, "2026-10-25T00:10", 1
    )

    assert planned == ["2026-10-25T02:00:00.000Z"]
    assert waits == [6600.0]


async def test_a_repeating_schedule_across_the_change_to_summer_time_fires_each_moment_once() -> (
    None
):
    planned, waits, fired = await fire(
        {"cron": "*/30 * * * *", "timezone": "Europe/Paris"}, "2026-03-29T00:50", 4
    )

    assert planned == [
        "2026-03-29T01:00:00.000Z",  # 03:00 summer time: 02:00 and 02:30 do not exist
        "2026-03-29T01:30:00.000Z",
        "2026-03-29T02:00:00.000Z",
        "2026-03-29T02:30:00.000Z",
    ]
    assert waits == [600.0, 1800.0, 1800.0, 1800.0]
    assert len({key for key, _ in fired}) == 4


async def test_a_wake_up_a_little_early_does_not_fire_the_same_moment_twice() -> None:
    planned, _, _ = await fire(
        {"cron": "0 * * * *", "timezone": "UTC"},
        "2026-01-01T00:30",
        2,
        early=timedelta(milliseconds=5),
    )

    assert planned == ["2026-01-01T01:00:00.000Z", "2026-01-01T02:00:00.000Z"]


async def test_an_interval_counts_real_seconds_from_the_start() -> None:
    planned, waits, fired = await fire(
        {"interval": 3600, "timezone": "Europe/Paris"}, "2026-10-25T00:15", 2
    )

    assert planned == ["2026-10-25T01:15:00.000Z", "2026-10-25T02:15:00.000Z"]
    assert waits == [3600.0, 3600.0]
    assert [key for key, _ in fired] == [
        "schedule:morning:0:2026-10-25T02:15:00+01:00",
        "schedule:morning:0:2026-10-25T03:15:00+01:00",
    ]


@dataclass
class SuspendedOnce(Clock):
    """A clock whose first sleep lasts `late` longer than asked (a suspended machine)."""

    late: timedelta = timedelta(0)

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if len(self.waits) == 1:
            self.now += self.late


async def test_after_a_long_suspension_a_cron_schedule_skips_what_it_missed() -> None:
    context = Context(2)
    fake = SuspendedOnce(datetime(2026, 1, 1, tzinfo=UTC), late=timedelta(hours=10))
    with pytest.raises(Enough):
        await schedule.run(
            context, {"cron": "0 * * * *", "timezone": "UTC"}, clock=fake, sleep=fake.sleep
        )

    planned = [data["scheduled_for"] for _, data in context.fired]
    assert planned == ["2026-01-01T01:00:00.000Z", "2026-01-01T12:00:00.000Z"]


async def test_after_a_long_suspension_an_interval_fires_each_missed_step_at_once() -> None:
    context = Context(4)
    fake = SuspendedOnce(datetime(2026, 1, 1, tzinfo=UTC), late=timedelta(hours=10))
    with pytest.raises(Enough):
        await schedule.run(context, {"interval": 3600}, clock=fake, sleep=fake.sleep)

    planned = [data["scheduled_for"] for _, data in context.fired]
    assert planned == [f"2026-01-01T0{hour}:00:00.000Z" for hour in (1, 2, 3, 4)]
    assert fake.waits == [3600.0, 0.0, 0.0, 0.0]
