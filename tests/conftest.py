"""Shared test set-up.

aioresponses 0.7.9 builds `ClientResponse` without the `stream_writer` argument
that aiohttp 3.14 made required. Rather than pin aiohttp back past its security
fix, give aioresponses a response class that supplies the argument.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle


def _install_aioresponses_shim() -> None:
    if "stream_writer" not in inspect.signature(ClientResponse.__init__).parameters:
        return  # an aiohttp that does not need the shim

    class _ShimmedClientResponse(ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            # Only `output_size` is read from it when the request counts as sent.
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
            super().__init__(method, url, **kwargs)

    aioresponses.core.ClientResponse = _ShimmedClientResponse  # type: ignore[misc]


_install_aioresponses_shim()


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    """A running Finetuning.ai + TemPolor sandbox on a free loopback port, near-zero delays.

    Yields a `SandboxHandle`: `.url`, `.api_key`, `.api_keys`, `.tempolor_url`,
    `.tempolor_token` and `.sandbox` (ground truth and driving). Modules that
    need other settings define their own `sandbox` fixture, which wins.
    """
    from connector.sandbox import SandboxConfig, run_sandbox

    config = SandboxConfig(pending_delay=0.01, processing_delay=0.05)
    async with run_sandbox(config) as handle:
        yield handle
