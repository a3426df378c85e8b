"""Shared test set-up.

aioresponses 0.7.9 builds `ClientResponse` without the `stream_writer` argument
that aiohttp 3.14 made required. Rather than pin aiohttp back past its security
fix, give aioresponses a response class that supplies the argument.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse


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
