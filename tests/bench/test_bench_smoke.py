"""Smoke tests of bench/: each benchmark's core measurement at a tiny size.

They check facts that do not depend on timing (request counts, zero 429s,
every event recorded, every action started), never a duration: the machine
running the suite may be slow or busy. The figures themselves are the
benchmarks' job (`python bench/run_all.py`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

# bench/ is not an installed package: import it from the checkout.
if str(Path(__file__).resolve().parents[2]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import (
    api_latency,
    bulk,
    cli_startup,
    memory_storage,
    poll_economy,
    rate_budget,
    trigger_latency,
    webhook_ingest,
)


async def test_bulk_calls_use_ceil_n_over_100_requests() -> None:
    rows = await bulk.measure((101,))
    assert [row.operation for row in rows] == list(bulk.OPERATIONS)
    for row in rows:
        assert row.requests == row.client_requests == math.ceil(101 / 100)
        assert row.statuses == [200, 200]
        assert row.succeeded == 101
    assert all(figure.met for figure in bulk.figures(rows))


async def test_a_poll_tick_costs_the_same_with_ten_generations_in_progress_as_with_none() -> None:
    ticks = await poll_economy.measure_ticks((0, 10), ticks=2, history=150)
    none, ten = ticks
    assert none.per_tick == ten.per_tick == 1
    assert none.logged == none.requests
    assert ten.logged == ten.requests


async def test_the_running_poller_notices_every_completion() -> None:
    result = await poll_economy.measure_delay(10, interval=0.1, trials=2, history=10)
    assert result.missed == 0
    assert len(result.delays) == 2
    assert all(delay > 0 for delay in result.delays)


async def test_a_client_driven_flat_out_gets_no_429() -> None:
    result = await rate_budget.measure(0.5, 3, readers=4, submitters=2)
    assert result.total_429 == 0
    for bucket in result.buckets.values():
        assert bucket.other_errors == 0
        assert bucket.accepted_total > bucket.limit
        assert bucket.max_in_window <= bucket.limit


def test_retention_keeps_the_journal_bounded(tmp_path: Path) -> None:
    kept = memory_storage.measure_variant("retention", (100, 1000), tmp_path / "kept")
    grown = memory_storage.measure_variant("no pruning", (100, 1000), tmp_path / "grown")
    assert [c.rows for c in kept.checkpoints] == [100, 101]
    assert [c.rows for c in grown.checkpoints] == [100, 1000]
    assert kept.prunes == 100


def test_cli_startup_runs_each_command_once() -> None:
    result = cli_startup.measure(runs=1)
    assert set(result.seconds) == set(cli_startup.COMMANDS)
    assert all(len(values) == 1 for values in result.seconds.values())
    assert len(cli_startup.figures(result)) == len(cli_startup.COMMANDS) - 1


async def test_every_webhook_the_listener_accepted_is_in_the_journal() -> None:
    result = await webhook_ingest.measure(rounds=1, events=40, connections=2)
    for name in webhook_ingest.VARIANTS:
        (one,) = result.rounds[name]
        assert one.statuses == {200: 40}
    assert result.recorded == result.listener_ok == 40 + 2 * 8


async def test_every_accepted_webhook_starts_its_action_after_it_was_sent() -> None:
    result = await trigger_latency.measure(rounds=1, events=20, rate=200.0)
    assert result.not_ok == {"listener": 0, "bare": 0}
    assert result.not_started == 0
    assert len(result.trigger) == 20
    assert all(latency > 0 for latency in result.trigger)
    assert result.run_statuses == {"succeeded": 20 + trigger_latency.WARMUP}


async def test_every_api_call_is_answered_and_starts_its_action_exactly_once() -> None:
    result = await api_latency.measure(rounds=1, calls=10, warmup=2)
    assert sum(result.api_statuses.values()) == 10
    assert set(result.api_statuses) <= {200, 202}
    assert result.bare_statuses == {200: 10}
    assert len(result.starts) == 10
    assert set(result.starts.values()) == {1}
    assert result.not_started_once == 0
    assert len(result.started) == len(result.bare) == 10
    assert all(latency > 0 for latency in result.started)
    assert result.run_statuses == {"succeeded": 10 + 2}
