"""The runtime's background tasks: a stop right after a start leaves no coroutine unawaited."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from connector.dispatch.background import Background


async def test_a_task_cancelled_before_it_ran_leaves_no_unawaited_coroutine() -> None:
    ran: list[str] = []

    async def source() -> None:
        ran.append("started")
        await asyncio.sleep(3600)

    background = Background()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        background.spawn(source(), "never-started")
        await background.cancel_all()  # before the event loop ran the task once
        gc.collect()
    assert ran == []
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []


async def test_a_failing_task_is_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    beats: list[int] = []

    async def broken() -> None:
        raise ValueError("boom")

    async def steady() -> None:
        while True:
            beats.append(1)
            await asyncio.sleep(0)

    background = Background()
    background.spawn(broken(), "broken")
    background.spawn(steady(), "steady")
    for _ in range(5):
        await asyncio.sleep(0)
    await background.cancel_all()
    assert len(beats) >= 3
    assert any("trigger source broken stopped" in r.getMessage() for r in caplog.records)
