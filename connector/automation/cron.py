"""Five-field cron expressions ("30 7 * * 1-5"), evaluated by `cronsim`.

Fields: minute (0-59), hour (0-23), day of month (1-31, `L` the last day), month
(1-12 or JAN-DEC), day of week (0-7 or SUN-SAT; 0 and 7 are Sunday; `5L` the last
Friday of the month, `MON#2` the second Monday). Each takes `*`, ranges `a-b`, steps
`*/n` and `a-b/n`, and comma lists; names in any case. As in Debian cron, when neither
day field starts with `*` a day matches if either does. `@hourly`, `@daily`,
`@weekly`, `@monthly` and `@yearly` are accepted.

Times are wall-clock times of the given datetime's zone. A fixed time that a change
to summer time skips fires at the first minute after the change; one that the change
back repeats fires once. A schedule with `*` in its minute or hour field follows real
time: every 15 minutes stays every 15 minutes across a change.

cronsim only says which field it refused; `parse` names the part and what the field
takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cronsim import CronSim, CronSimError

from connector.errors import ConnectorError

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31 or L"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7 (0 and 7 are Sunday) or SUN-SAT"),
)
_SOME_DAY = datetime(2000, 1, 1)


class CronError(ConnectorError, ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


@dataclass(frozen=True)
class CronExpression:
    """A checked cron expression; `next_after` gives the next matching minute."""

    source: str
    fields: str  # the five fields (a macro expanded)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        source = text.strip()
        fields = _MACROS.get(source.lower(), source)
        parts = fields.split()
        if len(parts) != 5:  # newer cronsim also takes a sixth (seconds) field
            raise CronError(
                f"{source!r} has {len(parts)} fields; a cron expression has 5: "
                "minute hour day-of-month month day-of-week"
            )
        try:
            CronSim(fields, _SOME_DAY)
        except CronSimError:
            raise CronError(_what_is_wrong(source, parts)) from None
        return cls(source=source, fields=fields)

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after `moment` (same tzinfo)."""
        try:
            return next(CronSim(self.fields, moment))
        except StopIteration:  # cronsim gives up after 50 years without a match
            raise CronError(f"{self.source!r} never matches a real date") from None


def _what_is_wrong(source: str, parts: list[str]) -> str:
    """The first part cronsim refuses on its own, with what its field takes."""
    for index, (name, takes) in enumerate(_FIELDS):
        for part in parts[index].split(","):
            alone = ["*"] * 5
            alone[index] = part or "?"  # an empty list item ("1,,2") is refused too
            try:
                CronSim(" ".join(alone), _SOME_DAY)
            except CronSimError:
                return (
                    f"{name}: {part!r} is not valid; it takes {takes}, *, "
                    "ranges a-b, steps */n and lists a,b"
                )
    # Every part is valid alone: the combination is impossible ("0 0 31 2 *").
    return f"{source!r} never matches a real date"
