"""Poll economy: the reconciliation poller's requests per tick, and how fast it notices.

The poller pages GET /v1/generations newest first down to a low-water mark,
the creation time of the oldest generation it knows to be in progress. This
seeds a sandbox account with a history of completed tracks (older than
everything else) and 0, 10, 100 or 1000 generations in progress (processing,
created a few seconds apart in the last hour, left there until completed by
hand), lets the poller seed itself, then counts the list requests of further
ticks, from the poller's own counter and from the sandbox's request log.

Per simulated minute = requests per tick x 60 / the interval the poller
chose after those ticks: the idle interval when the generations are someone
else's, the active one when the connector submitted them (both raised to keep
the poller inside half of the read budget, 60/min).

Detection delay: with the poller running on a short interval, a generation
is completed at a random moment (`Sandbox.complete_now`) and the time until
the poller hands its event over is measured, relative to the interval.

    .venv/bin/python bench/poll_economy.py [--quick]
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Figure, median, parse_args, print_table, ratio, report

PENDING = (0, 10, 100, 1000)
HISTORY = 300  # completed tracks older than anything in progress
TICKS = 5
QUICK_TICKS = 2
DELAY_INTERVAL = 0.5
QUICK_DELAY_INTERVAL = 0.25
DELAY_TRIALS = 12
QUICK_DELAY_TRIALS = 4
DELAY_PENDING = (10, 1000)
QUICK_DELAY_PENDING = (10,)


@dataclass
class TickResult:
    pending: int
    seed_requests: int  # the first tick (seeding: a full scan)
    ticks: int
    requests: int  # list requests over `ticks` ticks, the poller's count
    logged: int  # the same, from the sandbox's request log
    idle_interval: float
    active_interval: float
    tick_seconds: float  # median duration of one tick

    @property
    def per_tick(self) -> float:
        return self.requests / self.ticks

    @property
    def per_minute_idle(self) -> float:
        return self.per_tick * 60 / self.idle_interval

    @property
    def per_minute_active(self) -> float:
        return self.per_tick * 60 / self.active_interval


@dataclass
class DelayResult:
    pending: int
    interval: float  # the poller's interval during the trials
    delays: list[float] = field(default_factory=list)  # seconds, one per detected trial
    missed: int = 0  # completions not detected within 5 intervals


def _world(pending: int, history: int) -> Any:
    """A sandbox config, and a function seeding history and in-progress generations."""
    from connector.sandbox import SandboxConfig

    config = SandboxConfig(
        read_limit=1_000_000,
        pending_delay=3600.0,
        processing_delay=3600.0,
        max_in_progress=1_000_000,
    )

    def seed(handle: Any) -> list[str]:
        sandbox = handle.sandbox
        account = sandbox.account_for_key(handle.api_key).name
        now = sandbox.clock.time()
        for i in range(history):
            sandbox.add_track(account, prompt=f"history {i}", created_at=now - 30 * 86_400 + i)
        ids = []
        for i in range(pending):
            generation = sandbox.add_track(
                account,
                prompt=f"in progress {i}",
                status="processing",
                created_at=now - 3600 + i * 3600 / max(1, pending),
            )
            ids.append(generation.id)
        return ids

    return config, seed


def _client(handle: Any) -> Any:
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.ratelimit import RateBudget

    # A budget that never makes the count wait (1000 in progress cost 11 requests a tick,
    # more than the production budget allows in a few ticks); the intervals reported
    # are computed with the production budget put back (see measure_ticks).
    budget = RateBudget(1_000_000, 60.0, name="reads")
    return FinetuningClient(handle.api_key, base_url=handle.url, read_budget=budget)


async def measure_ticks(
    pending: tuple[int, ...] = PENDING, *, ticks: int = TICKS, history: int = HISTORY
) -> list[TickResult]:
    """Requests per tick for each number of generations in progress."""
    from connector.ingress.poller import GenerationPoller
    from connector.providers.ratelimit import RateBudget
    from connector.sandbox import run_sandbox

    async def fire(_event: Any) -> bool:
        return True

    results = []
    for count in pending:
        config, seed = _world(count, history)
        async with run_sandbox(config) as handle:
            ids = seed(handle)
            async with _client(handle) as client:
                poller = GenerationPoller(client, fire, idle_interval=60.0, active_interval=3.0)
                await poller.poll_once()
                seed_requests = poller.requests
                logged = len(handle.sandbox.requests)
                durations = []
                for _ in range(ticks):
                    started = time.monotonic()
                    await poller.poll_once()
                    durations.append(time.monotonic() - started)
                requests = poller.requests - seed_requests
                lists = [
                    r
                    for r in handle.sandbox.requests[logged:]
                    if r.method == "GET" and r.path == "/v1/generations"
                ]
                # The intervals the poller would choose with the production budget (60/min).
                client.read_budget = RateBudget(60, 60.0, name="reads")
                idle = poller.interval
                poller.state.submitted.update(ids)  # as if the connector had submitted them
                active = poller.interval
                results.append(
                    TickResult(
                        count,
                        seed_requests,
                        ticks,
                        requests,
                        len(lists),
                        idle,
                        active,
                        median(durations),
                    )
                )
    return results


async def measure_delay(
    pending: int = 10,
    *,
    interval: float = DELAY_INTERVAL,
    trials: int = DELAY_TRIALS,
    history: int = HISTORY,
    seed: int = 7,
) -> DelayResult:
    """Complete generations at random moments; time until the running poller fires them."""
    from connector.ingress.poller import GenerationPoller
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.ratelimit import RateBudget
    from connector.sandbox import run_sandbox

    config, seed_world = _world(max(pending, trials), history)
    rng = random.Random(seed)
    fired: dict[str, float] = {}
    wakeups: dict[str, asyncio.Event] = {}

    async def fire(event: Any) -> bool:
        if event.source == "poll" and event.generation is not None:
            fired.setdefault(event.generation.id, time.monotonic())
            wakeups.setdefault(event.generation.id, asyncio.Event()).set()
        return True

    async with run_sandbox(config) as handle:
        ids = seed_world(handle)
        # A budget large enough that the short interval is not raised by the budget share.
        budget = RateBudget(1_000_000, 60.0, name="reads")
        async with FinetuningClient(handle.api_key, base_url=handle.url, read_budget=budget) as c:
            poller = GenerationPoller(c, fire, idle_interval=interval, active_interval=interval)
            await poller.poll_once()  # seed, as the runtime does before starting the loop
            task = asyncio.create_task(poller.run())
            result = DelayResult(pending, poller.interval)
            try:
                # The newest ones: the scan always reaches them, whatever the mark.
                for generation_id in ids[-trials:]:
                    await asyncio.sleep(rng.uniform(0, interval))
                    wakeup = wakeups.setdefault(generation_id, asyncio.Event())
                    handle.sandbox.complete_now(generation_id)
                    completed = time.monotonic()
                    try:
                        await asyncio.wait_for(wakeup.wait(), timeout=5 * interval + 1.0)
                    except TimeoutError:
                        result.missed += 1
                        continue
                    result.delays.append(fired[generation_id] - completed)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return result


def figures(ticks: list[TickResult], delays: list[DelayResult]) -> list[Figure]:
    out = []
    base = next((t for t in ticks if t.pending == 0), ticks[0])
    for tick in ticks:
        if tick is base:
            continue
        value = ratio(tick.per_tick, base.per_tick)
        out.append(
            Figure(
                name=f"requests/tick with {tick.pending} in progress / with {base.pending}",
                value=value,
                unit="x",
                target="= 1",
                met=value == 1.0,
                note=f"{tick.per_tick:g} vs {base.per_tick:g} per tick",
            )
        )
    for delay in delays:
        worst = ratio(max(delay.delays), delay.interval) if delay.delays else float("nan")
        out.append(
            Figure(
                name=f"detection delay, worst / interval ({delay.pending} in progress)",
                value=worst,
                unit="intervals",
                target="<= 1",
                met=bool(delay.delays) and worst <= 1.0 and delay.missed == 0,
                note=f"median {ratio(median(delay.delays), delay.interval):.2f}, "
                f"{len(delay.delays)} trials, {delay.missed} missed",
            )
        )
    return out


async def _measure(quick: bool) -> tuple[list[TickResult], list[DelayResult]]:
    ticks = await measure_ticks(PENDING, ticks=QUICK_TICKS if quick else TICKS)
    delays = [
        await measure_delay(
            pending,
            interval=QUICK_DELAY_INTERVAL if quick else DELAY_INTERVAL,
            trials=QUICK_DELAY_TRIALS if quick else DELAY_TRIALS,
        )
        for pending in (QUICK_DELAY_PENDING if quick else DELAY_PENDING)
    ]
    return ticks, delays


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.monotonic()
    ticks, delays = asyncio.run(_measure(args.quick))
    print_table(
        f"poller ticks ({HISTORY} older completed tracks; production read budget 60/min)",
        (
            "in progress",
            "first tick (seeding)",
            "requests/tick",
            "logged/tick",
            "tick ms",
            "idle interval s",
            "req/min idle",
            "active interval s",
            "req/min active",
        ),
        [
            (
                t.pending,
                t.seed_requests,
                t.per_tick,
                t.logged / t.ticks,
                t.tick_seconds * 1000,
                t.idle_interval,
                t.per_minute_idle,
                t.active_interval,
                t.per_minute_active,
            )
            for t in ticks
        ],
    )
    print_table(
        "detection delay: complete_now() to the poller firing the event",
        ("in progress", "interval s", "trials", "missed", "median s", "worst s", "worst/interval"),
        [
            (
                d.pending,
                d.interval,
                len(d.delays),
                d.missed,
                median(d.delays),
                max(d.delays, default=float("nan")),
                ratio(max(d.delays, default=float("nan")), d.interval),
            )
            for d in delays
        ],
    )
    report("poll_economy", figures(ticks, delays), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
