"""Performing one run: conditions, then each step in order, each journaled before and after.

A step's options are rendered with the event and earlier outputs, validated
again by its action's schema, and handed to the action with a `StepContext`.
A step that fails ends the run; an error that is not a `ConnectorError` or a
validation error is a bug in the action, logged with its traceback, and still
only fails the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import voluptuous as vol
from pydantic.alias_generators import to_camel

from connector.automation.model import AutomationConfig, StepConfig
from connector.automation.templates import Template, TemplateError, render
from connector.dispatch.contexts import StepContext
from connector.dispatch.records import RunRecord, StepRecord, notify
from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.dispatch.runtime import Runtime

_LOGGER = logging.getLogger("connector.dispatch.runtime")


async def perform(
    runtime: Runtime, automation: AutomationConfig, run: RunRecord, done: dict[int, dict[str, Any]]
) -> None:
    """Check the conditions, then run the steps in order, each journaled before and after.

    `done` holds the outputs of steps an earlier attempt finished (a resumed run).
    """
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
                    condition.render(variables) if isinstance(condition, Template) else condition
                )
            except TemplateError as err:
                run.status, run.error = "failed", f"conditions[{index}]: {err}"
                return
            if not passed:
                run.status, run.error = "skipped", f"conditions[{index}] is false"
                return
    for index, step in enumerate(automation.actions):
        if index in done:
            steps[step.id] = template_view(done[index])
            continue
        # Rendered first, so the journal shows a running step's options; a failure to
        # render is the step's failure, journaled like any other below.
        problem: Exception | None = None
        try:
            spec = runtime.registry.actions[step.action]
            options = spec.schema(render(step.options, variables))
        except Exception as err:
            options, problem = None, err
        if index == 0 and run.first_step_journaled:
            run.first_step_journaled, attempt = False, 1  # with its options, by the call
        else:
            attempt = await runtime.journal(
                "start a step",
                runtime.store.step_started,
                run.run_id,
                index,
                step.id,
                step.action,
                options=options,
            )
        record = StepRecord(step_id=step.id, action=step.action, attempt=attempt)
        record.options = options
        run.steps.append(record)
        try:
            if problem is not None:
                raise problem
            context = StepContext(runtime, run, step, index, attempt, variables)
            output = await spec.run(context, options)
            if not isinstance(output, Mapping):
                # Checked here, so the step is journaled failed (not left running).
                raise TypeError(
                    f"action {step.action!r} returned {type(output).__name__}, not a mapping"
                )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Ours, a bad option, or a bad value (ValueError, pydantic's ValidationError
            # among them: a templated body that is not JSON, say): the step's error says it
            # all. Anything else is a bug in the action, logged with its traceback; the
            # run fails, the runtime and the journal do not.
            if not isinstance(err, ConnectorError | vol.Invalid | ValueError):
                _LOGGER.exception("step %s of run %s crashed", step.id, run.run_id)
            record.error = describe(step, err)
            await _finish_step(runtime, run, index, record, "failed")
            run.status, run.error = "failed", record.error
            return
        record.output = output
        await _finish_step(runtime, run, index, record, "succeeded")
        steps[step.id] = template_view(dict(output))
    run.status = "succeeded"


async def _finish_step(
    runtime: Runtime, run: RunRecord, index: int, record: StepRecord, status: str
) -> None:
    """Close the step's open intent, journal how it ended, tell the listeners."""
    runtime.intents.close(run.run_id, index)
    record.status, record.finished_at = status, datetime.now(UTC)
    await runtime.journal(
        "finish a step",
        runtime.store.step_finished,
        run.run_id,
        index,
        status,
        options=record.options,
        **({"error": record.error} if status == "failed" else {"output": record.output}),
    )
    notify(runtime.step_listeners, run, record)


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


def template_view(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Fields({key: template_view(item) for key, item in value.items()})
    if isinstance(value, list):
        return [template_view(item) for item in value]
    return value


def describe(step: StepConfig, err: Exception) -> str:
    """A failed step's error as the run shows it: the step, its action, what went wrong."""
    if isinstance(err, vol.MultipleInvalid):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or '(options)'}: {e.msg}" for e in err.errors
        )
        return f"{step.id} ({step.action}): invalid options after rendering: {problems}"
    if isinstance(err, vol.Invalid):
        return f"{step.id} ({step.action}): {err.msg}"
    return f"{step.id} ({step.action}): {err}"
