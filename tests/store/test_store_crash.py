"""Crash safety: a process SIGKILLed while recording loses nothing it reported as recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from connector.events import Event
from connector.journal.store import Store

REPO = Path(__file__).resolve().parents[2]

# The child records events (and journals a step for some) as fast as it can and
# prints each key only after record_event returned, so every printed key is a
# promise the store made.
CHILD = textwrap.dedent(
    """
    import sys
    from connector.events import Event
    from connector.journal.store import Store

    store = Store.open(sys.argv[1])
    print("ready", flush=True)
    for number in range(1_000_000):
        key = f"crash:{number}"
        runs = [(f"run{number}", "auto")] if number % 3 == 0 else []
        store.record_event(Event(kind="schedule", key=key, data={"n": number}), runs=runs)
        if runs:
            store.step_started(f"run{number}", 0, "s", "generate")
        print(key, flush=True)
    """
)


def test_events_reported_as_recorded_survive_sigkill(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        reported: list[str] = []
        while len(reported) < 400:
            line = child.stdout.readline()
            assert line.endswith("\n"), "the child stopped before it was killed"
            reported.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        # Whatever it printed before dying counts too; a torn last line does not.
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        child.stdout.close()
    reported.extend(line for line in rest.split("\n")[:-1] if line)
    assert child.returncode == -signal.SIGKILL

    with Store.open(state_dir) as store:
        assert store.check() == []
        missing = [key for key in reported if not store.has_event(key)]
        assert missing == []
        # Runs that were cut off show up for resumption, each with its step running.
        unfinished = {run.run_id: run for run in store.unfinished_runs()}
        for key in reported:
            number = int(key.split(":")[1])
            if number % 3 == 0:
                run = unfinished[f"run{number}"]
                assert [(s.step_index, s.status) for s in run.steps] == [(0, "running")]
        # And the journal carries on.
        assert store.record_event(Event(kind="schedule", key="after-crash")) is True
