"""Memory and storage: process RSS and the journal's size with retention on and off.

The journal keeps every event so a completion fires its trigger once; retention
(`Store.prune`, run hourly by the runtime) is what keeps a long-running
connector from growing without bound. This records N1 then N2 = 10 x N1
webhook-shaped events into a real `Store` on a fake clock (one event per
second) and compares, after each, the process's VmRSS and `Store.size_bytes()`:

* retention: every N1/10 events, prune what is older than N1 seconds (the
  last N1 events stay), as the runtime's retention pass would;
* no pruning: record only.

Each variant runs in its own child process (so one's memory does not show in
the other's RSS); the two run at the same time. "Flat" means the figures
after N2 events are within 10 % of those after N1.

    .venv/bin/python bench/memory_storage.py [--quick]     # 10k/100k; --quick 2k/20k
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    ROOT,
    Figure,
    parse_args,
    print_table,
    ratio,
    report,
    rss_kib,
    webhook_payload,
)

CHECKPOINTS = (10_000, 100_000)
QUICK_CHECKPOINTS = (2_000, 20_000)
VARIANTS = ("retention", "no pruning")
FLAT = 1.10  # after N2 events, at most 10 % above the figure after N1
CHILD_TIMEOUT = 150.0


@dataclass
class Checkpoint:
    events: int  # events recorded so far
    rss_kib: int
    size_bytes: int
    rows: int  # events the journal holds


@dataclass
class StorageRun:
    variant: str
    keep: int
    prune_every: int
    baseline_rss_kib: int  # after imports, the store opened and one event built
    checkpoints: list[Checkpoint] = field(default_factory=list)
    seconds: float = 0.0
    prunes: int = 0


class FakeClock:
    """Seconds since the epoch, moved by hand: one event per second."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def measure_variant(
    variant: str, checkpoints: tuple[int, ...], directory: Path, *, keep: int | None = None
) -> StorageRun:
    """Record events up to each checkpoint in this process; prune as `variant` says."""
    from connector.events import Event
    from connector.journal.store import Store
    from connector.providers.finetuning.models import Generation

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    keep = keep or checkpoints[0]
    prune_every = max(1, keep // 10)
    clock = FakeClock()
    started = time.monotonic()
    with Store.open(directory, clock=clock) as store:
        Event.for_generation(
            Generation.model_validate(webhook_payload(str(uuid.uuid4()), 0)), source="webhook"
        )
        run = StorageRun(variant, keep, prune_every, baseline_rss_kib=rss_kib())
        recorded = 0
        for target in checkpoints:
            while recorded < target:
                recorded += 1
                clock.now += 1.0
                generation = Generation.model_validate(webhook_payload(str(uuid.uuid4()), recorded))
                store.record_event(Event.for_generation(generation, source="webhook"))
                if variant == "retention" and recorded % prune_every == 0:
                    store.prune(older_than=keep)
                    run.prunes += 1
            run.checkpoints.append(
                Checkpoint(recorded, rss_kib(), store.size_bytes(), _rows(store.path))
            )
    run.seconds = round(time.monotonic() - started, 2)
    return run


def _child(variant: str, checkpoints: tuple[int, ...]) -> int:
    with tempfile.TemporaryDirectory(prefix="ftbench-store-") as directory:
        run = measure_variant(variant, checkpoints, Path(directory) / "state")
    sys.stdout.write(json.dumps(asdict(run)) + "\n")
    return 0


def measure(checkpoints: tuple[int, ...] = CHECKPOINTS) -> dict[str, StorageRun]:
    """Both variants, each in a fresh child process, side by side."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    counts = ",".join(str(c) for c in checkpoints)
    children = {
        variant: subprocess.Popen(
            [sys.executable, __file__, "--child", variant, "--checkpoints", counts],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for variant in VARIANTS
    }
    runs: dict[str, StorageRun] = {}
    deadline = time.monotonic() + CHILD_TIMEOUT
    for variant, child in children.items():
        try:
            out, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            message = f"the {variant} child took longer than {CHILD_TIMEOUT:g} s"
            raise RuntimeError(message) from None
        if child.returncode != 0:
            raise RuntimeError(f"the {variant} child exited {child.returncode}")
        data = json.loads(out.strip().splitlines()[-1])
        data["checkpoints"] = [Checkpoint(**c) for c in data["checkpoints"]]
        runs[variant] = StorageRun(**data)
    return runs


def figures(runs: dict[str, StorageRun]) -> list[Figure]:
    kept, grown = runs["retention"], runs["no pruning"]
    first, last = kept.checkpoints[0], kept.checkpoints[-1]
    n1, n2 = first.events, last.events
    size_flat = ratio(last.size_bytes, first.size_bytes)
    rss_flat = ratio(last.rss_kib, first.rss_kib)
    return [
        Figure(
            f"retention: store size after {n2:,} / after {n1:,}",
            size_flat,
            "x",
            f"<= {FLAT}",
            size_flat <= FLAT,
        ),
        Figure(
            f"retention: RSS after {n2:,} / after {n1:,}",
            rss_flat,
            "x",
            f"<= {FLAT}",
            rss_flat <= FLAT,
        ),
        Figure(
            f"no pruning: store size after {n2:,} / after {n1:,}",
            ratio(grown.checkpoints[-1].size_bytes, grown.checkpoints[0].size_bytes),
            "x",
        ),
        Figure(
            f"no pruning: RSS after {n2:,} / after {n1:,}",
            ratio(grown.checkpoints[-1].rss_kib, grown.checkpoints[0].rss_kib),
            "x",
        ),
        Figure(
            f"store size after {n2:,}: retention / no pruning",
            ratio(last.size_bytes, grown.checkpoints[-1].size_bytes),
            "x",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
        parser.add_argument("--checkpoints", help=argparse.SUPPRESS)

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    if args.checkpoints:
        checkpoints = tuple(int(c) for c in args.checkpoints.split(","))
    if args.child:
        return _child(args.child, checkpoints)
    started = time.monotonic()
    runs = measure(checkpoints)
    rows = []
    for run in runs.values():
        rows.append((run.variant, "baseline", run.baseline_rss_kib / 1024, "", "", ""))
        rows.extend(
            (
                run.variant,
                f"{c.events:,}",
                c.rss_kib / 1024,
                c.size_bytes / 1024**2,
                f"{c.rows:,}",
                f"{run.seconds:.1f} s, {run.prunes} prunes" if c is run.checkpoints[-1] else "",
            )
            for c in run.checkpoints
        )
    print_table(
        f"events recorded into a Store (retention keeps the last {runs['retention'].keep:,})",
        ("variant", "events", "RSS MiB", "store MiB", "rows kept", "time"),
        rows,
    )
    report("memory_storage", figures(runs), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
