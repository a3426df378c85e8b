"""Helpers shared by the benchmarks: percentiles, interleaved rounds, tables, figures.

Every benchmark measures the thing and its baseline side by side in one run
and reports ratios, because the machine is shared and noisy: an absolute
number from one moment says little, a ratio measured in the same minute says
more. Nothing here asserts a target; the figures say whether it was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"

T = TypeVar("T")

# A key of the documented shape for clients that never reach a server.
DUMMY_API_KEY = "ft_live_" + "0" * 32


# A webhook token with characters that URL encoding changes, as a real one may have.
WEBHOOK_TOKEN = "bench-9fK2+x/Q7=zP4"


def webhook_payload(generation_id: str, index: int = 0) -> dict[str, Any]:
    """A Finetuning.ai webhook body as the sandbox sends it (about 450 bytes of JSON)."""
    return {
        "id": generation_id,
        "status": "completed",
        "audioUrl": f"https://cdn.finetuning.ai/{generation_id}.mp3",
        "duration": 90.3,
        "prompt": f"lofi chill piano, vinyl crackle, rainy night #{index}",
        "parameters": {
            "bpm": 80,
            "duration": 90,
            "keyscale": "A minor",
            "timesignature": "4",
            "seed": index,
        },
        "createdAt": "2025-06-15T10:00:00.000Z",
        "completedAt": "2025-06-15T10:01:30.000Z",
    }


def webhook_body(generation_id: str, index: int = 0) -> bytes:
    return json.dumps(webhook_payload(generation_id, index)).encode()


# -- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * min(100.0, max(0.0, pct)) / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 or NaN."""
    if not denominator or math.isnan(denominator):
        return math.nan
    return numerator / denominator


# -- interleaved rounds -----------------------------------------------------------------


def round_order(names: Sequence[str], round_index: int) -> list[str]:
    """Variants in order on even rounds and reversed on odd ones (ABBA), so neither
    always goes first (warm caches) or last (a neighbour's job starting)."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def interleaved(rounds: int, variants: Mapping[str, Callable[[int], T]]) -> dict[str, list[T]]:
    """Run every variant once per round, alternating the order; results by variant."""
    results: dict[str, list[T]] = {name: [] for name in variants}
    for index in range(rounds):
        for name in round_order(list(variants), index):
            results[name].append(variants[name](index))
    return results


async def interleaved_async(
    rounds: int, variants: Mapping[str, Callable[[int], Awaitable[T]]]
) -> dict[str, list[T]]:
    """`interleaved` for coroutine functions."""
    results: dict[str, list[T]] = {name: [] for name in variants}
    for index in range(rounds):
        for name in round_order(list(variants), index):
            results[name].append(await variants[name](index))
    return results


# -- reporting --------------------------------------------------------------------------


@dataclass
class Figure:
    """One reported figure: usually a ratio measured in this run, with its target."""

    name: str
    value: float
    unit: str = ""
    target: str = ""
    met: bool | None = None  # None: informational, no target
    note: str = ""


def fmt(value: Any) -> str:
    """A number as a table shows it: three significant digits, thousands grouped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, left-aligned, columns as wide as their widest cell."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print(f"\n{title}")
    print(table(headers, rows), flush=True)


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def report(
    benchmark: str,
    figures: Sequence[Figure],
    *,
    summary_path: str | None = None,
    started: float | None = None,
) -> None:
    """Print the figures (last thing the script prints) and save them for run_all."""
    rows = [
        (f.name, fmt(f.value), f.unit, f.target or "-", verdict(f.met), f.note) for f in figures
    ]
    print_table(
        f"== {benchmark}: figures (ratios measured side by side in this run) ==",
        ("figure", "value", "unit", "target", "verdict", "note"),
        rows,
    )
    if summary_path:
        payload = {
            "benchmark": benchmark,
            "seconds": round(time.monotonic() - started, 2) if started is not None else None,
            "figures": [asdict(f) for f in figures],
        }
        Path(summary_path).write_text(json.dumps(payload, default=str), encoding="utf-8")


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """`--quick` (a small run, < 10 s) and `--summary-json PATH` (for run_all)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small run (under 10 s)")
    parser.add_argument("--summary-json", metavar="PATH", help="also write the figures here")
    if configure is not None:
        configure(parser)
    return parser.parse_args(argv)


# -- process facts ----------------------------------------------------------------------


def rss_kib() -> int:
    """This process's resident set size in KiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- server child processes -------------------------------------------------------------
#
# The webhook benchmarks serve from a child process and load it from this one,
# so the server has its own interpreter (and GIL) as a deployed listener would,
# and the load generator's work does not count against it.


def announce(info: Mapping[str, Any]) -> None:
    """Child side: tell the parent where it listens (one JSON line on stdout)."""
    sys.stdout.write(json.dumps(dict(info)) + "\n")
    sys.stdout.flush()


async def until_stdin_closes(max_seconds: float) -> None:
    """Child side: wait until the parent closes our stdin (or `max_seconds` pass)."""
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def watch() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.read()
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closed.wait(), timeout=max_seconds)


@contextlib.contextmanager
def child_server(
    script: Path, args: Sequence[str], *, ready_timeout: float = 30.0
) -> Iterator[dict[str, Any]]:
    """Start `python script *args` and yield the JSON it announces; stop it on exit.

    The child stops when its stdin closes; one that does not within 10 s is killed.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], ready_timeout)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{script.name} child did not start (exit {process.poll()})")
        yield json.loads(line)
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


def bootstrap_path() -> None:
    """Make `import bench...` work when a script is run by its path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
