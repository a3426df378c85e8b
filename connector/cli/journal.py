"""`ftconnect events`, `runs` and `replay`: what the journal says fired and ran.

They only read the journal (replay queues a run in it): they need the automations file
for its `state_dir` alone, and read that even when the file's secrets cannot be
resolved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from connector.automation.loader import load_config
from connector.automation.problems import ConfigError
from connector.automation.schema import DEFAULT_STATE_DIR
from connector.cli.output import EXIT_ERROR, EXIT_INVALID, EXIT_OK
from connector.cli.rawfile import RawFile
from connector.journal.lock import holder
from connector.journal.store import Store
from connector.redaction import dumps

SEEDED = "seed"  # the journal's `source` of an event recorded at first start without firing


def journal_command(args: argparse.Namespace) -> int:
    """`events`, `runs` or `replay`, as ARGS name it."""
    try:
        state = state_dir_for(args.file, args.state_dir)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    if args.command == "events":
        return show_events(state, limit=args.limit, kind=args.kind, as_json=args.json)
    if args.command == "runs":
        return show_runs(
            state,
            limit=args.limit,
            status=args.status,
            automation=args.automation,
            as_json=args.json,
        )
    return replay(state, args.run_id)


def state_dir_for(file: str | None, state_dir: str | None) -> Path:
    """The journal's folder: --state-dir, else the file's `state_dir`, else ./.ftconnect.

    Reading the journal needs nothing else from the file: when it does not load (a
    secret that cannot be resolved here, a problem elsewhere in it), its `state_dir`
    is read alone. Raises ConfigError when even that cannot be told.
    """
    if state_dir:
        return Path(state_dir)
    if not file:
        return Path(DEFAULT_STATE_DIR)
    try:
        return load_config(Path(file)).state_dir
    except ConfigError:
        raw = RawFile.read(Path(file))
        found = raw.state_dir() if raw is not None else None
        if found is None:
            raise
        return found


def _no_journal(state: Path) -> bool:
    """Say so when there is no journal to read (rather than creating an empty one)."""
    if (state / "state.db").exists():
        return False
    print(f"ftconnect: error: no journal in {state} (has `ftconnect run` run?)", file=sys.stderr)
    return True


def show_events(state: Path, *, limit: int, kind: str | None, as_json: bool) -> int:
    """`ftconnect events`: what fired, newest first."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        rows = store.events(limit=limit, kind=kind)
    if as_json:
        print(dumps([row.to_dict() for row in rows], indent=2))
        return EXIT_OK
    for row in rows:
        generation = row.generation or {}
        what = generation.get("title") or generation.get("prompt") or dumps(row.data)
        # Seeded: found at first start and recorded without firing (poll.backfill: false).
        fired = "seeded" if row.source == SEEDED else "fired"
        print(f"{row.received_at:%Y-%m-%d %H:%M:%S}  {row.kind:<18} {fired:<6}  {row.key}  {what}")
    if any(row.source == SEEDED for row in rows):
        print(
            "seeded: already there at the first start, recorded without firing "
            "(poll.backfill: true, or `run --backfill`, fires for them)",
            file=sys.stderr,
        )
    return EXIT_OK


def show_runs(
    state: Path, *, limit: int, status: str | None, automation: str | None, as_json: bool
) -> int:
    """`ftconnect runs`: what ran, what failed and why."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        rows = store.runs(limit=limit, status=status, automation_id=automation)
    if as_json:
        print(dumps([row.to_dict() for row in rows], indent=2))
        return EXIT_OK
    daemon = holder(state)
    for row in rows:
        started = f"{row.started_at:%Y-%m-%d %H:%M:%S}"
        status = row.status
        if status == "running" and daemon is None:
            # Nothing runs it now: say when it will, rather than "running".
            # `running` as --status names it, and what that means with no daemon.
            status = "running (queued: no daemon runs it; it starts with `ftconnect run`)"
        print(f"{started}  {row.run_id}  {row.automation_id:<24} {status}")
        for step in row.steps:
            detail = step.error or ""
            print(f"    {step.step_index}: {step.step_id} ({step.action}) {step.status} {detail}")
        if row.error and row.status != "failed":
            print(f"    {row.error}")
    return EXIT_OK


def replay(state: Path, run_id: str) -> int:
    """`ftconnect replay RUN_ID`: run a finished or failed run again, on purpose."""
    if _no_journal(state):
        return EXIT_ERROR
    with Store.open(state) as store:
        try:
            new_id = store.reset_run_for_replay(run_id)
        except (ValueError, KeyError) as err:
            print(f"ftconnect: error: {err}", file=sys.stderr)
            return EXIT_ERROR
    pid = holder(state)
    if pid is not None:
        daemon = f"process {pid}" if pid else "the running daemon"
        print(f"run {run_id} runs again as {new_id} now, in `ftconnect run` ({daemon})")
    else:
        print(f"run {run_id} will run again as {new_id} at the next start of `ftconnect run`")
    return EXIT_OK
