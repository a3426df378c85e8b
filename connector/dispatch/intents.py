"""Submissions in flight: which steps may own a generation nobody has answered for yet.

A `generate` step journals its intent before it submits. Until the step ends, a
generation matching an open intent (same tags and seed, see `GenerationIntent`)
counts as ours, even when a webhook or the poller sees it finish before the step
hears back from the API. Several steps may hold the same key (a fixed seed and
constant tags); while they do, which generation is whose is unknown, and the
steps are told so (`rivals`) rather than guessing.
"""

from __future__ import annotations

from connector.journal.intents import GenerationIntent, MatchKey, generation_match_key
from connector.providers.finetuning.models import Generation

Owner = tuple[str, int]  # (run id, step index)


class OpenIntents:
    """The open intents of one runtime: match key -> the steps holding it."""

    def __init__(self) -> None:
        self._owners: dict[MatchKey, set[Owner]] = {}

    def open(self, intent: GenerationIntent, run_id: str, step_index: int) -> None:
        """A step is about to submit `intent`, whose outcome is not known yet."""
        self._owners.setdefault(intent.match_key, set()).add((run_id, step_index))

    def rivals(self, intent: GenerationIntent, run_id: str, step_index: int) -> list[Owner]:
        """The other steps with an open intent describing the same generation."""
        owners = self._owners.get(intent.match_key, set())
        return sorted(owner for owner in owners if owner != (run_id, step_index))

    def close(self, run_id: str, step_index: int) -> None:
        """The step's submission has an outcome: it no longer claims generations."""
        for key, owners in list(self._owners.items()):
            owners.discard((run_id, step_index))
            if not owners:
                del self._owners[key]

    def claims(self, generation: Generation) -> bool:
        """Whether some open intent describes `generation`."""
        key = generation_match_key(generation)
        return key is not None and key in self._owners
