"""`ftconnect me`, `list`, `get`, `generate`, `download` and `delete`: an account's tracks.

Each command takes a `Context` (connector.cli.context) and returns the exit code;
aiohttp, pydantic and the client are imported inside the command that needs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connector.cli.bulk import bulk
from connector.cli.context import CliError, Context
from connector.cli.output import EXIT_OK, format_seconds, generation_json, print_json

if TYPE_CHECKING:
    from connector.providers.finetuning.models import Generation, GenerationRequest

# The `ft` CLI's polling schedule for `generate` (module constants so tests can shorten them).
POLL_FIRST_DELAY = 3.0
POLL_FACTOR = 1.3
POLL_MAX_DELAY = 15.0
POLL_TIMEOUT = 300.0


async def cmd_me(ctx: Context) -> int:
    client = await ctx.client()
    account = await client.get_account()
    if ctx.args.json:
        print_json(account.to_wire())
        return EXIT_OK
    limits = account.limits
    print(f"{account.name or '-'} <{account.email or '-'}>  plan: {account.tier or '-'}")
    print(
        f"credits: {limits.total_remaining} left "
        f"({limits.monthly_remaining} of {limits.monthly_generations} this month, "
        f"{limits.pack_credits} pack); queue: {limits.queue_depth}"
    )
    return EXIT_OK


async def cmd_list(ctx: Context) -> int:
    args = ctx.args
    client = await ctx.client()
    page = await client.list_generations(
        limit=args.limit, offset=args.offset, status=args.status, type=args.type
    )
    if args.json:
        print_json(
            {**page.to_wire(), "generations": [generation_json(g) for g in page.generations]}
        )
    else:
        for generation in page.generations:
            length = format_seconds(generation.duration)
            title = generation.title or generation.prompt or ""
            print(f"{generation.id}  {generation.status.value:<10}  {length:>7}  {title}")
        if not page.generations:
            ctx.note("no generations" + (" at this offset" if args.offset else ""))
    if page.has_more:
        next_offset = page.next_offset if page.next_offset is not None else args.offset + args.limit
        ctx.hint(f"there are more: re-run with --offset {next_offset}")
    return EXIT_OK


async def cmd_get(ctx: Context) -> int:
    client = await ctx.client()
    generation = await client.get_generation(ctx.args.id)
    if ctx.args.json:
        print_json(generation_json(generation))
    else:
        _print_generation(generation)
    return EXIT_OK


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


def _generation_request(ctx: Context) -> GenerationRequest:
    """The checked request; raises RequestValidationError (exit 2) before anything is sent."""
    from connector.errors import FieldProblem, RequestValidationError
    from connector.providers.finetuning.models import GenerationRequest
    from connector.providers.hosts import is_loopback_url

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
    return GenerationRequest.build(allow_local_webhook=is_loopback_url(ctx.base_url), **fields)


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


async def cmd_generate(ctx: Context) -> int:
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
            print_json(generation_json(generation))
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
            print_json(generation_json(finished))
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
        data = generation_json(finished)
        if saved is not None:
            data["download"] = saved
        print_json(data)
    else:
        _print_generation(finished, saved=saved["path"] if saved else None)
    return EXIT_OK


async def _save(
    ctx: Context, generation: Generation, *, library: str | None, output: str | None
) -> dict[str, Any]:
    """Download a completed generation's MP3 with progress on stderr; returns what was saved."""
    from connector.cli.progress import DownloadProgress
    from connector.delivery.download import download_track
    from connector.delivery.errors import DownloadError

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
    from connector.delivery.paths import DEFAULT_PATH_TEMPLATE

    if output is None:
        return library if library is not None else os.getcwd(), DEFAULT_PATH_TEMPLATE
    # `-o PATH`: the file's folder is the library and its name a template with no fields.
    target = os.path.abspath(os.path.expanduser(output))
    name = os.path.basename(target).replace("{", "{{").replace("}", "}}")
    return os.path.dirname(target), name


async def cmd_download(ctx: Context) -> int:
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
        print_json({"id": generation.id, **saved})
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


def confirm_delete(ids: Sequence[str]) -> bool:
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


async def cmd_delete(ctx: Context) -> int:
    # The confirmation was asked by main(), before the event loop started.
    args = ctx.args
    client = await ctx.client()
    return await bulk(
        ctx, lambda: client.delete_generations(args.ids), done_key="deleted", id_key="id"
    )
