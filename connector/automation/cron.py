"""Five-field cron expressions ("30 7 * * 1-5"), without a dependency.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of
week (0-7, 0 and 7 are Sunday). Each field takes `*`, numbers, ranges `a-b`,
steps `*/n` and `a-b/n`, and comma lists. As in cron, when both day fields are
restricted a day matches if either does. `@hourly`, `@daily`, `@weekly`,
`@monthly` and `@yearly` are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: step {step_text!r} must be a whole number of 1 or more")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise CronError(f"{name}: {body!r} is not a range like 1-5")
            start, end = int(first), int(last)
        elif body.isdigit():
            start = end = int(body)
            if step_text:
                end = high
        else:
            raise CronError(f"{name}: {body!r} is not a number, a range or *")
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name}: {body!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; `next_after` gives the next matching minute."""

    source: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday ... 6 = Sunday (Python's weekday())
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        source = text.strip()
        expanded = _MACROS.get(source.lower(), source)
        parts = expanded.split()
        if len(parts) != 5:
            raise CronError(
                f"{source!r} has {len(parts)} fields; a cron expression has 5: "
                "minute hour day-of-month month day-of-week"
            )
        minutes, hours, days, months = (
            _parse_field(part, name, low, high)
            for part, (name, low, high) in zip(parts[:4], _FIELDS, strict=True)
        )
        cron_weekdays = _parse_field(parts[4], "day of week", 0, 7)
        weekdays = frozenset((d - 1) % 7 for d in cron_weekdays)  # cron 0/7=Sun -> Python 6
        return cls(
            source=source,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        by_day = moment.day in self.days
        by_weekday = moment.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (same tzinfo)."""
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):  # covers leap-day-only schedules
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day = (day + timedelta(days=1)).replace(hour=0, minute=0)
        raise CronError(f"{self.source!r} never matches a real date")
