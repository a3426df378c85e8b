"""Helpers shared by the Finetuning.ai client unit tests (fixtures live in conftest.py).

The JSON fixtures in tests/fixtures/ are the examples of the Finetuning.ai API
reference pages, copied as written. Where a document
only sketches a type ("uuid", "string|null", "...") a concrete value of that
type stands in; every concrete value the documents give is kept as written.

Nothing here really sleeps: `FakeClock` is handed to the client (and to its
rate budgets) as both `clock=` and `sleep=`; its `sleep` moves time forward at
once and records how long each wait was.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aioresponses import aioresponses
from yarl import URL

API = "https://pub.finetuning.ai"
API_KEY = "ft_live_0123456789abcdef0123456789abcdef"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# Ids from the documented examples (the bulk and playlist examples use UUIDs).
TRACK_A = "07e8d430-2310-4c57-87a8-cf1e6db376f7"
TRACK_B = "5b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
PLAYLIST = "3f2b9c4e-8d1a-4e6f-9b7c-2a5d8e1f4c3b"
OTHER_PLAYLIST = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def load_fixture(name: str) -> Any:
    """One documented example, parsed."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def error_fixture(code: str) -> dict[str, Any]:
    """The documented error answer for `code`: {"status", "body", "headers"?}."""
    entry: dict[str, Any] = load_fixture("errors")[code]
    return entry


class FakeClock:
    """A monotonic clock whose `sleep` advances it instantly and records each delay."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sent(mocked: aioresponses, method: str, url: str) -> list[Any]:
    """The calls aioresponses saw for (method, url); url with its query if any."""
    calls: list[Any] = mocked.requests.get((method, URL(url)), [])
    return calls


def sent_bodies(mocked: aioresponses, method: str, url: str) -> list[Any]:
    """The JSON bodies of the calls aioresponses saw for (method, url)."""
    return [call.kwargs["json"] for call in sent(mocked, method, url)]


def request_count(mocked: aioresponses) -> int:
    """How many HTTP requests aioresponses saw, all URLs together."""
    return sum(len(calls) for calls in mocked.requests.values())
