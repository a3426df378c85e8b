"""What this connector submitted: generations in progress, generations it made, intents.

`pending` holds the generations a step submitted that have not ended (the
poller watches them closely, across restarts); `submitted` remembers every
generation this connector made and for which run, until retention, so a
completion is known as ours and one generation never belongs to two runs.

An intent is written before a step sends something it could not take back
(a create): if the process dies before the answer is journalled, the step's
next attempt reads it to reconcile instead of sending again. The store keeps
any JSON object per run and step; a `generate` step's is a `GenerationIntent`
(`connector.journal.intents`), read back with `generation_intent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.journal.codec import encode_json, epoch, iso, loads, utc, utc_required
from connector.journal.connection import JournalConnection
from connector.journal.intents import GenerationIntent, IntentFormatError
from connector.journal.runs import run_status

__all__ = ["PendingRow", "SubmissionJournal"]


@dataclass(frozen=True)
class PendingRow:
    """A generation this connector submitted that has not ended yet."""

    provider: str
    generation_id: str
    created_at: datetime | None
    run_id: str | None
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "provider": self.provider,
            "generation_id": self.generation_id,
            "created_at": iso(self.created_at),
            "run_id": self.run_id,
            "added_at": iso(self.added_at),
        }


class SubmissionJournal(JournalConnection):
    """Pending and submitted generations, and the intents written before a submission."""

    def add_pending(
        self,
        provider: str,
        generation_id: str,
        created_at: datetime | None,
        run_id: str | None = None,
    ) -> None:
        """A generation this connector submitted is in progress (also marks it submitted)."""
        created = epoch(created_at) if created_at is not None else None
        now = self._now()
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO pending (provider, generation_id, created_at, run_id, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, generation_id) DO UPDATE SET"
                " created_at = COALESCE(excluded.created_at, pending.created_at),"
                " run_id = COALESCE(excluded.run_id, pending.run_id)",
                (provider, generation_id, created, run_id, now),
            )
            db.execute(
                "INSERT INTO submitted (provider, generation_id, run_id, submitted_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (provider, generation_id) DO NOTHING",
                (provider, generation_id, run_id, now),
            )

    def remove_pending(self, provider: str, generation_id: str) -> None:
        """The generation ended; it stays marked as submitted until retention."""
        with self._transaction(write=True) as db:
            db.execute(
                "DELETE FROM pending WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            )

    def pending(self, provider: str | None = None) -> list[PendingRow]:
        """Submitted generations not yet ended, in the order they were added."""
        query = (
            "SELECT provider, generation_id, created_at, run_id, added_at FROM pending"
            + (" WHERE provider = ?" if provider is not None else "")
            + " ORDER BY added_at, provider, generation_id"
        )
        params = (provider,) if provider is not None else ()
        with self._transaction(write=False) as db:
            rows = db.execute(query, params).fetchall()
        return [
            PendingRow(
                provider=row["provider"],
                generation_id=row["generation_id"],
                created_at=utc(row["created_at"]),
                run_id=row["run_id"],
                added_at=utc_required(row["added_at"]),
            )
            for row in rows
        ]

    def submitted_by(self, provider: str, generation_id: str) -> str | None:
        """The run a submitted generation belongs to ("" when no run is recorded), or None."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT run_id FROM submitted WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            ).fetchone()
        return None if row is None else (row[0] or "")

    def is_submitted(self, provider: str, generation_id: str) -> bool:
        """Whether this connector submitted the generation (kept after it ends, until pruned)."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT 1 FROM submitted WHERE provider = ? AND generation_id = ?",
                (provider, generation_id),
            ).fetchone()
        return row is not None

    def record_intent(
        self,
        run_id: str,
        step_index: int,
        fingerprint: Mapping[str, Any] | GenerationIntent,
    ) -> None:
        """Before a step sends what it cannot take back: what it will send.

        A `generate` step's is a `GenerationIntent`; other actions keep any JSON
        object. If the process dies before the answer is journalled, the step's
        next attempt reads it back instead of guessing. A new attempt of the
        step replaces the intent.
        """
        if isinstance(fingerprint, GenerationIntent):
            fingerprint = fingerprint.to_json()
        encoded = encode_json(dict(fingerprint))
        now = self._now()
        with self._transaction(write=True) as db:
            run_status(db, run_id)
            db.execute(
                "INSERT INTO intents (run_id, step_index, fingerprint, recorded_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (run_id, step_index) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at",
                (run_id, step_index, encoded, now),
            )

    def intent(self, run_id: str, step_index: int) -> Mapping[str, Any] | None:
        """The JSON object recorded for a step, or None."""
        text = self._recorded_intent(run_id, step_index)
        value = None if text is None else loads(text)
        return value if isinstance(value, dict) else None

    def _recorded_intent(self, run_id: str, step_index: int) -> str | None:
        """The JSON text recorded for a step, or None when it recorded none."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT fingerprint FROM intents WHERE run_id = ? AND step_index = ?",
                (run_id, step_index),
            ).fetchone()
        return None if row is None else str(row[0])

    def generation_intent(self, run_id: str, step_index: int) -> GenerationIntent | None:
        """The `GenerationIntent` a `generate` step recorded, or None if it recorded none.

        A row that is not one raises `IntentFormatError` naming the run and step.
        """
        text = self._recorded_intent(run_id, step_index)
        if text is None:
            return None
        try:
            return GenerationIntent.from_json(loads(text))
        except IntentFormatError as err:
            raise IntentFormatError(f"step {step_index} of run {run_id!r}: {err}") from None
