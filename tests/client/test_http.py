"""The HTTP core both provider clients stand on: one retry loop, one session rule, no copies.

Each behaviour is checked on both clients, since both are now the same code with
different auth headers and answer shapes.
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from ft_client_support import API, API_KEY, FakeClock, load_fixture, sent

import connector.providers.http as http_module
from connector.errors import (
    GenerationOutcomeUnknownError,
    ProviderConnectionError,
    ProviderError,
    ServerError,
)
from connector.providers import PROVIDERS
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.hosts import is_local, is_loopback, is_loopback_url
from connector.providers.http import ApiClient, NotSentError, backoff_delay
from connector.providers.tempolor.client import TempolorClient
from connector.providers.tempolor.credentials import DEFAULT_BASE_URL as TEMPOLOR_API

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "user:4821-0123456789abcdef0123456789abcdef"
TEMPOLOR_JOB_ID = "user:12345-tempolor:user_id-job:abcdef123456789"


@dataclass(frozen=True)
class Provider:
    """One client, its read call and the answers that call expects."""

    name: str
    make: Callable[..., ApiClient]
    read_url: str
    read_body: Any

    async def read(self, client: ApiClient) -> Any:
        if isinstance(client, FinetuningClient):
            return await client.get_account()
        assert isinstance(client, TempolorClient)
        return await client.get_job(TEMPOLOR_JOB_ID)


def _finetuning(**kwargs: Any) -> ApiClient:
    return FinetuningClient(API_KEY, **kwargs)


def _tempolor(**kwargs: Any) -> ApiClient:
    return TempolorClient(TOKEN, **kwargs)


FINETUNING = Provider(
    "finetuning", _finetuning, f"{API}/v1/me", {"data": load_fixture("me")["data"]}
)
TEMPOLOR = Provider(
    "tempolor",
    _tempolor,
    f"{TEMPOLOR_API}/music/{TEMPOLOR_JOB_ID}",
    load_fixture("tempolor_job_completed"),
)


@pytest.fixture(params=[FINETUNING, TEMPOLOR], ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    param: Provider = request.param
    return param


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


# -- backoff ---------------------------------------------------------------------------


def test_backoff_doubles_from_base_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=1.0, cap=30.0) for n in range(1, 8)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # jitter is 0 in these tests


def test_added_jitter_is_up_to_base_and_equal_jitter_is_the_upper_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", highest)

    assert backoff_delay(3, base=0.5, cap=30.0) == 2.0 + 0.5
    assert backoff_delay(3, base=0.5, cap=30.0, jitter="equal") == 2.0
    assert backoff_delay(9, base=1.0, cap=10.0, jitter="equal") == 10.0
    assert asked == [(0, 0.5), (0, 1.0), (0, 5.0)]


async def test_both_clients_retry_a_503_on_the_same_schedule(
    provider: Provider, mocked: aioresponses
) -> None:
    clock = FakeClock()
    for _ in range(3):
        mocked.get(provider.read_url, status=503, payload={})
    mocked.get(provider.read_url, payload=provider.read_body)

    async with provider.make(clock=clock, sleep=clock.sleep, backoff_base=0.5) as client:
        await provider.read(client)

    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert client.requests_sent == 4


async def test_both_clients_wait_as_long_as_retry_after_says(
    provider: Provider, mocked: aioresponses
) -> None:
    clock = FakeClock()
    mocked.get(provider.read_url, status=429, payload={}, headers={"Retry-After": "7"})
    mocked.get(provider.read_url, payload=provider.read_body)

    async with provider.make(clock=clock, sleep=clock.sleep) as client:
        await provider.read(client)

    assert clock.sleeps == [7.0]


async def test_both_clients_give_up_after_max_retries_with_a_server_error(
    provider: Provider, mocked: aioresponses
) -> None:
    clock = FakeClock()
    mocked.get(provider.read_url, status=502, payload={}, repeat=True)

    async with provider.make(clock=clock, sleep=clock.sleep, max_retries=2) as client:
        with pytest.raises(ServerError):
            await provider.read(client)

    assert client.requests_sent == 3
    assert len(clock.sleeps) == 2


async def test_both_clients_retry_a_connection_that_never_opened_connect_retries_times(
    provider: Provider, mocked: aioresponses
) -> None:
    clock = FakeClock()
    key = aiohttp.client_reqrep.ConnectionKey("example.invalid", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))
    mocked.get(provider.read_url, exception=refused, repeat=True)

    async with provider.make(
        clock=clock, sleep=clock.sleep, max_retries=5, connect_retries=1
    ) as client:
        with pytest.raises(NotSentError, match=r"\(connection refused\); gave up after 2 attempts"):
            await provider.read(client)

    assert isinstance(NotSentError("x"), ProviderConnectionError)
    assert client.requests_sent == 2


async def test_a_create_that_may_have_arrived_is_not_repeated_by_either_client(
    mocked: aioresponses,
) -> None:
    clock = FakeClock()
    mocked.post(f"{API}/v1/generations", status=500, payload={})
    mocked.post(f"{TEMPOLOR_API}/music/song", status=500, payload={})

    async with (
        FinetuningClient(API_KEY, clock=clock, sleep=clock.sleep) as finetuning,
        TempolorClient(TOKEN, clock=clock, sleep=clock.sleep) as tempolor,
    ):
        with pytest.raises(GenerationOutcomeUnknownError, match="credit may have been spent"):
            await finetuning.create_generation(tags="lofi")
        with pytest.raises(GenerationOutcomeUnknownError, match="look for it with list_jobs"):
            await tempolor.create_song(prompt="lofi")

    assert (finetuning.requests_sent, tempolor.requests_sent) == (1, 1)
    assert clock.sleeps == []


# -- sessions --------------------------------------------------------------------------


async def test_a_session_passed_in_is_used_and_left_open_by_both_clients(
    provider: Provider, mocked: aioresponses
) -> None:
    mocked.get(provider.read_url, payload=provider.read_body)

    async with aiohttp.ClientSession(headers={"X-Probe": "shared"}) as shared:
        client = provider.make(session=shared)
        async with client:
            assert client.session is shared
            await provider.read(client)
        await client.close()  # twice: still not closed

        assert not shared.closed
        [call] = sent(mocked, "GET", provider.read_url)
        assert call.kwargs["headers"]["User-Agent"].startswith("finetuning-connector/")


async def test_one_session_serves_both_clients_at_once(mocked: aioresponses) -> None:
    mocked.get(FINETUNING.read_url, payload=FINETUNING.read_body)
    mocked.get(TEMPOLOR.read_url, payload=TEMPOLOR.read_body)

    async with aiohttp.ClientSession() as shared:
        async with _finetuning(session=shared) as finetuning, _tempolor(session=shared) as tempolor:
            await FINETUNING.read(finetuning)
            await TEMPOLOR.read(tempolor)
            assert finetuning.session is tempolor.session is shared
        assert not shared.closed


async def test_a_session_the_client_made_is_closed_by_both_clients(
    provider: Provider, mocked: aioresponses
) -> None:
    mocked.get(provider.read_url, payload=provider.read_body)

    async with provider.make() as client:
        await provider.read(client)
        made = client.session
        assert not made.closed

    assert made.closed
    # Used again, the client makes a new session rather than fail on the closed one.
    fresh = client.session
    assert fresh is not made
    assert not fresh.closed
    await client.close()
    assert fresh.closed


async def test_a_closed_session_passed_in_fails_before_sending_on_both_clients(
    provider: Provider,
) -> None:
    clock = FakeClock()
    shared = aiohttp.ClientSession()
    await shared.close()
    client = provider.make(session=shared, clock=clock, sleep=clock.sleep)

    with pytest.raises(ProviderError, match="session passed to the client is closed") as caught:
        await provider.read(client)

    assert caught.value.code == "SESSION_CLOSED"
    assert client.requests_sent == 0
    assert clock.sleeps == []


# -- one copy of everything ------------------------------------------------------------


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from module import name` in `path`."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_tempolor_imports_nothing_private_and_no_client_code_from_finetuning() -> None:
    tempolor = ROOT / "connector" / "providers" / "tempolor"
    for path in sorted(tempolor.glob("*.py")):
        for module, name in _imports(path):
            if module.startswith("connector.providers.finetuning"):
                assert not name.startswith("_"), f"{path.name} imports {module}.{name}"
                assert module != "connector.providers.finetuning.client", path.name


def test_no_module_imports_a_private_name_of_a_provider_module() -> None:
    offenders = []
    for path in sorted((ROOT / "connector").rglob("*.py")):
        for module, name in _imports(path):
            if module.startswith("connector.providers") and name.startswith("_"):
                offenders.append(f"{path.relative_to(ROOT)}: {module}.{name}")
    assert offenders == []


def test_the_clients_share_the_core_rather_than_copy_it() -> None:
    for cls in (FinetuningClient, TempolorClient):
        assert issubclass(cls, ApiClient)
        for method in ("_send", "_attempt", "_retry_delay", "_redact", "close", "__aexit__"):
            assert method not in vars(cls), f"{cls.__name__} redefines {method}"


def test_provider_names_are_defined_once() -> None:
    assert PROVIDERS == ("finetuning", "tempolor")
    definitions = []
    for path in sorted((ROOT / "connector").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = (
                [node.target]
                if isinstance(node, ast.AnnAssign)
                else node.targets
                if isinstance(node, ast.Assign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == "PROVIDERS" for t in targets):
                definitions.append(str(path.relative_to(ROOT)))
    assert definitions == ["connector/providers/__init__.py"]


def test_the_light_modules_load_neither_aiohttp_nor_pydantic() -> None:
    light = [
        "connector.providers",
        "connector.providers.hosts",
        "connector.providers.finetuning.credentials",
        "connector.providers.finetuning.ids",
        "connector.providers.tempolor.credentials",
    ]
    code = (
        f"import sys; import {', '.join(light)}; "
        "print(sorted(m for m in ('aiohttp', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_the_core_module_has_no_provider_names_in_its_code() -> None:
    # What is one provider's own (auth header, envelope) stays in that provider's client.
    source = Path(http_module.__file__).read_text(encoding="utf-8")
    body = ast.get_docstring(ast.parse(source)) or ""
    code = source.replace(body, "")
    for word in ("X-API-Key", "Bearer", "useapi", "ft_live_"):
        assert word not in code


# -- loopback --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "127.0.0.2", "127.1", "::1", "[::1]"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert is_local(host)


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "192.168.1.5", "", None])
def test_hosts_that_are_not_loopback(host: str | None) -> None:
    assert not is_loopback(host)


def test_private_addresses_are_local_but_not_loopback() -> None:
    assert is_local("10.0.0.1")
    assert not is_loopback("10.0.0.1")
    assert not is_local("93.184.216.34")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/api", True),
        ("https://localhost", True),
        ("http://[::1]:9/", True),
        ("https://pub.finetuning.ai", False),
        ("http://[not-an-address/", False),
        ("", False),
    ],
)
def test_loopback_urls(url: str, expected: bool) -> None:
    assert is_loopback_url(url) is expected


# -- redirects: the credential never leaves the configured server ----------------------------


@pytest.mark.parametrize("provider", ["finetuning", "tempolor"])
async def test_a_redirect_is_refused_and_the_credential_never_reaches_its_target(
    provider: str,
) -> None:
    """A 302 from the API (a misconfigured proxy, a hostile server) pointing elsewhere:
    the client does not follow it, so neither the X-API-Key nor the bearer token is sent
    to the other host, and the caller is told what happened and what to change."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"data": {}})

    target_app = web.Application()
    target_app.router.add_route("*", "/{tail:.*}", elsewhere)
    async with TestServer(target_app, host="127.0.0.1") as target:
        # Another origin: "localhost" rather than "127.0.0.1", another port.
        where = f"http://localhost:{target.port}/v1/me?leak=1"

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(where)

        api_app = web.Application()
        api_app.router.add_route("*", "/{tail:.*}", redirect)
        async with TestServer(api_app, host="127.0.0.1") as api:
            base = f"http://127.0.0.1:{api.port}"
            client: FinetuningClient | TempolorClient
            if provider == "finetuning":
                client = FinetuningClient(API_KEY, base_url=base, max_retries=0)
                call: Any = client.get_account
                secret = API_KEY
            else:
                client = TempolorClient(TOKEN, base_url=base, max_retries=0)
                call = client.list_jobs
                secret = TOKEN
            async with client:
                with pytest.raises(ProviderError) as caught:
                    await call()
    assert seen == []
    assert caught.value.status == 302
    assert "redirect" in str(caught.value)
    assert "base_url" in str(caught.value)
    assert secret not in str(caught.value)
