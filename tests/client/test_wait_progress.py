"""WaitProgress: the terminal's view of the client's waits (connector/progress.py).

Streams are StringIO with the status line forced on (as on a terminal); times
come from the fake clock, so nothing here depends on how fast the test runs.
"""

from __future__ import annotations

import io
import math
from typing import Any

from aioresponses import aioresponses
from ft_client_support import API, API_KEY, FakeClock, error_fixture, load_fixture

from connector.cli.progress import GenerationProgress, StatusLine, WaitProgress
from connector.providers.finetuning.client import FinetuningClient

ME = f"{API}/v1/me"


def terminal() -> tuple[io.StringIO, StatusLine]:
    stream = io.StringIO()
    return stream, StatusLine(stream, enabled=True)


def shown(stream: io.StringIO) -> str:
    """What the line shows now: the text after the last carriage return, trailing blanks cut."""
    return stream.getvalue().split("\r")[-1].rstrip()


async def test_off_a_terminal_nothing_is_drawn() -> None:
    stream = io.StringIO()
    progress = WaitProgress(StatusLine(stream, enabled=False))

    assert progress("for the reads budget (60 requests per 60 s)", 23.4) is None
    assert stream.getvalue() == ""
    assert not progress.active


async def test_a_wait_is_drawn_counts_down_and_is_erased_at_its_end(clock: FakeClock) -> None:
    stream, line = terminal()
    progress = WaitProgress(line, clock=clock)

    done = progress("for the reads budget (60 requests per 60 s)", 23.4)

    assert progress.active
    assert shown(stream) == "- waiting 23 s for the reads budget (60 requests per 60 s)"
    clock.advance(10.1)
    progress.draw()
    assert shown(stream).endswith("waiting 13 s for the reads budget (60 requests per 60 s)")

    assert done is not None
    done()

    assert not progress.active
    assert shown(stream) == ""
    assert stream.getvalue().endswith("\r")  # cursor back at the start, ready for output
    assert progress._ticker is None


async def test_a_wait_of_unknown_length_counts_up(clock: FakeClock) -> None:
    stream, line = terminal()
    progress = WaitProgress(line, clock=clock)

    progress("for the reads budget: all 10 slots are taken", math.inf)
    clock.advance(3)
    progress.draw()

    assert shown(stream).endswith("waiting 3 s so far for the reads budget: all 10 slots are taken")
    progress.close()


async def test_the_end_of_an_older_wait_leaves_a_newer_one_shown(clock: FakeClock) -> None:
    stream, line = terminal()
    progress = WaitProgress(line, clock=clock)
    first = progress("for the reads budget", 30)
    second = progress("to retry GET /v1/me (attempt 2 of 5) after HTTP 503", 4)
    assert first is not None
    assert second is not None

    first()

    assert progress.active
    assert "to retry GET /v1/me" in shown(stream)
    second()
    assert not progress.active
    progress.close()  # closing twice is harmless
    assert shown(stream) == ""


async def test_a_generation_line_shows_the_wait_while_it_lasts(clock: FakeClock) -> None:
    stream, line = terminal()
    waits = WaitProgress(line, clock=clock)
    generation = GenerationProgress("gen_1", line, status="processing", clock=clock)

    done = waits("for the reads budget (60 requests per 60 s)", 20)
    generation.draw()  # its ticker keeps drawing: the wait is what the line says
    assert "waiting 20 s for the reads budget" in shown(stream)
    assert "gen_1" not in shown(stream)

    assert done is not None
    done()
    generation.draw()
    assert "processing" in shown(stream)
    assert "gen_1" in shown(stream)
    assert line.overlay is None


async def test_the_client_drives_the_line_and_erases_it_before_going_on(
    mocked: aioresponses, clock: FakeClock
) -> None:
    stream, line = terminal()
    progress = WaitProgress(line, clock=clock)
    body: dict[str, Any] = error_fixture("INTERNAL_ERROR")["body"]
    for _ in range(3):
        mocked.get(ME, status=503, payload=body)
    mocked.get(ME, payload=load_fixture("me"))

    async with FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep, on_wait=progress) as api:
        await api.get_account()

    # Backoffs of 1 and 2 s are not drawn; the 4 s one is (cut to the 79 columns a
    # terminal of unknown width gets, so it never wraps), then erased.
    drawn = [part.rstrip() for part in stream.getvalue().split("\r") if part.strip()]
    text = "- waiting 4 s to retry GET /v1/me (attempt 4 of 5) after HTTP 503 INTERNAL_ERROR"
    assert drawn == [text[: line.width()]]
    assert shown(stream) == ""
    assert not progress.active
