"""`ftconnect doctor [FILE]`: the version, the base URL, where the key came from, /health and
/v1/me, each check ok or FAIL (exit 1 if any failed). With FILE, its key and server count
as `ftconnect run FILE` would use them."""

from __future__ import annotations

from connector.cli.context import CliError, Context
from connector.cli.output import EXIT_ERROR, EXIT_OK, print_json


async def cmd_doctor(ctx: Context) -> int:
    import platform

    from connector.cli.progress import GREEN, RED, paint
    from connector.endpoint import KEY_VARIABLE
    from connector.errors import ProviderError
    from connector.providers.finetuning.credentials import check_api_key, redact_key
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
        except ProviderError as err:
            results.append((False, "API key", err.message))
        else:
            key_ok = True
            results.append((True, "API key", "well-formed (ft_live_ + 32 hex characters)"))
    results.append(await _check_health(ctx))
    if key_ok:
        try:
            account = await (await ctx.client()).get_account()
        except (ProviderError, CliError) as err:
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
        print_json(
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


def _doctor_file(ctx: Context, file: str) -> tuple[bool, str, str]:
    """Load FILE as `run` would; its key and server then count (see resolve_endpoint)."""
    from pathlib import Path

    from connector.app import load_file
    from connector.automation.problems import ConfigError
    from connector.cli.rawfile import lenient_endpoint

    path = Path(file)
    args = ctx.args
    if not path.is_file():
        return False, "config", f"{file}: no such file"
    try:
        config, ctx.endpoint = load_file(path, api_key=args.api_key, base_url=args.base_url)
    except ConfigError as err:
        ctx.endpoint = lenient_endpoint(path, api_key=args.api_key, base_url=args.base_url)
        first, more = err.problems[0], len(err.problems) - 1
        also = f" (and {more} more: `ftconnect check {file}` lists them)" if more else ""
        return False, "config", f"{first}{also}"
    count = len(config.automations)
    return True, "config", f"{file}: {count} automation(s), valid"


async def _check_health(ctx: Context) -> tuple[bool, str, str]:
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
