"""Run every benchmark (with --quick unless --full) and print one summary table.

Each benchmark runs in its own process, one after another, and writes its
figures to a temporary JSON file; the summary table gathers them. A
benchmark that fails or overruns its time limit shows up as such in the table
(and makes this script exit 1); a missed target does not: the benchmarks
report, they do not assert.

    .venv/bin/python bench/run_all.py [--full] [--verbose] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BENCH_DIR, ROOT, fmt, print_table, verdict

BENCHMARKS = (
    "webhook_ingest",
    "trigger_latency",
    "api_latency",
    "rate_budget",
    "poll_economy",
    "bulk",
    "memory_storage",
    "cli_startup",
)
QUICK_TIMEOUT = 60.0  # generous: a quick run takes under 10 s on an idle machine
FULL_TIMEOUT = 180.0


def run_one(name: str, *, full: bool, verbose: bool) -> tuple[dict[str, object] | None, str]:
    """Run one benchmark; its summary (None on failure) and a status word."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ftbench-") as directory:
        summary = Path(directory) / "summary.json"
        command = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--summary-json", str(summary)]
        if not full:
            command.append("--quick")
        started = time.monotonic()
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=FULL_TIMEOUT if full else QUICK_TIMEOUT,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "timed out"
        elapsed = time.monotonic() - started
        if verbose or completed.returncode != 0:
            print(f"\n##### {name} ({elapsed:.1f} s, exit {completed.returncode})")
            print(completed.stdout.rstrip())
            if completed.stderr.strip():
                print(completed.stderr.rstrip(), file=sys.stderr)
        if completed.returncode != 0 or not summary.exists():
            return None, f"failed (exit {completed.returncode})"
        data: dict[str, object] = json.loads(summary.read_text(encoding="utf-8"))
        data["seconds"] = round(elapsed, 1)
        return data, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size runs (slower)")
    parser.add_argument("--verbose", action="store_true", help="print each benchmark's output")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    rows = []
    failed = 0
    for name in args.only or BENCHMARKS:
        print(f"running {name}{'' if args.full else ' --quick'} ...", flush=True)
        data, status = run_one(name, full=args.full, verbose=args.verbose)
        if data is None:
            failed += 1
            rows.append((name, status, "", "", "", "", ""))
            continue
        figures = data["figures"]
        assert isinstance(figures, list)
        for figure in figures:
            rows.append(
                (
                    name,
                    figure["name"],
                    fmt(figure["value"]),
                    figure["unit"],
                    figure["target"] or "-",
                    verdict(figure["met"]),
                    f"{data['seconds']} s",
                )
            )
    print_table(
        f"== summary ({'full' if args.full else 'quick'} runs; ratios measured in each run) ==",
        ("benchmark", "figure", "value", "unit", "target", "verdict", "run time"),
        rows,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
