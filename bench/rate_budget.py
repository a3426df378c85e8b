"""Rate budgets: how much of the server's ceiling the client sustains, and its 429s.

The sandbox enforces the documented limits (60 reads and bulk calls, 10
submissions per window per account, sliding windows) on a faster window so
several windows fit in a short run. One `FinetuningClient`, with budgets that
mirror those limits on the same window, is driven as hard as its callers can:
readers calling GET /v1/me and submitters calling POST /v1/generations, all at
once. The sandbox's request log is the ground truth for what was accepted and
for every 429.

The client frees a slot one window after the answer (not the request)
arrived, so the server, whichever way it counts, never sees more than the
limit; the price is that each slot idles for one round trip per window, so the
expected fraction of the ceiling is window / (window + round trip), the round
trip being how long a slot is held (taken -> answer), queueing at the server
behind the rest of a burst included.

The sustained fraction is measured as window / mean(t[i + limit] - t[i]) over
the accepted requests' arrival times t at the server: at exactly the ceiling,
request i + limit arrives one window after request i. (Counting requests in a
stretch of windows would be quantized by the bursts a flat-out client makes;
that count is shown too, next to the ceiling for the same stretch.)

    .venv/bin/python bench/rate_budget.py [--quick] [--window SECONDS] [--windows N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Figure,
    parse_args,
    print_table,
    ratio,
    report,
)

READ_LIMIT = 60
GENERATION_LIMIT = 10
WINDOW = 2.0
WINDOWS = 12
QUICK_WINDOW = 1.0
QUICK_WINDOWS = 5
READERS = 16
SUBMITTERS = 4
TARGET = 0.95


@dataclass
class BucketResult:
    bucket: str  # "read" or "generation"
    limit: int
    window: float
    accepted: int  # answered 2xx within the measured stretch
    accepted_total: int  # over the whole run, opening burst included
    rejected_429: int  # over the whole run
    other_errors: int
    measured_seconds: float
    round_trip: float  # mean seconds a slot is held: taken -> answer (waits excluded)
    max_in_window: int  # the most accepted requests any window of the server's saw
    mean_gap: float  # mean of t[i + limit] - t[i] over accepted arrivals (seconds)
    phantoms: int  # slots held back for a window on the server's X-RateLimit-Remaining

    @property
    def ceiling(self) -> float:
        return self.limit * self.measured_seconds / self.window

    @property
    def counted_fraction(self) -> float:
        return ratio(self.accepted, self.ceiling)

    @property
    def sustained(self) -> float:
        return ratio(self.window, self.mean_gap)


@dataclass
class RateResult:
    window: float
    windows: int
    buckets: dict[str, BucketResult]

    @property
    def total_429(self) -> int:
        return sum(b.rejected_429 for b in self.buckets.values())


# When the calling task last got a slot: a contextvar set inside acquire(), which
# runs in the caller's task, so the caller reads its own value afterwards.
_slot_taken: contextvars.ContextVar[float] = contextvars.ContextVar("slot_taken")


def _timed_budget_class() -> type:
    from connector.providers.ratelimit import RateBudget

    class TimedBudget(RateBudget):
        """A RateBudget that notes when each caller got its slot, and counts the
        phantom slots `observe` adds (the server reporting more use than ours)."""

        phantoms = 0

        async def acquire(self) -> int:
            used = await super().acquire()
            _slot_taken.set(time.monotonic())
            return used

        def observe(self, limit: int | None, remaining: int | None, used_at_send: int) -> None:
            if remaining is not None:
                effective = limit if limit is not None and 0 < limit < self.limit else self.limit
                self.phantoms += max(0, effective - max(0, remaining) - used_at_send)
            super().observe(limit, remaining, used_at_send)

    return TimedBudget


def _mean_gap(times: list[float], limit: int) -> float:
    """Mean time from one accepted request to the `limit`-th after it."""
    gaps = [times[i + limit] - times[i] for i in range(len(times) - limit)]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def _max_in_window(times: list[float], window: float) -> int:
    """The most events inside any half-open window of `window` seconds."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def measure(
    window: float = WINDOW,
    windows: int = WINDOWS,
    *,
    readers: int = READERS,
    submitters: int = SUBMITTERS,
) -> RateResult:
    """Drive one client flat out for `windows` windows; read the sandbox's log."""
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.finetuning.models import GenerationRequest
    from connector.sandbox import SandboxConfig, run_sandbox

    _TimedBudget = _timed_budget_class()
    config = SandboxConfig(
        read_limit=READ_LIMIT,
        generation_limit=GENERATION_LIMIT,
        rate_window=window,
        pending_delay=0.05,
        processing_delay=0.1,
        max_in_progress=100_000,
    )
    for account in config.accounts:
        account.monthly_generations = 1_000_000
    latencies: dict[str, list[float]] = {"read": [], "generation": []}
    async with run_sandbox(config) as handle:
        sandbox = handle.sandbox
        client = FinetuningClient(
            handle.api_key,
            base_url=handle.url,
            read_budget=_TimedBudget(READ_LIMIT, window, name="reads"),
            generation_budget=_TimedBudget(GENERATION_LIMIT, window, name="generations"),
        )
        async with client:
            await client.health()  # open the connection pool outside the measurement
            logged = len(sandbox.requests)
            started_wall = sandbox.clock.time()
            deadline = time.monotonic() + windows * window
            request = GenerationRequest(tags="bench rate budget", duration=5)

            async def loop(bucket: str) -> None:
                # Bounded in time (the deadline) and in count (the ceiling, twice over).
                limit = READ_LIMIT if bucket == "read" else GENERATION_LIMIT
                for _ in range(2 * limit * windows):
                    if time.monotonic() >= deadline:
                        return
                    if bucket == "read":
                        await client.get_account()
                    else:
                        await client.create_generation(request)
                    latencies[bucket].append(time.monotonic() - _slot_taken.get())

            tasks = [asyncio.create_task(loop("read")) for _ in range(readers)]
            tasks += [asyncio.create_task(loop("generation")) for _ in range(submitters)]
            # A caller waiting for a slot at the deadline is cancelled, not awaited.
            await asyncio.wait(tasks, timeout=windows * window + 5 * window)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            errors = [e for e in errors if not isinstance(e, asyncio.CancelledError)]
            if errors:
                raise errors[0]
        records = [r for r in sandbox.requests[logged:] if r.bucket is not None]
        phantoms = {
            "read": client.read_budget.phantoms,
            "generation": client.generation_budget.phantoms,
        }
    measured_from = started_wall + window
    measured_to = started_wall + windows * window
    buckets = {}
    for bucket, limit in (("read", READ_LIMIT), ("generation", GENERATION_LIMIT)):
        mine = [r for r in records if r.bucket == bucket]
        ok = [r for r in mine if r.status is not None and 200 <= r.status < 300]
        arrivals = sorted(r.at for r in ok)
        buckets[bucket] = BucketResult(
            bucket=bucket,
            limit=limit,
            window=window,
            accepted=sum(1 for r in ok if measured_from <= r.at < measured_to),
            accepted_total=len(ok),
            rejected_429=sum(1 for r in mine if r.status == 429),
            other_errors=sum(1 for r in mine if r.status is None or r.status >= 300)
            - sum(1 for r in mine if r.status == 429),
            measured_seconds=measured_to - measured_from,
            round_trip=mean(latencies[bucket]) if latencies[bucket] else float("nan"),
            max_in_window=_max_in_window(arrivals, window),
            mean_gap=_mean_gap(arrivals, limit),
            phantoms=phantoms[bucket],
        )
    return RateResult(window, windows, buckets)


def figures(result: RateResult) -> list[Figure]:
    out = []
    for bucket in result.buckets.values():
        expected = result.window / (result.window + bucket.round_trip)
        out.append(
            Figure(
                name=f"{bucket.bucket}s: sustained rate / ceiling",
                value=bucket.sustained,
                unit="of ceiling",
                target=f">= {TARGET}",
                met=bucket.sustained >= TARGET,
                note=f"window/(window+round trip) = {expected:.3f}",
            )
        )
    out.append(
        Figure(
            name="429 answers (sandbox ground truth, both buckets)",
            value=result.total_429,
            unit="count",
            target="= 0",
            met=result.total_429 == 0,
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--window", type=float, help=f"seconds (default {WINDOW:g})")
        parser.add_argument("--windows", type=int, help=f"windows to run (default {WINDOWS})")

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    started = time.monotonic()
    window = args.window or (QUICK_WINDOW if args.quick else WINDOW)
    windows = args.windows or (QUICK_WINDOWS if args.quick else WINDOWS)
    result = asyncio.run(measure(window, windows))
    print_table(
        f"one client flat out for {windows} windows of {window:g} s "
        f"({READERS} readers, {SUBMITTERS} submitters)",
        (
            "bucket",
            "limit/window",
            "accepted (windows 2..)",
            "ceiling (same)",
            "accepted (whole run)",
            "max in any window",
            "mean t[i+limit]-t[i] s",
            "429s",
            "other errors",
            "slot round trip ms (mean)",
            "phantom slots",
        ),
        [
            (
                b.bucket,
                b.limit,
                b.accepted,
                b.ceiling,
                b.accepted_total,
                b.max_in_window,
                b.mean_gap,
                b.rejected_429,
                b.other_errors,
                b.round_trip * 1000,
                b.phantoms,
            )
            for b in result.buckets.values()
        ],
    )
    report("rate_budget", figures(result), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
