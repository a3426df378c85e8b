"""Reconciliation poller: notices Finetuning.ai generations that reached completed or failed.

The list endpoint is ordered by creation, not completion: a long generation
created earlier can finish after newer ones were already seen, so stopping at
the first known item would miss it. The poller keeps a low-water mark, the
creation time of the oldest generation it knows to be still in progress (or,
when none is, of the newest generation it saw last time), and each tick pages
through the unfiltered list, newest first, until it passes that mark.

Every generation is seen at least once while it sits above the mark (a new
one appears at the top of the list), and one that is still in progress then
holds the mark down until it is seen again in a terminal state. So a tick
costs one request plus one per hundred generations created since the mark,
whatever the number in progress. First start seeds what exists without firing
(the Zapier rule) unless `backfill` is set. Ticks are fast while the
connector's own submissions run and slow otherwise, and never use more than
half of the client's read budget, so actions keep the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.errors import ConnectorError, ProviderError
from connector.events import Event, generation_event_key
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation

if TYPE_CHECKING:
    from connector.providers.tempolor.client import TempolorClient

_LOGGER = logging.getLogger(__name__)

Fire = Callable[[Event], Awaitable[bool]]
PAGE = 100
BUDGET_SHARE = 0.5  # the poller's share of the read budget at most
MISSES_BEFORE_DROP = 2  # an in-progress id unseen this many full scans was deleted


@dataclass
class PollerState:
    """What the poller knows between ticks (and, through the store, across restarts)."""

    seeded: bool = False
    in_progress: dict[str, datetime] = field(default_factory=dict)  # id -> createdAt
    misses: dict[str, int] = field(default_factory=dict)
    submitted: set[str] = field(default_factory=set)  # ids the connector submitted
    newest_seen: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot (event keys are kept by the store, not here)."""
        return {
            "seeded": self.seeded,
            "in_progress": {k: v.isoformat() for k, v in self.in_progress.items()},
            "submitted": sorted(self.submitted),
            "newest_seen": self.newest_seen.isoformat() if self.newest_seen else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PollerState:
        newest = data.get("newest_seen")
        return cls(
            seeded=bool(data.get("seeded")),
            in_progress={
                k: datetime.fromisoformat(v) for k, v in (data.get("in_progress") or {}).items()
            },
            submitted=set(data.get("submitted") or []),
            newest_seen=datetime.fromisoformat(newest) if newest else None,
        )


class GenerationPoller:
    """Finds terminal Finetuning.ai generations and hands each to `fire` (which dedupes)."""

    def __init__(
        self,
        client: FinetuningClient,
        fire: Fire,
        *,
        idle_interval: float = 60.0,
        active_interval: float = 3.0,
        backfill: bool = False,
        state: PollerState | None = None,
        is_known: Callable[[str], bool] | None = None,
        on_change: Callable[[PollerState], None] | None = None,
    ) -> None:
        self.client = client
        self.fire = fire
        self.idle_interval = idle_interval
        self.active_interval = active_interval
        self.backfill = backfill
        self.state = state or PollerState()
        self._is_known = is_known or (lambda _key: False)
        self._on_change = on_change
        self._wake = asyncio.Event()
        self.polls = 0
        self.requests = 0  # list requests made, for the poll-economy benchmark
        self._last_pages = 1
        self.last_success: float | None = None  # monotonic time of the last complete tick

    def track(self, generation: Generation) -> None:
        """The connector submitted this generation: poll fast until it ends."""
        self.state.submitted.add(generation.id)
        if not generation.is_terminal:
            created = generation.created_at or datetime.now().astimezone()
            self.state.in_progress[generation.id] = created
        self._wake.set()

    @property
    def interval(self) -> float:
        """Fast while our own submissions run, slow otherwise; inside the budget share."""
        busy = any(i in self.state.submitted for i in self.state.in_progress)
        wanted = self.active_interval if busy else self.idle_interval
        budget = self.client.read_budget
        floor = self._last_pages * budget.window / (budget.limit * BUDGET_SHARE)
        return max(wanted, floor)

    async def run(self) -> None:
        """Tick until cancelled; a failed tick is logged and retried at the next one."""
        while True:
            self._wake.clear()
            started = time.monotonic()
            try:
                await self.poll_once()
            except ConnectorError as err:
                # The API down, or the journal locked or full (`fire` records events):
                # the poller must outlive it and try again.
                _LOGGER.warning("poll failed, will retry: %s", err)
            except Exception:
                _LOGGER.exception("poll failed, will retry")
            # The period is the interval, not the interval plus the tick's own time.
            remaining = self.interval - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, remaining))

    async def poll_once(self) -> int:
        """One tick; returns how many new events it handed over."""
        self.polls += 1
        state = self.state
        firing = state.seeded or self.backfill
        mark = self._low_water_mark() if state.seeded else None
        fired, pages, seen = 0, 0, set()
        newest = state.newest_seen
        offset = 0
        while True:
            page = await self.client.list_generations(limit=PAGE, offset=offset)
            pages += 1
            for generation in page.generations:
                seen.add(generation.id)
                created = generation.created_at
                if created is not None and (newest is None or created > newest):
                    newest = created
                if generation.is_terminal:
                    # Dropped from the mark only once handed over: a tick that fails in
                    # fire() must see it again next time.
                    fired += await self._consider(generation, fire=firing)
                    state.in_progress.pop(generation.id, None)
                    state.misses.pop(generation.id, None)
                elif created is not None:
                    state.in_progress[generation.id] = created
            oldest = page.generations[-1].created_at if page.generations else None
            if not page.has_more or not page.generations:
                break
            if mark is not None and oldest is not None and oldest < mark:
                break
            offset = page.next_offset if page.next_offset is not None else offset + PAGE
        self._forget_vanished(seen, mark)
        self.requests += pages
        self._last_pages = pages
        state.newest_seen = newest
        state.seeded = True
        self.last_success = time.monotonic()
        if self._on_change is not None:
            self._on_change(state)
        return fired

    def _low_water_mark(self) -> datetime | None:
        candidates = list(self.state.in_progress.values())
        if self.state.newest_seen is not None:
            candidates.append(self.state.newest_seen)
        return min(candidates) if candidates else None

    def _forget_vanished(self, seen: set[str], mark: datetime | None) -> None:
        # After a scan that reached the mark, an in-progress id not seen was deleted
        # (or skipped by an offset shift: hence a second chance before dropping it).
        for generation_id, created in list(self.state.in_progress.items()):
            if generation_id in seen:
                self.state.misses.pop(generation_id, None)  # only consecutive misses count
                continue
            if mark is not None and created < mark:
                continue
            misses = self.state.misses.get(generation_id, 0) + 1
            if misses >= MISSES_BEFORE_DROP:
                self.state.in_progress.pop(generation_id, None)
                self.state.misses.pop(generation_id, None)
            else:
                self.state.misses[generation_id] = misses

    async def _consider(self, generation: Generation, *, fire: bool) -> int:
        key = generation_event_key(generation.provider, generation.id, generation.status.value)
        ours = generation.id in self.state.submitted
        self.state.submitted.discard(generation.id)  # terminal: no longer worth polling fast
        if self._is_known(key):
            return 0
        if not fire:
            # Seeding: remember it as seen by handing it over marked as not to fire.
            await self.fire(Event.for_generation(generation, source="seed"))
            return 0
        event = Event.for_generation(generation, source="poll", submitted_by_connector=ours)
        return 1 if await self.fire(event) else 0


class TempolorJobPoller:
    """Polls the TemPolor jobs this connector submitted, by id, until each is final.

    useapi.net has no list that could replace this, and the callback
    (`replyUrl`) is fire-once like Finetuning's webhook: this is the safety net.
    """

    def __init__(
        self,
        client: TempolorClient,
        fire: Fire,
        pending: Callable[[], list[str]],
        *,
        interval: float = 3.0,
    ) -> None:
        self.client = client
        self.fire = fire
        self.pending = pending
        self.interval = interval
        self._wake = asyncio.Event()
        self.last_success: float | None = None

    def wake(self) -> None:
        """A job was just submitted: look sooner."""
        self._wake.set()

    async def run(self) -> None:
        """Tick until cancelled; a failed lookup is logged and retried at the next tick."""
        while True:
            self._wake.clear()
            try:
                await self.poll_once()
            except Exception:
                _LOGGER.exception("TemPolor poll failed, will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    async def poll_once(self) -> int:
        """Look at every pending job once; returns how many events it handed over."""
        fired = 0
        for job_id in self.pending():
            try:
                job = await self.client.get_job(job_id)
            except ProviderError as err:
                _LOGGER.warning("TemPolor job %s: %s", job_id, err)
                continue
            if not job.is_final:
                continue
            event = Event.for_generation(
                job.to_generation(), source="poll", submitted_by_connector=True
            )
            fired += 1 if await self.fire(event) else 0
        self.last_success = time.monotonic()
        return fired
