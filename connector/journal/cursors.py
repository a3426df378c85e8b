"""Named JSON values in the journal: where each poller got to, and the like."""

from __future__ import annotations

from typing import Any

from connector.journal.codec import encode_json, loads
from connector.journal.connection import JournalConnection

__all__ = ["CursorJournal"]


class CursorJournal(JournalConnection):
    """Cursors: one JSON value per name, replaced whole, never pruned."""

    def get_cursor(self, name: str) -> Any | None:
        """A JSON value saved under `name` (poller state and the like), or None."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return loads(row[0]) if row is not None else None

    def set_cursor(self, name: str, value: Any) -> None:
        """Save a JSON value under `name`, replacing the previous one."""
        encoded = encode_json(value)
        now = self._now()
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (name, encoded, now),
            )
