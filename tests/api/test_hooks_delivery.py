"""REST hooks: matching events to subscriptions and delivering the outbox, for real.

A real journal in tmp_path, a real aiohttp receiver on a loopback port, and a
fake clock that makes retries due without sleeping. Signatures are checked with
the Standard Webhooks reference library (`standardwebhooks`), not with our code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import voluptuous as vol
from aiohttp import web
from standardwebhooks import Webhook

from connector.api.hooks import HookDeliverer, hook_payload, validate_filter
from connector.automation.registry import Registry, default_registry
from connector.automation.specs import TriggerSpec
from connector.delivery.webhooks import generate_secret
from connector.events import Event
from connector.journal.connection import JournalError
from connector.journal.store import Store
from connector.providers.finetuning.models import Generation
from connector.version import USER_AGENT

pytestmark = pytest.mark.e2e

HOOK_PATH = "/catch/private-path-7f3a"
HOOK_QUERY = "?token=query-secret-9b1c"


class Clock:
    """Starts at the real time (receivers check the signed timestamp); moves when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return round(self.now, 6)  # to the microsecond, as the journal keeps times

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


OK = Answer()
Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass
class Receiver:
    """A loopback endpoint answering per path from a script (the last answer repeats)
    or with a handler of the test's own."""

    script: dict[str, list[Answer]] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""
    runner: web.AppRunner | None = None

    def answer(self, path: str, *answers: Answer) -> str:
        """Script the answers for `path` (none: 200) and return its URL."""
        self.script[path] = list(answers)
        return self.base + path

    def handle(self, path: str, handler: Handler) -> str:
        self.handlers[path] = handler
        return self.base + path

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits.append(Hit(request.path, dict(request.headers), await request.read()))
        self.arrived.set()
        if request.path in self.handlers:
            return await self.handlers[request.path](request)
        queued = self.script.get(request.path) or [OK]
        answer = queued.pop(0) if len(queued) > 1 else queued[0]
        return web.Response(status=answer.status, reason=answer.reason, headers=answer.headers)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    def at(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = await Receiver().start()
    yield target
    assert target.runner is not None
    await target.runner.cleanup()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store.open(tmp_path / "state", clock=clock) as journal:
        yield journal


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def completed(generation_id: str, prompt: str = "lofi chill piano", **fields: Any) -> Event:
    payload = {
        "id": generation_id,
        "status": "completed",
        "prompt": prompt,
        "duration": 90.3,
        "parameters": {"bpm": 80, "keyscale": "A minor"},
        **fields,
    }
    return Event.for_generation(Generation.model_validate(payload), source="webhook")


def subscribe(store: Store, hook_id: str, url: str, filter: Mapping[str, Any] | None = None) -> str:
    """A hook as the API makes it: the validated filter stored, then its secret made."""
    options = validate_filter(default_registry(), "track_completed", filter or {})
    store.add_hook(hook_id, "track_completed", url, options, "n8n")
    return store.hook_secret(hook_id, generate_secret)


def record(store: Store, deliverer: HookDeliverer, *events: Event) -> None:
    """What the runtime does: the event and its outbox rows in one transaction."""
    store.record_events(
        [(event, []) for event in events], deliveries=[deliverer.targets(e) for e in events]
    )


def deliverer_for(
    store: Store, session: aiohttp.ClientSession, clock: Clock, **settings: Any
) -> HookDeliverer:
    return HookDeliverer(store, default_registry(), session, clock=clock, **settings)


# -- delivery ----------------------------------------------------------------------------


async def test_a_delivery_is_signed_as_standard_webhooks_asks(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    secret = subscribe(store, "h1", receiver.answer(HOOK_PATH))
    deliverer = deliverer_for(store, session, clock)
    event = completed("gen-1")
    record(store, deliverer, event)

    assert await deliverer.deliver_due() == 1
    (hit,) = receiver.hits
    (row,) = store.deliveries("h1")
    assert hit.headers["webhook-id"] == f"msg_{row.hook_id}_{row.id}"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == USER_AGENT
    body = Webhook(secret).verify(hit.body, hit.headers)
    assert body == hook_payload(event, "track_completed")
    assert body["id"] == "finetuning:gen-1:completed"
    assert body["data"]["generation"]["prompt"] == "lofi chill piano"
    # The samples endpoint builds the same item from the journal's row.
    event_row = store.event_row(event.key)
    assert event_row is not None
    assert hook_payload(event_row, "track_completed") == body

    assert row.state == "delivered"
    assert row.attempts == 1
    hook = store.hook("h1")
    assert hook is not None
    assert (hook.pending, hook.delivered, hook.failed, hook.last_status) == (0, 1, 0, 200)
    assert await deliverer.deliver_due() == 0
    assert len(receiver.hits) == 1


async def test_a_500_is_retried_later_under_the_same_webhook_id(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    url = receiver.answer(HOOK_PATH, Answer(500), OK)
    secret = subscribe(store, "h1", url)
    deliverer = deliverer_for(store, session, clock, backoff_base=10.0)
    record(store, deliverer, completed("gen-1"))

    assert await deliverer.deliver_due() == 1
    (row,) = store.deliveries("h1")
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
    assert row.last_error == "HTTP 500 Internal Server Error"
    # base * 2**0 with ±10% jitter.
    assert clock.now + 9.0 <= row.next_attempt_at <= clock.now + 11.0
    assert await deliverer.deliver_due() == 0  # not due yet

    clock.advance(11.5)
    assert await deliverer.deliver_due() == 1
    first, second = receiver.hits
    assert (
        first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{row.hook_id}_{row.id}"
    )
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    for hit in (first, second):
        Webhook(secret).verify(hit.body, hit.headers)
    (row,) = store.deliveries("h1")
    assert (row.state, row.attempts, row.last_status, row.last_error) == (
        "delivered",
        2,
        200,
        None,
    )


async def test_retry_after_is_honoured_when_longer_and_capped(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    busy = Answer(status=503, headers={"Retry-After": "120"})
    subscribe(store, "slow", receiver.answer("/slow", busy))
    flooded = Answer(status=429, headers={"Retry-After": "99999"})
    subscribe(store, "capped", receiver.answer("/capped", flooded))
    deliverer = deliverer_for(store, session, clock, backoff_base=5.0, backoff_cap=600.0)
    record(store, deliverer, completed("gen-1"))

    assert await deliverer.deliver_due() == 2
    (slow,) = store.deliveries("slow")
    (capped,) = store.deliveries("capped")
    assert slow.next_attempt_at == pytest.approx(clock.now + 120)
    assert capped.next_attempt_at == pytest.approx(clock.now + 600)
    assert capped.last_error == "HTTP 429 Too Many Requests"


async def test_410_gone_removes_the_subscription_and_its_pending_rows(
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    subscribe(store, "gone", receiver.answer(HOOK_PATH, Answer(status=410)) + HOOK_QUERY)
    subscribe(store, "kept", receiver.answer("/kept"))
    deliverer = deliverer_for(store, session, clock)
    record(store, deliverer, completed("gen-1"), completed("gen-2"))
    before = store.hook("gone")
    assert before is not None
    assert before.pending == 2

    assert await deliverer.deliver_due() == 3
    assert store.hook("gone") is None
    assert store.deliveries("gone") == []
    assert not (store.state_dir / "hook-gone").exists()
    assert len(receiver.at(HOOK_PATH)) == 1  # the second row went with the subscription
    assert [row.state for row in store.deliveries("kept")] == ["delivered", "delivered"]
    assert deliverer.targets(completed("gen-3")) == ["kept"]
    removal = [r for r in caplog.records if "410" in r.getMessage()]
    assert [r.levelno for r in removal] == [logging.INFO]
    assert "gone" in removal[0].getMessage()
    assert HOOK_PATH not in caplog.text
    assert "query-secret" not in caplog.text


async def test_after_max_attempts_the_row_is_failed_and_the_hook_shows_it(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    subscribe(store, "h1", receiver.answer(HOOK_PATH, Answer(status=502)))
    deliverer = deliverer_for(store, session, clock, max_attempts=3, backoff_cap=60.0)
    record(store, deliverer, completed("gen-1"))

    for _ in range(3):
        assert await deliverer.deliver_due() == 1
        clock.advance(100)
    assert await deliverer.deliver_due() == 0
    assert len(receiver.hits) == 3
    (row,) = store.deliveries("h1")
    assert (row.state, row.attempts, row.last_status) == ("failed", 3, 502)
    hook = store.hook("h1")
    assert hook is not None
    assert (hook.pending, hook.delivered, hook.failed) == (0, 0, 1)
    assert (hook.last_status, hook.last_error) == (502, "HTTP 502 Bad Gateway")
    assert store.next_delivery_at() is None


async def test_backoff_doubles_per_attempt_up_to_the_cap(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    subscribe(store, "h1", receiver.answer(HOOK_PATH, Answer(status=500)))
    deliverer = deliverer_for(store, session, clock, backoff_base=4.0, backoff_cap=20.0)
    record(store, deliverer, completed("gen-1"))
    waits = []
    for _ in range(4):
        assert await deliverer.deliver_due() == 1
        (row,) = store.deliveries("h1")
        waits.append(row.next_attempt_at - clock.now)
        clock.advance(waits[-1] + 0.001)
    for wait, nominal in zip(waits, [4.0, 8.0, 16.0], strict=False):
        assert nominal * 0.9 <= wait <= nominal * 1.1
    assert waits[3] == pytest.approx(20.0)  # 32 ± 10% is over the cap


async def test_a_pruned_event_is_given_up_without_a_request(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    subscribe(store, "h1", receiver.answer(HOOK_PATH))
    deliverer = deliverer_for(store, session, clock)
    event = completed("gen-1")
    record(store, deliverer, event)
    # Gone behind the outbox's back (retention runs in another process).
    other = sqlite3.connect(store.path)
    with other:
        other.execute("DELETE FROM events WHERE key = ?", (event.key,))
    other.close()

    assert await deliverer.deliver_due() == 1
    assert receiver.hits == []
    (row,) = store.deliveries("h1")
    assert (row.state, row.last_status, row.last_error) == (
        "failed",
        None,
        "event no longer in the journal",
    )


async def test_redirects_are_not_followed(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    elsewhere = receiver.answer("/elsewhere")
    moved = Answer(status=302, headers={"Location": elsewhere})
    subscribe(store, "h1", receiver.answer(HOOK_PATH, moved))
    deliverer = deliverer_for(store, session, clock)
    record(store, deliverer, completed("gen-1"))

    assert await deliverer.deliver_due() == 1
    assert receiver.at("/elsewhere") == []
    (row,) = store.deliveries("h1")
    assert (row.state, row.last_status) == ("pending", 302)
    assert row.last_error is not None
    assert row.last_error.startswith("HTTP 302 Found (redirects are not followed")


async def test_an_unreachable_target_is_retried_and_its_url_is_not_quoted(
    store: Store, session: aiohttp.ClientSession, clock: Clock
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:pass-word-1234@127.0.0.1:{port}{HOOK_PATH}{HOOK_QUERY}"
    subscribe(store, "h1", url)
    deliverer = deliverer_for(store, session, clock)
    record(store, deliverer, completed("gen-1"))

    assert await deliverer.deliver_due() == 1
    (row,) = store.deliveries("h1")
    assert (row.state, row.last_status) == ("pending", None)
    assert row.last_error is not None
    assert row.last_error.startswith("ClientConnectorError")
    for private in ("private-path", "query-secret", "pass-word", "user:"):
        assert private not in row.last_error


async def test_a_slow_target_times_out_and_is_retried(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def stall(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    subscribe(store, "h1", receiver.handle("/stall", stall))
    deliverer = deliverer_for(store, session, clock, timeout=0.2)
    record(store, deliverer, completed("gen-1"))
    try:
        assert await deliverer.deliver_due() == 1
    finally:
        release.set()
    (row,) = store.deliveries("h1")
    assert (row.state, row.last_status, row.last_error) == (
        "pending",
        None,
        "no answer within 0.2 s",
    )


async def test_rows_of_one_hook_go_in_order_and_hooks_go_side_by_side(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    # "/a" answers only once "/b" has been called: done one hook after the
    # other, "/a" would time out and stay pending.
    b_called = asyncio.Event()

    async def a(_request: web.Request) -> web.Response:
        await b_called.wait()
        return web.Response(status=204)

    async def b(_request: web.Request) -> web.Response:
        b_called.set()
        return web.Response(status=200)

    subscribe(store, "ha", receiver.handle("/a", a))
    subscribe(store, "hb", receiver.handle("/b", b))
    deliverer = deliverer_for(store, session, clock, timeout=30.0)
    record(store, deliverer, completed("gen-1"), completed("gen-2"), completed("gen-3"))
    assert await deliverer.deliver_due() == 6
    assert [row.state for row in store.deliveries("ha")] == ["delivered"] * 3
    assert [row.state for row in store.deliveries("hb")] == ["delivered"] * 3
    sent = [json.loads(hit.body)["id"] for hit in receiver.at("/a")]
    assert sent == [f"finetuning:gen-{n}:completed" for n in (1, 2, 3)]


async def test_after_a_failure_a_hooks_other_rows_wait_for_the_next_pass(
    store: Store, session: aiohttp.ClientSession, clock: Clock, receiver: Receiver
) -> None:
    subscribe(store, "h1", receiver.answer(HOOK_PATH, Answer(500), OK))
    deliverer = deliverer_for(store, session, clock)
    record(store, deliverer, completed("gen-1"), completed("gen-2"))

    assert await deliverer.deliver_due() == 1  # gen-1 failed; gen-2 left for the next pass
    assert await deliverer.deliver_due() == 1  # gen-2 delivered; gen-1 not due yet
    clock.advance(10)
    assert await deliverer.deliver_due() == 1
    ids = [json.loads(hit.body)["id"] for hit in receiver.hits]
    assert ids == [f"finetuning:gen-{n}:completed" for n in (1, 2, 1)]
    assert {row.state for row in store.deliveries("h1")} == {"delivered"}


# -- matching ----------------------------------------------------------------------------


async def test_a_filter_decides_which_hooks_an_event_is_for(
    store: Store, session: aiohttp.ClientSession, clock: Clock
) -> None:
    subscribe(store, "lofi", "http://127.0.0.1:9/a", {"tags_contain": "lofi"})
    subscribe(store, "metal", "http://127.0.0.1:9/b", {"tags_contain": ["metal"]})
    subscribe(store, "long", "http://127.0.0.1:9/c", {"min_duration": 120})
    subscribe(store, "all", "http://127.0.0.1:9/d")
    store.add_hook("failed", "generation_failed", "http://127.0.0.1:9/e", {}, None)
    deliverer = deliverer_for(store, session, clock)

    assert set(deliverer.targets(completed("g1", prompt="Chill LOFI beats"))) == {"lofi", "all"}
    assert set(deliverer.targets(completed("g2", prompt="metal"))) == {"metal", "all"}
    assert set(deliverer.targets(completed("g3", prompt="jazz", duration=200))) == {"long", "all"}
    failed = Event.for_generation(
        Generation.model_validate({"id": "g4", "status": "failed", "prompt": "lofi"}),
        source="poll",
    )
    assert deliverer.targets(failed) == ["failed"]
    assert deliverer.targets(Event(kind="credits_low", key="c1")) == []

    # Added after the deliverer was made: seen after reload().
    subscribe(store, "late", "http://127.0.0.1:9/f", {"tags_match": "^jazz"})
    assert "late" not in deliverer.targets(completed("g5", prompt="jazz trio"))
    deliverer.reload()
    assert set(deliverer.targets(completed("g5", prompt="jazz trio"))) == {"all", "late"}


async def test_a_filter_that_raises_is_no_match_and_is_logged(
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_event: Event, _options: Mapping[str, Any]) -> bool:
        raise RuntimeError("bug in a plugin")

    registry = Registry()
    for key, matches in (("broken", broken), ("fine", lambda _e, _o: True)):
        spec = TriggerSpec(
            key=key,
            title=key,
            description=key,
            schema=vol.Schema({}),
            example={"trigger": key},
            kinds=frozenset({"track_completed"}),
            matches=matches,
        )
        registry.add_trigger(spec, "test")
        store.add_hook(key, key, "http://127.0.0.1:9/x", {}, None)
    deliverer = HookDeliverer(store, registry, session, clock=clock)

    assert deliverer.targets(completed("g1")) == ["fine"]
    assert "bug in a plugin" in caplog.text
    assert any(r.levelno == logging.ERROR and "broken" in r.getMessage() for r in caplog.records)


def test_validate_filter_fills_defaults_and_refuses_what_the_trigger_refuses() -> None:
    registry = default_registry()
    assert validate_filter(registry, "track_completed", {"tags_contain": "lofi"}) == {
        "tags_contain": ["lofi"],
        "only_submitted_by_connector": False,
    }
    with pytest.raises(vol.Invalid, match="regular expression"):
        validate_filter(registry, "track_completed", {"tags_match": "("})
    with pytest.raises(vol.Invalid, match="extra keys"):
        validate_filter(registry, "track_completed", {"colour": "blue"})
    with pytest.raises(vol.Invalid):
        validate_filter(registry, "track_completed", {"min_duration": -1})


@pytest.mark.parametrize("trigger", ["schedule", "credits_low", "no_such_trigger"])
def test_a_trigger_without_events_to_filter_cannot_be_subscribed(trigger: str) -> None:
    with pytest.raises(ValueError, match="cannot be subscribed") as caught:
        validate_filter(default_registry(), trigger, {})
    message = str(caught.value)
    assert repr(trigger) in message
    listed = message.split("subscribable triggers: ")[1]
    assert {"track_completed", "generation_failed"} <= set(listed.rstrip(")").split(", "))
    assert "schedule" not in listed
    assert "credits_low" not in listed


# -- the loop ----------------------------------------------------------------------------


async def test_run_delivers_on_wake_and_outlives_a_failing_journal(
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subscribe(store, "h1", receiver.answer(HOOK_PATH))
    deliverer = deliverer_for(store, session, clock)
    real = store.due_deliveries
    calls = 0

    def flaky(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            # New rows committed meanwhile: the wake-up ends the pause after the error.
            asyncio.get_running_loop().call_soon(deliverer.wake)
            raise JournalError("database is locked", path=store.path)
        return real(**kwargs)

    monkeypatch.setattr(store, "due_deliveries", flaky)
    task = asyncio.create_task(deliverer.run())
    try:
        await asyncio.sleep(0)  # the first pass finds nothing and sleeps
        assert calls == 1
        record(store, deliverer, completed("gen-1"))
        deliverer.wake()  # the second pass fails in the journal
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls >= 3
    assert "database is locked" in caplog.text
    assert len(receiver.hits) == 1


# -- secrets -----------------------------------------------------------------------------


async def test_the_secret_is_never_in_the_journal_errors_or_logs(
    store: Store,
    session: aiohttp.ClientSession,
    clock: Clock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = subscribe(store, "h1", receiver.base + HOOK_PATH)
    # The receiver knows the secret; one that echoes it back must not get it journaled.
    receiver.answer(HOOK_PATH, Answer(status=500, reason=f"bad {secret}"), OK)
    deliverer = deliverer_for(store, session, clock, max_attempts=5)
    record(store, deliverer, completed("gen-1"), completed("gen-2"))
    assert await deliverer.deliver_due() == 1
    (echoed,) = [row for row in store.deliveries("h1") if row.attempts == 1]
    assert echoed.last_error == "HTTP 500 bad <redacted>"
    clock.advance(100)
    assert await deliverer.deliver_due() == 2
    assert [row.state for row in store.deliveries("h1")] == ["delivered"] * 2
    assert len(receiver.hits) == 3
    hook = store.hook("h1")
    assert hook is not None

    forms = {secret.encode(), secret.removeprefix("whsec_").encode()}
    forms.add(base64.b64decode(secret.removeprefix("whsec_")))
    store.checkpoint()
    for path in store.state_dir.iterdir():
        if path.name == "hook-h1":
            continue
        data = path.read_bytes()
        for form in forms:
            assert form not in data, path.name
    texts = [caplog.text, repr(hook), *(repr(row) for row in store.deliveries("h1"))]
    for text in texts:
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
    assert (store.state_dir / "hook-h1").read_text().strip() == secret
