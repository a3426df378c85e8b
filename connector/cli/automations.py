"""`ftconnect run`, `check` and `schema`: the automations file, from the command line.

`run` builds the connector for a file (`connector.app.open_connector`) and keeps it
running until SIGINT or SIGTERM, then stops gracefully (no new work; runs in flight
finish). Its first line says which server and which key it uses and where each came
from (one precedence for every command: `connector.endpoint.resolve_endpoint`). With
no API key anywhere it runs on the embedded sandbox and says so, so the examples work
offline. `check` reports every problem of a file in one pass, and (with a key) the
playlists its actions name that the account does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from connector.app import check_endpoint, file_name, load_file, open_connector
from connector.automation.api_keys import api_key_problem
from connector.automation.model import ConnectorConfig
from connector.automation.problems import ConfigError, ConfigProblem
from connector.automation.registry import Registry, default_registry
from connector.cli.output import EXIT_ERROR, EXIT_INVALID, EXIT_OK
from connector.cli.rawfile import RawFile, lenient_endpoint
from connector.cli.watch import watch
from connector.dispatch.listener import ListenerStartError
from connector.endpoint import Endpoint, EndpointError, no_key_anywhere
from connector.errors import ProviderError
from connector.journal.connection import JournalError
from connector.journal.lock import StateDirLocked
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.hosts import is_loopback
from connector.redaction import dumps


async def automations_command(args: argparse.Namespace) -> int:
    """`run`, `check` or `schema`, as ARGS name it."""
    if args.command == "schema":
        if args.markdown:
            from connector.automation.reference import registry_markdown

            print(registry_markdown(default_registry()))
        else:
            print(schema_document())
        return EXIT_OK
    path = Path(args.file)
    if args.command == "check":
        # A missing file is one of its problems (so --json still prints a document).
        return await check_file(
            path,
            offline=args.offline,
            api_key=args.api_key,
            base_url=args.base_url,
            as_json=args.json,
        )
    if not path.is_file():  # noqa: ASYNC240  # one stat of the argument, nothing runs yet
        print(f"ftconnect: error: {path}: no such file", file=sys.stderr)
        return EXIT_INVALID
    return await run_file(
        path, backfill=args.backfill, api_key=args.api_key, base_url=args.base_url
    )


# -- run ----------------------------------------------------------------------------------


async def run_file(
    path: Path,
    *,
    backfill: bool = False,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
    base_url: str | None = None,
) -> int:
    """`ftconnect run FILE`; `api_key` and `base_url` are the command line's."""
    try:
        config, endpoint = load_file(path, api_key=api_key, base_url=base_url)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    name = file_name(config, path)
    try:
        check_endpoint(endpoint, name)
    except EndpointError as err:
        print(f"ftconnect: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    if endpoint.api_key is not None:
        print(endpoint.describe(), file=out, flush=True)
        if config.tempolor is not None:
            print(_tempolor_line(config, name), file=out, flush=True)
    else:
        print(
            f"ftconnect: warning: {no_key_anywhere(name)}: running on the embedded "
            "sandbox (nothing reaches Finetuning.ai or TemPolor)",
            file=sys.stderr,
            flush=True,
        )
    if backfill:
        config = replace(config, poll=replace(config.poll, backfill=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    from connector.ingress.descriptors import install_quiet_accept_errors, raise_file_limit

    # A listener facing the internet: room for many sockets, and if they run out
    # anyway, one log line a minute about it instead of a traceback per accept().
    raise_file_limit()
    quiet = install_quiet_accept_errors(loop)
    try:
        return await _run(config, endpoint, stop, out)
    finally:
        quiet()


async def _run(
    config: ConnectorConfig, endpoint: Endpoint, stop: asyncio.Event, out: TextIO
) -> int:
    async with open_connector(config, endpoint=endpoint) as connector:
        if connector.sandbox is not None:
            print(
                "No Finetuning.ai API key configured: running against the embedded sandbox at "
                f"{connector.sandbox.url} (no account, no credits; a temporary journal: "
                "runs, hooks and Idempotency-Keys last until it stops, state_dir is not used).",
                file=out,
                flush=True,
            )
        runtime = connector.runtime
        watch(runtime, out)
        if (
            config.webhook is not None
            and config.webhook.public_url is None
            and config.finetuning.api_key
            # A server on this machine (a sandbox) is told the local hook URL.
            and not runtime.api_is_local
        ):
            print(
                "webhook.public_url is not set: the listener runs, but providers are not told "
                "about it (the service only calls public https URLs); relying on polling.",
                file=out,
                flush=True,
            )
        if config.webhook is None:
            print(
                "No webhook section: relying on polling alone "
                f"(every {config.poll.active_interval:g} s while our generations run, "
                f"{config.poll.idle_interval:g} s otherwise).",
                file=out,
                flush=True,
            )
        # A signal while starting (the first poll waiting on an unreachable API or a
        # rate limit) stops the start too, instead of being noticed only after it.
        starting = asyncio.create_task(connector.start())
        if not await _unless_stopped(starting, stop):
            print(
                "Stopping while starting (runs in flight resume at the next start).",
                file=out,
                flush=True,
            )
            return EXIT_OK
        try:
            starting.result()
        except (ProviderError, JournalError, StateDirLocked, ListenerStartError) as err:
            print(f"ftconnect: cannot start: {err}", file=sys.stderr)
            return EXIT_ERROR
        checking = asyncio.create_task(_warn_missing_playlists(config, connector.finetuning))
        await _unless_stopped(checking, stop)
        if connector.api is not None:
            names = ", ".join(token.name for token in connector.api.config.tokens)
            print(
                f"HTTP API on {connector.api.url}/api/v1 (tokens: {names}; the document: "
                f"{connector.api.url}/api/v1/openapi.json)",
                file=out,
                flush=True,
            )
            readers = [t.name for t in connector.api.config.tokens if "read" in t.scopes]
            print(
                f"Web page on {connector.api.url}/ (sign in with a token that has read: "
                f"{', '.join(readers) or 'none has; add read to one'})",
                file=out,
                flush=True,
            )
            if not is_loopback(connector.api.host):
                print(
                    f"ftconnect: note: the HTTP API listens on {connector.api.host}, beyond this "
                    "machine, over plain HTTP: tokens cross the network in the clear unless a "
                    "TLS proxy stands in front of it",
                    file=sys.stderr,
                    flush=True,
                )
        enabled = [a.id for a in config.automations if a.enabled]
        print(f"Running {len(enabled)} automation(s): {', '.join(enabled)}", file=out, flush=True)
        await stop.wait()
        print("Stopping: finishing runs in flight...", file=out, flush=True)
        await connector.stop()
    return EXIT_OK


def _tempolor_line(config: ConnectorConfig, file_name: str) -> str:
    from connector.providers.tempolor.credentials import DEFAULT_BASE_URL as TEMPOLOR_URL

    assert config.tempolor is not None
    settings = config.tempolor
    where = f"tempolor.base_url in {file_name}" if settings.base_url else "the default"
    url = settings.base_url or TEMPOLOR_URL
    if not settings.api_key:
        return f"TemPolor: off (no tempolor.api_token in {file_name})"
    return f"TemPolor: {url} (from {where}); token: … (from tempolor.api_token in {file_name})"


async def _unless_stopped(task: asyncio.Task[Any], stop: asyncio.Event) -> bool:
    """Wait for `task` or `stop`, whichever comes first; False (task cancelled) on stop."""
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # start() stops what it had started before it re-raises
    return False


async def _warn_missing_playlists(config: ConnectorConfig, client: FinetuningClient) -> None:
    """A warning per playlist an action names that the account does not have. `run` goes
    on: the playlist may be created later, and until then only those steps fail."""
    raw = RawFile.read(config.source) if config.source else None
    if raw is None:
        return
    references = raw.playlist_references(default_registry())
    try:
        problems = await missing_playlists(client, references, raw.path.name)
    except ProviderError as err:
        print(f"ftconnect: warning: playlists not checked: {err}", file=sys.stderr, flush=True)
        return
    for problem in problems:
        print(
            f"ftconnect: warning: {problem}; steps naming it fail until it exists",
            file=sys.stderr,
            flush=True,
        )


# -- check --------------------------------------------------------------------------------


async def check_file(
    path: Path,
    *,
    offline: bool = False,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
    base_url: str | None = None,
    as_json: bool = False,
) -> int:
    """`ftconnect check FILE`: schemas, templates, duplicate ids and, online (a key found
    anywhere, not --offline), the playlists actions name: every problem in one pass."""
    config: ConnectorConfig | None = None
    problems: list[ConfigProblem] = []
    raw = RawFile.read(path)
    try:
        config, endpoint = load_file(path, api_key=api_key, base_url=base_url)
    except ConfigError as err:
        problems = list(err.problems)
        endpoint = lenient_endpoint(path, api_key=api_key, base_url=base_url)
    name = file_name(config, path)
    checked, reason, failure = False, None, None
    if offline:
        reason = "--offline"
    elif endpoint.api_key is None:
        reason = no_key_anywhere(name)
    elif raw is None:
        reason = "the file is not readable YAML"
    elif (trouble := endpoint.base_url_problem()) is not None:
        reason = failure = f"({trouble})"
    elif api_key_problem(endpoint.api_key) is not None:
        reason = "the API key is malformed (reported above)"
    else:
        references = raw.playlist_references(default_registry())
        try:
            async with FinetuningClient(
                endpoint.api_key, base_url=endpoint.base_url, max_retries=1
            ) as client:
                # The key and the server, checked even when no action names a playlist:
                # a revoked key or a dead server is what `run` would trip on first.
                await client.get_account()
                problems += await missing_playlists(client, references, raw.path.name)
            checked = True
        except ProviderError as err:
            reason = failure = (
                f"on {endpoint.base_url} (from {endpoint.base_url_origin}, key from "
                f"{endpoint.key_origin}): {err}"
            )
    problems.sort(key=lambda p: (p.file != name, p.line or 0))
    count = (
        len(config.automations)
        if config is not None
        else (raw.automation_count() if raw is not None else None)
    )
    if as_json:
        document = {
            "file": str(path),
            "valid": not problems,
            "automations": count,
            "problems": [
                {"file": p.file, "line": p.line, "path": p.path, "message": p.message}
                for p in problems
            ],
            "playlists": {"checked": checked, "reason": reason},
        }
        print(dumps(document, indent=2), file=out)
    else:
        for problem in problems:
            print(problem, file=sys.stderr)
        if reason is not None and failure is None and not offline and raw is not None:
            print(f"ftconnect: note: playlists not looked up: {reason}", file=sys.stderr)
    if failure is not None:
        print(
            f"ftconnect: error: playlists not checked {failure}; --offline skips this check",
            file=sys.stderr,
        )
    if problems:
        return EXIT_INVALID
    if failure is not None:
        return EXIT_ERROR
    if not as_json:
        print(f"{path}: {count} automation(s), all valid", file=out)
    return EXIT_OK


def schema_document(registry: Registry | None = None) -> str:
    """`ftconnect schema`: every trigger and action as one JSON Schema document."""
    from connector.automation.jsonschema import registry_document

    return json.dumps(registry_document(registry or default_registry()), indent=2)


async def missing_playlists(
    client: FinetuningClient, references: list[tuple[int, str, str]], file_name: str
) -> list[ConfigProblem]:
    """The references no playlist of the account answers to, each with a did-you-mean;
    one request for the list (plus one per id that is not one of the account's)."""
    from connector.errors import NotFoundError

    if not references:
        return []
    playlists = await client.list_playlists()
    ids = {p.id.casefold() for p in playlists}
    names = [p.name for p in playlists]
    problems: list[ConfigProblem] = []
    for line, path, reference in references:
        wanted = reference.casefold()
        if wanted in ids:
            continue
        same = [p for p in playlists if p.name.casefold() == wanted]
        if len(same) > 1:
            listing = ", ".join(f"{p.id} ({p.name!r})" for p in same)
            message = f"{len(same)} playlists are named {reference!r}; use an id: {listing}"
            problems.append(ConfigProblem(file_name, line, path, message))
            continue
        if same:
            continue
        if _looks_like_id(reference):
            try:
                await client.get_playlist(reference)
            except NotFoundError:
                pass
            else:
                continue  # someone's public playlist, found by id
            message = f"no playlist has the id {reference!r}"
        else:
            message = f"no playlist is named {reference!r}"
        problems.append(
            ConfigProblem(file_name, line, path, message + _did_you_mean(reference, names))
        )
    return problems


def _looks_like_id(reference: str) -> bool:
    from connector.providers.finetuning.ids import looks_like_playlist_id

    return looks_like_playlist_id(reference)


def _did_you_mean(reference: str, names: list[str]) -> str:
    """' (did you mean 'Focus Beats'?)', else the names there are."""
    folded = {name.casefold(): name for name in names}
    close = difflib.get_close_matches(reference.casefold(), list(folded), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {folded[close[0]]!r}?)"
    if not names:
        return " (the account has no playlists; they are created in the web app)"
    return f" (your playlists: {', '.join(repr(n) for n in names)})"
