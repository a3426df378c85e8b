"""Cron expressions for the schedule trigger."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from connector.automation.cron import CronError, CronExpression
from connector.errors import ConnectorError

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("30 7 * * 1-5", datetime(2026, 11, 21, 8, 0), datetime(2026, 11, 23, 7, 30)),  # Sat→Mon
        ("*/15 * * * *", datetime(2026, 11, 21, 8, 7), datetime(2026, 11, 21, 8, 15)),
        ("0 0 29 2 *", datetime(2026, 11, 21), datetime(2028, 2, 29)),
        ("@daily", datetime(2026, 1, 1, 12, 0), datetime(2026, 1, 2, 0, 0)),
        ("0 9 * * 0", datetime(2026, 11, 23, 10, 0), datetime(2026, 11, 29, 9, 0)),  # Sunday
        ("0 9 * * 7", datetime(2026, 11, 23, 10, 0), datetime(2026, 11, 29, 9, 0)),  # 7 = Sunday
        ("0 12 1 * 1", datetime(2026, 11, 23, 13, 0), datetime(2026, 11, 30, 12, 0)),  # day OR dow
        ("5,10 * * * *", datetime(2026, 1, 1, 0, 5), datetime(2026, 1, 1, 0, 10)),
        # Names, in any case, and cron's extensions for "last" and "n-th".
        ("30 7 * * mon-FRI", datetime(2026, 11, 21, 8, 0), datetime(2026, 11, 23, 7, 30)),
        ("0 0 1 jan *", datetime(2026, 11, 21), datetime(2027, 1, 1)),
        ("0 0 L * *", datetime(2026, 2, 1), datetime(2026, 2, 28)),
        ("0 0 * * 5L", datetime(2026, 1, 1), datetime(2026, 1, 30)),  # last Friday
        ("0 0 * * MON#2", datetime(2026, 1, 1), datetime(2026, 1, 12)),
        # A day field starting with * is "any day" (Debian cron): the days AND, not OR.
        ("0 0 */2 * 1", datetime(2026, 11, 23, 13, 0), datetime(2026, 12, 7)),
    ],
)
def test_next_matching_minute(expression: str, after: datetime, expected: datetime) -> None:
    assert CronExpression.parse(expression).next_after(after) == expected


def test_the_next_minute_is_strictly_after_the_moment() -> None:
    cron = CronExpression.parse("*/15 * * * *")

    assert cron.next_after(datetime(2026, 1, 1, 8, 15)) == datetime(2026, 1, 1, 8, 30)
    assert cron.next_after(datetime(2026, 1, 1, 8, 14, 59, 999)) == datetime(2026, 1, 1, 8, 15)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute: '61' is not valid; it takes 0-59, *, ranges a-b"),
        ("* * *", "'* * *' has 3 fields; a cron expression has 5: minute hour"),
        ("0 30 7 * * *", "has 6 fields"),  # no seconds field
        ("*/0 * * * *", "minute: '*/0' is not valid"),
        ("a * * * *", "minute: 'a' is not valid"),
        ("5-1 * * * *", "minute: '5-1' is not valid"),
        ("5,61 * * * *", "minute: '61' is not valid"),  # the bad item of a list
        ("1,,2 * * * *", "minute: '' is not valid"),
        ("0 24 * * *", "hour: '24' is not valid; it takes 0-23"),
        ("0 0 0 * *", "day of month: '0' is not valid; it takes 1-31 or L"),
        ("0 0 * 13 *", "month: '13' is not valid; it takes 1-12 or JAN-DEC"),
        ("0 0 * * 8", "day of week: '8' is not valid; it takes 0-7 (0 and 7 are Sunday)"),
        ("0 0 * * mon-fry", "day of week: 'mon-fry' is not valid"),
        ("0 0 31 2 *", "'0 0 31 2 *' never matches a real date"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)) as caught:
        CronExpression.parse(expression)
    assert isinstance(caught.value, ConnectorError)


def test_an_impossible_date_is_reported() -> None:
    with pytest.raises(CronError, match="never matches"):
        CronExpression.parse("0 0 30 2 *").next_after(datetime(2026, 1, 1))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(PARIS)


def firings(expression: str, start: str, count: int) -> list[str]:
    """The next `count` firings after `start`, as UTC times."""
    cron = CronExpression.parse(expression)
    moment = local(start)
    found = []
    for _ in range(count):
        moment = cron.next_after(moment)
        found.append(moment.astimezone(UTC).strftime("%m-%d %H:%M"))
    return found


def test_a_time_skipped_by_summer_time_fires_once_right_after_the_change() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST (01:00Z); 02:30 does not exist.
    assert firings("30 2 * * *", "2026-03-28T12:00+01:00", 2) == ["03-29 01:00", "03-30 00:30"]


def test_a_time_repeated_by_the_change_back_fires_once() -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET (01:00Z); 02:30 happens twice.
    assert firings("30 2 * * *", "2026-10-24T12:00+02:00", 2) == ["10-25 00:30", "10-26 01:30"]


def test_a_repeating_schedule_follows_real_time_across_the_changes() -> None:
    assert firings("*/30 * * * *", "2026-03-29T01:50+01:00", 3) == [
        "03-29 01:00",
        "03-29 01:30",
        "03-29 02:00",
    ]
    assert firings("*/30 * * * *", "2026-10-25T02:50+02:00", 3) == [
        "10-25 01:00",  # 02:00 CET, the hour's second pass
        "10-25 01:30",
        "10-25 02:00",
    ]
