"""Events in the journal: each key recorded once, with the runs it starts.

`record_event` is the single door for events. The event key is the primary
key, so a webhook and a poll that see the same completion race to one insert
and exactly one of them gets True (across threads and processes alike).
Passing `runs=` starts the matching automations' runs in the same
transaction, so a crash can never leave an event recorded but not dispatched,
and `deliveries=` queues it for REST hooks in that transaction too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.events import Event, generation_dict
from connector.journal.codec import encode_json, epoch, iso, loads, utc_required
from connector.journal.connection import JournalConnection
from connector.journal.hooks import insert_deliveries
from connector.journal.runs import insert_run, newest_first, page_before, page_params
from connector.providers.finetuning.models import Generation

__all__ = ["EventJournal", "EventRow"]


@dataclass(frozen=True)
class EventRow:
    """One recorded event, as `ftconnect events` lists it."""

    key: str
    kind: str
    provider: str
    source: str
    generation: dict[str, Any] | None  # the wire JSON, with "provider"
    data: dict[str, Any]
    submitted_by_connector: bool
    occurred_at: datetime
    received_at: datetime

    def to_event(self) -> Event:
        """The `Event` again (what a resumed run's templates see as `trigger`)."""
        generation = (
            Generation.model_validate(self.generation) if self.generation is not None else None
        )
        return Event(
            kind=self.kind,
            key=self.key,
            provider=self.provider,
            generation=generation,
            data=dict(self.data),
            source=self.source,
            submitted_by_connector=self.submitted_by_connector,
            occurred_at=self.occurred_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `ftconnect events --json`."""
        return {
            "key": self.key,
            "kind": self.kind,
            "provider": self.provider,
            "source": self.source,
            "generation": self.generation,
            "data": self.data,
            "submitted_by_connector": self.submitted_by_connector,
            "occurred_at": iso(self.occurred_at),
            "received_at": iso(self.received_at),
        }


class EventJournal(JournalConnection):
    """Events: recorded once by key, with their runs in the same transaction."""

    def record_event(
        self,
        event: Event,
        *,
        runs: Iterable[tuple[str, str]] = (),
        deliveries: Iterable[str] = (),
    ) -> bool:
        """Record an event once: True if it is new, False if its key was seen before.

        `runs` are (run_id, automation_id) pairs to start in the same
        transaction when the event is new, so a crash between recording the
        event and starting its runs cannot lose them. `deliveries` are the
        REST hooks to queue it for, likewise (see `record_events`).
        """
        return self.record_events([(event, list(runs))], deliveries=[list(deliveries)])[0]

    def record_events(
        self,
        entries: Sequence[tuple[Event, Sequence[tuple[str, str]]]],
        *,
        deliveries: Sequence[Sequence[str]] | None = None,
        first_steps: Mapping[str, tuple[str, str, Mapping[str, Any]]] | None = None,
    ) -> list[bool]:
        """Record several events, each with its runs, in ONE transaction (group commit).

        Returns, per entry, whether the event was new. A terminal generation's
        pending mark is cleared in the same transaction. One commit for many
        events is what lets a busy listener keep up without giving up durability.

        `deliveries[i]`, when given, lists the hook ids entry i is for: each new
        event gets one pending outbox row per hook, in the same transaction, so
        no event is recorded without being queued. A repeated event queues
        nothing; a hook id no longer stored (removed meanwhile) is skipped.

        `first_steps` maps a run id to its first step's (step id, action, options): that
        step is journaled started (attempt 1) in the same transaction, for a run
        that starts acting at once (an API call) without a commit of its own.
        """
        if deliveries is not None and len(deliveries) != len(entries):
            raise ValueError(
                f"deliveries lists {len(deliveries)} entries for {len(entries)} events; "
                "give one list of hook ids per event"
            )
        hooks_for: Sequence[Sequence[str]] = (
            deliveries if deliveries is not None else [()] * len(entries)
        )
        rows = []
        for event, _runs in entries:
            generation: str | None = None
            if event.generation is not None:
                generation = encode_json(generation_dict(event.generation))
            rows.append(
                (
                    event.key,
                    event.kind,
                    event.provider,
                    event.source,
                    generation,
                    encode_json(dict(event.data)),
                    int(event.submitted_by_connector),
                    epoch(event.occurred_at),
                )
            )
        now = self._now()
        results: list[bool] = []
        with self._transaction(write=True) as db:
            for (event, runs), row, hook_ids in zip(entries, rows, hooks_for, strict=True):
                cursor = db.execute(
                    "INSERT INTO events (key, kind, provider, source, generation, data,"
                    " submitted_by_connector, occurred_at, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    (*row, now),
                )
                if cursor.rowcount != 1:
                    results.append(False)
                    continue
                for run_id, automation_id in runs:
                    if not insert_run(
                        db, run_id, event.key, automation_id, now, event_inserted=True
                    ):
                        raise ValueError(f"automation {automation_id!r} listed twice in runs=")
                    first = first_steps.get(run_id) if first_steps else None
                    if first is not None:
                        db.execute(
                            "INSERT INTO steps (run_id, step_index, step_id, action, status,"
                            " attempt, options, started_at)"
                            " VALUES (?, 0, ?, ?, 'running', 1, ?, ?)",
                            (run_id, first[0], first[1], encode_json(dict(first[2])), now),
                        )
                if hook_ids:
                    insert_deliveries(db, event.key, hook_ids, now)
                if event.generation is not None and event.generation.is_terminal:
                    db.execute(
                        "DELETE FROM pending WHERE provider = ? AND generation_id = ?",
                        (event.generation.provider, event.generation.id),
                    )
                results.append(True)
        return results

    def has_event(self, key: str) -> bool:
        """Whether an event with this key was recorded (and not pruned)."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone()
        return row is not None

    def event_row(self, key: str) -> EventRow | None:
        """The recorded event with this key, as a row."""
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE key = ?", (key,))
            found = row.fetchone()
        return _event_row(found) if found is not None else None

    def load_event(self, key: str) -> Event | None:
        """The recorded event with this key, rebuilt as an `Event`."""
        row = self.event_row(key)
        return row.to_event() if row is not None else None

    def events(self, *, limit: int = 50, kind: str | None = None) -> list[EventRow]:
        """The latest events, newest first; only those of `kind` if given."""
        kinds = None if kind is None else [kind]
        return self._events_where(kinds, None, "received_at DESC, rowid DESC", max(0, limit))

    def events_page(
        self,
        *,
        limit: int,
        kinds: Collection[str] | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[EventRow]:
        """A page of events, newest first (received_at, then key, both descending).

        `kinds` keeps only those kinds (None or empty: every kind). `before` is
        the (received_at epoch, key) of the last event of the previous page;
        this page starts after it. `row.received_at.timestamp()` is exact (the
        journal keeps times to the microsecond), so a cursor made from a row
        continues at the next row even among events received in one instant.
        """
        if limit < 0:
            raise ValueError(f"limit must be 0 or more (got {limit})")
        return self._events_where(kinds, before, "received_at DESC, key DESC", limit)

    def _events_where(
        self,
        kinds: Collection[str] | None,
        before: tuple[float, str] | None,
        order: str,
        limit: int,
    ) -> list[EventRow]:
        conditions: list[str] = []
        params: list[Any] = []
        if kinds:
            wanted = sorted(set(kinds))
            conditions.append(f"kind IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        if before is not None:
            conditions.append(page_before("received_at", "key"))
            params.extend(page_params(before))
        query = newest_first(f"SELECT {_EVENT_COLUMNS} FROM events", conditions, order)
        with self._transaction(write=False) as db:
            rows = db.execute(query, [*params, limit]).fetchall()
        return [_event_row(row) for row in rows]


_EVENT_COLUMNS = (
    "key, kind, provider, source, generation, data, submitted_by_connector,"
    " occurred_at, received_at"
)


def _event_row(row: sqlite3.Row) -> EventRow:
    return EventRow(
        key=row["key"],
        kind=row["kind"],
        provider=row["provider"],
        source=row["source"],
        generation=loads(row["generation"]),
        data=loads(row["data"]) or {},
        submitted_by_connector=bool(row["submitted_by_connector"]),
        occurred_at=utc_required(row["occurred_at"]),
        received_at=utc_required(row["received_at"]),
    )
