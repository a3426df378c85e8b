"""Cron expressions for the schedule trigger."""

from __future__ import annotations

from datetime import datetime

import pytest

from connector.automation.cron import CronError, CronExpression


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
    ],
)
def test_next_matching_minute(expression: str, after: datetime, expected: datetime) -> None:
    assert CronExpression.parse(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("* * *", "has 3 fields"),
        ("*/0 * * * *", "step '0'"),
        ("a * * * *", "'a' is not a number"),
        ("5-1 * * * *", "outside"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronExpression.parse(expression)


def test_an_impossible_date_is_reported() -> None:
    with pytest.raises(CronError, match="never matches"):
        CronExpression.parse("0 0 31 2 *").next_after(datetime(2026, 1, 1))
