"""What `ftconnect run` and `demo` print as things happen: each trigger as it fires, each
step as it finishes, each run's outcome, one line each and scrubbed of secrets."""

from __future__ import annotations

from typing import TextIO

from connector.dispatch.records import RunRecord, StepRecord
from connector.dispatch.runtime import Runtime
from connector.events import Event
from connector.redaction import dumps, scrub_text


def describe_event(event: Event) -> str:
    """One human line for an event."""
    generation = event.generation
    if generation is None:
        return f"trigger {event.kind}: {dumps(event.data)}"
    if event.kind == "generation_failed":
        return f"trigger {event.kind}: {generation.id} ({generation.error_message})"
    length = f", {generation.duration:.1f} s" if generation.duration is not None else ""
    return (
        f"trigger {event.kind}: {generation.id} {generation.title or generation.prompt!r}{length}"
    )


def describe_step(run: RunRecord, step: StepRecord) -> str:
    """One human line for a finished action step."""
    where = f"  {run.automation_id}/{step.step_id} {step.action}"
    if step.status == "succeeded":
        return f"{where}: ok {_summarise(dict(step.output or {}))}"
    return f"{where}: FAILED {step.error}"


def describe_run(run: RunRecord) -> str:
    """One human line for the outcome of a run (its steps are printed as they finish)."""
    if run.status == "succeeded":
        return f"  {run.automation_id}: done ({len(run.steps)} step(s))"
    if run.status == "skipped":
        return f"  {run.automation_id}: skipped ({run.error})"
    return f"  {run.automation_id}: {run.status}" + (f" ({run.error})" if run.error else "")


def watch(runtime: Runtime, out: TextIO) -> None:
    """Print each trigger as it fires, each step as it finishes, each run's outcome."""

    # Scrubbed as the journal is: a provider's error text or a title may quote a secret.
    def say(line: str) -> None:
        print(scrub_text(line), file=out, flush=True)

    runtime.event_listeners.append(lambda e: say(describe_event(e)))
    runtime.step_listeners.append(lambda r, s: say(describe_step(r, s)))
    runtime.run_listeners.append(lambda r: say(describe_run(r)))


def _summarise(output: dict[str, object]) -> str:
    keep = {k: v for k, v in output.items() if k not in ("generation",) and v not in ([], None)}
    text = dumps(keep)
    return text if len(text) <= 160 else text[:157] + "..."
