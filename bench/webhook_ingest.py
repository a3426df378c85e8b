"""Webhook ingest: events/s the listener accepts and durably records, against a bare handler.

The listener checks the token, reads the body with a bound, parses the
generation, builds the event and answers 200 only once `record` returned; here
`record` is `Runtime.submit_event`, the production path, on a real journal
(SQLite in WAL mode) in a temporary directory: events that arrive in the same
turn of the event loop share one commit (group commit), and each 200 still
means durably journaled. The baseline is a bare aiohttp
handler that reads the body and answers 200: the cost of HTTP alone on this
machine, in this run.

Both servers live in one child process (its own interpreter, as a deployed
listener would be); this process generates the load: an aiohttp client with
N concurrent keep-alive connections posting valid webhook payloads, each with
a unique generation id, to one server then the other, in interleaved rounds
(ABBA). The figure is median(listener events/s) / median(bare events/s).
Afterwards the journal's event count is checked against the 200s received.

    .venv/bin/python bench/webhook_ingest.py [--quick] [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
    interleaved_async,
    median,
    parse_args,
    print_table,
    ratio,
    report,
    until_stdin_closes,
    webhook_body,
)

ROUNDS = 5
EVENTS = 10_000  # per round and variant
QUICK_ROUNDS = 2
QUICK_EVENTS = 2_000
CONNECTIONS = 16
ROUND_TIMEOUT = 20.0  # seconds a round may take at most
SERVE_MAX_SECONDS = 300.0
TARGET = 0.5
VARIANTS = ("listener", "bare")


@dataclass
class RoundResult:
    sent: int
    ok: int
    seconds: float
    statuses: dict[int, int]
    loader_cpu: float = 0.0  # CPU seconds this process (the load generator) used
    server_cpu: float = 0.0  # CPU seconds the server child used, both servers

    @property
    def rate(self) -> float:
        return ratio(self.ok, self.seconds)

    @property
    def server_us_per_event(self) -> float:
        return ratio(self.server_cpu * 1e6, self.ok)


@dataclass
class IngestResult:
    connections: int
    rounds: dict[str, list[RoundResult]]
    recorded: int  # events in the listener's journal at the end
    listener_ok: int  # 200s the listener answered, warm-up included
    extra: dict[str, Any] = field(default_factory=dict)

    def median_rate(self, variant: str) -> float:
        return median([r.rate for r in self.rounds[variant]])

    def median_cpu(self, variant: str) -> float:
        return median([r.server_us_per_event for r in self.rounds[variant]])


# -- the child: both servers -------------------------------------------------------------


async def _serve() -> None:
    import sqlite3
    import tempfile

    from aiohttp import web

    from connector.automation.loader import parse_config
    from connector.dispatch.runtime import Runtime
    from connector.ingress.webhooks import WebhookListener
    from connector.journal.store import Store
    from connector.providers.finetuning.client import FinetuningClient

    with tempfile.TemporaryDirectory(prefix="ftbench-ingest-") as directory:
        store = Store.open(Path(directory) / "state")
        # No automations: this measures ingest alone. The client is never called.
        config = parse_config("automations: []\n", base_dir=Path(directory), environ={})
        client = FinetuningClient(DUMMY_API_KEY, base_url="http://127.0.0.1:9")
        runtime = Runtime(config, client, store=store)
        store.defer_checkpoints()  # as Runtime.start() does
        checkpoints = asyncio.create_task(runtime.checkpoint_periodically())
        listener = WebhookListener(
            token=WEBHOOK_TOKEN, record=runtime.submit_event, host="127.0.0.1", port=0
        )
        await listener.start()

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text='{"ok":true}', content_type="application/json")

        async def stats(_request: web.Request) -> web.Response:
            with sqlite3.connect(store.path) as db:
                count = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return web.json_response({"events": count})

        async def cpu(_request: web.Request) -> web.Response:
            return web.json_response({"cpu": time.process_time()})

        app = web.Application()
        app.router.add_post("/hooks/finetuning", bare)
        app.router.add_get("/_stats", stats)
        app.router.add_get("/_cpu", cpu)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            announce(
                {
                    "listener": listener.hook_url("finetuning"),
                    "bare": f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/finetuning",
                    "stats": f"http://127.0.0.1:{runner.addresses[0][1]}/_stats",
                    "cpu": f"http://127.0.0.1:{runner.addresses[0][1]}/_cpu",
                }
            )
            await until_stdin_closes(SERVE_MAX_SECONDS)
        finally:
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            await listener.stop()
            await runner.cleanup()
            await client.close()
            store.close()


# -- the load generator ----------------------------------------------------------------


async def post_all(
    session: Any, url: str, bodies: list[bytes], connections: int, timeout: float
) -> RoundResult:
    """Post every body over `connections` concurrent workers; stop early at `timeout`."""
    statuses: collections.Counter[int] = collections.Counter()
    pending = iter(bodies)
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": "application/json"}
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for body in pending:
            if time.monotonic() > deadline:
                return
            sent += 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - started
    return RoundResult(sent, statuses[200], seconds, dict(statuses))


def _bodies(count: int) -> list[bytes]:
    return [webhook_body(str(uuid.uuid4()), i) for i in range(count)]


async def measure(
    rounds: int = ROUNDS, events: int = EVENTS, connections: int = CONNECTIONS
) -> IngestResult:
    """Interleaved rounds against both servers of a fresh child process."""
    import aiohttp

    with child_server(Path(__file__), ["--serve"]) as urls:
        sessions = {
            name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))
            for name in VARIANTS
        }
        listener_ok = 0
        try:
            # Warm-up (unmeasured): connections open, code paths and caches warm.
            for name in VARIANTS:
                warm = await post_all(
                    sessions[name], urls[name], _bodies(connections * 8), connections, 10.0
                )
                listener_ok += warm.ok if name == "listener" else 0

            async def server_cpu() -> float:
                async with sessions["bare"].get(urls["cpu"]) as response:
                    return float((await response.json())["cpu"])

            def variant(name: str) -> Any:
                async def one_round(_index: int) -> RoundResult:
                    bodies = _bodies(events)
                    server_before, loader_before = await server_cpu(), time.process_time()
                    result = await post_all(
                        sessions[name], urls[name], bodies, connections, ROUND_TIMEOUT
                    )
                    result.loader_cpu = time.process_time() - loader_before
                    result.server_cpu = await server_cpu() - server_before
                    return result

                return one_round

            results = await interleaved_async(rounds, {name: variant(name) for name in VARIANTS})
            listener_ok += sum(r.ok for r in results["listener"])
            async with sessions["bare"].get(urls["stats"]) as response:
                recorded = int((await response.json())["events"])
        finally:
            for session in sessions.values():
                await session.close()
    return IngestResult(connections, results, recorded, listener_ok)


def figures(result: IngestResult) -> list[Figure]:
    value = ratio(result.median_rate("listener"), result.median_rate("bare"))
    return [
        Figure(
            name="listener + store events/s / bare handler (medians of rounds)",
            value=value,
            unit="x bare",
            target=f">= {TARGET}",
            met=value >= TARGET,
            note=f"{result.connections} connections",
        ),
        Figure(
            name="server CPU per event: bare / listener + store (medians)",
            value=ratio(result.median_cpu("bare"), result.median_cpu("listener")),
            unit="x",
            note="capacity ratio if the server were the bottleneck",
        ),
        Figure(
            name="events in the journal / 200s the listener answered",
            value=ratio(result.recorded, result.listener_ok),
            unit="x",
            target="= 1",
            met=result.recorded == result.listener_ok,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--connections", type=int, default=CONNECTIONS)

    args = parse_args(__doc__.splitlines()[0], argv, configure)
    if args.serve:
        asyncio.run(_serve())
        return 0
    started = time.monotonic()
    rounds, events = (QUICK_ROUNDS, QUICK_EVENTS) if args.quick else (ROUNDS, EVENTS)
    result = asyncio.run(measure(rounds, events, args.connections))
    rows = []
    for name in VARIANTS:
        for index, one in enumerate(result.rounds[name]):
            rows.append(
                (
                    name,
                    index + 1,
                    one.ok,
                    one.sent,
                    one.seconds,
                    one.rate,
                    one.server_us_per_event,
                    ratio(one.server_cpu, one.seconds),
                    ratio(one.loader_cpu, one.seconds),
                    one.statuses,
                )
            )
    print_table(
        f"{rounds} interleaved rounds of {events} posts, {args.connections} connections",
        (
            "server",
            "round",
            "200s",
            "sent",
            "seconds",
            "events/s",
            "server CPU us/event",
            "server CPU/wall",
            "loader CPU/wall",
            "statuses",
        ),
        rows,
    )
    print_table(
        "medians",
        ("server", "events/s", "server CPU us/event"),
        [(name, result.median_rate(name), result.median_cpu(name)) for name in VARIANTS],
    )
    report("webhook_ingest", figures(result), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
