"""`ftconnect`: the command line.

Only argparse is imported at start-up; everything else is imported inside the
command that needs it, so `ftconnect --help` stays fast.

Conventions (as the official `ft` CLI): data on stdout, progress on stderr;
exit 0 on success, 2 on validation errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import FinetuningClient

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2

DESCRIPTION = """\
Automation connector for AI music generation (Finetuning.ai, TemPolor).

Try it with no account:   ftconnect demo
Run a local stand-in API: ftconnect sandbox
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ftconnect",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--api-key",
        help="Finetuning.ai API key (default: $FINETUNING_API_KEY)",
    )
    parser.add_argument(
        "--base-url",
        help="API base URL (default: $FINETUNING_BASE_URL or https://pub.finetuning.ai)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log HTTP requests to stderr (key redacted)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the main job end to end on the embedded sandbox (no account, no network)",
        description="Start the embedded sandbox and drive every API feature against it.",
    )
    demo.add_argument("--seed", type=int, default=1, help="sandbox seed (default 1)")

    from .sandbox import cli as sandbox_cli  # argparse-only module: cheap to import

    sandbox = commands.add_parser(
        "sandbox",
        help="serve a local stand-in for the Finetuning.ai and TemPolor APIs",
        description="Serve a faithful local Finetuning.ai (and TemPolor) API until stopped.",
    )
    sandbox_cli.configure_parser(sandbox)

    me = commands.add_parser("me", help="show your account and credits")
    _json_flag(me)

    listing = commands.add_parser("list", help="list your generations, newest first")
    listing.add_argument("--limit", type=int, default=20, help="1-100 (default 20)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many (default 0)")
    listing.add_argument(
        "--status", choices=["pending", "processing", "completed", "failed"], help="filter"
    )
    _json_flag(listing)

    get = commands.add_parser("get", help="show one generation")
    get.add_argument("id", help="generation id")
    _json_flag(get)

    playlists = commands.add_parser("playlists", help="list your playlists")
    _json_flag(playlists)
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ftconnect` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .version import __version__

        print(f"ftconnect {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    if args.command == "sandbox":
        from .sandbox import cli as sandbox_cli

        return sandbox_cli.run(args)
    import asyncio

    try:
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    from .exceptions import FinetuningError, ValidationError

    try:
        if args.command == "demo":
            from .demo import run_demo

            return await run_demo(seed=args.seed)
        async with _client(args) as client:
            return await _COMMANDS[args.command](client, args)
    except ValidationError as err:
        _fail(err)
        return EXIT_INVALID
    except FinetuningError as err:
        _fail(err)
        return EXIT_ERROR


def _fail(err: Exception) -> None:
    print(f"ftconnect: error: {err}", file=sys.stderr)


def _client(args: argparse.Namespace) -> FinetuningClient:
    from .client import DEFAULT_BASE_URL, FinetuningClient
    from .exceptions import MissingApiKeyError

    api_key = args.api_key or os.environ.get("FINETUNING_API_KEY")
    if not api_key:
        raise MissingApiKeyError(
            "no API key: pass --api-key or set FINETUNING_API_KEY "
            "(to try without an account: `ftconnect demo`, or `ftconnect sandbox` for a local API)"
        )
    base_url = args.base_url or os.environ.get("FINETUNING_BASE_URL") or DEFAULT_BASE_URL
    return FinetuningClient(api_key, base_url=base_url)


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2, ensure_ascii=False))


async def _cmd_me(client: FinetuningClient, args: argparse.Namespace) -> int:
    account = await client.get_account()
    if args.json:
        _print_json(account.to_wire())
        return EXIT_OK
    limits = account.limits
    print(f"{account.name or '-'} <{account.email or '-'}>  plan: {account.tier or '-'}")
    print(
        f"credits: {limits.total_remaining} left "
        f"({limits.monthly_remaining} of {limits.monthly_generations} this month, "
        f"{limits.pack_credits} pack); queue: {limits.queue_depth}"
    )
    return EXIT_OK


async def _cmd_list(client: FinetuningClient, args: argparse.Namespace) -> int:
    page = await client.list_generations(limit=args.limit, offset=args.offset, status=args.status)
    if args.json:
        _print_json(page.to_wire())
        return EXIT_OK
    for generation in page.generations:
        length = f"{generation.duration:.1f}s" if generation.duration is not None else "-"
        title = generation.title or generation.prompt or ""
        print(f"{generation.id}  {generation.status.value:<10}  {length:>7}  {title}")
    if page.has_more:
        print(f"more: re-run with --offset {page.next_offset}", file=sys.stderr)
    return EXIT_OK


async def _cmd_get(client: FinetuningClient, args: argparse.Namespace) -> int:
    generation = await client.get_generation(args.id)
    if args.json:
        _print_json(generation.to_wire())
        return EXIT_OK
    fields = {
        "id": generation.id,
        "status": generation.status.value,
        "title": generation.title,
        "prompt": generation.prompt,
        "duration": generation.duration,
        "audio": generation.audio_url,
        "error": generation.error_message,
        "created": generation.created_at,
        "completed": generation.completed_at,
    }
    for name, value in fields.items():
        if value is not None:
            print(f"{name + ':':<11}{value}")
    return EXIT_OK


async def _cmd_playlists(client: FinetuningClient, args: argparse.Namespace) -> int:
    playlists = await client.list_playlists()
    if args.json:
        _print_json([p.to_wire() for p in playlists])
        return EXIT_OK
    for playlist in playlists:
        visibility = "public " if playlist.is_public else "private"
        print(f"{playlist.id}  {visibility}  {playlist.track_count:>4} tracks  {playlist.name}")
    return EXIT_OK


_COMMANDS = {
    "me": _cmd_me,
    "list": _cmd_list,
    "get": _cmd_get,
    "playlists": _cmd_playlists,
}


if __name__ == "__main__":
    raise SystemExit(main())
