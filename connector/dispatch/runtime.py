"""The runtime: ingress, the dispatcher, and the automations' runs, journaled.

Every event goes through `Runtime.submit_event`, the single door: it works out
which automations the event starts, then records the event and those runs in
one transaction of the store. An event key seen before stops there, so a
webhook and the poller seeing the same completion fire once, and a crash can
never leave an event recorded but not dispatched.

Matching automations run concurrently (bounded by `max_concurrent_runs`); the
steps of one run go in order, each journaled before and after it runs. On
start, unfinished runs resume at their first unfinished step; a step whose
outcome a crash left unknown runs again as a new attempt, and actions
reconcile instead of repeating (an "already in playlist" answer counts as
done; a `generate` looks for the generation its intent describes before it
submits anything, so a crash never spends a second credit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from connector.automation.model import AutomationConfig, ConnectorConfig
from connector.automation.registry import Registry, default_registry
from connector.dispatch import background
from connector.dispatch.background import Background, every
from connector.dispatch.calls import action_called, api_automation, run_failed
from connector.dispatch.contexts import SourceContext
from connector.dispatch.intents import OpenIntents
from connector.dispatch.journal_writes import JournalWrites
from connector.dispatch.listener import start_webhook_listener
from connector.dispatch.listener import webhook_url as listener_webhook_url
from connector.dispatch.records import (
    EventListener,
    RunListener,
    RunRecord,
    StepListener,
    notify,
)
from connector.dispatch.runs import perform
from connector.errors import GenerationClaimedError
from connector.events import ACTION_CALLED, Event
from connector.ingress.poller import GenerationPoller, PollerState, TempolorJobPoller
from connector.journal.connection import JournalError
from connector.journal.intents import (
    GENERATE_ACTION,
    IntentFormatError,
)
from connector.journal.lock import StateDirLock
from connector.journal.runs import RunRow
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation
from connector.providers.hosts import is_loopback

if TYPE_CHECKING:
    from connector.ingress.webhooks import WebhookListener
    from connector.providers.tempolor.client import TempolorClient

_LOGGER = logging.getLogger(__name__)

POLLER_CURSOR = "poller:finetuning"
# Seconds between looks for runs another process queued (`ftconnect replay`).
QUEUED_RUNS_EVERY = 1.0


class Runtime:
    """Runs the automations of one config file against the provider APIs."""

    def __init__(
        self,
        config: ConnectorConfig,
        finetuning: FinetuningClient,
        *,
        registry: Registry | None = None,
        store: Store | None = None,
        tempolor: TempolorClient | None = None,
    ) -> None:
        self.config = config
        self.finetuning = finetuning
        self.tempolor = tempolor
        self.tempolor_poller: TempolorJobPoller | None = None
        self.registry = registry or default_registry()
        self._store = store
        self._owns_store = store is None
        self.poller: GenerationPoller | None = None
        self.listener: WebhookListener | None = None
        # Where a host's own receiver takes deliveries (Home Assistant's webhook), by
        # provider: told to the provider instead of the listener's URL.
        self.external_webhook_urls: dict[str, str] = {}
        self.runs: list[RunRecord] = []
        self.run_listeners: list[RunListener] = []
        self.step_listeners: list[StepListener] = []
        self.event_listeners: list[EventListener] = []
        # Which REST-hook subscriptions an event is for (set by the HTTP API): their
        # deliveries are journaled with the event; `outbox_listeners` hear of new ones.
        self.outbox_targets: Callable[[Event], Sequence[str]] | None = None
        self.outbox_listeners: list[Callable[[], None]] = []
        self._finished: dict[str, asyncio.Event] = {}  # run id -> set when its task ends
        self._automations = {a.id: a for a in config.automations}
        self._batch: list[
            tuple[Event, list[tuple[str, AutomationConfig]], asyncio.Future[bool]]
        ] = []
        self.intents = OpenIntents()
        self._slots = asyncio.Semaphore(max(1, config.max_concurrent_runs))
        self._run_tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()  # run ids with a task in this process
        self.journal = JournalWrites()  # `await runtime.journal(what, write, ...)`
        self._lock: StateDirLock | None = None
        self._sources = Background()  # pollers, trigger sources, upkeep
        # Events are accepted once there is a journal to record them in.
        self._accepting = store is not None

    @property
    def api_is_local(self) -> bool:
        """The API is on this machine (the sandbox): it may be told loopback hook URLs."""
        return is_loopback(self.finetuning.base_url.host)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session of this running connector: clients and actions share it."""
        return self.finetuning.session

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the runtime is not started")
        return self._store

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, resume unfinished runs, start ingress and trigger sources.

        If starting fails (the API is down, the journal is locked), what did start
        is stopped again before the error is raised.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=5.0)
            raise

    async def _start(self) -> None:
        if self._store is None:
            self._store = Store.open(self.config.state_dir)
        store = self.store
        # One daemon per journal, before anything is resumed: two would run the same runs.
        lock = StateDirLock(store.state_dir)
        lock.acquire()
        self._lock = lock
        saved = store.get_cursor(POLLER_CURSOR)
        state = PollerState.from_json(saved) if isinstance(saved, dict) else PollerState()
        self.poller = GenerationPoller(
            self.finetuning,
            self.submit_event,
            idle_interval=self.config.poll.idle_interval,
            active_interval=self.config.poll.active_interval,
            backfill=self.config.poll.backfill,
            state=state,
            is_known=store.has_event,
            on_change=lambda s: store.set_cursor(POLLER_CURSOR, s.to_json()),
        )
        for pending in store.pending("finetuning"):
            state.submitted.add(pending.generation_id)
            if pending.created_at is not None:
                state.in_progress.setdefault(pending.generation_id, pending.created_at)
        unfinished = store.unfinished_runs()
        # Before anything can see them finish: generations that steps cut short by a
        # crash may have submitted are ours, whatever notices them first.
        for row in unfinished:
            for step in row.steps:
                if step.status == "running" and step.action == GENERATE_ACTION:
                    try:
                        intent = store.generation_intent(row.run_id, step.step_index)
                    except IntentFormatError as err:
                        _LOGGER.error("%s", err)  # the step fails with it when it resumes
                        continue
                    if intent is not None:
                        self.intents.open(intent, row.run_id, step.step_index)
        self._accepting = True
        if self.config.webhook is not None:
            await self._start_listener()
        for row in unfinished:
            self._resume(row)
        await self.poller.poll_once()  # seeds on first start, catches up after a restart
        self._sources.spawn(self.poller.run(), "poller")
        if self.tempolor is not None:
            self.tempolor_poller = TempolorJobPoller(
                self.tempolor,
                self.submit_event,
                lambda: [p.generation_id for p in store.pending("tempolor")],
                interval=self.config.poll.active_interval,
            )
            self._sources.spawn(self.tempolor_poller.run(), "tempolor-poller")
        self._sources.spawn(
            background.prune_periodically(store, self.config.retention_days * 86400), "retention"
        )
        self._sources.spawn(
            every(QUEUED_RUNS_EVERY, self.pick_up_queued_runs, "look for queued runs"),
            "queued-runs",
        )
        store.defer_checkpoints()
        self._sources.spawn(self.checkpoint_periodically(), "checkpoint")
        for automation in self.config.automations:
            if not automation.enabled:
                continue
            for index, trigger in enumerate(automation.triggers):
                spec = self.registry.triggers[trigger.key]
                if spec.source is not None:
                    context = SourceContext(self, automation.id, index)
                    self._sources.spawn(
                        spec.source(context, trigger.options), f"{automation.id}:{trigger.key}"
                    )

    async def _start_listener(self) -> None:
        self.listener = await start_webhook_listener(self)

    def health(self) -> dict[str, Any]:
        """For /healthz: "degraded" while the journal fails, the age of the last poll."""
        last = self.poller.last_success if self.poller else None
        age = round(time.monotonic() - last, 1) if last is not None else None
        body: dict[str, Any] = {
            "status": "degraded" if self.journal.problem else "ok",
            # /healthz is unauthenticated: the cause, but not where the files are.
            "journal": (self.journal.problem or "ok").replace(
                str(self._store.state_dir) if self._store else "\0", "<state_dir>"
            ),
            "last_poll_age_seconds": age,
            "runs_in_flight": len(self._run_tasks),
        }
        return body

    async def checkpoint_periodically(self) -> None:
        """Checkpoint the journal's WAL from a worker thread (started by `start()`)."""
        await background.checkpoint_periodically(self.store)

    async def stop(self, *, grace: float = 30.0) -> None:
        """Take no new work; let runs in flight finish (up to `grace` s, then leave them
        resumable); close the journal if the runtime opened it."""
        # Pollers and sources first, then the listener, and only then refuse events:
        # an event refused while a poller still runs would be dropped from its mark.
        await self._sources.cancel_all()
        if self.listener is not None:
            await self.listener.stop()
        self._accepting = False
        if self._run_tasks:
            _done, pending = await asyncio.wait(set(self._run_tasks), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def idle(self) -> None:
        """Wait until no run is in flight."""
        while self._run_tasks:
            await asyncio.wait(set(self._run_tasks))

    # -- ingress -----------------------------------------------------------------------

    def webhook_url(self, provider: str) -> str | None:
        """Where providers should post results; None while polling alone."""
        return listener_webhook_url(self, provider)

    def _is_ours(self, generation: Generation) -> bool:
        if self.store.is_submitted(generation.provider, generation.id):
            return True
        return self.intents.claims(generation)

    def note_submission(self, generation: Generation, *, run_id: str | None = None) -> None:
        """A generation this connector submitted: remember it as ours and poll fast.

        A generation belongs to one run: claiming one that another run already
        holds raises `GenerationClaimedError` (two runs never share a track).
        """
        store = self.store
        owner = store.submitted_by(generation.provider, generation.id)
        if run_id is not None and owner is not None and owner != run_id:
            raise GenerationClaimedError(generation.id, owner)
        store.add_pending(generation.provider, generation.id, generation.created_at, run_id)
        if generation.is_terminal:
            # Found already finished (a resumed step): ours, but nothing to wait for.
            store.remove_pending(generation.provider, generation.id)
        if generation.provider == "tempolor":
            if self.tempolor_poller is not None:
                self.tempolor_poller.wake()
        elif self.poller is not None:
            self.poller.track(generation)

    async def submit_event(self, event: Event, *, only_automation: str | None = None) -> bool:
        """Record an event once with the runs it starts, then start them; False for a repeat.

        An event whose source is "seed" (what already existed at first start) is
        recorded without running anything: the Zapier rule.
        """
        if not self._accepting:
            return False
        store = self.store
        if event.source == "seed":
            store.record_event(event)
            return False
        generation = event.generation
        ours = generation is not None and self._is_ours(generation)
        if ours and not event.submitted_by_connector:
            event = replace(event, submitted_by_connector=True)
        own = api_automation(event)
        automations = (
            [own]
            if own is not None
            else [
                a
                for a in self.config.automations
                if a.enabled
                and (a.id == only_automation if only_automation else self._matches(a, event))
            ]
        )
        return await self._record(event, automations)

    async def _record(self, event: Event, automations: list[AutomationConfig]) -> bool:
        """Journal the event with its runs (group commit); start them once durable."""
        runs = [(uuid.uuid4().hex[:16], a) for a in automations]
        # Group commit: events submitted in the same turn of the event loop are
        # journaled in one transaction; each caller resumes once it is durable.
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # The caller may be gone by the time it fails; the error is reported to it
        # or nobody, never as "exception was never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._batch.append((event, runs, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await asyncio.shield(future)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        try:
            targets = self.outbox_targets
            deliveries = [list(targets(event)) if targets else [] for event, _, _ in batch]
            # An API call acts at once: its one step is journaled started with the call.
            first_steps = {
                rid: (a.actions[0].id, a.actions[0].action, a.actions[0].options)
                for event, runs, _ in batch
                if event.kind == ACTION_CALLED
                for rid, a in runs
            }
            results = self.store.record_events(
                [(event, [(rid, a.id) for rid, a in runs]) for event, runs, _ in batch],
                deliveries=deliveries,
                first_steps=first_steps,
            )
        except Exception as err:
            if isinstance(err, JournalError):
                self.journal.failing("record events", err)
            for _event, _runs, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self.journal.ok()
        if any(d for d, new in zip(deliveries, results, strict=True) if new):
            notify(self.outbox_listeners)
        for (event, runs, future), new in zip(batch, results, strict=True):
            if new:
                # Started here, not by the caller: a caller that goes away (a webhook
                # sender hanging up) must not leave journaled runs unstarted. (Recorded
                # while stopping, a `run_failed` say, they start at the next start; its
                # listeners hear of it now all the same: it is journaled as heard.)
                try:
                    for run_id, automation in runs if self._accepting else ():
                        record = RunRecord(run_id, automation.id, event)
                        record.first_step_journaled = run_id in first_steps
                        self._launch(record, {})
                finally:
                    notify(self.event_listeners, event)
            if not future.done():
                future.set_result(new)

    def _matching(self, event: Event) -> list[AutomationConfig]:
        return [a for a in self.config.automations if a.enabled and self._matches(a, event)]

    def automation_for(self, automation_id: str, event: Event) -> AutomationConfig | None:
        """The automation a run follows: the file's, or the one an API call's event makes."""
        return self._automations.get(automation_id) or api_automation(event)

    # -- calls from outside: the HTTP API ------------------------------------------

    async def call_action(
        self,
        action: str,
        options: Mapping[str, Any],
        *,
        event_key: str | None = None,
        requested_by: str | None = None,
    ) -> tuple[str, bool]:
        """Journal a call of `action` with validated `options` as a run and start it:
        (run id, whether this call started it). A repeated `event_key` (an idempotent
        retry, even after a crash) starts nothing: the first call's run. RuntimeError
        while not running."""
        if not self._accepting:
            raise RuntimeError("the connector is not running")
        event = action_called(action, options, event_key=event_key, requested_by=requested_by)
        new = await self.submit_event(event)
        rows = self.store.runs_for_event(event.key)
        if not rows:
            raise RuntimeError(f"the call's event {event.key!r} has no run")
        return rows[0].run_id, new

    def replay(self, run_id: str) -> str:
        """Run a finished run again now, as a new run: its id. ValueError: unknown, running
        or already replayed (`reset_run_for_replay`)."""
        new_id = self.store.reset_run_for_replay(run_id)
        row = self.store.run(new_id)
        if row is not None and self._accepting:
            self._resume(row)
        return new_id

    async def wait_for_run(self, run_id: str, timeout: float) -> bool:
        """Wait up to `timeout` s for a run in flight here to end; whether it is not in flight."""
        ended = self._finished.get(run_id)
        if ended is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), timeout)
        return ended.is_set()

    def _matches(self, automation: AutomationConfig, event: Event) -> bool:
        for trigger in automation.triggers:
            spec = self.registry.triggers[trigger.key]
            if spec.matches is None or event.kind not in spec.kinds:
                continue
            try:
                if spec.matches(event, trigger.options):
                    return True
            except Exception:
                _LOGGER.exception("trigger %s of %s failed to match", trigger.key, automation.id)
        return False

    # -- runs --------------------------------------------------------------------------

    def _resume(self, row: RunRow) -> None:
        event = self.store.load_event(row.event_key)
        if event is None or self.automation_for(row.automation_id, event) is None:
            why = "its event was pruned" if event is None else "its automation is gone"
            self.store.finish_run(row.run_id, "failed", f"cannot resume: {why}")
            return
        failed = [s for s in row.steps if s.status == "failed"]
        if failed:
            # The crash came between journaling the failure and ending the run.
            self.store.finish_run(row.run_id, "failed", failed[0].error)
            return
        run = RunRecord(
            run_id=row.run_id, automation_id=row.automation_id, event=event, resumed=True
        )
        done = {s.step_index: s for s in row.steps if s.status == "succeeded"}
        self._launch(run, {i: dict(s.output or {}) for i, s in done.items()})

    def _launch(self, run: RunRecord, done: dict[int, dict[str, Any]]) -> None:
        self.runs.append(run)
        automation = self.automation_for(run.automation_id, run.event)
        assert automation is not None  # checked by the callers
        task = asyncio.create_task(self._run(automation, run, done), name=run.automation_id)
        self._run_tasks.add(task)
        self._in_flight.add(run.run_id)
        self._finished[run.run_id] = asyncio.Event()

        def finished(task: asyncio.Task[None]) -> None:
            self._run_tasks.discard(task)
            self._in_flight.discard(run.run_id)
            ended = self._finished.pop(run.run_id, None)
            if ended is not None:
                ended.set()
            if not task.cancelled() and task.exception() is not None:
                # Never "Task exception was never retrieved": say which run, and why.
                _LOGGER.error(
                    "run %s of %s ended with an error; it resumes when picked up again",
                    run.run_id,
                    run.automation_id,
                    exc_info=task.exception(),
                )

        task.add_done_callback(finished)

    def pick_up_queued_runs(self) -> int:
        """Start runs another process journaled (`ftconnect replay`) while this one holds
        the state_dir: any running run without a task here. How many started."""
        started = 0
        if not self._accepting:
            return 0
        for run_id in self.store.running_run_ids():
            if run_id in self._in_flight:
                continue
            row = self.store.run(run_id)
            if row is None or row.status != "running":
                continue
            _LOGGER.info(
                "run %s of %s queued by another process: starting it", run_id, row.automation_id
            )
            self._resume(row)
            started += 1
        return started

    async def _run(
        self, automation: AutomationConfig, run: RunRecord, done: dict[int, dict[str, Any]]
    ) -> None:
        async with self._slots:
            try:
                await self._perform(automation, run, done)
            except asyncio.CancelledError:
                run.status, run.error = "running", "interrupted: resumes at the next start"
                raise
            except Exception as err:  # a bug in an action must not take the runtime down
                _LOGGER.exception("run %s of %s crashed", run.run_id, automation.id)
                run.status = "failed"
                run.error = f"{type(err).__name__}: {err}"
            run.finished_at = datetime.now(UTC)
            alarm = run_failed(run)
            if alarm is not None:
                # Before the run is journaled finished: a crash in between resumes the
                # run, which fails again with the same event key, so it is never lost.
                try:
                    await self._record(alarm, self._matching(alarm))
                except Exception:
                    _LOGGER.exception("could not record run_failed for run %s", run.run_id)
            await self.journal(
                "finish run", self.store.finish_run, run.run_id, run.status, run.error
            )
            notify(self.run_listeners, run)

    async def _perform(
        self, automation: AutomationConfig, run: RunRecord, done: dict[int, dict[str, Any]]
    ) -> None:
        await perform(self, automation, run, done)
