"""`ftconnect`: the command line, at parity with the official `ft` CLI.

Only argparse, os and sys are imported at start-up; aiohttp, pydantic and the
client are imported inside the command that needs them, so `ftconnect --help`
stays about as fast as a bare Python start.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.finetuning.models import BulkResult, Generation, GenerationRequest

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
# A refused connection is retried once (about 1.5 s), not four times (about 17 s): a
# person is waiting. The daemon keeps the client's longer retries.
CLI_CONNECT_RETRIES = 1

# The `ft` CLI's polling schedule for `generate` (module constants so tests can shorten them).
POLL_FIRST_DELAY = 3.0
POLL_FACTOR = 1.3
POLL_MAX_DELAY = 15.0
POLL_TIMEOUT = 300.0

# What `runs --status` takes: the journal's statuses (connector.journal.store: RUN_STATUSES,
# RUNNING, REPLAYED; a test keeps them equal), without importing the store here.
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "replayed")

DEFAULT_DURATION = 60
DEFAULT_BPM = 120
PRIVATE_INTO_PUBLIC = "Cannot add private track to public playlist"
ALREADY_IN_PLAYLIST = "Track already in playlist"  # as actions/_common.py (a test keeps them equal)
PRIVATE_INTO_PUBLIC_HINT = (
    "make the track public in the web app first; the API never changes a track's visibility"
)

DESCRIPTION = """\
Automation connector for AI music generation (Finetuning.ai, TemPolor),
with the commands of the official `ft` CLI.

Try it with no account:   ftconnect demo
Run a local stand-in API: ftconnect sandbox
"""

EPILOG = """\
environment:
  FINETUNING_API_KEY   API key (what --api-key and a file's finetuning.api_key override)
  FINETUNING_BASE_URL  API base URL (what --base-url and a file's finetuning.base_url override)
  NO_COLOR             set to turn colours off, like --no-color

Every command takes the key and the server from the same places, first found wins:
--api-key / --base-url, then the automations file (run, check, doctor FILE), then the
environment. With no key anywhere, `run` uses the embedded sandbox and says so.

Data goes to stdout, progress and messages to stderr, so `ftconnect list --json | jq`
works. Exit codes: 0 success, 2 invalid input, 1 any other error, 130 interrupted.

examples:
  ftconnect me
  ftconnect generate lofi chill piano --duration 90 --bpm 80 --download ~/Music
  ftconnect --base-url http://127.0.0.1:8787 --api-key ft_live_... doctor
"""


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ftconnect",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--api-key",
        help="Finetuning.ai API key (default: the file's finetuning.api_key, then "
        "$FINETUNING_API_KEY)",
    )
    parser.add_argument(
        "--base-url",
        help="API base URL (default: the file's finetuning.base_url, then $FINETUNING_BASE_URL, "
        "then https://pub.finetuning.ai)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log HTTP requests to stderr (key redacted)"
    )
    parser.add_argument(
        "--no-color", action="store_true", help="no ANSI colours (default: colour on a terminal)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        commands,
        "demo",
        "run the main job end to end on the embedded sandbox (no account, no network)",
        "Start the embedded sandbox and drive every API feature against it.",
        "ftconnect demo --seed 7",
    )
    demo.add_argument("--seed", type=int, default=1, help="sandbox seed (default: 1)")

    run = _command(
        commands,
        "run",
        "run the automations of a YAML file until stopped",
        "Start the runtime for FILE: trigger sources, dispatcher and poller. SIGINT or\n"
        "SIGTERM stop it gracefully. Its first line names the server and where the key\n"
        "came from (--api-key, then FILE's finetuning.api_key, then $FINETUNING_API_KEY;\n"
        "the same for --base-url). With no key anywhere it runs against the embedded\n"
        "sandbox and says so. A playlist an action names that does not exist is a\n"
        "warning: it may be created later.",
        "ftconnect run examples/demo.yaml",
    )
    run.add_argument("file", help="the automations file (YAML)")
    run.add_argument(
        "--backfill",
        action="store_true",
        help="on first start, fire for generations that already exist (default: seed silently)",
    )

    check = _command(
        commands,
        "check",
        "validate an automations file (exit 2 when invalid)",
        "Validate FILE: every trigger and action against its schema, templates compile,\n"
        "no duplicate ids, and (with an API key from anywhere, unless --offline) every\n"
        "playlist named exists. Every problem is reported in one pass, with its line;\n"
        "--json prints them as one document. Exit 2 when invalid.",
        "ftconnect check automations.yaml",
    )
    check.add_argument("file", help="the automations file (YAML)")
    check.add_argument("--offline", action="store_true", help="do not look playlists up")
    _json_flag(check)

    schema = _command(
        commands,
        "schema",
        "print every trigger and action as one JSON Schema document",
        "Print the declarations of every trigger and action (built-in and plugins) as one\n"
        "JSON Schema document, ready for a form builder. --markdown prints the README table.",
        "ftconnect schema > ftconnect.schema.json",
    )
    schema.add_argument("--markdown", action="store_true", help="print Markdown tables instead")

    for name, summary, description, example in (
        (
            "events",
            "show the events that fired, newest first",
            "Show the events recorded in the journal: what fired, and what was only seeded\n"
            "(there at the first start, recorded without firing). Reads the journal only:\n"
            "FILE is read for its state_dir, and its secrets need not resolve.",
            "ftconnect events automations.yaml --limit 20",
        ),
        (
            "runs",
            "show the automation runs, their steps, what failed and why",
            "Show the runs recorded in the journal with each step's outcome. Reads the\n"
            "journal only: FILE is read for its state_dir, and its secrets need not resolve.",
            "ftconnect runs automations.yaml --status failed",
        ),
    ):
        journal = _command(commands, name, summary, description, example)
        journal.add_argument("file", nargs="?", help="automations file (for its state_dir)")
        journal.add_argument("--state-dir", help="the journal's folder (default: ./.ftconnect)")
        journal.add_argument("--limit", type=int, default=50, help="how many (default: 50)")
        if name == "events":
            journal.add_argument("--kind", help="only this kind, e.g. track_completed")
        else:
            journal.add_argument(
                "--status",
                choices=RUN_STATUSES,
                metavar="STATUS",
                help=f"only runs in this status: {', '.join(RUN_STATUSES)}",
            )
            journal.add_argument("--automation", help="only runs of this automation id")
        _json_flag(journal)

    replay = _command(
        commands,
        "replay",
        "run a failed (or finished) run again, on purpose",
        "Mark RUN_ID as replayed and queue a new run of the same automation for the same\n"
        "event; a running `ftconnect run` starts it within a second, else its next start.",
        "ftconnect replay 3f2a9c0d1e2b4a5c automations.yaml",
    )
    replay.add_argument("run_id", help="the run to replay (see `ftconnect runs`)")
    replay.add_argument("file", nargs="?", help="automations file (for its state_dir)")
    replay.add_argument("--state-dir", help="the journal's folder (default: ./.ftconnect)")

    from connector.sandbox import cli as sandbox_cli  # argparse-only module: cheap to import

    sandbox = commands.add_parser(
        "sandbox",
        help="serve a local stand-in for the Finetuning.ai and TemPolor APIs",
        description="Serve a faithful local Finetuning.ai (and TemPolor) API until stopped.",
    )
    sandbox_cli.configure_parser(sandbox)

    me = _command(
        commands,
        "me",
        "show your account and credits",
        "Show the account the key belongs to, its plan, credits and queue (costs no credit).",
        "ftconnect me --json | jq .limits.totalRemaining",
    )
    _json_flag(me)

    listing = _command(
        commands,
        "list",
        "list your generations, newest first",
        "List your generations, newest first, one page at a time. When there are more,\n"
        "a hint on stderr says which --offset shows the next page.",
        "ftconnect list --status completed --limit 50 --json | jq -r '.generations[].id'",
    )
    listing.add_argument("--limit", type=int, default=20, help="page size, 1-100 (default: 20)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many (default: 0)")
    listing.add_argument(
        "--status",
        choices=["pending", "processing", "completed", "failed"],
        help="only this status (default: all)",
    )
    listing.add_argument(
        "--type", choices=["music", "instrumental"], help="only this type (default: all)"
    )
    _json_flag(listing)

    get = _command(
        commands,
        "get",
        "show one generation",
        "Show one generation: status, title, duration, audio URL, parameters.",
        "ftconnect get 07e8d430-2310-4c57-87a8-cf1e6db376f7",
    )
    get.add_argument("id", help="generation id")
    _json_flag(get)

    _add_generate(commands)

    download = _command(
        commands,
        "download",
        "download a completed track's MP3",
        "Download the MP3 of a completed generation. By default it is saved in the\n"
        "current directory as <title>-<short id>.mp3.",
        "ftconnect download 07e8d430-2310-4c57-87a8-cf1e6db376f7 --library ~/Music",
    )
    download.add_argument("id", help="generation id")
    where = download.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="PATH", help="save to exactly this file")
    where.add_argument(
        "--library",
        metavar="DIR",
        help="save into this music library as DIR/Finetuning/<album>/<title>.mp3",
    )
    _json_flag(download)

    delete = _command(
        commands,
        "delete",
        "delete generations permanently",
        "Delete generations permanently: they disappear from your library and every\n"
        "playlist, with no undo. Asks for confirmation unless --yes; without --yes it\n"
        "refuses to run when stdin is not a terminal. Any number of ids (sent 100 at a\n"
        "time); exits 0 when at least one was deleted.",
        "ftconnect delete 07e8d430-2310-4c57-87a8-cf1e6db376f7 --yes",
    )
    delete.add_argument("ids", nargs="+", metavar="ID", help="generation ids")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _json_flag(delete)

    playlists = _command(
        commands,
        "playlists",
        "list your playlists",
        "List your playlists (they are created and renamed in the web app).",
        "ftconnect playlists --json",
    )
    _json_flag(playlists)

    _add_playlist(commands)

    doctor = _command(
        commands,
        "doctor",
        "check the set-up: version, base URL, key, /health, /v1/me",
        "Print the version, the base URL, where the API key came from (redacted), and\n"
        "check /health and /v1/me. Each check says ok or FAIL; exits 1 if any failed.\n"
        "With FILE, also load it and use its key and server as `ftconnect run FILE` would.",
        "ftconnect --api-key ft_live_... doctor",
    )
    doctor.add_argument(
        "file", nargs="?", help="automations file: check it and use its key and server"
    )
    _json_flag(doctor)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def _add_generate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    generate = _command(
        commands,
        "generate",
        "generate a track (spends one credit)",
        "Submit a generation (one credit), wait for it (polling 3 s, x1.3, up to 15 s,\n"
        "for at most 5 minutes) and print the finished track. Tags are joined with\n"
        "spaces. Every value is checked before anything is sent, so a bad one costs\n"
        "nothing. Ctrl-C stops waiting, not the generation.",
        "ftconnect generate lofi chill piano, vinyl crackle --duration 90 --bpm 80 \\\n"
        "      --key C --scale minor --download ~/Music",
    )
    generate.add_argument("tags", nargs="+", metavar="TAGS", help="what the music is like")
    # Values stay strings here: GenerationRequest checks them and names the allowed range.
    generate.add_argument(
        "--duration",
        metavar="SECONDS",
        default=str(DEFAULT_DURATION),
        help=f"seconds, 5-210 (default: {DEFAULT_DURATION})",
    )
    generate.add_argument(
        "--bpm",
        metavar="N",
        default=str(DEFAULT_BPM),
        help=f"tempo, 60-200 (default: {DEFAULT_BPM})",
    )
    generate.add_argument(
        "--key", help="C, C#, D, D#, E, F, F#, G, G#, A, A#, B (default: the model decides)"
    )
    generate.add_argument("--scale", help="major or minor (default: the model decides)")
    generate.add_argument(
        "--time-sig", metavar="N", help="beats per bar, 2-7 (default: 4, i.e. 4/4)"
    )
    generate.add_argument(
        "--language",
        metavar="CODE",
        help="lyrics language: en, ja, de, fr, es, zh, ko, pt, it, ru (default: the service's)",
    )
    generate.add_argument(
        "--lyrics",
        metavar="TEXT",
        help="lyrics text, or @FILE to read them from a file (@- for stdin)",
    )
    generate.add_argument(
        "--seed", metavar="N", help="same seed and parameters, same track (default: random)"
    )
    generate.add_argument(
        "--webhook",
        metavar="URL",
        help="https URL told when the track is done (implies --no-wait)",
    )
    generate.add_argument(
        "--no-wait", action="store_true", help="print the submitted generation and exit"
    )
    generate.add_argument(
        "--download",
        metavar="DIR",
        help="save the MP3 into this music library (DIR/Finetuning/<album>/<title>.mp3)",
    )
    _json_flag(generate)


def _add_playlist(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    playlist = _command(
        commands,
        "playlist",
        "show a playlist, add, remove or move its tracks",
        "Work with one playlist, named by id or by name (matched exactly, ignoring case).\n"
        "Public playlists take only public tracks; the API never changes a track's\n"
        "visibility. Bulk commands take any number of ids (sent 100 at a time), report\n"
        "per-track failures on stderr, and exit 0 when at least one track succeeded.",
        'ftconnect playlist add "Focus Beats" 07e8d430-2310-4c57-87a8-cf1e6db376f7',
    )
    actions = playlist.add_subparsers(dest="playlist_command", metavar="ACTION", required=True)

    show = _command(
        actions,
        "show",
        "show a playlist and its tracks",
        "Show a playlist (yours, or someone's public one) with all its tracks.",
        'ftconnect playlist show "Focus Beats" --json | jq -r ".tracks[].id"',
    )
    show.add_argument("playlist", metavar="PLAYLIST", help="playlist name or id")
    _json_flag(show)

    add = _command(
        actions,
        "add",
        "add tracks to a playlist",
        "Add tracks to one of your playlists.",
        'ftconnect playlist add "Focus Beats" ID1 ID2',
    )
    add.add_argument("playlist", metavar="PLAYLIST", help="playlist name or id")
    add.add_argument("ids", nargs="+", metavar="ID", help="track ids")
    _json_flag(add)

    remove = _command(
        actions,
        "remove",
        "take tracks out of a playlist (they stay in your library)",
        "Take tracks out of one of your playlists; they stay in your library.",
        'ftconnect playlist remove "Focus Beats" ID1 ID2',
    )
    remove.add_argument("playlist", metavar="PLAYLIST", help="playlist name or id")
    remove.add_argument("ids", nargs="+", metavar="ID", help="track ids")
    _json_flag(remove)

    move = _command(
        actions,
        "move",
        "move tracks from one playlist to another",
        "Move tracks: each is added to DST and, only if that worked, taken out of SRC.\n"
        "SRC and DST must be different playlists.",
        'ftconnect playlist move "Focus Beats" "Public Picks" ID1 ID2',
    )
    move.add_argument("source", metavar="SRC", help="source playlist name or id")
    move.add_argument("target", metavar="DST", help="target playlist name or id")
    move.add_argument("ids", nargs="+", metavar="ID", help="track ids")
    _json_flag(move)


# -- entry point --------------------------------------------------------------------------


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
        _endpoint(args).api_key, verbose=args.verbose, announce_waits=args.command == "run"
    )
    try:
        # Asked before the event loop starts: inside it, Ctrl-C at the prompt would only
        # cancel the command once Enter was pressed.
        if args.command == "delete" and not args.yes and not _confirm_delete(args.ids):
            print("aborted: nothing deleted", file=sys.stderr)
            return EXIT_ERROR
        return asyncio.run(_dispatch(args))
    except CliError as err:
        _print_error(err, no_color=args.no_color)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as err:
        # A journal that is corrupt, locked or unwritable: one clear line, not a traceback.
        # (Imported here: the store is not loaded for commands that never open it.)
        from connector.journal.lock import StateDirLocked
        from connector.journal.store import StoreError

        if isinstance(err, StoreError | StateDirLocked):
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


async def _automations_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from connector import app as runner

    if args.command == "schema":
        if args.markdown:
            from connector.automation.jsonschema import registry_markdown
            from connector.automation.registry import default_registry

            print(registry_markdown(default_registry()))
        else:
            print(runner.schema_document())
        return EXIT_OK
    if args.command in ("events", "runs", "replay"):
        from connector.automation.config import ConfigError

        try:
            state = runner.state_dir_for(args.file, args.state_dir)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return EXIT_INVALID
        if args.command == "events":
            return runner.show_events(state, limit=args.limit, kind=args.kind, as_json=args.json)
        if args.command == "runs":
            return runner.show_runs(
                state,
                limit=args.limit,
                status=args.status,
                automation=args.automation,
                as_json=args.json,
            )
        return runner.replay(state, args.run_id)
    path = Path(args.file)
    if args.command == "check":
        # A missing file is one of its problems (so --json still prints a document).
        return await runner.check_file(
            path,
            offline=args.offline,
            api_key=args.api_key,
            base_url=args.base_url,
            as_json=args.json,
        )
    if not path.is_file():  # noqa: ASYNC240  # one stat of the argument, nothing runs yet
        print(f"ftconnect: error: {path}: no such file", file=sys.stderr)
        return EXIT_INVALID
    return await runner.run_file(
        path, backfill=args.backfill, api_key=args.api_key, base_url=args.base_url
    )


class CliError(Exception):
    """A local problem worth one clear line on stderr (exit 1)."""


def _print_error(message: object, *, no_color: bool) -> None:
    """`ftconnect: error: ...` on stderr."""
    from connector.cli.progress import RED, color_enabled, paint

    label = paint("error", RED, color_enabled(sys.stderr, no_color=no_color))
    print(f"ftconnect: {label}: {message}", file=sys.stderr)


class _Context:
    """What a command needs: its arguments, stderr helpers, and a client opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        from contextlib import AsyncExitStack

        from connector.cli.progress import StatusLine, WaitProgress, color_enabled

        self.args = args
        self.endpoint = _endpoint(args)
        # One status line per command; a long wait (rate budget, retry) overlays it.
        self.line = StatusLine(sys.stderr)
        self.waits = WaitProgress(self.line)
        self.err_color = color_enabled(sys.stderr, no_color=args.no_color)
        self.out_color = color_enabled(sys.stdout, no_color=args.no_color)
        self._stack = AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._client: FinetuningClient | None = None

    @property
    def api_key(self) -> str | None:
        return self.endpoint.api_key

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    async def session(self) -> aiohttp.ClientSession:
        """One HTTP session for the API and the audio host, closed when the command ends."""
        if self._session is None:
            import aiohttp

            traces = [_trace_config(self.api_key)] if self.args.verbose else []
            self._session = await self._stack.enter_async_context(
                aiohttp.ClientSession(trace_configs=traces)
            )
        return self._session

    async def client(self) -> FinetuningClient:
        """The API client; raises MissingApiKeyError / InvalidApiKeyError without a usable key."""
        if self._client is None:
            from connector.errors import MissingApiKeyError
            from connector.providers.finetuning.client import FinetuningClient

            if not self.api_key:
                raise MissingApiKeyError(
                    f"no API key: pass --api-key or set {KEY_VARIABLE} (to try without an "
                    "account: `ftconnect demo`, or `ftconnect sandbox` for a local API)"
                )
            try:
                client = FinetuningClient(
                    self.api_key,
                    base_url=self.base_url,
                    session=await self.session(),
                    connect_retries=CLI_CONNECT_RETRIES,
                    on_wait=self.waits,
                )
            except ValueError as err:  # a base URL that is not http(s)
                raise CliError(str(err)) from err
            self._client = await self._stack.enter_async_context(client)
        return self._client

    async def aclose(self) -> None:
        """Close the client and the session."""
        self.waits.close()
        await self._stack.aclose()

    def note(self, message: str) -> None:
        """A status message for people (stderr)."""
        print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """`ftconnect: warning: ...` on stderr."""
        from connector.cli.progress import YELLOW, paint

        print(f"ftconnect: {paint('warning', YELLOW, self.err_color)}: {message}", file=sys.stderr)

    def hint(self, message: str) -> None:
        """`ftconnect: hint: ...` on stderr."""
        print(f"ftconnect: hint: {message}", file=sys.stderr)

    def fail(self, message: object) -> None:
        """`ftconnect: error: ...` on stderr."""
        self.waits.close()
        _print_error(message, no_color=self.args.no_color)


Command = Callable[[_Context], Awaitable[int]]


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from connector.cli.demo import run_demo

        return await run_demo(seed=args.seed)
    if args.command in ("run", "check", "schema", "events", "runs", "replay"):
        return await _automations_command(args)
    from connector.errors import AuthenticationError, FinetuningError, ValidationError

    ctx = _Context(args)
    command = args.command if args.command != "playlist" else f"playlist {args.playlist_command}"
    try:
        return await _COMMANDS[command](ctx)
    except ValidationError as err:
        ctx.fail(err)
        return EXIT_INVALID
    except FinetuningError as err:
        ctx.fail(err)
        if isinstance(err, AuthenticationError):
            ctx.hint("`ftconnect doctor` shows which key is used and where it came from")
        return EXIT_ERROR
    except CliError as err:
        ctx.fail(err)
        return EXIT_ERROR
    finally:
        await ctx.aclose()


# -- where the key and the server come from ------------------------------------------------

KEY_VARIABLE = "FINETUNING_API_KEY"
BASE_URL_VARIABLE = "FINETUNING_BASE_URL"


@dataclass(frozen=True)
class Endpoint:
    """Which server a command talks to and with which key, and where each came from.

    `*_source` is "flag", "file", "env" or "none"/"default"; `*_origin` says it
    for people ("--api-key", "finetuning.api_key in a.yaml", "$FINETUNING_API_KEY").
    """

    api_key: str | None
    key_source: str
    key_origin: str
    base_url: str
    base_url_source: str
    base_url_origin: str

    def describe(self) -> str:
        """`Server: URL (from --base-url); key: ft_live_… (from $FINETUNING_API_KEY)`."""
        from connector.providers.finetuning.client import redact_key
        from connector.redaction import strip_url_secrets

        return (
            f"Server: {strip_url_secrets(self.base_url)} (from {self.base_url_origin}); "
            f"key: {redact_key(self.api_key)} (from {self.key_origin})"
        )


def resolve_endpoint(
    *,
    flag_key: str | None,
    flag_url: str | None,
    file_key: str | None = None,
    file_url: str | None = None,
    file_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """The one precedence every command uses, for the key and the server each:
    the command line, then the automations file (when the command reads one), then
    the environment, then (the server only) the public API.

    The file wins over the environment because it is the specific, written choice
    for these automations, while an exported variable is ambient: it is there for
    every command and every file of the shell. A file that wants the environment
    says so with `api_key: !env FINETUNING_API_KEY`.
    """
    from connector.providers.finetuning.client import DEFAULT_BASE_URL

    env = os.environ if environ is None else environ
    where = f" in {file_name}" if file_name else " in the file"
    key, key_source, key_origin = _first(
        (flag_key, "flag", "--api-key"),
        (file_key, "file", f"finetuning.api_key{where}"),
        (env.get(KEY_VARIABLE), "env", f"${KEY_VARIABLE}"),
    ) or (None, "none", "nowhere")
    url, url_source, url_origin = _first(
        (flag_url, "flag", "--base-url"),
        (file_url, "file", f"finetuning.base_url{where}"),
        (env.get(BASE_URL_VARIABLE), "env", f"${BASE_URL_VARIABLE}"),
    ) or (DEFAULT_BASE_URL, "default", "the default")
    _register_url_password(url)
    return Endpoint(key, key_source, key_origin, url, url_source, url_origin)


def _register_url_password(url: str) -> None:
    """A password in the base URL (`https://user:pw@host`) is a secret like the key."""
    import contextlib
    from urllib.parse import urlsplit

    from connector.redaction import register_secret

    with contextlib.suppress(ValueError):  # not a URL: refused elsewhere, clearly
        register_secret(urlsplit(url).password)


def _first(*candidates: tuple[str | None, str, str]) -> tuple[str, str, str] | None:
    """The first candidate with a value (blank counts as unset, as `export X=` means)."""
    for value, source, origin in candidates:
        if value is not None and value.strip():
            return value.strip(), source, origin
    return None


def _endpoint(args: argparse.Namespace) -> Endpoint:
    """The endpoint of a command that reads no automations file."""
    return resolve_endpoint(flag_key=args.api_key, flag_url=args.base_url)


def _setup_logging(
    api_key: str | None, *, verbose: bool, announce_waits: bool = False
) -> Callable[[], None]:
    """Log to stderr through one handler that removes secrets; returns the undo.

    Warnings and errors from any library (asyncio, aiohttp) go through it too, so
    no log line of this process can carry a registered secret. `-v` adds the
    connector's HTTP activity at DEBUG, the key redacted.
    """
    import logging

    from connector.providers.finetuning.client import redact_key
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


def _trace_config(api_key: str | None) -> Any:
    """aiohttp hooks logging each request line, its status and time (never the key)."""
    import logging
    import time

    import aiohttp

    from connector.providers.finetuning.client import redact_key

    logger = logging.getLogger("connector.http")
    started: dict[int, float] = {}

    def shown(url: Any, headers: Any) -> Any:
        # Only API calls keep their query (limit, offset): a signed audio link carries its
        # token there.
        return url if "X-API-Key" in headers else url.with_query(None)

    async def on_start(
        _session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started[id(context)] = time.monotonic()
        auth = f" X-API-Key: {redact_key(api_key)}" if "X-API-Key" in params.headers else ""
        logger.debug("-> %s %s%s", params.method, shown(params.url, params.headers), auth)

    async def on_end(
        _session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        elapsed = (time.monotonic() - started.pop(id(context), time.monotonic())) * 1000
        logger.debug(
            "<- %s %s %s in %.0f ms",
            params.response.status,
            params.method,
            shown(params.url, params.headers),
            elapsed,
        )

    async def on_exception(
        _session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        started.pop(id(context), None)
        url = shown(params.url, params.headers)
        logger.debug("<- failed %s %s: %r", params.method, url, params.exception)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace


def _generation_json(generation: Any) -> dict[str, Any]:
    """A generation as every --json shows it: the wire form plus `provider`."""
    from connector.events import generation_dict

    return generation_dict(generation)


def _print_json(value: Any) -> None:
    from connector.redaction import dumps

    print(dumps(value, indent=2, ensure_ascii=False))


# -- reading ------------------------------------------------------------------------------


async def _cmd_me(ctx: _Context) -> int:
    client = await ctx.client()
    account = await client.get_account()
    if ctx.args.json:
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


async def _cmd_list(ctx: _Context) -> int:
    args = ctx.args
    client = await ctx.client()
    page = await client.list_generations(
        limit=args.limit, offset=args.offset, status=args.status, type=args.type
    )
    if args.json:
        _print_json(
            {**page.to_wire(), "generations": [_generation_json(g) for g in page.generations]}
        )
    else:
        for generation in page.generations:
            length = _seconds(generation.duration)
            title = generation.title or generation.prompt or ""
            print(f"{generation.id}  {generation.status.value:<10}  {length:>7}  {title}")
        if not page.generations:
            ctx.note("no generations" + (" at this offset" if args.offset else ""))
    if page.has_more:
        next_offset = page.next_offset if page.next_offset is not None else args.offset + args.limit
        ctx.hint(f"there are more: re-run with --offset {next_offset}")
    return EXIT_OK


async def _cmd_get(ctx: _Context) -> int:
    client = await ctx.client()
    generation = await client.get_generation(ctx.args.id)
    if ctx.args.json:
        _print_json(_generation_json(generation))
    else:
        _print_generation(generation)
    return EXIT_OK


def _seconds(value: float | None) -> str:
    return f"{value:.1f}s" if value is not None else "-"


def _print_generation(generation: Generation, *, saved: str | None = None) -> None:
    """A generation as `name: value` lines on stdout (empty fields left out)."""
    parameters = generation.parameters
    described: list[str] = []
    if parameters is not None:
        if parameters.bpm is not None:
            described.append(f"{parameters.bpm} bpm")
        if parameters.keyscale:
            described.append(parameters.keyscale)
        if parameters.timesignature is not None:
            described.append(f"{parameters.timesignature}/4")
        if parameters.seed is not None:
            described.append(f"seed {parameters.seed}")
    fields = {
        "id": generation.id,
        "status": generation.status.value,
        "title": generation.title,
        "prompt": generation.prompt,
        "duration": f"{generation.duration:g} s" if generation.duration is not None else None,
        "params": ", ".join(described) or None,
        "audio": generation.audio_url,
        "saved": saved,
        "error": generation.error_message,
        "created": generation.created_at,
        "completed": generation.completed_at,
    }
    for name, value in fields.items():
        if value is not None:
            print(f"{name + ':':<11}{value}")


async def _cmd_playlists(ctx: _Context) -> int:
    client = await ctx.client()
    playlists = await client.list_playlists()
    if ctx.args.json:
        _print_json([p.to_wire() for p in playlists])
        return EXIT_OK
    for playlist in playlists:
        visibility = "public " if playlist.is_public else "private"
        print(f"{playlist.id}  {visibility}  {playlist.track_count:>4} tracks  {playlist.name}")
    if not playlists:
        ctx.note("no playlists (they are created in the web app)")
    return EXIT_OK


async def _cmd_playlist_show(ctx: _Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    playlist = await client.get_playlist(playlist_id)
    if ctx.args.json:
        _print_json(playlist.to_wire())
        return EXIT_OK
    visibility = "public" if playlist.is_public else "private"
    owner = "" if playlist.is_owner in (None, True) else ", not yours"
    minutes, seconds = divmod(round(playlist.total_duration), 60)
    print(
        f"{playlist.name}  ({visibility}{owner}, {playlist.track_count} tracks, "
        f"{minutes}:{seconds:02d})  {playlist.id}"
    )
    if playlist.description:
        print(playlist.description)
    for track in playlist.tracks:
        track_visibility = "public " if track.is_public else "private"
        title = track.title or track.prompt or ""
        print(f"{track.id}  {track_visibility}  {_seconds(track.duration):>7}  {title}")
    return EXIT_OK


# -- generating ---------------------------------------------------------------------------


def _generation_request(ctx: _Context) -> GenerationRequest:
    """The checked request; raises RequestValidationError (exit 2) before anything is sent."""
    from connector.errors import FieldProblem, RequestValidationError
    from connector.providers.finetuning.models import GenerationRequest

    args = ctx.args
    lyrics = args.lyrics
    if lyrics is not None and lyrics.startswith("@"):
        source = lyrics[1:]
        try:
            if source == "-":
                lyrics = sys.stdin.read()
            else:
                with open(source, encoding="utf-8") as file:
                    lyrics = file.read()
        except (OSError, UnicodeDecodeError) as err:
            problem = FieldProblem("lyrics", f"cannot read {source!r}: {err}")
            raise RequestValidationError([problem], what="generation request") from err
    fields: dict[str, Any] = {
        "tags": " ".join(args.tags),
        "duration": args.duration,
        "bpm": args.bpm,
        "key": args.key,
        "scale": args.scale,
        "timesignature": args.time_sig,
        "language": args.language,
        "lyrics": lyrics,
        "seed": args.seed,
        "webhook": args.webhook,
    }
    fields = {name: value for name, value in fields.items() if value is not None}
    # A loopback API is the sandbox, which (unlike the service) delivers to loopback webhooks.
    return GenerationRequest.build(allow_local_webhook=_is_loopback(ctx.base_url), **fields)


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clamp_warnings(request: GenerationRequest, generation: Generation) -> list[str]:
    """What the server changed from what was asked ("duration clamped from 300 to 120")."""
    warnings: list[str] = []
    echoed = generation.parameters
    if echoed is None:
        return warnings
    for name, asked, got in (
        ("duration", request.duration, echoed.duration),
        ("bpm", request.bpm, echoed.bpm),
    ):
        if asked is not None and got is not None and abs(float(asked) - float(got)) > 1e-9:
            warnings.append(f"{name} clamped from {float(asked):g} to {float(got):g}")
    return warnings


async def _cmd_generate(ctx: _Context) -> int:
    import asyncio

    from connector.cli.progress import GenerationProgress

    args = ctx.args
    request = _generation_request(ctx)
    if args.download:
        _check_folder("--download", args.download)  # before the credit is spent
    client = await ctx.client()
    generation = await client.create_generation(request)
    credits = generation.credits_remaining
    left = f"; {credits} credits left" if credits is not None else ""
    ctx.note(f"submitted {generation.id} ({generation.status.value}){left}")
    for warning in clamp_warnings(request, generation):
        ctx.warn(warning)
    if args.no_wait or args.webhook:
        if args.json:
            _print_json(_generation_json(generation))
        else:
            _print_generation(generation)
        ctx.hint(f"follow it with `ftconnect get {generation.id}`")
        return EXIT_OK

    line = ctx.line
    try:
        async with GenerationProgress(
            generation.id, line, status=generation.status.value
        ) as progress:
            finished = await client.wait_for_generation(
                generation.id,
                timeout=POLL_TIMEOUT,
                on_progress=lambda polled: progress.update(polled.status.value),
                first_delay=POLL_FIRST_DELAY,
                factor=POLL_FACTOR,
                max_delay=POLL_MAX_DELAY,
            )
    except (asyncio.CancelledError, KeyboardInterrupt):
        ctx.note(
            f"stopped waiting: generation {generation.id} keeps running on the server and "
            f"its credit is spent; check it later with `ftconnect get {generation.id}`"
        )
        print(generation.id, flush=True)
        raise

    if finished.status.value == "failed":
        if args.json:
            _print_json(_generation_json(finished))
        raise CliError(
            f"generation {finished.id} failed: {finished.error_message or 'no reason given'}"
        )
    saved = None
    if args.download:
        try:
            saved = await _save(ctx, finished, library=args.download, output=None)
        except CliError:
            ctx.hint(f"the track is done; fetch it later with `ftconnect download {finished.id}`")
            raise
    if args.json:
        data = _generation_json(finished)
        if saved is not None:
            data["download"] = saved
        _print_json(data)
    else:
        _print_generation(finished, saved=saved["path"] if saved else None)
    return EXIT_OK


# -- downloading --------------------------------------------------------------------------


async def _save(
    ctx: _Context, generation: Generation, *, library: str | None, output: str | None
) -> dict[str, Any]:
    """Download a completed generation's MP3 with progress on stderr; returns what was saved."""
    from connector.cli.progress import DownloadProgress
    from connector.delivery.library import DownloadError, download_track

    library, template = _destination(library, output)
    progress = DownloadProgress(ctx.line)
    try:
        result = await download_track(
            generation,
            library,
            session=await ctx.session(),
            path_template=template,
            on_progress=progress,
        )
    except (DownloadError, OSError, ValueError) as err:
        raise CliError(f"download of {generation.id} failed: {err}") from err
    finally:
        progress.finish()
    if result.already_present:
        ctx.note(f"already there: {result.path}")
    return {
        "path": str(result.path),
        "bytes": result.bytes,
        "alreadyPresent": result.already_present,
    }


def _check_folder(option: str, folder: str) -> None:
    """Refuse (exit 2) a destination folder that does not exist, before any request."""
    from connector.errors import FieldProblem, RequestValidationError

    if not os.path.isdir(os.path.expanduser(folder)):
        problem = FieldProblem(option, f"folder {folder!r} does not exist")
        raise RequestValidationError([problem], what="destination")


def _destination(library: str | None, output: str | None) -> tuple[str, str]:
    """The library folder and path template for `--library DIR` or `-o PATH`."""
    from connector.delivery.library import DEFAULT_PATH_TEMPLATE

    if output is None:
        return library if library is not None else os.getcwd(), DEFAULT_PATH_TEMPLATE
    # `-o PATH`: the file's folder is the library and its name a template with no fields.
    target = os.path.abspath(os.path.expanduser(output))
    name = os.path.basename(target).replace("{", "{{").replace("}", "}}")
    return os.path.dirname(target), name


async def _cmd_download(ctx: _Context) -> int:
    from connector.errors import FieldProblem, RequestValidationError

    args = ctx.args
    output = args.output
    if output is not None and not output.lower().endswith(".mp3"):
        problem = FieldProblem("--output", f"must name an .mp3 file (got {output!r})")
        raise RequestValidationError([problem], what="download")
    if args.library is not None:
        _check_folder("--library", args.library)
    if output is not None:
        _check_folder("--output", _destination(None, output)[0])
    client = await ctx.client()
    generation = await client.get_generation(args.id)
    if generation.status.value != "completed" or not generation.audio_url:
        reason = f": {generation.error_message}" if generation.error_message else ""
        raise CliError(
            f"generation {generation.id} is {generation.status.value}{reason}; only a completed "
            "generation has audio to download"
        )
    if output is None and args.library is None:
        output = _default_filename(generation)
    saved = await _save(ctx, generation, library=args.library, output=output)
    if args.json:
        _print_json({"id": generation.id, **saved})
    else:
        print(saved["path"])
    return EXIT_OK


def _default_filename(generation: Generation) -> str:
    """`<slug>-<short id>.mp3` in the current directory, as `ft` names downloads."""
    import re

    words = re.sub(r"[^a-z0-9]+", "-", (generation.title or generation.prompt or "").lower())
    slug = words.strip("-")[:48].rstrip("-") or "track"
    short = re.sub(r"[^A-Za-z0-9]", "", generation.id)[:8]
    return f"{slug}-{short}.mp3"


# -- bulk ---------------------------------------------------------------------------------


def _confirm_delete(ids: Sequence[str]) -> bool:
    """Ask on stderr, read the answer from stdin; refuse outright when nobody can answer."""
    from connector.cli.progress import is_terminal

    if not is_terminal(sys.stdin):
        raise CliError(
            "refusing to delete without --yes: stdin is not a terminal, so nobody can confirm "
            "(add --yes to delete anyway)"
        )
    count = len(dict.fromkeys(ids))
    noun = "generation" if count == 1 else "generations"
    print(
        f"Permanently delete {count} {noun}? This cannot be undone. [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def _cmd_delete(ctx: _Context) -> int:
    # The confirmation was asked by main(), before the event loop started.
    args = ctx.args
    client = await ctx.client()
    return await _bulk(
        ctx, lambda: client.delete_generations(args.ids), done_key="deleted", id_key="id"
    )


async def _cmd_playlist_add(ctx: _Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    # As the add_to_playlist action: a track already there is what was asked for.
    return await _bulk(
        ctx,
        lambda: client.add_tracks(playlist_id, ctx.args.ids),
        done_key="added",
        already=("alreadyInPlaylist", "already in the playlist"),
    )


async def _cmd_playlist_remove(ctx: _Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    return await _bulk(
        ctx, lambda: client.remove_tracks(playlist_id, ctx.args.ids), done_key="removed"
    )


async def _cmd_playlist_move(ctx: _Context) -> int:
    from connector.errors import FieldProblem, RequestValidationError

    args = ctx.args
    client = await ctx.client()
    source = await client.resolve_playlist(args.source)
    target = await client.resolve_playlist(args.target)
    if source.casefold() == target.casefold():
        # Refused here, as `ft` does, so the message can say how both names resolved.
        same = f"{args.source!r} and {args.target!r} are both playlist {source}"
        raise RequestValidationError(
            [FieldProblem("DST", f"must differ from SRC ({same})")], what="move"
        )
    return await _bulk(ctx, lambda: client.move_tracks(source, target, args.ids), done_key="moved")


async def _bulk(
    ctx: _Context,
    call: Callable[[], Awaitable[BulkResult]],
    *,
    done_key: str,
    id_key: str = "trackId",
    already: tuple[str, str] | None = None,
) -> int:
    """Run a bulk call and report it: ids done on stdout (or --json), failures on stderr.

    `already` = (JSON key, words): items refused because they are already as asked
    (a track already in the playlist) count as done and are said apart.
    """
    from connector.errors import FinetuningError
    from connector.providers.finetuning.models import BulkResult

    try:
        result = await call()
    except FinetuningError as err:
        # A later chunk failed: what earlier chunks did has happened and must be shown.
        partial = err.partial_result
        if isinstance(partial, BulkResult) and partial.succeeded:
            _report(ctx, partial, done_key=done_key, id_key=id_key, already=already)
            ctx.note(f"{len(partial.succeeded)} {done_key} before the error")
        raise
    done_already = _report(ctx, result, done_key=done_key, id_key=id_key, already=already)
    total = len(result.succeeded) + len(result.errors)
    if not result.succeeded and not done_already:
        ctx.fail(f"nothing {done_key}: all {total} failed")
        return EXIT_ERROR
    there = f" ({len(done_already)} {already[1]})" if already and done_already else ""
    ctx.note(f"{done_key} {len(result.succeeded)} of {total}{there}")
    return EXIT_OK


def _report(
    ctx: _Context,
    result: BulkResult,
    *,
    done_key: str,
    id_key: str,
    already: tuple[str, str] | None = None,
) -> list[str]:
    """Print what a bulk call did; returns the ids that were already as asked."""
    done_already = [e.id for e in result.errors if already and e.reason == ALREADY_IN_PLAYLIST]
    failures = [e for e in result.errors if e.id not in done_already]
    for error in failures:
        ctx.warn(f"{error.id}: {error.reason}")
    if already:
        for item in done_already:
            ctx.note(f"{item}: {already[1]}")
    if any(error.reason == PRIVATE_INTO_PUBLIC for error in failures):
        ctx.hint(PRIVATE_INTO_PUBLIC_HINT)
    if ctx.args.json:
        # The API's own shape, merged over chunks; `errors` always present for scripts.
        errors = [{id_key: e.id, "error": e.reason} for e in failures]
        data: dict[str, Any] = {done_key: result.succeeded, "errors": errors}
        if already and done_already:
            data[already[0]] = done_already
        _print_json(data)
    else:
        for item in result.succeeded:
            print(item)
    return done_already


# -- doctor -------------------------------------------------------------------------------


async def _cmd_doctor(ctx: _Context) -> int:
    import platform

    from connector.cli.progress import GREEN, RED, paint
    from connector.errors import FinetuningError
    from connector.providers.finetuning.client import check_api_key, redact_key
    from connector.version import __version__

    args = ctx.args
    results: list[tuple[bool, str, str]] = []
    if args.file:
        results.append(_doctor_file(ctx, args.file))
    endpoint = ctx.endpoint
    key_ok = False
    if endpoint.api_key is None:
        where = f", set finetuning.api_key in {args.file}" if args.file else ""
        results.append((False, "API key", f"none: pass --api-key{where} or set {KEY_VARIABLE}"))
    else:
        try:
            check_api_key(endpoint.api_key)
        except FinetuningError as err:
            results.append((False, "API key", err.message))
        else:
            key_ok = True
            results.append((True, "API key", "well-formed (ft_live_ + 32 hex characters)"))
    results.append(await _check_health(ctx))
    if key_ok:
        try:
            account = await (await ctx.client()).get_account()
        except (FinetuningError, CliError) as err:
            results.append((False, "/v1/me", str(err)))
        else:
            limits = account.limits
            results.append(
                (
                    True,
                    "/v1/me",
                    f"{account.name or '-'} <{account.email or '-'}>, plan {account.tier or '-'}, "
                    f"{limits.total_remaining} credits left",
                )
            )
    else:
        results.append((False, "/v1/me", "not checked: no usable API key"))

    failed = sum(1 for ok, _, _ in results if not ok)
    if args.json:
        _print_json(
            {
                "version": __version__,
                "python": platform.python_version(),
                "file": args.file,
                "base_url": {
                    "value": endpoint.base_url,
                    "source": endpoint.base_url_source,
                    "origin": endpoint.base_url_origin,
                },
                "api_key": {
                    "value": redact_key(endpoint.api_key) if endpoint.api_key else None,
                    "source": endpoint.key_source,
                    "origin": endpoint.key_origin,
                },
                "checks": [{"name": n, "ok": ok, "detail": d} for ok, n, d in results],
                "ok": not failed,
            }
        )
    else:
        print(f"version:   ftconnect {__version__} (Python {platform.python_version()})")
        from connector.redaction import strip_url_secrets

        shown = strip_url_secrets(endpoint.base_url)
        print(f"base URL:  {shown} (from {endpoint.base_url_origin})")
        print(
            f"API key:   {redact_key(endpoint.api_key)} "
            f"(source: {endpoint.key_source}, {endpoint.key_origin})"
        )
        print("checks:")
        for ok, name, detail in results:
            mark = paint("ok  ", GREEN, ctx.out_color) if ok else paint("FAIL", RED, ctx.out_color)
            print(f"  {mark}  {name:<9} {detail}")
    if failed:
        ctx.fail(f"{failed} check{'s' if failed > 1 else ''} failed")
        return EXIT_ERROR
    return EXIT_OK


def _doctor_file(ctx: _Context, file: str) -> tuple[bool, str, str]:
    """Load FILE as `run` would; its key and server then count (see resolve_endpoint)."""
    from pathlib import Path

    from connector import app as runner
    from connector.automation.config import ConfigError

    path = Path(file)
    args = ctx.args
    if not path.is_file():
        return False, "config", f"{file}: no such file"
    try:
        config, ctx.endpoint = runner.load_file(path, api_key=args.api_key, base_url=args.base_url)
    except ConfigError as err:
        ctx.endpoint = runner.lenient_endpoint(path, api_key=args.api_key, base_url=args.base_url)
        first, more = err.problems[0], len(err.problems) - 1
        also = f" (and {more} more: `ftconnect check {file}` lists them)" if more else ""
        return False, "config", f"{first}{also}"
    count = len(config.automations)
    return True, "config", f"{file}: {count} automation(s), valid"


async def _check_health(ctx: _Context) -> tuple[bool, str, str]:
    """GET /health without the key (the client needs a valid key; this check must not)."""
    import asyncio
    import time

    import aiohttp
    from yarl import URL

    from connector.version import USER_AGENT

    try:
        url = URL(ctx.base_url.rstrip("/")).join(URL("/health"))
        if url.scheme not in ("http", "https") or not url.host:
            return False, "/health", f"base URL {ctx.base_url!r} is not an http(s) URL"
        session = await ctx.session()
        started = time.monotonic()
        async with asyncio.timeout(10):
            async with session.get(url, headers={"User-Agent": USER_AGENT}) as response:
                status = response.status
        elapsed = (time.monotonic() - started) * 1000
    except (TimeoutError, aiohttp.ClientError, ValueError) as err:
        return False, "/health", f"unreachable: {type(err).__name__}: {err}"
    return status == 200, "/health", f"HTTP {status} in {elapsed:.0f} ms"


_COMMANDS: dict[str, Command] = {
    "me": _cmd_me,
    "list": _cmd_list,
    "get": _cmd_get,
    "generate": _cmd_generate,
    "download": _cmd_download,
    "delete": _cmd_delete,
    "playlists": _cmd_playlists,
    "playlist show": _cmd_playlist_show,
    "playlist add": _cmd_playlist_add,
    "playlist remove": _cmd_playlist_remove,
    "playlist move": _cmd_playlist_move,
    "doctor": _cmd_doctor,
}


if __name__ == "__main__":
    raise SystemExit(main())
