"""CLI start-up: `ftconnect --help` against `python -c "import aiohttp"`, interleaved.

`ftconnect` imports only argparse, os, sys and its own small command modules
(no aiohttp, pydantic or client) before it knows the command, so its help
should cost about a bare interpreter start. The baseline is a Python
start that imports aiohttp, which any command touching the network pays
anyway: `--help` should not cost more than 1.5 times that. Each run is a fresh
process; the two commands alternate (ABBA) and the figure is the ratio of the
medians.

    .venv/bin/python bench/cli_startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Figure,
    interleaved,
    median,
    parse_args,
    percentile,
    print_table,
    ratio,
    report,
)

RUNS = 20
QUICK_RUNS = 6
TARGET = 1.5


def ftconnect_command() -> list[str]:
    """The installed console script beside this interpreter, else `-m connector.cli`."""
    script = Path(sys.executable).parent / "ftconnect"
    if script.exists():
        return [str(script), "--help"]
    return [sys.executable, "-m", "connector.cli", "--help"]


COMMANDS: dict[str, list[str]] = {
    "ftconnect --help": ftconnect_command(),
    "python -m connector.cli --help": [sys.executable, "-m", "connector.cli", "--help"],
    'python -c "import aiohttp"': [sys.executable, "-c", "import aiohttp"],
}
BASELINE = 'python -c "import aiohttp"'


@dataclass
class StartupResult:
    seconds: dict[str, list[float]]  # by command label

    def median(self, label: str) -> float:
        return median(self.seconds[label])


def run_once(command: Sequence[str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}")
    return elapsed


def measure(runs: int = RUNS, commands: dict[str, list[str]] | None = None) -> StartupResult:
    """Each command `runs` times, interleaved (after one unmeasured warm-up run each)."""
    commands = commands or COMMANDS
    for command in commands.values():
        run_once(command)  # warm the page cache and the bytecode caches
    seconds = interleaved(
        runs, {label: (lambda _i, c=command: run_once(c)) for label, command in commands.items()}
    )
    return StartupResult(seconds)


def figures(result: StartupResult) -> list[Figure]:
    base = result.median(BASELINE)
    out = []
    for label in result.seconds:
        if label == BASELINE:
            continue
        value = ratio(result.median(label), base)
        main = label == "ftconnect --help"
        out.append(
            Figure(
                name=f"{label} / import aiohttp (medians)",
                value=value,
                unit="x",
                target=f"<= {TARGET}" if main else "",
                met=value <= TARGET if main else None,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--runs", type=int, help=f"runs per command (default {RUNS})")

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    started = time.monotonic()
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    result = measure(runs)
    print_table(
        f"start-up, {runs} interleaved runs each (milliseconds)",
        ("command", "p10", "median", "p90"),
        [
            (
                label,
                percentile(values, 10) * 1000,
                median(values) * 1000,
                percentile(values, 90) * 1000,
            )
            for label, values in result.seconds.items()
        ],
    )
    report("cli_startup", figures(result), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
