"""`ftconnect sandbox` / `python -m connector.sandbox`: serve the sandbox from a terminal.

Only argparse and the standard library are imported here at module import time
(the CLI's start-up time is measured); aiohttp and the application load inside
`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import SandboxHandle
    from .config import SandboxConfig


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds ≥ 0")
    return value


def _delay(text: str) -> tuple[float | None, float]:
    """`--delay`: "PROCESSING" or "PENDING,PROCESSING" seconds."""
    parts = text.split(",")
    if len(parts) == 1:
        return None, _seconds(parts[0])
    if len(parts) == 2:
        return _seconds(parts[0]), _seconds(parts[1])
    raise argparse.ArgumentTypeError("use SECONDS or PENDING,PROCESSING (e.g. 3 or 1,3)")


def _failure_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (got {text!r})")
    return value


def _rate_window(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a number of seconds greater than 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (got {text!r})")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to `parser`."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=8787, help="port to listen on; 0 picks a free one (8787)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of keys, ids and outcomes (default 1)"
    )
    parser.add_argument(
        "--delay",
        type=_delay,
        default=None,
        metavar="SECONDS|PENDING,PROCESSING",
        help="seconds a generation spends processing, or pending and processing (default 1,3)",
    )
    parser.add_argument(
        "--failure-rate",
        type=_failure_rate,
        default=0.0,
        metavar="RATE",
        help="fraction of generations that fail, 0 to 1 (default 0)",
    )
    parser.add_argument(
        "--strict-webhooks",
        action="store_true",
        help="accept only public HTTPS webhooks, as the real service (default: loopback too)",
    )
    parser.add_argument(
        "--rate-window",
        type=_rate_window,
        default=60.0,
        metavar="SECONDS",
        help="length of the rate-limit window (default 60)",
    )


def build_config(args: argparse.Namespace) -> SandboxConfig:
    """The SandboxConfig the parsed options describe."""
    from .config import SandboxConfig

    config = SandboxConfig(
        seed=args.seed,
        failure_rate=args.failure_rate,
        strict_webhooks=args.strict_webhooks,
        rate_window=args.rate_window,
    )
    if args.delay is not None:
        pending, processing = args.delay
        if pending is not None:
            config.pending_delay = pending
        config.processing_delay = processing
    return config


def _banner(handle: SandboxHandle) -> str:
    account = next((a for a in handle.sandbox.accounts if a.api_key == handle.api_key), None)
    who = f" ({account.name}, {account.tier})" if account else ""
    return "\n".join(
        [
            f"Finetuning.ai sandbox listening on {handle.url}",
            f"  API key{who}: {handle.api_key}",
            f"  TemPolor base URL: {handle.tempolor_url}",
            f"  TemPolor token: {handle.tempolor_token}",
            f"  Ground truth: {handle.url}/_sandbox/state",
            "Try:",
            f'  curl -s {handle.url}/v1/me -H "X-API-Key: {handle.api_key}"',
            "Press Ctrl-C to stop.",
        ]
    )


async def _serve(config: SandboxConfig, host: str, port: int) -> int:
    import asyncio
    import signal

    from .app import run_sandbox

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass  # no signal handlers on this platform: KeyboardInterrupt still ends run()
    try:
        try:
            server = run_sandbox(config, host=host, port=port)
            handle = await server.__aenter__()
        except OSError as exc:
            print(f"sandbox: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1
        try:
            print(_banner(handle), flush=True)
            await stop.wait()
        finally:
            await server.__aexit__(None, None, None)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    print("sandbox: stopped", file=sys.stderr, flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; prints the URL, a key and a curl example. Exit status."""
    import asyncio

    config = build_config(args)
    try:
        return asyncio.run(_serve(config, args.host, args.port))
    except KeyboardInterrupt:
        return 0
