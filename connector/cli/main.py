"""`ftconnect`: the command line, at parity with the official `ft` CLI.

This module is the entry point: it parses (connector.cli.parser), sets up logging and
hands the command to the module that does it: tracks, playlists, doctor (the `ft`
commands), automations (run, check, schema), journal (events, runs, replay), demo.
At start-up only argparse, os, sys and the command modules' standard-library
tops are imported; aiohttp, pydantic, the client and the runtime are imported
inside the command that needs them, so `ftconnect --help` stays about as fast
as a bare Python start.

Conventions (as `ft`): data on stdout, everything else (progress, prompts,
warnings, hints, errors as `ftconnect: error: ...`) on stderr; exit 0 on
success, 2 on validation errors (ours or the server's VALIDATION_ERROR), 130
when interrupted, 1 otherwise. Bulk commands exit 0 when at least one item
succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from connector.cli import doctor, playlists, tracks
from connector.cli.context import CliError, Command, Context, endpoint_of
from connector.cli.output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    print_error,
)
from connector.cli.parser import build_parser
from connector.errors import ConnectorError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ftconnect` console script; returns the exit code."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            _unrecognized(parser, args, extras)
        if args.command == "generate" and args.download and (args.no_wait or args.webhook):
            parser.error("--download waits for the track: it cannot go with --no-wait or --webhook")
    except SystemExit as exit_:
        # --help and usage errors: argparse has printed; keep main() returning a code.
        return exit_.code if isinstance(exit_.code, int) else EXIT_INVALID
    if args.version:
        from connector.version import __version__

        print(f"ftconnect {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.command == "sandbox":
        from connector.sandbox import cli as sandbox_cli

        return sandbox_cli.run(args)
    import asyncio

    remove_logging = _setup_logging(
        endpoint_of(args).api_key, verbose=args.verbose, announce_waits=args.command == "run"
    )
    try:
        # Asked before the event loop starts: inside it, Ctrl-C at the prompt would only
        # cancel the command once Enter was pressed.
        if args.command == "delete" and not args.yes and not tracks.confirm_delete(args.ids):
            print("aborted: nothing deleted", file=sys.stderr)
            return EXIT_ERROR
        return asyncio.run(_dispatch(args))
    except CliError as err:
        print_error(err, no_color=args.no_color)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as err:
        # A journal that is corrupt, locked or unwritable, or an installed plugin that
        # does not load: one clear line, not a traceback.
        # (Imported here: the store is not loaded for commands that never open it.)
        from connector.automation.specs import RegistryError
        from connector.journal.connection import JournalError
        from connector.journal.lock import StateDirLocked

        if isinstance(err, JournalError | StateDirLocked | RegistryError):
            print(f"ftconnect: error: {err}", file=sys.stderr)
            return EXIT_ERROR
        raise
    finally:
        remove_logging()


def _unrecognized(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]
) -> None:
    """A usage error for arguments no option takes, from the parser of the command they
    were given to, with a did-you-mean for a misspelt option (exits 2)."""
    import difflib

    chosen = _chosen_parser(parser, args)
    options = [name for action in chosen._actions for name in action.option_strings]
    global_options = [name for action in parser._actions for name in action.option_strings]
    takes_value = {
        name for action in parser._actions if action.nargs != 0 for name in action.option_strings
    }
    said: list[str] = []
    rest = list(extras)
    while rest:
        extra = rest.pop(0)
        name = extra.split("=", 1)[0]
        if not name.startswith("-") or name == "-":
            said.append(extra)
        elif chosen is not parser and name in global_options:
            if name in takes_value and "=" not in extra and rest:
                rest.pop(0)  # its value: not repeated (it may be a key)
            command = chosen.prog.removeprefix(parser.prog).strip()
            said.append(
                f"{name} (a global option: put it before the command, as in "
                f"`ftconnect {name} ... {command} ...`)"
            )
        else:
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
            said.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    chosen.error(f"unrecognized arguments: {', '.join(said)}")


def _chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the (sub)command the arguments chose; the top one when none."""
    chosen = parser
    for dest in ("command", "playlist_command"):
        name = getattr(args, dest, None)
        commands = next(
            (a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if name is None or commands is None or name not in commands.choices:
            break
        chosen = commands.choices[name]
    return chosen


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from connector.cli.demo import run_demo

        return await run_demo(seed=args.seed)
    if args.command in ("run", "check", "schema"):
        from connector.cli.automations import automations_command

        return await automations_command(args)
    if args.command in ("events", "runs", "replay"):
        from connector.cli.journal import journal_command

        return journal_command(args)
    from connector.errors import AuthenticationError, ValidationError

    ctx = Context(args)
    command = args.command if args.command != "playlist" else f"playlist {args.playlist_command}"
    try:
        return await _COMMANDS[command](ctx)
    except ValidationError as err:
        ctx.fail(err)
        return EXIT_INVALID
    except ConnectorError as err:  # CliError too
        ctx.fail(err)
        if isinstance(err, AuthenticationError):
            ctx.hint("`ftconnect doctor` shows which key is used and where it came from")
        return EXIT_ERROR
    finally:
        await ctx.aclose()


_COMMANDS: dict[str, Command] = {
    "me": tracks.cmd_me,
    "list": tracks.cmd_list,
    "get": tracks.cmd_get,
    "generate": tracks.cmd_generate,
    "download": tracks.cmd_download,
    "delete": tracks.cmd_delete,
    "playlists": playlists.cmd_playlists,
    "playlist show": playlists.cmd_playlist_show,
    "playlist add": playlists.cmd_playlist_add,
    "playlist remove": playlists.cmd_playlist_remove,
    "playlist move": playlists.cmd_playlist_move,
    "doctor": doctor.cmd_doctor,
}


def _setup_logging(
    api_key: str | None, *, verbose: bool, announce_waits: bool = False
) -> Callable[[], None]:
    """Log to stderr through one handler that removes secrets; returns the undo.

    Warnings and errors from any library (asyncio, aiohttp) go through it too, so
    no log line of this process can carry a registered secret. `-v` adds the
    connector's HTTP activity at DEBUG, the key redacted.
    """
    import logging

    from connector.providers.finetuning.credentials import redact_key
    from connector.redaction import ScrubFilter, register_secret

    register_secret(api_key)

    class RedactKey(logging.Filter):
        # A key too short to register (refused later anyway) is still hidden here.
        def filter(self, record: logging.LogRecord) -> bool:
            if api_key:
                message = record.getMessage()
                if api_key in message:
                    record.msg = message.replace(api_key, redact_key(api_key))
                    record.args = None
            return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ftconnect: %(name)s: %(message)s"))
    handler.addFilter(RedactKey())
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    logger = logging.getLogger("connector")
    waits_logger = logging.getLogger("connector.waits")
    previous = (root.level, logger.level, waits_logger.level)
    if announce_waits:
        # The daemon says, at INFO, what it waits for over 2 s (no terminal to draw on).
        waits_logger.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    if verbose:
        logger.setLevel(logging.DEBUG)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(previous[0])
        logger.setLevel(previous[1])
        waits_logger.setLevel(previous[2])

    return undo


if __name__ == "__main__":
    raise SystemExit(main())
