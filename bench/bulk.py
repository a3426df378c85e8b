"""Bulk economy: HTTP requests used by the bulk calls for N ids, from the sandbox's log.

The API takes at most 100 ids per bulk request; the client splits any number
of ids into chunks of 100 and merges the answers. The cheapest possible is
ceil(N / 100) requests, and that is what the figures compare against. Counts
come from the sandbox's request log (what really reached the server), with the
client's own `requests_sent` as a cross-check.

    .venv/bin/python bench/bulk.py [--quick]
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Figure, parse_args, print_table, ratio, report

SIZES = (1, 100, 101, 1000)
OPERATIONS = ("add_tracks", "move_tracks", "delete_generations")


@dataclass
class BulkRow:
    operation: str
    ids: int
    requests: int  # bulk POSTs the sandbox received
    client_requests: int  # the client's own count of HTTP attempts
    statuses: list[int | None]
    succeeded: int

    @property
    def ideal(self) -> int:
        return math.ceil(self.ids / 100)


async def measure(sizes: tuple[int, ...] = SIZES) -> list[BulkRow]:
    """Add N tracks to a playlist, move them to another, delete them; count requests."""
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.ratelimit import RateBudget
    from connector.sandbox import SandboxConfig, run_sandbox

    # Limits out of the way: this counts requests, it does not wait for budgets.
    config = SandboxConfig(read_limit=1_000_000, pending_delay=0.01, processing_delay=0.01)
    rows: list[BulkRow] = []
    async with run_sandbox(config) as handle:
        sandbox = handle.sandbox
        account = sandbox.account_for_key(handle.api_key)
        assert account is not None
        budget = RateBudget(1_000_000, 60.0, name="reads")
        async with FinetuningClient(
            handle.api_key, base_url=handle.url, read_budget=budget
        ) as client:
            for n in sizes:
                ids = [
                    sandbox.add_track(account.name, prompt=f"bench bulk {n} {i}").id
                    for i in range(n)
                ]
                source = sandbox.add_playlist(account.name, f"bench source {n}")
                target = sandbox.add_playlist(account.name, f"bench target {n}")
                calls = {
                    "add_tracks": partial(client.add_tracks, source.id, ids),
                    "move_tracks": partial(client.move_tracks, source.id, target.id, ids),
                    "delete_generations": partial(client.delete_generations, ids),
                }
                for operation in OPERATIONS:
                    logged = len(sandbox.requests)
                    sent = client.requests_sent
                    result = await calls[operation]()
                    requests = sandbox.requests[logged:]
                    rows.append(
                        BulkRow(
                            operation=operation,
                            ids=n,
                            requests=len(requests),
                            client_requests=client.requests_sent - sent,
                            statuses=[r.status for r in requests],
                            succeeded=len(result.succeeded),
                        )
                    )
    return rows


def figures(rows: list[BulkRow]) -> list[Figure]:
    out = []
    for n in sorted({row.ids for row in rows}):
        of_n = [row for row in rows if row.ids == n]
        worst = max(ratio(row.requests, row.ideal) for row in of_n)
        everything = all(row.succeeded == n for row in of_n)
        out.append(
            Figure(
                name=f"N={n}: requests / ceil(N/100), worst of {len(of_n)} ops",
                value=worst,
                unit="x ideal",
                target="= 1",
                met=worst == 1.0,
                note="" if everything else "some ids did not succeed",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    started = time.monotonic()
    rows = asyncio.run(measure(SIZES))
    print_table(
        "bulk calls against the sandbox (counts from its request log)",
        ("operation", "N", "requests", "ceil(N/100)", "client sent", "statuses", "succeeded"),
        [
            (
                row.operation,
                row.ids,
                row.requests,
                row.ideal,
                row.client_requests,
                ",".join(sorted({str(s) for s in row.statuses})),
                row.succeeded,
            )
            for row in rows
        ],
    )
    report("bulk", figures(rows), summary_path=args.summary_json, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
