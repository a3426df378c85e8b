"""Schemathesis against the live API: every operation of the served document, fuzzed.

A connector with an `api:` section runs on a fast embedded sandbox in a
thread of its own (its own event loop), as `ftconnect run` would serve it;
schemathesis reads the document from GET /api/v1/openapi.json, generates
requests for every operation from it, valid ones and invalid ones (a missing
or spoilt token among them), and checks each answer: never a 5xx, only
statuses the operation documents, JSON where the document says JSON, a body
and headers that fit the documented schemas, and no invalid request accepted
(the document's request schemas are no stricter than the server).

Generation is derandomized with a fixed number of examples per operation and
mode, so a run is reproducible and bounded. Generated calls really act on the
sandbox (a generated `generate` spends sandbox credits, a `bulk_delete` may
delete a track): the checks hold whatever they do. No request leaves the
machine: generated webhook URLs and REST-hook targets name any host, so the
connector's one HTTP session resolves every host name to a local sink (which
answers 204) and refuses IP addresses off loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.abc import AbstractResolver
from ft_api_support import FAST, FULL, auth, config_text
from hypothesis import HealthCheck, given
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connector.api.openapi import openapi_document
from connector.app import Connector, open_connector
from connector.automation.loader import load_config
from connector.automation.registry import default_registry
from connector.providers.ratelimit import RateBudget

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult

pytestmark = [
    pytest.mark.e2e,
    # Schemathesis draws some values with `random` inside its strategies; Hypothesis
    # seeds `random` for each example, so a run still sends the same requests every time.
    pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies"),
]

T = TypeVar("T")

# Examples per operation and mode: enough to reach every parameter and body field of
# these small schemas, few enough that the whole file runs in well under a minute.
EXAMPLES = 25
# Not `positive_data_acceptance`: a call that fits the document may still be refused
# with its documented 422 for what JSON Schema cannot say (a folder that does not exist
# here, an option of the other provider, an Idempotency-Key used with another body) or
# its 400 (a cursor this API did not give).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
DOCUMENT = "/api/v1/openapi.json"


class SinkResolver(AbstractResolver):
    """Every host name resolves to the sink on loopback: no DNS lookup leaves the machine,
    and a generated webhook URL or hook target gets an answer at once."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


async def _refuse_other_addresses(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    """An IP address is connected to without the resolver: only loopback ones may be."""
    host = params.url.host
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return  # a name: the sink resolver answers for it
    if not address.is_loopback:
        raise aiohttp.ClientConnectionError(f"{host} is not on this machine (refused by the test)")


class LiveApi:
    """A started connector serving its API, in a thread running its own event loop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-api")
        self.stack = contextlib.AsyncExitStack()
        self.url = ""
        self.connector: Connector | None = None
        self.sunk: list[tuple[str, str, str]] = []  # (method, Host, path) the sink answered

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def __enter__(self) -> LiveApi:
        self.thread.start()
        try:
            self.run(self._open())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    async def _open(self) -> None:
        tracing = aiohttp.TraceConfig()
        tracing.on_request_start.append(_refuse_other_addresses)
        session = await self.stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=SinkResolver(await self._sink())),
                trace_configs=[tracing],
            )
        )
        path = self.folder / "automations.yaml"
        path.write_text(config_text(), encoding="utf-8")
        config = load_config(path)
        assert config.api is not None
        config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=0))
        connector = await self.stack.enter_async_context(
            open_connector(config, sandbox=FAST, session=session)
        )
        # The client's own budgets (10 generations a minute) would hold generated calls
        # back; the sandbox it talks to has its limits out of the way too.
        connector.finetuning.read_budget = RateBudget(100_000, 60.0, name="reads")
        connector.finetuning.generation_budget = RateBudget(1_000, 60.0, name="generations")
        await connector.start()
        assert connector.api is not None
        self.connector = connector
        self.url = connector.api.url

    async def _sink(self) -> int:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            self.sunk.append((request.method, request.host, request.path))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    async def _close(self) -> None:
        if self.connector is not None:
            await self.connector.stop(grace=2.0)
        await self.stack.aclose()


@dataclasses.dataclass(frozen=True)
class Known:
    """Ids the server knows, made before the fuzzing: random ones would only ever meet
    404, and the answers for real ones must keep the document too."""

    runs: tuple[str, ...]  # one succeeded (with a generation in its output), one failed
    hooks: tuple[str, ...]  # one for the reads, one to delete
    triggers: tuple[str, ...]
    actions: tuple[str, ...]


def _seed(url: str) -> Known:
    """Two hooks, then a finished run of each outcome, whose events the hooks deliver."""
    session = requests.Session()
    session.headers.update(auth(FULL))
    hooks = []
    for trigger in ("track_completed", "run_failed"):
        body = {"trigger": trigger, "target_url": f"http://hooks.example.com/{trigger}"}
        answer = session.post(f"{url}/api/v1/hooks", json=body, timeout=60)
        assert answer.status_code == 201, answer.text
        hooks.append(answer.json()["id"])
    runs = []
    calls: tuple[tuple[str, dict[str, Any]], ...] = (
        ("generate", {"tags": "lofi piano", "duration": 10, "wait": True}),
        ("move_tracks", {"tracks": ["no-such-track"], "from": "Nowhere A", "to": "Nowhere B"}),
    )
    for action, options in calls:
        answer = session.post(f"{url}/api/v1/actions/{action}?wait=30", json=options, timeout=60)
        assert answer.status_code == 200, answer.text
        runs.append(answer.json()["run"])
    assert [run["status"] for run in runs] == ["succeeded", "failed"]
    registry = default_registry()
    return Known(
        runs=tuple(run["id"] for run in runs),
        hooks=tuple(hooks),
        triggers=tuple(sorted(registry.triggers)),
        actions=tuple(sorted(registry.actions)),
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("live-api")) as started:
        yield started


@pytest.fixture(scope="module")
def known(live: LiveApi) -> Known:
    return _seed(live.url)


@pytest.fixture(scope="module")
def schema(live: LiveApi, known: Known) -> Any:
    """The served document. Loaded from its text rather than with `from_url`, which
    leaves out the operation that serves the document itself: it is fuzzed too."""
    answer = requests.get(live.url + DOCUMENT, timeout=30)
    assert answer.status_code == 200, answer.text
    # The token goes where the document's security scheme says; negative cases may
    # leave it out or spoil it, to which the API must answer 401.
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"bearer": {"bearer": FULL}}}})
    return schemathesis.openapi.from_dict(answer.json(), config=config)


def _cases() -> list[tuple[str, GenerationMode]]:
    """Every operation of the document with each mode, known before the server starts
    (the registry is the one the connector uses), so that each gets a test of its own.
    An operation that takes nothing (no parameter, body or token) has no invalid
    request to make: it is fuzzed with valid ones only."""
    document = openapi_document(default_registry())
    cases = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            cases.append((label, GenerationMode.POSITIVE))
            takes = ("parameters" in operation or "requestBody" in operation) or (
                operation.get("security") != []
            )
            if takes:
                cases.append((label, GenerationMode.NEGATIVE))
    return cases


# The operations whose path names something, and which of the known ids fill it in.
WITH_IDS: dict[str, tuple[str, Callable[[Known], tuple[str, ...]]]] = {
    "GET /api/v1/runs/{run_id}": ("run_id", lambda known: known.runs),
    "POST /api/v1/runs/{run_id}/replay": ("run_id", lambda known: known.runs),
    "GET /api/v1/hooks/{hook_id}": ("hook_id", lambda known: known.hooks[:1]),
    "DELETE /api/v1/hooks/{hook_id}": ("hook_id", lambda known: known.hooks[1:]),
    "GET /api/v1/triggers/{key}/samples": ("key", lambda known: known.triggers),
    "POST /api/v1/actions/{key}": ("key", lambda known: known.actions),
}


def _fuzz(live: LiveApi, strategy: Any, examples: int = EXAMPLES) -> list[str]:
    """Send `examples` cases drawn from `strategy`; every failed check, described."""
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,  # the same cases every run
        database=None,
        deadline=None,
        # No shrinking: a failure is recorded, not raised, so that one run shows them all.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        # The schemas are small and most cases valid; health checks would only add noise.
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call(base_url=live.url, timeout=60)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            failures.append(str(group))

    fuzz()
    return failures


def test_the_served_document_is_valid_openapi(live: LiveApi) -> None:
    answer = requests.get(live.url + DOCUMENT, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    validate(document)
    assert document == openapi_document(default_registry())


def test_requests_for_other_hosts_reach_the_sink(live: LiveApi, known: Known) -> None:
    """What keeps generated URLs on this machine works: the hooks' deliveries to
    hooks.example.com were answered by the sink."""
    wanted = {("POST", "hooks.example.com", f"/{t}") for t in ("track_completed", "run_failed")}
    deadline = time.monotonic() + 30
    while not wanted <= set(live.sunk) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wanted <= set(live.sunk), live.sunk


def test_every_served_operation_is_fuzzed(schema: Any) -> None:
    served = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        served.add(result.ok().label)
    assert served == {label for label, _ in _cases()}
    assert set(WITH_IDS) <= served


@pytest.mark.parametrize(("label", "mode"), _cases())
def test_the_live_api_keeps_its_document(
    live: LiveApi, schema: Any, label: str, mode: GenerationMode
) -> None:
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    failures = _fuzz(live, operation.as_strategy(generation_mode=mode))
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize("label", sorted(WITH_IDS))
def test_the_live_api_keeps_its_document_for_what_it_knows(
    live: LiveApi, schema: Any, known: Known, label: str
) -> None:
    operation = schema.find_operation_by_label(label)
    name, ids = WITH_IDS[label]
    failures = []
    for value in ids(known):
        strategy = operation.as_strategy(path_parameters={name: value})
        failures += _fuzz(live, strategy, examples=EXAMPLES // 2)
    assert not failures, "\n".join(failures[:5])
