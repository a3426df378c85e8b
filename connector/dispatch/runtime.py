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
import random
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import voluptuous as vol
from pydantic.alias_generators import to_camel

from connector.automation.config import AutomationConfig, ConnectorConfig, StepConfig
from connector.automation.registry import Registry, default_registry
from connector.automation.templates import Template, TemplateError, render
from connector.errors import FinetuningError, GenerationClaimedError
from connector.events import Event
from connector.ingress.poller import GenerationPoller, PollerState, TempolorJobPoller
from connector.journal.lock import StateDirLock
from connector.journal.store import RunRow, Store, StoreError
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation
from connector.redaction import register_secret

if TYPE_CHECKING:
    from connector.ingress.webhooks import WebhookListener
    from connector.providers.tempolor.client import TempolorClient

_LOGGER = logging.getLogger(__name__)

POLLER_CURSOR = "poller:finetuning"
PRUNE_EVERY = 3600.0  # seconds between retention passes
CHECKPOINT_EVERY = 2.0  # seconds between WAL checkpoints, run off the event loop
# Seconds between looks for runs another process queued (`ftconnect replay`).
QUEUED_RUNS_EVERY = 1.0
# A failing journal write inside a run is retried in place: first after this many
# seconds, doubling up to the maximum; the warning is repeated at most this often.
JOURNAL_RETRY_FIRST = 0.1
JOURNAL_RETRY_MAX = 5.0
JOURNAL_LOG_EVERY = 60.0
T = TypeVar("T")
WEBHOOK_TOKEN = "webhook_token"


class ListenerStartError(RuntimeError):
    """The webhook listener cannot listen where `webhook.listen` says."""


@dataclass
class StepRecord:
    """One action step of a run, as the listeners see it."""

    step_id: str
    action: str
    status: str = "running"  # running, succeeded, failed
    output: Mapping[str, Any] | None = None
    error: str | None = None
    attempt: int = 1
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


@dataclass
class RunRecord:
    """One automation run for one event, as the listeners see it."""

    run_id: str
    automation_id: str
    event: Event
    status: str = "running"  # running, succeeded, failed, skipped
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    resumed: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


RunListener = Callable[[RunRecord], None]
StepListener = Callable[[RunRecord, StepRecord], None]
EventListener = Callable[[Event], None]


class TriggerContext:
    """What a source trigger (schedule, credits_low) gets: a way to fire events."""

    def __init__(self, runtime: Runtime, automation_id: str, trigger_index: int) -> None:
        self.runtime = runtime
        self.automation_id = automation_id
        self.trigger_index = trigger_index

    @property
    def finetuning(self) -> FinetuningClient:
        return self.runtime.finetuning

    async def fire(self, kind: str, key: str, data: Mapping[str, Any]) -> bool:
        """Fire an event for this automation only; returns False for a repeat key."""
        event = Event(kind=kind, key=key, source=kind, data=dict(data))
        return await self.runtime.submit_event(event, only_automation=self.automation_id)


class ActionContext:
    """What an action gets: the clients, the event, earlier outputs, and its journal."""

    def __init__(
        self,
        runtime: Runtime,
        run: RunRecord,
        step: StepConfig,
        step_index: int,
        attempt: int,
        variables: Mapping[str, Any],
    ) -> None:
        self.runtime = runtime
        self.run = run
        self.step = step
        self.step_index = step_index
        self.attempt = attempt
        self.variables = variables

    @property
    def event(self) -> Event:
        return self.run.event

    @property
    def finetuning(self) -> FinetuningClient:
        return self.runtime.finetuning

    @property
    def tempolor(self) -> TempolorClient:
        """The TemPolor client; a clear error when the file has no `tempolor:` section."""
        if self.runtime.tempolor is None:
            raise FinetuningError(
                "this step uses TemPolor, but the automations file has no 'tempolor:' section "
                "with an api_token",
                code="PROVIDER_NOT_CONFIGURED",
            )
        return self.runtime.tempolor

    @property
    def resuming(self) -> bool:
        """An earlier attempt of this step may have taken effect (a crash cut it short)."""
        return self.attempt > 1

    @property
    def allow_local_webhook(self) -> bool:
        """Loopback webhooks are fine when the API itself is on loopback (the sandbox)."""
        return self.runtime.api_is_local

    def webhook_url(self, provider: str = "finetuning") -> str | None:
        """Where providers should send results of what this step submits."""
        return self.runtime.webhook_url(provider)

    async def record_intent(self, fingerprint: Mapping[str, Any]) -> None:
        """Journal what is about to be submitted, before sending it.

        Until the step ends, a generation matching the intent counts as ours even
        if a webhook or the poller sees it finish before the step hears back.
        """
        store = self.runtime.store
        await self.runtime.journal(
            "record an intent", store.record_intent, self.run.run_id, self.step_index, fingerprint
        )
        self.runtime.open_intent(fingerprint, self.run.run_id, self.step_index)

    def intent(self) -> Mapping[str, Any] | None:
        """What an earlier attempt of this step meant to submit, if it got that far."""
        return self.runtime.store.intent(self.run.run_id, self.step_index)

    async def submitted(self, generation: Generation) -> None:
        """Record a generation this connector submitted (filters, fast polling)."""
        await self.runtime.journal(
            "record a submission",
            self.runtime.note_submission,
            generation,
            run_id=self.run.run_id,
        )

    def claimed_by_other(self, generation: Generation) -> str | None:
        """The run that already holds `generation`, when it is not this one."""
        owner = self.runtime.store.submitted_by(generation.provider, generation.id)
        return owner if owner is not None and owner != self.run.run_id else None

    def rival_intents(self, intent: Mapping[str, Any]) -> list[tuple[str, int]]:
        """Other runs' open submissions identical to `intent` (see `Runtime.rival_intents`)."""
        return self.runtime.rival_intents(intent, self.run.run_id, self.step_index)

    async def wait_for(self, generation_id: str, *, timeout: float) -> Generation:
        """Wait until a generation ends (inside the shared read budget)."""
        return await self.finetuning.wait_for_generation(generation_id, timeout=timeout)

    def log(self, message: str) -> None:
        _LOGGER.info("%s/%s: %s", self.run.automation_id, self.step.id, message)


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
        self.runs: list[RunRecord] = []
        self.run_listeners: list[RunListener] = []
        self.step_listeners: list[StepListener] = []
        self.event_listeners: list[EventListener] = []
        self._automations = {a.id: a for a in config.automations}
        self._batch: list[
            tuple[Event, list[tuple[str, AutomationConfig]], asyncio.Future[bool]]
        ] = []
        # Submissions whose outcome is not known yet: intent key -> {(run id, step index)}.
        # Several runs may hold the same key (a fixed seed and constant tags).
        self._open_intents: dict[tuple[Any, ...], set[tuple[str, int]]] = {}
        self._slots = asyncio.Semaphore(max(1, config.max_concurrent_runs))
        self._run_tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()  # run ids with a task in this process
        self._journal_problem: str | None = None  # the last journal write that failed
        self._journal_logged = 0.0
        self._lock: StateDirLock | None = None
        self._source_tasks: list[asyncio.Task[None]] = []
        # Events are accepted once there is a journal to record them in.
        self._accepting = store is not None

    @property
    def api_is_local(self) -> bool:
        """The API is on this machine (the sandbox): it may be told loopback hook URLs."""
        return _is_loopback(self.finetuning.base_url.host)

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
                if step.status == "running":
                    intent = store.intent(row.run_id, step.step_index)
                    if intent is not None:
                        self.open_intent(intent, row.run_id, step.step_index)
        self._accepting = True
        if self.config.webhook is not None:
            await self._start_listener()
        for row in unfinished:
            self._resume(row)
        await self.poller.poll_once()  # seeds on first start, catches up after a restart
        self._spawn_source(self.poller.run(), "poller")
        if self.tempolor is not None:
            self.tempolor_poller = TempolorJobPoller(
                self.tempolor,
                self.submit_event,
                lambda: [p.generation_id for p in store.pending("tempolor")],
                interval=self.config.poll.active_interval,
            )
            self._spawn_source(self.tempolor_poller.run(), "tempolor-poller")
        self._spawn_source(self._prune_periodically(), "retention")
        self._spawn_source(self._pick_up_queued_runs(), "queued-runs")
        store.defer_checkpoints()
        self._spawn_source(self.checkpoint_periodically(), "checkpoint")
        for automation in self.config.automations:
            if not automation.enabled:
                continue
            for index, trigger in enumerate(automation.triggers):
                spec = self.registry.triggers[trigger.key]
                if spec.source is not None:
                    context = TriggerContext(self, automation.id, index)
                    self._spawn_source(
                        spec.source(context, trigger.options), f"{automation.id}:{trigger.key}"
                    )

    async def _start_listener(self) -> None:
        from connector.ingress.webhooks import WebhookListener

        webhook = self.config.webhook
        assert webhook is not None
        token = webhook.token or self.store.secret(WEBHOOK_TOKEN, lambda: secrets.token_urlsafe(32))
        register_secret(token)  # whoever holds it can forge events: never written or sent
        self.listener = WebhookListener(
            token=token,
            record=self.submit_event,
            host=webhook.host,
            port=webhook.port,
            health=self.health,
            max_connections=webhook.max_connections,
            header_timeout=webhook.header_timeout,
        )
        try:
            await self.listener.start()
        except OSError as err:  # the port is taken, the host does not resolve, no permission
            self.listener = None
            reason = err.strerror or str(err) or type(err).__name__
            raise ListenerStartError(
                f"webhook.listen {webhook.host}:{webhook.port}: cannot listen there ({reason})"
            ) from err

    def health(self) -> dict[str, Any]:
        """For /healthz: "degraded" while the journal fails, the age of the last poll."""
        last = self.poller.last_success if self.poller else None
        age = round(time.monotonic() - last, 1) if last is not None else None
        body: dict[str, Any] = {
            "status": "degraded" if self._journal_problem else "ok",
            # /healthz is unauthenticated: the cause, but not where the files are.
            "journal": (self._journal_problem or "ok").replace(
                str(self._store.state_dir) if self._store else "\0", "<state_dir>"
            ),
            "last_poll_age_seconds": age,
            "runs_in_flight": len(self._run_tasks),
        }
        return body

    def _spawn_source(self, coroutine: Any, name: str) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("trigger source %s stopped", name)

        self._source_tasks.append(asyncio.create_task(guarded(), name=name))

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                result = self.store.prune(older_than=self.config.retention_days * 86400)
            except StoreError as err:
                _LOGGER.warning("retention pass failed, next in %g s: %s", PRUNE_EVERY, err)
                continue
            _LOGGER.info("retention: %s", result)

    async def checkpoint_periodically(self) -> None:
        """Checkpoint the journal's WAL from a worker thread (started by `start()`)."""
        store = self.store
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await asyncio.to_thread(store.checkpoint)
            except StoreError as err:
                _LOGGER.debug("WAL checkpoint failed, next in %g s: %s", CHECKPOINT_EVERY, err)

    async def stop(self, *, grace: float = 30.0) -> None:
        """Take no new work; let runs in flight finish (up to `grace` s, then leave them
        resumable); close the journal if the runtime opened it."""
        # Pollers and sources first, then the listener, and only then refuse events:
        # an event refused while a poller still runs would be dropped from its mark.
        await _cancel_all(self._source_tasks)
        self._source_tasks.clear()
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
        if self.listener is None or self.config.webhook is None:
            return None
        public_url = self.config.webhook.public_url
        if public_url is None and not self.api_is_local:
            # The real service only calls public https URLs: without public_url the
            # listener's local address would be refused, so rely on polling.
            return None
        return str(self.listener.hook_url(provider, public_url))

    def open_intent(self, intent: Mapping[str, Any], run_id: str, step_index: int) -> None:
        """Remember a submission whose outcome is not known yet (see `_is_ours`)."""
        key = _intent_key(intent)
        if key is not None:
            self._open_intents.setdefault(key, set()).add((run_id, step_index))

    def rival_intents(
        self, intent: Mapping[str, Any], run_id: str, step_index: int
    ) -> list[tuple[str, int]]:
        """Other open submissions that describe the same generation as `intent`
        (same tags and seed): while any is open, which generation is whose is unknown."""
        key = _intent_key(intent)
        owners = self._open_intents.get(key, set()) if key is not None else set()
        return sorted(owner for owner in owners if owner != (run_id, step_index))

    def _close_intents(self, run_id: str, step_index: int) -> None:
        for key, owners in list(self._open_intents.items()):
            owners.discard((run_id, step_index))
            if not owners:
                del self._open_intents[key]

    def _is_ours(self, generation: Generation) -> bool:
        if self.store.is_submitted(generation.provider, generation.id):
            return True
        return _generation_key(generation) in self._open_intents

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
        automations = [
            a
            for a in self.config.automations
            if a.enabled
            and (a.id == only_automation if only_automation else self._matches(a, event))
        ]
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
            results = self.store.record_events(
                [(event, [(rid, a.id) for rid, a in runs]) for event, runs, _ in batch]
            )
        except Exception as err:
            if isinstance(err, StoreError):
                self._journal_failing("record events", err)
            for _event, _runs, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self._journal_ok()
        for (event, runs, future), new in zip(batch, results, strict=True):
            if new:
                # Started here, not by the caller: a caller that goes away (a webhook
                # sender hanging up) must not leave journaled runs unstarted.
                try:
                    for run_id, automation in runs:
                        self._launch(
                            RunRecord(run_id=run_id, automation_id=automation.id, event=event),
                            {},
                        )
                finally:
                    _notify(self.event_listeners, event)
            if not future.done():
                future.set_result(new)

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
        if event is None or row.automation_id not in self._automations:
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
        automation = self._automations[run.automation_id]
        task = asyncio.create_task(self._run(automation, run, done), name=run.automation_id)
        self._run_tasks.add(task)
        self._in_flight.add(run.run_id)

        def finished(task: asyncio.Task[None]) -> None:
            self._run_tasks.discard(task)
            self._in_flight.discard(run.run_id)
            if not task.cancelled() and task.exception() is not None:
                # Never "Task exception was never retrieved": say which run, and why.
                _LOGGER.error(
                    "run %s of %s ended with an error; it resumes when picked up again",
                    run.run_id,
                    run.automation_id,
                    exc_info=task.exception(),
                )

        task.add_done_callback(finished)

    async def _pick_up_queued_runs(self) -> None:
        """Start runs that another process journaled while this one runs.

        `ftconnect replay` writes a new `running` run into the journal; with this
        daemon holding the state_dir, any running run without a task here is one
        of those, and starts now rather than at the next start.
        """
        while True:
            await asyncio.sleep(QUEUED_RUNS_EVERY)
            if not self._accepting:
                continue
            try:
                self.pick_up_queued_runs()
            except Exception:
                _LOGGER.exception("could not look for queued runs; will look again")

    def pick_up_queued_runs(self) -> int:
        """One look for queued runs (see `_pick_up_queued_runs`); returns how many started."""
        started = 0
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
            await self.journal(
                "finish run", self.store.finish_run, run.run_id, run.status, run.error
            )
            _notify(self.run_listeners, run)

    async def _perform(
        self, automation: AutomationConfig, run: RunRecord, done: dict[int, dict[str, Any]]
    ) -> None:
        steps: dict[str, Any] = {}
        variables: dict[str, Any] = {
            "trigger": run.event.variables(),
            "steps": steps,
            "automation": {"id": automation.id, "alias": automation.alias},
        }
        if not done:
            for index, condition in enumerate(automation.conditions):
                try:
                    passed = (
                        condition.render(variables)
                        if isinstance(condition, Template)
                        else condition
                    )
                except TemplateError as err:
                    run.status, run.error = "failed", f"conditions[{index}]: {err}"
                    return
                if not passed:
                    run.status, run.error = "skipped", f"conditions[{index}] is false"
                    return
        for index, step in enumerate(automation.actions):
            if index in done:
                steps[step.id] = _template_view(done[index])
                continue
            attempt = await self.journal(
                "start a step", self.store.step_started, run.run_id, index, step.id, step.action
            )
            record = StepRecord(step_id=step.id, action=step.action, attempt=attempt)
            run.steps.append(record)
            try:
                context = ActionContext(self, run, step, index, attempt, variables)
                output = await self._perform_step(step, context, variables)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if not isinstance(err, TemplateError | vol.Invalid | FinetuningError | ValueError):
                    # A bug in an action: the run fails, the runtime and the journal do not.
                    _LOGGER.exception("step %s of run %s crashed", step.id, run.run_id)
                self._close_intents(run.run_id, index)
                record.status, record.error = "failed", _describe(step, err)
                record.finished_at = datetime.now(UTC)
                await self.journal(
                    "finish a step",
                    self.store.step_finished,
                    run.run_id,
                    index,
                    "failed",
                    error=record.error,
                )
                run.status, run.error = "failed", record.error
                self._step_done(run, record)
                return
            self._close_intents(run.run_id, index)
            record.status, record.output = "succeeded", output
            record.finished_at = datetime.now(UTC)
            await self.journal(
                "finish a step",
                self.store.step_finished,
                run.run_id,
                index,
                "succeeded",
                output=output,
            )
            steps[step.id] = _template_view(dict(output))
            self._step_done(run, record)
        run.status = "succeeded"

    async def journal(self, what: str, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a journal write, retrying it with backoff while the journal fails.

        A full disk, a locked or unwritable database: the run waits here, in this
        process, and carries on once the write succeeds; nothing is skipped and
        nothing needs a restart. Meanwhile `/healthz` reports degraded. Only
        `StoreError` is retried: misuse (a `ValueError`) is a bug and raises.
        """
        delay = JOURNAL_RETRY_FIRST
        while True:
            try:
                result = write(*args, **kwargs)
            except StoreError as err:
                self._journal_failing(what, err)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, JOURNAL_RETRY_MAX)
                continue
            self._journal_ok()
            return result

    def _journal_failing(self, what: str, err: Exception) -> None:
        now = time.monotonic()
        first = self._journal_problem is None
        self._journal_problem = f"cannot {what}: {err}"
        if first or now - self._journal_logged >= JOURNAL_LOG_EVERY:
            self._journal_logged = now
            _LOGGER.warning(
                "journal write failed (%s); retrying with backoff, runs wait", self._journal_problem
            )

    def _journal_ok(self) -> None:
        if self._journal_problem is not None:
            _LOGGER.warning("journal writable again after: %s", self._journal_problem)
            self._journal_problem = None

    def _step_done(self, run: RunRecord, record: StepRecord) -> None:
        _notify(self.step_listeners, run, record)

    async def _perform_step(
        self, step: StepConfig, context: ActionContext, variables: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        spec = self.registry.actions[step.action]
        options = spec.schema(render(step.options, variables))
        return await spec.run(context, options)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done, cancelling again while any is not.

    On Python 3.11 a cancellation that lands as an `asyncio.timeout()` inside the
    task expires (a request timing out in a poll) is taken for the timeout and
    swallowed; waiting once would then hang until the next interval or forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("trigger source %s ended with an error", task.get_name())


class _Fields(dict[str, Any]):
    """A step's output as templates see it: a generation in it is the API's wire form
    (camelCase), and its fields answer to the snake_case names `trigger.generation`
    uses too (`steps.make.generation.audio_url` as well as `.audioUrl`)."""

    def __missing__(self, key: object) -> Any:
        if isinstance(key, str) and "_" in key:
            camel = to_camel(key)
            if camel != key and camel in self:
                return self[camel]
        raise KeyError(key)


def _template_view(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Fields({key: _template_view(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_template_view(item) for item in value]
    return value


def _notify(listeners: list[Callable[..., None]], *args: Any) -> None:
    """Tell every listener; one that fails (stdout closed under `| tee`) is logged and
    must not stop the others, nor the runtime."""
    for listener in listeners:
        try:
            listener(*args)
        except Exception:
            _LOGGER.exception("a listener failed; carrying on")


def _intent_key(intent: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What identifies a submission: TemPolor's replyRef, or Finetuning's tags and seed."""
    if intent.get("replyRef"):
        return ("tempolor", intent["replyRef"])
    if "tags" in intent and "seed" in intent:
        return ("finetuning", intent["tags"], intent["seed"])
    return None


def _generation_key(generation: Generation) -> tuple[Any, ...] | None:
    if generation.provider == "tempolor":
        raw = (generation.model_extra or {}).get("tempolor")
        reference = raw.get("replyRef") if isinstance(raw, dict) else None
        return ("tempolor", reference) if reference else None
    seed = generation.parameters.seed if generation.parameters else None
    return ("finetuning", generation.prompt, seed)


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _describe(step: StepConfig, err: Exception) -> str:
    if isinstance(err, vol.MultipleInvalid):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or '(options)'}: {e.msg}" for e in err.errors
        )
        return f"{step.id} ({step.action}): invalid options after rendering: {problems}"
    if isinstance(err, vol.Invalid):
        return f"{step.id} ({step.action}): {err.msg}"
    return f"{step.id} ({step.action}): {err}"
