"""The runtime: trigger sources, the dispatcher, and the automations' runs.

Every event goes through `Runtime.submit_event`, the single door: an event
key seen before stops there; a new one is matched against every automation.
Matching automations run concurrently (bounded by `max_concurrent_runs`);
the steps of one run go in order; a failing step ends its run with the error
recorded, and other runs carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import voluptuous as vol

from .client import FinetuningClient
from .config import AutomationConfig, ConnectorConfig, StepConfig
from .events import Event
from .exceptions import FinetuningError
from .models import Generation
from .poller import GenerationPoller
from .registry import Registry, default_registry
from .templates import Template, TemplateError, render

_LOGGER = logging.getLogger(__name__)


@dataclass
class StepRecord:
    """One action step of a run."""

    step_id: str
    action: str
    status: str = "running"  # running, succeeded, failed
    output: Mapping[str, Any] | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


@dataclass
class RunRecord:
    """One automation run for one event."""

    run_id: str
    automation_id: str
    event: Event
    status: str = "running"  # running, succeeded, failed, skipped
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
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
    """What an action gets: the clients, the event, and the outputs of earlier steps."""

    def __init__(
        self, runtime: Runtime, run: RunRecord, step: StepConfig, variables: Mapping[str, Any]
    ) -> None:
        self.runtime = runtime
        self.run = run
        self.step = step
        self.variables = variables

    @property
    def event(self) -> Event:
        return self.run.event

    @property
    def finetuning(self) -> FinetuningClient:
        return self.runtime.finetuning

    @property
    def allow_local_webhook(self) -> bool:
        """Loopback webhooks are fine when the API itself is on loopback (the sandbox)."""
        host = self.runtime.finetuning.base_url.host or ""
        return host in ("127.0.0.1", "localhost", "::1")

    def webhook_url(self, provider: str = "finetuning") -> str | None:
        """Where providers should send results of what this step submits (ingress)."""
        return self.runtime.webhook_url(provider)

    def submitted(self, generation: Generation) -> None:
        """Record a generation this connector submitted (for filters and fast polling)."""
        self.runtime.note_submission(generation)

    async def wait_for(self, generation_id: str, *, timeout: float) -> Generation:
        """Wait until a generation ends (fast polling inside the shared read budget)."""
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
    ) -> None:
        self.config = config
        self.finetuning = finetuning
        self.registry = registry or default_registry()
        self._seen: set[str] = set()
        self.poller = GenerationPoller(
            finetuning,
            self.submit_event,
            is_known=self._seen.__contains__,
            idle_interval=config.poll.idle_interval,
            active_interval=config.poll.active_interval,
            backfill=config.poll.backfill,
        )
        self.runs: list[RunRecord] = []
        self.run_listeners: list[RunListener] = []
        self.step_listeners: list[StepListener] = []
        self.event_listeners: list[EventListener] = []
        self._submitted: set[str] = set()
        self._slots = asyncio.Semaphore(max(1, config.max_concurrent_runs))
        self._run_tasks: set[asyncio.Task[None]] = set()
        self._source_tasks: list[asyncio.Task[None]] = []
        self._accepting = True

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Seed the poller and start every trigger source."""
        await self.poller.poll_once()
        self._source_tasks.append(asyncio.create_task(self.poller.run(), name="poller"))
        for automation in self.config.automations:
            if not automation.enabled:
                continue
            for index, trigger in enumerate(automation.triggers):
                spec = self.registry.triggers[trigger.key]
                if spec.source is None:
                    continue
                context = TriggerContext(self, automation.id, index)
                task = asyncio.create_task(
                    self._guard_source(spec.source(context, trigger.options), automation.id),
                    name=f"{automation.id}:{trigger.key}",
                )
                self._source_tasks.append(task)

    async def _guard_source(self, coroutine: Any, automation_id: str) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("trigger source of %s stopped", automation_id)

    async def stop(self, *, grace: float = 30.0) -> None:
        """Take no new work; let runs in flight finish (up to `grace` seconds)."""
        self._accepting = False
        for task in self._source_tasks:
            task.cancel()
        for task in self._source_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._source_tasks.clear()
        if self._run_tasks:
            _done, pending = await asyncio.wait(self._run_tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def idle(self) -> None:
        """Wait until no run is in flight."""
        while self._run_tasks:
            await asyncio.wait(set(self._run_tasks))

    # -- events ------------------------------------------------------------------------

    def webhook_url(self, provider: str) -> str | None:
        """Where providers should post results; None while polling alone."""
        return None

    def note_submission(self, generation: Generation) -> None:
        self._submitted.add(generation.id)
        self.poller.track(generation)

    async def submit_event(self, event: Event, *, only_automation: str | None = None) -> bool:
        """Record an event once and start the runs it triggers; False for a repeat.

        An event whose source is "seed" (what already existed at first start) is
        recorded without running anything: the Zapier rule.
        """
        if event.key in self._seen or not self._accepting:
            return False
        self._seen.add(event.key)
        if event.source == "seed":
            return False
        if event.generation is not None and event.generation.id in self._submitted:
            event = _with_submitted(event)
        for listener in self.event_listeners:
            listener(event)
        for automation in self.config.automations:
            if not automation.enabled:
                continue
            if only_automation is not None and automation.id != only_automation:
                continue
            if only_automation is None and not self._matches(automation, event):
                continue
            task = asyncio.create_task(self._run(automation, event), name=automation.id)
            self._run_tasks.add(task)
            task.add_done_callback(self._run_tasks.discard)
        return True

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

    async def _run(self, automation: AutomationConfig, event: Event) -> None:
        run = RunRecord(run_id=uuid.uuid4().hex[:12], automation_id=automation.id, event=event)
        self.runs.append(run)
        async with self._slots:
            try:
                await self._perform(automation, run)
            except Exception as err:  # a bug in an action must not take the runtime down
                _LOGGER.exception("run %s of %s crashed", run.run_id, automation.id)
                run.status = "failed"
                run.error = f"{type(err).__name__}: {err}"
            finally:
                run.finished_at = datetime.now(UTC)
                for listener in self.run_listeners:
                    listener(run)

    async def _perform(self, automation: AutomationConfig, run: RunRecord) -> None:
        steps: dict[str, Any] = {}
        variables: dict[str, Any] = {
            "trigger": run.event.variables(),
            "steps": steps,
            "automation": {"id": automation.id, "alias": automation.alias},
        }
        for index, condition in enumerate(automation.conditions):
            try:
                passed = (
                    condition.render(variables) if isinstance(condition, Template) else condition
                )
            except TemplateError as err:
                run.status, run.error = "failed", f"conditions[{index}]: {err}"
                return
            if not passed:
                run.status = "skipped"
                run.error = f"conditions[{index}] is false"
                return
        for step in automation.actions:
            record = StepRecord(step_id=step.id, action=step.action)
            run.steps.append(record)
            try:
                output = await self._perform_step(run, step, variables)
            except (TemplateError, vol.Invalid, FinetuningError, ValueError) as err:
                record.status, record.error = "failed", _describe(step, err)
                record.finished_at = datetime.now(UTC)
                run.status, run.error = "failed", record.error
                self._step_done(run, record)
                return
            record.status, record.output = "succeeded", output
            record.finished_at = datetime.now(UTC)
            steps[step.id] = dict(output)
            self._step_done(run, record)
        run.status = "succeeded"

    def _step_done(self, run: RunRecord, record: StepRecord) -> None:
        for listener in self.step_listeners:
            listener(run, record)

    async def _perform_step(
        self, run: RunRecord, step: StepConfig, variables: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        spec = self.registry.actions[step.action]
        options = spec.schema(render(step.options, variables))
        context = ActionContext(self, run, step, variables)
        return await spec.run(context, options)


def _with_submitted(event: Event) -> Event:
    from dataclasses import replace

    return replace(event, submitted_by_connector=True)


def _describe(step: StepConfig, err: Exception) -> str:
    if isinstance(err, vol.MultipleInvalid):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or '(options)'}: {e.msg}" for e in err.errors
        )
        return f"{step.id} ({step.action}): invalid options after rendering: {problems}"
    if isinstance(err, vol.Invalid):
        return f"{step.id} ({step.action}): {err.msg}"
    return f"{step.id} ({step.action}): {err}"
