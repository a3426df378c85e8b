"""The whole `ftconnect` command line as argparse sees it: every command, option and help.

Only argparse is needed to build it, so `ftconnect --help` costs about a bare Python
start; what the commands do is elsewhere in `connector.cli`.
"""

from __future__ import annotations

import argparse

# What `runs --status` takes: the journal's statuses (connector.journal.runs: RUN_STATUSES,
# RUNNING, REPLAYED; a test keeps them equal), without importing the store here.
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "replayed")

DEFAULT_DURATION = 60
DEFAULT_BPM = 120

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
