"""API latency: from an HTTP API call to its action starting, against a bare round trip.

A connector is opened and started as `ftconnect run` does (`open_connector`,
the embedded sandbox, an `api:` section), its registry holding one action
more: `bench_mark`, whose run function notes the moment it is entered
(`time.monotonic()`) under the mark its options carry. This process calls it
over the API, `POST /api/v1/actions/bench_mark` with a bearer token and
`{"mark": "<uuid>"}`, and measures from just before each call is sent to the
action starting: the token and scope check, the body read and validated as a
step's options, the call journaled as an event with its run (one commit), the
run dispatched, its step journaled as started.

The baseline is a bare aiohttp server on loopback, in this process too, whose
handler does nothing but answer 200: one HTTP round trip, measured the same
way (from just before sending, to the answer), with the same client session.
Calls alternate between the two, reversing the order every other call (ABBA),
one call at a time; each API call's run is let finish before the next call,
so every sample is one call on an otherwise idle connector, and both sides
share the one event loop. Target: p99 of call -> action started <= 2 x p99
of the bare round trip.

    .venv/bin/python bench/api_latency.py [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Figure,
    median,
    parse_args,
    percentile,
    print_table,
    ratio,
    report,
    round_order,
)

ROUNDS = 4
CALLS = 400  # per variant, over all rounds
QUICK_ROUNDS = 2
QUICK_CALLS = 100
WARMUP = 20  # per variant, unmeasured
START_TIMEOUT = 10.0  # seconds a call's action may take to start (or its run to end)
TARGET = 2.0
VARIANTS = ("api", "bare")
ACTION = "bench_mark"

CONFIG = """
api:
  listen: 127.0.0.1:8124
  tokens:
    - name: bench
      token: {token}
      scopes: [act]
"""


@dataclass
class ApiLatencyResult:
    calls: int  # measured calls per variant
    started: list[float] = field(default_factory=list)  # api: sent -> action entered
    answered: list[float] = field(default_factory=list)  # api: sent -> answer
    bare: list[float] = field(default_factory=list)  # bare: sent -> answer
    api_statuses: dict[int, int] = field(default_factory=dict)  # measured calls' answers
    bare_statuses: dict[int, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # measured mark -> times started
    run_statuses: dict[str, int] = field(default_factory=dict)  # every run, warm-up too
    round_p99_ratios: list[float] = field(default_factory=list)

    @property
    def not_started_once(self) -> int:
        """Measured calls whose action did not start exactly once."""
        return sum(1 for count in self.starts.values() if count != 1)


class Marks:
    """What the bench action saw: when each mark's run function was entered."""

    def __init__(self) -> None:
        self.entered: dict[str, list[float]] = collections.defaultdict(list)
        self._waiting: dict[str, asyncio.Event] = {}

    async def run(self, _context: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        mark = str(options["mark"])
        self.entered[mark].append(now)
        self._event(mark).set()
        return {}

    def _event(self, mark: str) -> asyncio.Event:
        return self._waiting.setdefault(mark, asyncio.Event())

    async def wait(self, mark: str) -> float:
        """When `mark`'s action was first entered (waiting for it, bounded)."""
        await asyncio.wait_for(self._event(mark).wait(), START_TIMEOUT)
        self._waiting.pop(mark, None)
        return self.entered[mark][0]


def _registry(marks: Marks) -> Any:
    """The installed triggers and actions, and the bench action."""
    import voluptuous as vol

    from connector.automation.registry import Registry
    from connector.automation.specs import ActionSpec

    registry = Registry.discover(with_plugins=False)
    registry.add_action(
        ActionSpec(
            key=ACTION,
            title="Mark",
            description="Notes when it starts (benchmark).",
            schema=vol.Schema({vol.Required("mark"): str}),
            example={"action": ACTION, "mark": "a"},
            run=marks.run,
        ),
        "bench.api_latency",
    )
    return registry


async def _bare_server() -> tuple[Any, str]:
    from aiohttp import web

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text='{"ok":true}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/bare", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/bare"


async def measure(
    rounds: int = ROUNDS, calls: int = CALLS, warmup: int = WARMUP
) -> ApiLatencyResult:
    """`calls` calls to each variant in `rounds` rounds, one at a time, alternating."""
    import aiohttp

    from connector.app import embedded_sandbox, open_connector
    from connector.automation.loader import parse_config

    marks = Marks()
    registry = _registry(marks)
    token = secrets.token_urlsafe(32)
    result = ApiLatencyResult(calls=calls)
    api_statuses: collections.Counter[int] = collections.Counter()
    bare_statuses: collections.Counter[int] = collections.Counter()
    measured: list[str] = []
    sizes = [calls // rounds + (1 if i < calls % rounds else 0) for i in range(rounds)]
    with tempfile.TemporaryDirectory(prefix="ftbench-api-") as directory:
        config = parse_config(
            CONFIG.format(token=token), registry=registry, base_dir=Path(directory), environ={}
        )
        assert config.api is not None
        config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=0))
        bare_runner, bare_url = await _bare_server()
        try:
            async with open_connector(
                config, sandbox=embedded_sandbox(), registry=registry
            ) as connector:
                await connector.start()
                assert connector.api is not None
                runtime = connector.runtime
                api_url = f"{connector.api.url}/api/v1/actions/{ACTION}"
                headers = {"Authorization": f"Bearer {token}"}
                timeout = aiohttp.ClientTimeout(total=START_TIMEOUT)
                async with aiohttp.ClientSession(timeout=timeout) as session:

                    async def call_api(record: bool) -> None:
                        mark = uuid.uuid4().hex
                        sent = time.monotonic()
                        async with session.post(
                            api_url, json={"mark": mark}, headers=headers
                        ) as response:
                            answer = await response.json()
                            answered = time.monotonic()
                        if record:
                            api_statuses[response.status] += 1
                            measured.append(mark)
                        if response.status not in (200, 202):
                            return
                        entered = await marks.wait(mark)
                        await runtime.wait_for_run(answer["run"]["id"], START_TIMEOUT)
                        if record:
                            result.started.append(entered - sent)
                            result.answered.append(answered - sent)

                    async def call_bare(record: bool) -> None:
                        body = {"mark": uuid.uuid4().hex}  # the same size as the API's
                        sent = time.monotonic()
                        async with session.post(bare_url, json=body) as response:
                            await response.read()
                            answered = time.monotonic()
                        if record:
                            bare_statuses[response.status] += 1
                            result.bare.append(answered - sent)

                    variants = {"api": call_api, "bare": call_bare}
                    for index in range(warmup):
                        for name in round_order(VARIANTS, index):
                            await variants[name](False)
                    pair = 0  # which goes first alternates with every pair of calls
                    for size in sizes:
                        first_api, first_bare = len(result.started), len(result.bare)
                        for _ in range(size):
                            for name in round_order(VARIANTS, pair):
                                await variants[name](True)
                            pair += 1
                        result.round_p99_ratios.append(
                            ratio(
                                percentile(result.started[first_api:], 99),
                                percentile(result.bare[first_bare:], 99),
                            )
                        )
                await runtime.idle()
                for run in runtime.runs:
                    result.run_statuses[run.status] = result.run_statuses.get(run.status, 0) + 1
        finally:
            await bare_runner.cleanup()
    result.api_statuses = dict(api_statuses)
    result.bare_statuses = dict(bare_statuses)
    result.starts = {mark: len(marks.entered.get(mark, [])) for mark in measured}
    return result


def figures(result: ApiLatencyResult) -> list[Figure]:
    p99 = ratio(percentile(result.started, 99), percentile(result.bare, 99))
    p50 = ratio(percentile(result.started, 50), percentile(result.bare, 50))
    return [
        Figure(
            name="API call -> action started p99 / bare round trip p99",
            value=p99,
            unit="x",
            target=f"<= {TARGET:g}",
            met=p99 <= TARGET,
            note=f"{result.calls} calls each; rounds: "
            + ", ".join(f"{r:.2f}" for r in result.round_p99_ratios),
        ),
        Figure(
            name="API call -> action started p50 / bare round trip p50",
            value=p50,
            unit="x",
        ),
        Figure(
            name="calls answered whose action did not start exactly once",
            value=result.not_started_once,
            unit="count",
            target="= 0",
            met=result.not_started_once == 0 and sum(result.api_statuses.values()) == result.calls,
            note=f"answers: {result.api_statuses}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--calls", type=int, help="calls to each server (default 400)")

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    started = time.monotonic()
    rounds, calls = (QUICK_ROUNDS, QUICK_CALLS) if args.quick else (ROUNDS, CALLS)
    if args.calls is not None:
        if args.calls < 1:
            raise SystemExit(f"--calls must be at least 1 (got {args.calls})")
        calls = args.calls
    rounds = min(rounds, calls)
    result = asyncio.run(measure(rounds, calls))
    series = {
        "api: sent -> action started": result.started,
        "api: sent -> answer": result.answered,
        "bare: sent -> answer (round trip)": result.bare,
    }
    print_table(
        f"{calls} calls to each server in {rounds} rounds, one at a time, alternating "
        "(milliseconds)",
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
        f"\nAPI answers: {result.api_statuses}; bare answers: {result.bare_statuses}; "
        f"runs: {result.run_statuses}"
    )
    report("api_latency", figures(result), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
