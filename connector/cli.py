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
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

    from .client import FinetuningClient
    from .models import BulkResult, Generation, GenerationRequest

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

# The `ft` CLI's polling schedule for `generate` (module constants so tests can shorten them).
POLL_FIRST_DELAY = 3.0
POLL_FACTOR = 1.3
POLL_MAX_DELAY = 15.0
POLL_TIMEOUT = 300.0

DEFAULT_DURATION = 60
DEFAULT_BPM = 120
PRIVATE_INTO_PUBLIC = "Cannot add private track to public playlist"
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
  FINETUNING_API_KEY   API key (what --api-key overrides)
  FINETUNING_BASE_URL  API base URL (what --base-url overrides)
  NO_COLOR             set to turn colours off, like --no-color

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
    parser.add_argument("--api-key", help="Finetuning.ai API key (default: $FINETUNING_API_KEY)")
    parser.add_argument(
        "--base-url",
        help="API base URL (default: $FINETUNING_BASE_URL or https://pub.finetuning.ai)",
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
        "SIGTERM stop it gracefully. Without an API key in FILE it runs against the\n"
        "embedded sandbox and says so on its first line.",
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
        "no duplicate ids, and (with an API key, unless --offline) every playlist named\n"
        "exists. Each problem is reported with its line.",
        "ftconnect check automations.yaml",
    )
    check.add_argument("file", help="the automations file (YAML)")
    check.add_argument("--offline", action="store_true", help="do not look playlists up")

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
            "Show the events recorded in the journal: what fired, from which source.",
            "ftconnect events automations.yaml --limit 20",
        ),
        (
            "runs",
            "show the automation runs, their steps, what failed and why",
            "Show the runs recorded in the journal with each step's outcome.",
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
            journal.add_argument("--status", help="only runs in this status, e.g. failed")
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

    from .sandbox import cli as sandbox_cli  # argparse-only module: cheap to import

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

    _command(
        commands,
        "doctor",
        "check the set-up: version, base URL, key, /health, /v1/me",
        "Print the version, the base URL, where the API key came from (redacted), and\n"
        "check /health and /v1/me. Each check says ok or FAIL; exits 1 if any failed.",
        "ftconnect --api-key ft_live_... doctor",
    )
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
        args = parser.parse_args(argv)
        if args.command == "generate" and args.download and (args.no_wait or args.webhook):
            parser.error("--download waits for the track: it cannot go with --no-wait or --webhook")
    except SystemExit as exit_:
        # --help and usage errors: argparse has printed; keep main() returning a code.
        return exit_.code if isinstance(exit_.code, int) else EXIT_INVALID
    if args.version:
        from .version import __version__

        print(f"ftconnect {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.command == "sandbox":
        from .sandbox import cli as sandbox_cli

        return sandbox_cli.run(args)
    import asyncio

    remove_logging = _setup_logging(_api_key(args)[0], verbose=args.verbose)
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
        from .statelock import StateDirLocked
        from .store import StoreError

        if isinstance(err, StoreError | StateDirLocked):
            print(f"ftconnect: error: {err}", file=sys.stderr)
            return EXIT_ERROR
        raise
    finally:
        remove_logging()


async def _automations_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import runner

    if args.command == "schema":
        if args.markdown:
            from .jsonschema import registry_markdown
            from .registry import default_registry

            print(registry_markdown(default_registry()))
        else:
            print(runner.schema_document())
        return EXIT_OK
    if args.command in ("events", "runs", "replay"):
        from .config import ConfigError

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
    if not path.is_file():  # noqa: ASYNC240  # one stat of the argument, nothing runs yet
        print(f"ftconnect: error: {path}: no such file", file=sys.stderr)
        return EXIT_INVALID
    if args.command == "check":
        return await runner.check_file(path, offline=args.offline)
    return await runner.run_file(path, backfill=args.backfill)


class CliError(Exception):
    """A local problem worth one clear line on stderr (exit 1)."""


def _print_error(message: object, *, no_color: bool) -> None:
    """`ftconnect: error: ...` on stderr."""
    from .progress import RED, color_enabled, paint

    label = paint("error", RED, color_enabled(sys.stderr, no_color=no_color))
    print(f"ftconnect: {label}: {message}", file=sys.stderr)


class _Context:
    """What a command needs: its arguments, stderr helpers, and a client opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        from contextlib import AsyncExitStack

        from .progress import color_enabled

        self.args = args
        self.api_key, self.key_source = _api_key(args)
        self.base_url, self.base_url_source = _base_url(args)
        self.err_color = color_enabled(sys.stderr, no_color=args.no_color)
        self.out_color = color_enabled(sys.stdout, no_color=args.no_color)
        self._stack = AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._client: FinetuningClient | None = None

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
            from .client import FinetuningClient
            from .exceptions import MissingApiKeyError

            if not self.api_key:
                raise MissingApiKeyError(
                    "no API key: pass --api-key or set FINETUNING_API_KEY (to try without an "
                    "account: `ftconnect demo`, or `ftconnect sandbox` for a local API)"
                )
            try:
                client = FinetuningClient(
                    self.api_key, base_url=self.base_url, session=await self.session()
                )
            except ValueError as err:  # a base URL that is not http(s)
                raise CliError(str(err)) from err
            self._client = await self._stack.enter_async_context(client)
        return self._client

    async def aclose(self) -> None:
        """Close the client and the session."""
        await self._stack.aclose()

    def note(self, message: str) -> None:
        """A status message for people (stderr)."""
        print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """`ftconnect: warning: ...` on stderr."""
        from .progress import YELLOW, paint

        print(f"ftconnect: {paint('warning', YELLOW, self.err_color)}: {message}", file=sys.stderr)

    def hint(self, message: str) -> None:
        """`ftconnect: hint: ...` on stderr."""
        print(f"ftconnect: hint: {message}", file=sys.stderr)

    def fail(self, message: object) -> None:
        """`ftconnect: error: ...` on stderr."""
        _print_error(message, no_color=self.args.no_color)


Command = Callable[[_Context], Awaitable[int]]


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(seed=args.seed)
    if args.command in ("run", "check", "schema", "events", "runs", "replay"):
        return await _automations_command(args)
    from .exceptions import AuthenticationError, FinetuningError, ValidationError

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


def _api_key(args: argparse.Namespace) -> tuple[str | None, str]:
    """The key and where it came from: "flag", "env" or "none"."""
    if args.api_key:
        return args.api_key, "flag"
    env = os.environ.get("FINETUNING_API_KEY")
    if env:
        return env, "env"
    return None, "none"


def _base_url(args: argparse.Namespace) -> tuple[str, str]:
    """The base URL and where it came from: "flag", "env" or "default"."""
    if args.base_url:
        return args.base_url, "flag"
    env = os.environ.get("FINETUNING_BASE_URL")
    if env:
        return env, "env"
    from .client import DEFAULT_BASE_URL

    return DEFAULT_BASE_URL, "default"


def _setup_logging(api_key: str | None, *, verbose: bool) -> Callable[[], None]:
    """Log to stderr through one handler that removes secrets; returns the undo.

    Warnings and errors from any library (asyncio, aiohttp) go through it too, so
    no log line of this process can carry a registered secret. `-v` adds the
    connector's HTTP activity at DEBUG, the key redacted.
    """
    import logging

    from .client import redact_key
    from .redaction import ScrubFilter, register_secret

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
    previous = (root.level, logger.level)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    if verbose:
        logger.setLevel(logging.DEBUG)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(previous[0])
        logger.setLevel(previous[1])

    return undo


def _trace_config(api_key: str | None) -> Any:
    """aiohttp hooks logging each request line, its status and time (never the key)."""
    import logging
    import time

    import aiohttp

    from .client import redact_key

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


def _print_json(value: Any) -> None:
    from .redaction import dumps

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
        _print_json(page.to_wire())
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
        _print_json(generation.to_wire())
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
    from .exceptions import FieldProblem, RequestValidationError
    from .models import GenerationRequest

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

    from .progress import GenerationProgress, StatusLine

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
            _print_json(generation.to_wire())
        else:
            _print_generation(generation)
        ctx.hint(f"follow it with `ftconnect get {generation.id}`")
        return EXIT_OK

    line = StatusLine(sys.stderr)
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
            _print_json(finished.to_wire())
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
        data = finished.to_wire()
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
    from .media import DownloadError, download_track
    from .progress import DownloadProgress, StatusLine

    library, template = _destination(library, output)
    progress = DownloadProgress(StatusLine(sys.stderr))
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
    from .exceptions import FieldProblem, RequestValidationError

    if not os.path.isdir(os.path.expanduser(folder)):
        problem = FieldProblem(option, f"folder {folder!r} does not exist")
        raise RequestValidationError([problem], what="destination")


def _destination(library: str | None, output: str | None) -> tuple[str, str]:
    """The library folder and path template for `--library DIR` or `-o PATH`."""
    from .media import DEFAULT_PATH_TEMPLATE

    if output is None:
        return library if library is not None else os.getcwd(), DEFAULT_PATH_TEMPLATE
    # `-o PATH`: the file's folder is the library and its name a template with no fields.
    target = os.path.abspath(os.path.expanduser(output))
    name = os.path.basename(target).replace("{", "{{").replace("}", "}}")
    return os.path.dirname(target), name


async def _cmd_download(ctx: _Context) -> int:
    from .exceptions import FieldProblem, RequestValidationError

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
    from .progress import is_terminal

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
    return await _bulk(ctx, lambda: client.add_tracks(playlist_id, ctx.args.ids), done_key="added")


async def _cmd_playlist_remove(ctx: _Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    return await _bulk(
        ctx, lambda: client.remove_tracks(playlist_id, ctx.args.ids), done_key="removed"
    )


async def _cmd_playlist_move(ctx: _Context) -> int:
    from .exceptions import FieldProblem, RequestValidationError

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
) -> int:
    """Run a bulk call and report it: ids done on stdout (or --json), failures on stderr."""
    from .exceptions import FinetuningError
    from .models import BulkResult

    try:
        result = await call()
    except FinetuningError as err:
        # A later chunk failed: what earlier chunks did has happened and must be shown.
        partial = err.partial_result
        if isinstance(partial, BulkResult) and partial.succeeded:
            _report(ctx, partial, done_key=done_key, id_key=id_key)
            ctx.note(f"{len(partial.succeeded)} {done_key} before the error")
        raise
    _report(ctx, result, done_key=done_key, id_key=id_key)
    total = len(result.succeeded) + len(result.errors)
    if not result.ok:
        ctx.fail(f"nothing {done_key}: all {total} failed")
        return EXIT_ERROR
    ctx.note(f"{done_key} {len(result.succeeded)} of {total}")
    return EXIT_OK


def _report(ctx: _Context, result: BulkResult, *, done_key: str, id_key: str) -> None:
    for error in result.errors:
        ctx.warn(f"{error.id}: {error.reason}")
    if any(error.reason == PRIVATE_INTO_PUBLIC for error in result.errors):
        ctx.hint(PRIVATE_INTO_PUBLIC_HINT)
    if ctx.args.json:
        # The API's own shape, merged over chunks; `errors` always present for scripts.
        errors = [{id_key: e.id, "error": e.reason} for e in result.errors]
        _print_json({done_key: result.succeeded, "errors": errors})
    else:
        for item in result.succeeded:
            print(item)


# -- doctor -------------------------------------------------------------------------------


async def _cmd_doctor(ctx: _Context) -> int:
    import platform

    from .client import check_api_key, redact_key
    from .exceptions import FinetuningError
    from .progress import GREEN, RED, paint
    from .version import __version__

    print(f"version:   ftconnect {__version__} (Python {platform.python_version()})")
    base_origin = {"flag": "--base-url", "env": "$FINETUNING_BASE_URL"}.get(
        ctx.base_url_source, "the default"
    )
    print(f"base URL:  {ctx.base_url} (from {base_origin})")
    key_origin = {"flag": "--api-key", "env": "$FINETUNING_API_KEY"}.get(ctx.key_source, "nowhere")
    print(f"API key:   {redact_key(ctx.api_key)} (source: {ctx.key_source}, {key_origin})")

    results: list[tuple[bool, str, str]] = []
    key_ok = False
    if ctx.api_key is None:
        results.append((False, "API key", "none: pass --api-key or set FINETUNING_API_KEY"))
    else:
        try:
            check_api_key(ctx.api_key)
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

    print("checks:")
    for ok, name, detail in results:
        mark = paint("ok  ", GREEN, ctx.out_color) if ok else paint("FAIL", RED, ctx.out_color)
        print(f"  {mark}  {name:<9} {detail}")
    failed = sum(1 for ok, _, _ in results if not ok)
    if failed:
        ctx.fail(f"{failed} check{'s' if failed > 1 else ''} failed")
        return EXIT_ERROR
    return EXIT_OK


async def _check_health(ctx: _Context) -> tuple[bool, str, str]:
    """GET /health without the key (the client needs a valid key; this check must not)."""
    import asyncio
    import time

    import aiohttp
    from yarl import URL

    from .version import USER_AGENT

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
