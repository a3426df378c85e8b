"""The journal's fixtures: a fake clock, a state folder, and a store open on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ft_store_support import FakeClock

from connector.journal.store import Store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path, clock: FakeClock) -> Iterator[Store]:
    with Store.open(state_dir, clock=clock) as opened:
        yield opened
