"""Trigger latency: from a webhook's arrival to its automation's first action starting.

A child process serves two things: the webhook listener wired to a `Runtime`
(`record` = `Runtime.submit_event`, a real `Store` in a temporary directory)
whose one automation fires on `track_completed` and whose first action is a
tiny plugin action, registered in a hand-built `Registry`, that notes the
moment it starts (`time.monotonic()`, the same clock in every process); and a
bare aiohttp handler that reads the body and answers 200.

Each server runs in its own child process. This process sends webhook
deliveries open-loop at a steady rate to each (100/s to the listener and 100/s
to the bare handler, alternating, so both see the same moments of a noisy
machine; each is sent on schedule whether or not earlier ones were answered),
each with a unique generation id, noting when each was sent. For the listener
it measures sent -> action started (what a user waits for: token check, parse,
journal write of the event and its run, dispatch, the step journalled as
started, options rendered); for the bare handler, sent -> answer received (one
HTTP round trip at the same rate). Percentiles are over all samples of all
rounds (each round alternates which server gets the first delivery). Target:
p99 of the trigger latency <= 3 x p99 of the bare round trip.

    .venv/bin/python bench/trigger_latency.py [--quick] [--rate PER_SECOND]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    DUMMY_API_KEY,
    WEBHOOK_TOKEN,
    Figure,
    announce,
    child_server,
    median,
    parse_args,
    percentile,
    print_table,
    ratio,
    report,
    round_order,
    until_stdin_closes,
    webhook_body,
)

RATE = 100.0  # deliveries per second, to each server
ROUNDS = 4
EVENTS = 400  # per round and server: 4 s at 100/s
QUICK_ROUNDS = 2
QUICK_EVENTS = 100
WARMUP = 30
SERVE_MAX_SECONDS = 300.0
TARGET = 3.0
VARIANTS = ("listener", "bare")

AUTOMATIONS = """
automations:
  - id: stamp_completed
    triggers:
      - trigger: track_completed
    actions:
      - action: bench_stamp
"""


@dataclass
class Sample:
    target: str  # "listener" or "bare"
    generation_id: str
    sent: float  # time.monotonic() just before the request went out
    answered: float = 0.0
    status: int = 0


@dataclass
class LatencyResult:
    rate: float
    trigger: list[float] = field(default_factory=list)  # listener: sent -> action start
    listener_rtt: list[float] = field(default_factory=list)  # listener: sent -> 200
    bare_rtt: list[float] = field(default_factory=list)  # bare: sent -> 200
    sent: dict[str, int] = field(default_factory=dict)
    not_ok: dict[str, int] = field(default_factory=dict)
    not_started: int = 0  # listener deliveries whose action never started
    late_starts: int = 0  # sends that went out more than 10 ms behind schedule
    run_statuses: dict[str, int] = field(default_factory=dict)
    round_p99_ratios: list[float] = field(default_factory=list)  # one per round


# -- the child: runtime behind the listener, and the bare handler -------------------------


async def _serve(role: str) -> None:
    from aiohttp import web

    if role == "bare":
        app = web.Application()
        app.router.add_post("/hooks/finetuning", _bare)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            announce({"url": f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/finetuning"})
            await until_stdin_closes(SERVE_MAX_SECONDS)
        finally:
            await runner.cleanup()
        return
    await _serve_listener()


async def _bare(request: Any) -> Any:
    from aiohttp import web

    await request.read()
    return web.Response(text='{"ok":true}', content_type="application/json")


async def _serve_listener() -> None:
    import tempfile

    import voluptuous as vol
    from aiohttp import web

    from connector.automation.loader import parse_config
    from connector.automation.registry import Registry, default_registry
    from connector.automation.specs import ActionSpec
    from connector.dispatch.runtime import Runtime
    from connector.ingress.webhooks import WebhookListener
    from connector.journal.store import Store
    from connector.providers.finetuning.client import FinetuningClient

    starts: dict[str, float] = {}

    async def stamp(context: Any, _options: Any) -> dict[str, Any]:
        started = time.monotonic()
        generation = context.event.generation
        starts.setdefault(generation.id if generation is not None else context.event.key, started)
        return {}

    registry = Registry()
    registry.add_trigger(
        default_registry().triggers["track_completed"], "connector.triggers.track_completed"
    )
    registry.add_action(
        ActionSpec(
            key="bench_stamp",
            title="Stamp",
            description="Notes when it starts (benchmark).",
            schema=vol.Schema({}),
            example={"action": "bench_stamp"},
            run=stamp,
        ),
        "bench.trigger_latency",
    )
    with tempfile.TemporaryDirectory(prefix="ftbench-trigger-") as directory:
        config = parse_config(AUTOMATIONS, registry=registry, base_dir=Path(directory), environ={})
        store = Store.open(Path(directory) / "state")
        # Never called: the automation's only action is the stamp.
        client = FinetuningClient(DUMMY_API_KEY, base_url="http://127.0.0.1:9")
        runtime = Runtime(config, client, registry=registry, store=store)
        # As Runtime.start() does: WAL checkpoints off the event loop.
        store.defer_checkpoints()
        checkpoints = asyncio.create_task(runtime.checkpoint_periodically())
        listener = WebhookListener(
            token=WEBHOOK_TOKEN, record=runtime.submit_event, host="127.0.0.1", port=0
        )
        await listener.start()

        async def stats(_request: web.Request) -> web.Response:
            await runtime.idle()
            statuses: dict[str, int] = {}
            for run in runtime.runs:
                statuses[run.status] = statuses.get(run.status, 0) + 1
            return web.json_response({"starts": starts, "runs": statuses})

        # The statistics are served on a port of their own, asked for once at the end.
        app = web.Application()
        app.router.add_get("/_stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            announce(
                {
                    "url": listener.hook_url("finetuning"),
                    "stats": f"http://127.0.0.1:{runner.addresses[0][1]}/_stats",
                }
            )
            await until_stdin_closes(SERVE_MAX_SECONDS)
        finally:
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            await listener.stop()
            await runtime.stop(grace=5.0)
            await runner.cleanup()
            await client.close()
            store.close()


# -- the sender ----------------------------------------------------------------------------


async def paced(
    session: Any, urls: dict[str, str], order: list[str], count: int, rate: float
) -> tuple[list[Sample], int]:
    """Send `count` deliveries to each server at `rate` per second each, alternating
    in `order`, on a fixed schedule (open loop)."""
    headers = {"Content-Type": "application/json"}
    samples: list[Sample] = []
    late = 0

    async def send(sample: Sample, body: bytes) -> None:
        sample.sent = time.monotonic()
        async with session.post(urls[sample.target], data=body, headers=headers) as response:
            await response.read()
            sample.answered = time.monotonic()
            sample.status = response.status

    tasks = []
    step = 1.0 / (rate * len(order))
    start = time.monotonic() + 0.02
    for index in range(count * len(order)):
        generation_id = str(uuid.uuid4())
        body = webhook_body(generation_id, index)
        delay = start + index * step - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            late += 1
        sample = Sample(order[index % len(order)], generation_id, 0.0)
        samples.append(sample)
        tasks.append(asyncio.create_task(send(sample, body)))
    # Bounded: every request has its own timeout in the session; this caps the batch.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30.0)
    return samples, late


async def measure(rounds: int = ROUNDS, events: int = EVENTS, rate: float = RATE) -> LatencyResult:
    """Rounds of deliveries at a steady rate to both servers, alternating."""
    import aiohttp

    result = LatencyResult(rate=rate, sent=dict.fromkeys(VARIANTS, 0))
    result.not_ok = dict.fromkeys(VARIANTS, 0)
    timeout = aiohttp.ClientTimeout(total=10.0)
    script = Path(__file__)
    with (
        child_server(script, ["--serve", "listener"]) as listener,
        child_server(script, ["--serve", "bare"]) as bare,
    ):
        urls = {"listener": listener["url"], "bare": bare["url"]}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # Warm-up, unmeasured (its events stay out of the figures).
            await paced(session, urls, list(VARIANTS), WARMUP, rate)
            rounds_samples: list[list[Sample]] = []
            for index in range(rounds):
                batch, late = await paced(session, urls, round_order(VARIANTS, index), events, rate)
                rounds_samples.append(batch)
                result.late_starts += late
            async with session.get(listener["stats"]) as response:
                stats = await response.json()
    starts: dict[str, float] = stats["starts"]
    result.run_statuses = stats["runs"]
    for batch in rounds_samples:
        trigger, bare_rtt = [], []
        for sample in batch:
            result.sent[sample.target] += 1
            if sample.status != 200:
                result.not_ok[sample.target] += 1
                continue
            if sample.target == "bare":
                bare_rtt.append(sample.answered - sample.sent)
                continue
            result.listener_rtt.append(sample.answered - sample.sent)
            if sample.generation_id in starts:
                trigger.append(starts[sample.generation_id] - sample.sent)
            else:
                result.not_started += 1
        result.trigger.extend(trigger)
        result.bare_rtt.extend(bare_rtt)
        result.round_p99_ratios.append(ratio(percentile(trigger, 99), percentile(bare_rtt, 99)))
    return result


def figures(result: LatencyResult) -> list[Figure]:
    p99 = ratio(percentile(result.trigger, 99), percentile(result.bare_rtt, 99))
    p50 = ratio(percentile(result.trigger, 50), percentile(result.bare_rtt, 50))
    return [
        Figure(
            name="trigger latency p99 / bare round trip p99",
            value=p99,
            unit="x",
            target=f"<= {TARGET:g}",
            met=p99 <= TARGET,
            note=f"at {result.rate:g}/s; rounds: "
            + ", ".join(f"{r:.2f}" for r in result.round_p99_ratios),
        ),
        Figure(
            name="trigger latency p50 / bare round trip p50",
            value=p50,
            unit="x",
            note=f"at {result.rate:g}/s",
        ),
        Figure(
            name="deliveries answered 200 whose action never started",
            value=result.not_started,
            unit="count",
            target="= 0",
            met=result.not_started == 0,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--serve", choices=("listener", "bare"), help=argparse.SUPPRESS)
        parser.add_argument("--rate", type=float, default=RATE, help="deliveries per second")

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    started = time.monotonic()
    rounds, events = (QUICK_ROUNDS, QUICK_EVENTS) if args.quick else (ROUNDS, EVENTS)
    result = asyncio.run(measure(rounds, events, args.rate))
    series = {
        "listener: sent -> first action starts": result.trigger,
        "listener: sent -> 200": result.listener_rtt,
        "bare: sent -> 200 (round trip)": result.bare_rtt,
    }
    print_table(
        f"{rounds} rounds of {events} deliveries to each server at {args.rate:g}/s each, "
        "alternating (milliseconds)",
        ("series", "samples", "p50", "p90", "p99", "max"),
        [
            (
                label,
                len(values),
                median(values) * 1000,
                percentile(values, 90) * 1000,
                percentile(values, 99) * 1000,
                max(values, default=float("nan")) * 1000,
            )
            for label, values in series.items()
        ],
    )
    print(
        f"\nnon-200 answers: {result.not_ok}; runs: {result.run_statuses}; "
        f"sends more than 10 ms behind schedule: {result.late_starts}"
    )
    report("trigger_latency", figures(result), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
