"""The runtime's long-running tasks: pollers, trigger sources and the journal's upkeep.

A task that fails is logged and stays stopped; the runtime goes on. Stopping
cancels them all and waits until each is really done.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from connector.journal.connection import JournalError
from connector.journal.idempotency import IDEMPOTENCY_TTL
from connector.journal.store import Store

_LOGGER = logging.getLogger("connector.dispatch.runtime")

PRUNE_EVERY = 3600.0  # seconds between retention passes
CHECKPOINT_EVERY = 2.0  # seconds between WAL checkpoints, run off the event loop


class Background:
    """Named tasks that live as long as the runtime."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coroutine: Awaitable[None], name: str) -> None:
        """Run `coroutine` until it ends or `cancel_all()`; an error is logged, not raised."""

        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("trigger source %s stopped", name)

        def closed(_task: asyncio.Task[None]) -> None:
            # A task cancelled before its first step never awaited the coroutine: close
            # it, or Python warns "never awaited". (Finished coroutines ignore close().)
            if inspect.iscoroutine(coroutine):
                coroutine.close()

        task = asyncio.create_task(guarded(), name=name)
        task.add_done_callback(closed)
        self._tasks.append(task)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until each is done, cancelling again while any is not.

        On Python 3.11 a cancellation that lands as an `asyncio.timeout()` inside the
        task expires (a request timing out in a poll) is taken for the timeout and
        swallowed; waiting once would then hang until the next interval or forever.
        """
        tasks, self._tasks = self._tasks, []
        pending = {task for task in tasks if not task.done()}
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.0)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                _LOGGER.error("trigger source %s ended with an error", task.get_name())


async def prune_periodically(store: Store, older_than: float) -> None:
    """Drop journal entries older than `older_than` seconds, once every `PRUNE_EVERY`."""
    while True:
        await asyncio.sleep(PRUNE_EVERY)
        try:
            result = store.prune(older_than=older_than)
            store.prune_idempotency(older_than=IDEMPOTENCY_TTL)
        except JournalError as err:
            _LOGGER.warning("retention pass failed, next in %g s: %s", PRUNE_EVERY, err)
            continue
        _LOGGER.info("retention: %s", result)


async def every(seconds: float, work: Callable[[], object], what: str) -> None:
    """Call `work()` every `seconds`; a failure is logged and the next call comes all the same."""
    while True:
        await asyncio.sleep(seconds)
        try:
            work()
        except Exception:
            _LOGGER.exception("could not %s; will try again", what)


async def checkpoint_periodically(store: Store) -> None:
    """Checkpoint the journal's WAL from a worker thread, every `CHECKPOINT_EVERY` s."""
    while True:
        await asyncio.sleep(CHECKPOINT_EVERY)
        try:
            await asyncio.to_thread(store.checkpoint)
        except JournalError as err:
            _LOGGER.debug("WAL checkpoint failed, next in %g s: %s", CHECKPOINT_EVERY, err)
