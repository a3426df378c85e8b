"""The client's budgets and backoff come from the `finetuning:` section."""

from __future__ import annotations

import pytest

from connector.app import finetuning_client
from connector.automation.loader import parse_config
from connector.automation.problems import ConfigError

KEY = "ft_live_" + "a" * 32


async def test_budgets_and_backoff_are_read_from_the_file() -> None:
    config = parse_config(
        """
finetuning:
  reads_per_window: 30
  generations_per_window: 5
  rate_window: 60
  retry_backoff: 0.5
"""
    )
    async with finetuning_client(config, KEY, "http://127.0.0.1:9") as client:
        assert client.read_budget.limit == 30
        assert client.generation_budget.limit == 5
        assert client.read_budget.window == 60
        assert client.backoff_base == 0.5


async def test_defaults_are_the_documented_limits() -> None:
    config = parse_config("automations: []\n")
    async with finetuning_client(config, KEY, "http://127.0.0.1:9") as client:
        assert client.read_budget.limit == 60
        assert client.generation_budget.limit == 10
        assert client.read_budget.window == 60
    assert repr(config.finetuning).count("***") == 0  # no key configured: nothing to hide


def test_a_budget_out_of_range_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"line 3: finetuning\.reads_per_window"):
        parse_config(
            """
finetuning:
  reads_per_window: 0
"""
        )
