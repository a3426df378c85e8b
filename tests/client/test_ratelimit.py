"""Rate budgets, directly and inside the client, on a fake clock (nothing really sleeps)."""

from __future__ import annotations

import asyncio

import pytest
from aioresponses import aioresponses
from ft_client_support import (
    API,
    API_KEY,
    PLAYLIST,
    FakeClock,
    error_fixture,
    load_fixture,
    request_count,
    sent,
)

from connector.errors import GenerationRateLimitedError, RateLimitedError
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.ratelimit import RateBudget

ME = f"{API}/v1/me"
GENERATIONS = f"{API}/v1/generations"
BULK_DELETE = f"{API}/v1/generations/bulk-delete"


def budget(clock: FakeClock, limit: int = 2, window: float = 60.0) -> RateBudget:
    return RateBudget(limit, window, name="test", clock=clock, sleep=clock.sleep)


# -- RateBudget on its own ----------------------------------------------------------------


async def test_budget_admits_up_to_its_limit_without_waiting(clock: FakeClock) -> None:
    slots = budget(clock, limit=3)

    for _ in range(3):
        await slots.acquire()

    assert slots.used == 3
    assert clock.sleeps == []
    assert slots.delay() > 0


async def test_slot_is_freed_one_window_after_the_answer_not_the_send(clock: FakeClock) -> None:
    slots = budget(clock, limit=1)
    await slots.acquire()
    clock.advance(30)  # the request took 30 s to answer
    slots.release()
    answered = clock.now

    await slots.acquire()

    assert clock.sleeps == [60.0]
    assert clock.now == answered + 60


async def test_each_slot_frees_on_its_own_schedule(clock: FakeClock) -> None:
    slots = budget(clock, limit=2)
    async with slots.slot():
        pass  # answered at t=1000: free at 1060
    clock.advance(10)
    async with slots.slot():
        pass  # answered at t=1010: free at 1070
    clock.advance(10)

    await slots.acquire()  # at t=1020, the first slot frees at 1060

    assert clock.sleeps == [40.0]
    assert slots.used == 2


async def test_used_drops_as_slots_expire(clock: FakeClock) -> None:
    slots = budget(clock, limit=5)
    for _ in range(3):
        async with slots.slot():
            pass

    assert slots.used == 3
    clock.advance(59.9)
    assert slots.used == 3
    clock.advance(0.1)
    assert slots.used == 0
    assert slots.delay() == 0


async def test_a_slot_in_flight_is_held_until_its_answer_and_then_a_window(
    clock: FakeClock,
) -> None:
    slots = budget(clock, limit=1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()  # still waiting: the only slot has no answer yet

    slots.release()
    answered = clock.now
    await waiter

    assert clock.now >= answered + 60
    assert clock.now == pytest.approx(answered + 60, abs=0.051)


async def test_callers_are_served_in_arrival_order(clock: FakeClock) -> None:
    slots = budget(clock, limit=1)
    async with slots.slot():
        pass
    order: list[str] = []

    async def caller(name: str) -> None:
        async with slots.slot():
            order.append(name)

    await asyncio.gather(caller("first"), caller("second"), caller("third"))

    assert order == ["first", "second", "third"]
    assert clock.sleeps == [60.0, 60.0, 60.0]


async def test_slot_context_releases_even_when_the_call_fails(clock: FakeClock) -> None:
    slots = budget(clock, limit=1)

    with pytest.raises(RuntimeError):
        async with slots.slot():
            raise RuntimeError("boom")

    assert slots.used == 1  # released (not in flight), kept for one window
    clock.advance(60)
    assert slots.used == 0


async def test_observe_adds_phantom_slots_when_the_server_counts_more(clock: FakeClock) -> None:
    slots = budget(clock, limit=60)
    async with slots.slot():
        pass

    slots.observe(60, 40, used_at_send=1)  # someone else with the same key used 19 more

    assert slots.used == 20
    clock.advance(60)
    assert slots.used == 0  # phantoms free one window later too


async def test_observe_never_removes_slots_when_the_server_counts_fewer(
    clock: FakeClock,
) -> None:
    slots = budget(clock, limit=60)
    for _ in range(5):
        async with slots.slot():
            pass

    slots.observe(60, 59, used_at_send=5)
    slots.observe(None, None, used_at_send=5)

    assert slots.used == 5


async def test_observe_remaining_zero_makes_the_next_caller_wait_a_window(
    clock: FakeClock,
) -> None:
    slots = budget(clock, limit=60)
    async with slots.slot():
        pass
    slots.observe(60, 0, used_at_send=1)

    await slots.acquire()

    assert clock.sleeps == [60.0]


async def test_slots_expiring_during_the_round_trip_are_not_taken_for_foreign_use(
    clock: FakeClock,
) -> None:
    slots = budget(clock, limit=60)
    for _ in range(59):
        async with slots.slot():
            pass
    clock.advance(59.9)
    used_at_send = await slots.acquire()  # the 60th request of the window
    clock.advance(0.2)  # the first 59 expire while it is answered
    slots.release()

    slots.observe(60, 0, used_at_send)  # the server counted exactly our 60

    assert used_at_send == 60
    assert slots.used == 1  # no phantom slots


@pytest.mark.parametrize(
    ("limits", "expected"),
    [([30], 30), ([30, 45], 30), ([90], 60), ([0], 60), ([None], 60), ([20, 10], 10)],
)
def test_observe_lowers_the_limit_but_never_raises_it(
    clock: FakeClock, limits: list[int | None], expected: int
) -> None:
    slots = budget(clock, limit=60)

    for limit in limits:
        slots.observe(limit, None, used_at_send=0)

    assert slots.limit == expected


async def test_lowered_limit_applies_to_the_next_acquire(clock: FakeClock) -> None:
    slots = budget(clock, limit=60)
    for _ in range(10):
        async with slots.slot():
            pass

    slots.observe(10, None, used_at_send=10)
    await slots.acquire()

    assert clock.sleeps == [60.0]


async def test_pause_holds_every_caller_for_retry_after(clock: FakeClock) -> None:
    slots = budget(clock, limit=60)

    slots.pause(42)

    assert slots.delay() == 42
    await slots.acquire()
    assert clock.sleeps == [42.0]
    assert slots.waited == 42.0


def test_a_shorter_pause_does_not_cut_a_longer_one(clock: FakeClock) -> None:
    slots = budget(clock)

    slots.pause(42)
    slots.pause(5)
    slots.pause(-10)

    assert slots.delay() == 42


def test_a_negative_pause_is_no_pause(clock: FakeClock) -> None:
    slots = budget(clock)

    slots.pause(-10)

    assert slots.delay() == 0


async def test_waited_totals_the_time_callers_spent_waiting(clock: FakeClock) -> None:
    slots = budget(clock, limit=1)
    for _ in range(3):
        await slots.acquire()
        slots.release()

    assert slots.waited == 120.0
    assert sum(clock.sleeps) == 120.0


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (-1, 60.0), (10, 0.0), (10, -5.0)])
def test_budget_refuses_nonsense_limits(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="rate budget"):
        RateBudget(limit, window)


def test_budget_repr_says_what_it_is(clock: FakeClock) -> None:
    assert repr(budget(clock, limit=10)) == "RateBudget('test', 10/60s, used=0)"


# -- the client's two budgets -------------------------------------------------------------


def test_client_budgets_mirror_the_server_limits(client: FinetuningClient) -> None:
    assert (client.read_budget.limit, client.read_budget.window) == (60, 60.0)
    assert (client.generation_budget.limit, client.generation_budget.window) == (10, 60.0)


async def test_the_61st_read_in_a_minute_waits_for_the_window(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, payload=load_fixture("me"), repeat=True)

    for _ in range(60):
        await client.get_account()
    assert clock.sleeps == []
    await client.get_account()

    assert clock.sleeps == [60.0]
    assert len(sent(mocked, "GET", ME)) == 61


async def test_the_11th_generation_in_a_minute_waits_and_reads_do_not(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"), repeat=True)
    mocked.get(ME, payload=load_fixture("me"), repeat=True)

    for _ in range(10):
        await client.create_generation(tags="lofi")
    await client.get_account()  # the read budget is separate
    assert clock.sleeps == []
    await client.create_generation(tags="lofi")

    assert clock.sleeps == [60.0]
    assert client.read_budget.used == 0  # the read's slot expired during the wait


async def test_concurrent_generations_share_one_budget(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"), repeat=True)

    results = await asyncio.gather(*(client.create_generation(tags="lofi") for _ in range(12)))

    assert len(results) == 12
    assert request_count(mocked) == 12
    assert clock.sleeps == [60.0]


async def test_a_bulk_call_costs_one_read_slot_per_chunk(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(BULK_DELETE, payload={"data": {"deleted": []}}, repeat=True)

    await client.delete_generations([f"g{i}" for i in range(100)])
    assert client.read_budget.used == 1
    await client.delete_generations([f"g{i}" for i in range(250)])

    assert client.read_budget.used == 4
    assert client.generation_budget.used == 0


async def test_playlist_bulk_calls_use_the_read_budget(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.post(f"{API}/v1/playlists/{PLAYLIST}/tracks", payload={"data": {"added": ["a"]}})

    await client.add_tracks(PLAYLIST, ["a"])

    assert (client.read_budget.used, client.generation_budget.used) == (1, 0)


async def test_polling_spends_the_read_budget(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    url = f"{GENERATIONS}/gen_1"
    for status in ("processing", "processing", "completed"):
        mocked.get(url, payload={"data": {"id": "gen_1", "status": status}})

    await client.wait_for_generation("gen_1")

    assert client.read_budget.used == 3


async def test_x_ratelimit_remaining_zero_makes_the_next_request_wait(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    mocked.get(ME, payload=load_fixture("me"), headers={"X-RateLimit-Remaining": "0"})
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()
    await client.get_account()

    assert clock.sleeps == [60.0]


async def test_x_ratelimit_remaining_counts_other_programs_on_the_same_key(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        ME,
        payload=load_fixture("me"),
        headers={"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "57"},
    )

    await client.get_account()

    assert client.read_budget.used == 3


async def test_x_ratelimit_limit_lowers_the_budget(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(ME, payload=load_fixture("me"), headers={"X-RateLimit-Limit": "30"})

    await client.get_account()

    assert client.read_budget.limit == 30
    assert client.generation_budget.limit == 10


async def test_unparsable_rate_headers_are_ignored(
    client: FinetuningClient, mocked: aioresponses
) -> None:
    mocked.get(
        ME,
        payload=load_fixture("me"),
        headers={"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "few"},
    )

    await client.get_account()

    assert (client.read_budget.limit, client.read_budget.used) == (60, 1)


async def test_retry_after_on_a_429_holds_back_the_next_call_too(
    mocked: aioresponses, clock: FakeClock
) -> None:
    body = error_fixture("RATE_LIMITED")["body"]
    mocked.get(ME, status=429, payload=body, headers={"Retry-After": "30"})
    mocked.get(f"{GENERATIONS}/gen_1", payload={"data": {"id": "gen_1", "status": "pending"}})

    async with FinetuningClient(API_KEY, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(RateLimitedError):
            await api.get_account()
        await api.get_generation("gen_1")

    assert clock.sleeps == [30.0]


async def test_a_generation_429_pauses_generations_but_not_reads(
    mocked: aioresponses, clock: FakeClock
) -> None:
    body = error_fixture("GENERATION_RATE_LIMITED")["body"]
    mocked.post(GENERATIONS, status=429, payload=body, headers={"Retry-After": "30"})
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, max_retries=0, clock=clock, sleep=clock.sleep) as api:
        with pytest.raises(GenerationRateLimitedError):
            await api.create_generation(tags="lofi")
        await api.get_account()
        assert clock.sleeps == []
        assert api.generation_budget.delay() == 30.0


async def test_429_with_retry_after_waits_retry_after_not_a_whole_window(
    client: FinetuningClient, mocked: aioresponses, clock: FakeClock
) -> None:
    # The documented 429: Retry-After plus the X-RateLimit-Limit / -Remaining headers.
    entry = error_fixture("RATE_LIMITED")
    assert entry["headers"] == {
        "Retry-After": "42",
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "0",
    }
    mocked.get(ME, status=429, payload=entry["body"], headers=entry["headers"])
    mocked.get(ME, payload=load_fixture("me"))

    await client.get_account()

    # The server said when a slot frees: in 42 s, not in a whole window of 60 s.
    assert clock.sleeps == [42.0]


async def test_injected_budgets_are_the_ones_used(mocked: aioresponses, clock: FakeClock) -> None:
    reads = RateBudget(2, 60, name="reads", clock=clock, sleep=clock.sleep)
    generations = RateBudget(1, 60, name="generations", clock=clock, sleep=clock.sleep)
    mocked.get(ME, payload=load_fixture("me"), repeat=True)
    mocked.post(GENERATIONS, status=202, payload=load_fixture("create_generation"), repeat=True)

    async with FinetuningClient(
        API_KEY, read_budget=reads, generation_budget=generations, clock=clock, sleep=clock.sleep
    ) as api:
        for _ in range(3):
            await api.get_account()
        assert clock.sleeps == [60.0]
        for _ in range(2):
            await api.create_generation(tags="lofi")

    assert clock.sleeps == [60.0, 60.0]
    assert api.read_budget is reads
    assert api.generation_budget is generations


async def test_budgets_shared_by_two_clients_add_up(mocked: aioresponses, clock: FakeClock) -> None:
    shared = RateBudget(3, 60, name="reads", clock=clock, sleep=clock.sleep)
    mocked.get(ME, payload=load_fixture("me"), repeat=True)

    async with (
        FinetuningClient(API_KEY, read_budget=shared, clock=clock, sleep=clock.sleep) as one,
        FinetuningClient(API_KEY, read_budget=shared, clock=clock, sleep=clock.sleep) as two,
    ):
        await one.get_account()
        await two.get_account()
        await one.get_account()
        await two.get_account()

    assert clock.sleeps == [60.0]
