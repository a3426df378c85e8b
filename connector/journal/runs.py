"""Runs and their action steps in the journal.

A run is unique per (event key, automation id): the same event never starts
the same automation twice. `ftconnect replay` is the one deliberate exception
(`reset_run_for_replay`), which marks the old run `replayed`.

Every action step is journalled before it starts (`step_started`, status
`running`) and after it ends. After a crash, `unfinished_runs` shows each step
that was running: its outcome is unknown, and the intent written before a
create was sent (`record_intent`) is what lets the runtime reconcile it instead
of guessing.

Misuse (finishing a step that never started, replaying a running run) raises
`ValueError`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from connector.journal.codec import encode_json, iso, loads, utc, utc_required
from connector.journal.connection import JournalConnection
from connector.redaction import scrub_text

__all__ = [
    "REPLAYED",
    "RUNNING",
    "RUN_STATUSES",
    "STEP_STATUSES",
    "RunJournal",
    "RunRow",
    "StepRow",
    "insert_run",
    "page_before",
    "page_params",
    "run_status",
]

RUN_STATUSES: Final = frozenset({"succeeded", "failed", "skipped"})
STEP_STATUSES: Final = frozenset({"succeeded", "failed", "skipped"})
RUNNING: Final = "running"
REPLAYED: Final = "replayed"


@dataclass(frozen=True)
class StepRow:
    """One action step of a run; `attempt` counts how many times it was started."""

    run_id: str
    step_index: int
    step_id: str
    action: str
    status: str  # running (outcome unknown after a crash), succeeded, failed, skipped
    attempt: int
    options: Any  # the rendered options as given to step_started (parsed JSON), or None
    output: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect runs --json`."""
        return {
            "run_id": self.run_id,
            "step_index": self.step_index,
            "step_id": self.step_id,
            "action": self.action,
            "status": self.status,
            "attempt": self.attempt,
            "options": self.options,
            "output": self.output,
            "error": self.error,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


@dataclass(frozen=True)
class RunRow:
    """One automation run for one event, with its steps in order."""

    run_id: str
    event_key: str
    automation_id: str
    status: str  # running, succeeded, failed, skipped, replayed
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    replay_of: str | None = None
    steps: list[StepRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect runs --json`."""
        return {
            "run_id": self.run_id,
            "event_key": self.event_key,
            "automation_id": self.automation_id,
            "status": self.status,
            "error": self.error,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "replay_of": self.replay_of,
            "steps": [step.to_dict() for step in self.steps],
        }


class RunJournal(JournalConnection):
    """Runs and steps: started once, journalled before and after, resumable."""

    def start_run(self, run_id: str, event_key: str, automation_id: str) -> bool:
        """Start a run of an automation for a recorded event (status running).

        False if a run for (event_key, automation_id) exists already: the same
        event never starts the same automation twice.
        """
        now = self._now()
        with self._transaction(write=True) as db:
            return insert_run(db, run_id, event_key, automation_id, now)

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """End a running run: succeeded, failed or skipped."""
        if status not in RUN_STATUSES:
            raise ValueError(f"a run ends succeeded, failed or skipped (got {status!r})")
        now = self._now()
        with self._transaction(write=True) as db:
            current = run_status(db, run_id)
            if current != RUNNING:
                raise ValueError(f"run {run_id!r} is already {current}")
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE run_id = ?",
                (status, scrub_text(error) if error else error, now, run_id),
            )

    def step_started(
        self,
        run_id: str,
        step_index: int,
        step_id: str,
        action: str,
        options_json: str | None = None,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Journal that a step is about to run; returns its attempt number (1, 2, ...).

        A step found `running` (a crash left its outcome unknown) or `failed`
        starts a new attempt. Starting a step that already succeeded is refused:
        that would repeat it; its recorded output is the result.
        """
        if step_index < 0:
            raise ValueError(f"step_index must be 0 or more (got {step_index})")
        if options_json is not None:
            try:
                options = json.loads(options_json)
            except ValueError as err:
                # Refused now rather than breaking `runs --json` later.
                raise ValueError(f"options_json of step {step_id!r} is not JSON: {err}") from None
            # Re-encoded: strict JSON, and no secret (a signing secret among the options).
            options_json = encode_json(options)
        elif options is not None:
            options_json = encode_json(dict(options))
        now = self._now()
        with self._transaction(write=True) as db:
            status = run_status(db, run_id)
            if status != RUNNING:
                raise ValueError(f"run {run_id!r} is {status}; its steps cannot start")
            row = db.execute(
                "SELECT status, attempt FROM steps WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO steps (run_id, step_index, step_id, action, status, attempt,"
                    " options, started_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    (run_id, step_index, step_id, action, RUNNING, options_json, now),
                )
                return 1
            if row[0] == "succeeded":
                raise ValueError(
                    f"step {step_index} of run {run_id!r} already succeeded; "
                    "use its recorded output instead of running it again"
                )
            attempt = int(row[1]) + 1
            db.execute(
                "UPDATE steps SET step_id = ?, action = ?, status = ?, attempt = ?, options = ?,"
                " output = NULL, error = NULL, started_at = ?, finished_at = NULL"
                " WHERE run_id = ? AND step_index = ?",
                (step_id, action, RUNNING, attempt, options_json, now, run_id, step_index),
            )
            return attempt

    def step_finished(
        self,
        run_id: str,
        step_index: int,
        status: str,
        output: Mapping[str, Any] | None = None,
        error: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Journal a running step's outcome: succeeded (with its output), failed or skipped.

        `options`, when given, replaces the options `step_started` stored (the
        options as the step finally used them); otherwise those stay.
        """
        if status not in STEP_STATUSES:
            raise ValueError(f"a step ends succeeded, failed or skipped (got {status!r})")
        encoded = encode_json(dict(output)) if output is not None else None
        encoded_options = encode_json(dict(options)) if options is not None else None
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT status FROM steps WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
            if row is None:
                raise ValueError(f"step {step_index} of run {run_id!r} was never started")
            if row[0] != RUNNING:
                raise ValueError(f"step {step_index} of run {run_id!r} is already {row[0]}")
            db.execute(
                "UPDATE steps SET status = ?, output = ?, error = ?, finished_at = ?,"
                " options = COALESCE(?, options) WHERE run_id = ? AND step_index = ?",
                (
                    status,
                    encoded,
                    scrub_text(error) if error else error,
                    now,
                    encoded_options,
                    run_id,
                    step_index,
                ),
            )

    def run(self, run_id: str) -> RunRow | None:
        """One run with its steps, or None."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            found = _with_steps(db, rows.fetchall())
        return found[0] if found else None

    def runs(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        automation_id: str | None = None,
    ) -> list[RunRow]:
        """The latest runs with their steps, newest first, optionally filtered."""
        order = "started_at DESC, rowid DESC"
        return self._runs_where(status, automation_id, None, order, max(0, limit))

    def runs_page(
        self,
        *,
        limit: int,
        status: str | None = None,
        automation_id: str | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunRow]:
        """A page of runs with their steps, newest first (started_at, then run id, descending).

        `before` is the (started_at epoch, run_id) of the last run of the
        previous page; this page starts after it. `row.started_at.timestamp()`
        is exact (the journal keeps times to the microsecond), so a cursor made
        from a row continues at the next row even among runs started at once.
        """
        if limit < 0:
            raise ValueError(f"limit must be 0 or more (got {limit})")
        order = "started_at DESC, run_id DESC"
        return self._runs_where(status, automation_id, before, order, limit)

    def _runs_where(
        self,
        status: str | None,
        automation_id: str | None,
        before: tuple[float, str] | None,
        order: str,
        limit: int,
    ) -> list[RunRow]:
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        if automation_id is not None:
            conditions.append("automation_id = ?")
            params.append(automation_id)
        if before is not None:
            conditions.append(page_before("started_at", "run_id"))
            params.extend(page_params(before))
        query = newest_first(f"SELECT {_RUN_COLUMNS} FROM runs", conditions, order)
        with self._transaction(write=False) as db:
            return _with_steps(db, db.execute(query, [*params, limit]).fetchall())

    def runs_for_event(self, event_key: str) -> list[RunRow]:
        """Every run of one event (replayed ones too) with its steps, newest first."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE event_key = ?"
                " ORDER BY started_at DESC, rowid DESC",
                (event_key,),
            ).fetchall()
            return _with_steps(db, rows)

    def unfinished_runs(self) -> list[RunRow]:
        """Runs still `running` (to resume on start), oldest first, each with its steps.

        A step `running` here was interrupted: its outcome is unknown (see
        `intent`); a `succeeded` one is done and carries its output. A run
        made by `reset_run_for_replay` shows here with no steps.
        """
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY started_at, rowid",
                (RUNNING,),
            ).fetchall()
            return _with_steps(db, rows)

    def running_run_ids(self) -> list[str]:
        """The ids of runs still `running`, oldest first (cheap: no steps are read)."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT run_id FROM runs WHERE status = ? ORDER BY started_at, rowid", (RUNNING,)
            ).fetchall()
        return [row[0] for row in rows]

    def reset_run_for_replay(self, run_id: str) -> str:
        """`ftconnect replay RUN_ID`: a new run (new id) for the same event and automation.

        The old run is marked `replayed` (it keeps its steps, for the record)
        and the new one, status running with no steps, takes its place; it is
        returned by `unfinished_runs`. Returns the new run id.
        """
        new_id = uuid.uuid4().hex[:12]
        now = self._now()
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT status, event_key, automation_id FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no run {run_id!r}")
            status, event_key, automation_id = row
            if status == RUNNING:
                raise ValueError(
                    f"run {run_id!r} is still running (or will be resumed on start); "
                    "replay it once it has finished"
                )
            if status == REPLAYED:
                newer = db.execute(
                    "SELECT run_id FROM runs WHERE replay_of = ?", (run_id,)
                ).fetchone()
                where = f" as {newer[0]!r}; replay that one" if newer is not None else ""
                raise ValueError(f"run {run_id!r} was already replayed{where}")
            # Mark the old one first: the unique index only ignores replayed runs.
            db.execute(
                "UPDATE runs SET status = ?, finished_at = COALESCE(finished_at, ?)"
                " WHERE run_id = ?",
                (REPLAYED, now, run_id),
            )
            db.execute(
                "INSERT INTO runs (run_id, event_key, automation_id, status, replay_of, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, event_key, automation_id, RUNNING, run_id, now),
            )
        return new_id


def insert_run(
    db: sqlite3.Connection,
    run_id: str,
    event_key: str,
    automation_id: str,
    now: float,
    *,
    event_inserted: bool = False,
) -> bool:
    """Start a run inside the caller's transaction; False if the slot is taken.

    `event_inserted`: the caller inserted the event in this transaction (no look).
    """
    if (
        not event_inserted
        and db.execute("SELECT 1 FROM events WHERE key = ?", (event_key,)).fetchone() is None
    ):
        raise ValueError(f"no event {event_key!r} is recorded; record_event it first")
    taken = db.execute(
        "SELECT 1 FROM runs WHERE event_key = ? AND automation_id = ? AND status <> ?",
        (event_key, automation_id, REPLAYED),
    ).fetchone()
    if taken is not None:
        return False
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None:
        raise ValueError(f"run id {run_id!r} is already used by another run")
    db.execute(
        "INSERT INTO runs (run_id, event_key, automation_id, status, started_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (run_id, event_key, automation_id, RUNNING, now),
    )
    return True


def run_status(db: sqlite3.Connection, run_id: str) -> str:
    """The status of a run, inside the caller's transaction; ValueError if there is none."""
    row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise ValueError(f"no run {run_id!r}")
    return str(row[0])


# Half the journal's resolution (a microsecond): a cursor's time matches a stored
# time within it, so a time that reached the journal unrounded still pages right.
_PAGE_TOLERANCE: Final = 5e-7


def newest_first(select: str, conditions: list[str], order: str) -> str:
    """`select`, WHERE every condition holds (when any), in `order`, LIMIT ? (the last
    parameter)."""
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"{select}{where} ORDER BY {order} LIMIT ?"


def page_before(time_column: str, key_column: str) -> str:
    """The SQL condition "after the cursor" of a page ordered (time, key) descending.

    Written as a range on the time first, so SQLite can use the time index.
    Its parameters are `page_params(cursor)`.
    """
    return f"{time_column} < ? AND ({time_column} < ? OR {key_column} < ?)"


def page_params(before: tuple[float, str]) -> tuple[float, float, str]:
    """The parameters of `page_before` for the cursor (time epoch, key)."""
    try:
        at, key = before
        at = float(at)
    except (TypeError, ValueError):
        at, key = math.nan, None
    if not isinstance(key, str) or not math.isfinite(at):
        raise ValueError(f"a page cursor is (epoch seconds, key) (got {before!r})")
    return at + _PAGE_TOLERANCE, at - _PAGE_TOLERANCE, key


_RUN_COLUMNS = "run_id, event_key, automation_id, status, error, replay_of, started_at, finished_at"
_STEP_COLUMNS = (
    "run_id, step_index, step_id, action, status, attempt, options, output, error,"
    " started_at, finished_at"
)


def _with_steps(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[RunRow]:
    if not rows:
        return []
    ids = [row["run_id"] for row in rows]
    steps: dict[str, list[StepRow]] = {run_id: [] for run_id in ids}
    # Chunked to stay under SQLite's limit on bound parameters.
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for step in db.execute(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id IN ({marks})"
            " ORDER BY run_id, step_index",
            chunk,
        ):
            steps[step["run_id"]].append(_step_row(step))
    return [_run_row(row, steps[row["run_id"]]) for row in rows]


def _step_row(row: sqlite3.Row) -> StepRow:
    return StepRow(
        run_id=row["run_id"],
        step_index=row["step_index"],
        step_id=row["step_id"],
        action=row["action"],
        status=row["status"],
        attempt=row["attempt"],
        options=loads(row["options"]),
        output=loads(row["output"]),
        error=row["error"],
        started_at=utc_required(row["started_at"]),
        finished_at=utc(row["finished_at"]),
    )


def _run_row(row: sqlite3.Row, steps: list[StepRow]) -> RunRow:
    return RunRow(
        run_id=row["run_id"],
        event_key=row["event_key"],
        automation_id=row["automation_id"],
        status=row["status"],
        error=row["error"],
        started_at=utc_required(row["started_at"]),
        finished_at=utc(row["finished_at"]),
        replay_of=row["replay_of"],
        steps=steps,
    )
