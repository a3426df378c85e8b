"""Bus events: each finished generation fired once, whoever reported it, across reloads.

Polls are made by calling the connector's poller directly (`poll_once`), so a
test does not wait for its timer. With an external URL, Home Assistant's test
HTTP server is that URL: the sandbox really delivers its webhooks to it, and the
tests post to it too, through the test client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from yarl import URL

from connector.events import Event as ConnectorEvent
from custom_components.finetuning.const import (
    CONF_ACTIVE_POLL_INTERVAL,
    CONF_POLL_INTERVAL,
    DOMAIN,
    EVENT_GENERATION_FAILED,
    EVENT_TRACK_COMPLETED,
)
from custom_components.finetuning.events import WEBHOOK_ID_SECRET

from .conftest import MAIN_ACCOUNT

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    from connector.sandbox import SandboxHandle
    from connector.sandbox.records import Generation

WAIT = 30.0  # seconds a delivery may take before the test gives up (never reached)
FIELDS = {
    "device_id",
    "entry_id",
    "generation_id",
    "title",
    "tags",
    "duration",
    "audio_url",
    "status",
    "error_message",
    "source",
}


class Captured(list[Event]):
    """The bus events of one name, in order; `wait_for(n)` until there are `n`."""

    def __init__(self, hass: HomeAssistant, name: str) -> None:
        super().__init__()
        self._changed = asyncio.Event()

        @callback
        def capture(event: Event) -> None:
            self.append(event)
            self._changed.set()

        hass.bus.async_listen(name, capture)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()


async def settle(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """One poll of the connector, and everything it set off."""
    poller = entry.runtime_data.connector.runtime.poller
    assert poller is not None
    await poller.poll_once()
    await hass.async_block_till_done()


async def generate(hass: HomeAssistant, tags: str) -> str:
    response = await hass.services.async_call(
        DOMAIN, "generate", {"tags": tags}, blocking=True, return_response=True
    )
    assert isinstance(response, dict)
    return str(response["id"])


async def finished(sandbox: SandboxHandle, generation_id: str) -> Generation:
    """The generation once final in the sandbox, its webhook delivered (if it has one)."""
    generation = await sandbox.sandbox.wait_for_status(generation_id, within=WAIT)
    await sandbox.sandbox.settle()
    return generation


def expected(
    sandbox: SandboxHandle, generation: Generation, entry: MockConfigEntry, source: str
) -> dict[str, Any]:
    """The event data the ground truth says this generation must fire with (the audio
    URL in the API's form: a delivery's own form is replaced by the full record's)."""
    return {
        "device_id": entry.runtime_data.device_id,
        "entry_id": entry.entry_id,
        "generation_id": generation.id,
        "title": generation.title,
        "tags": generation.prompt,
        "duration": generation.duration,
        "audio_url": sandbox.sandbox.audio_url(generation),
        "status": generation.status,
        "error_message": generation.error_message,
        "source": source,
    }


# -- polling alone ------------------------------------------------------------------------


async def test_poller_fires_completion_once(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    failed = Captured(hass, EVENT_GENERATION_FAILED)
    assert setup_entry.runtime_data.webhook_url is None  # no external URL: polling
    generation_id = await generate(hass, "lofi chill piano")
    generation = await finished(sandbox, generation_id)
    await settle(hass, setup_entry)
    await completed.wait_for(1)
    assert set(completed[0].data) == FIELDS
    assert completed[0].data["generation_id"] == generation.id
    assert completed[0].data["title"] == generation.title
    assert completed[0].data["tags"] == generation.prompt
    assert completed[0].data["duration"] == generation.duration
    assert completed[0].data["status"] == "completed"
    assert completed[0].data["error_message"] is None
    assert completed[0].data["source"] == "poll"
    assert completed[0].data["audio_url"]
    assert completed[0].data["device_id"] == setup_entry.runtime_data.device_id
    await settle(hass, setup_entry)
    await settle(hass, setup_entry)
    assert len(completed) == 1
    assert failed == []
    # The seeded tracks (there before the first start) never fired.
    assert {e.data["generation_id"] for e in completed} == {generation_id}


async def test_poller_fires_failure_with_its_reason(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    failed = Captured(hass, EVENT_GENERATION_FAILED)
    generation_id = await generate(hass, "doomed #fail")
    generation = await finished(sandbox, generation_id)
    await settle(hass, setup_entry)
    await failed.wait_for(1)
    data = failed[0].data
    assert data["generation_id"] == generation_id
    assert data["status"] == "failed"
    assert data["error_message"] == generation.error_message
    assert data["error_message"]
    assert data["tags"] == "doomed #fail"
    await settle(hass, setup_entry)
    assert len(failed) == 1


async def test_reload_and_restart_fire_nothing_again(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    generation_id = await generate(hass, "fires once")
    await finished(sandbox, generation_id)
    await settle(hass, setup_entry)
    await completed.wait_for(1)

    # A reload: a new connector on the same journal; its first poll sees it again.
    assert await hass.config_entries.async_reload(setup_entry.entry_id)
    await hass.async_block_till_done()
    await settle(hass, setup_entry)
    # Unloaded, then set up again, as after a Home Assistant restart.
    assert await hass.config_entries.async_unload(setup_entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(setup_entry.entry_id)
    await hass.async_block_till_done()
    await settle(hass, setup_entry)
    assert [e.data["generation_id"] for e in completed] == [generation_id]
    # What kept it quiet is the journal kept on disk, not the seeding of a fresh start
    # (which would also keep it quiet): reported again now, as a delivery would, it is a
    # repeat. A journal that forgot it would call it new and fire it.
    data = setup_entry.runtime_data
    record = await data.client.get_generation(generation_id)
    event = ConnectorEvent.for_generation(record, source="webhook")
    assert await data.connector.runtime.submit_event(event) is False
    await hass.async_block_till_done()
    assert len(completed) == 1


async def test_event_journaled_while_the_entry_unloads_still_reaches_the_bus(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    """A report that lands while the entry unloads (a delivery in flight, a poll whose
    journal write is shielded from cancellation) is journaled by the connector as it
    stops: the bridge is still attached then, so it reaches the bus, once."""
    from connector.sandbox.records import GenerationParams

    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="late"))
    await finished(sandbox, made.id)
    generation = await setup_entry.runtime_data.client.get_generation(made.id)
    runtime = setup_entry.runtime_data.connector.runtime
    stop = runtime.stop

    async def stop_as_a_report_lands(*, grace: float = 30.0) -> None:
        # What a delivery in flight does at this moment: the connector still accepts it.
        assert await runtime.submit_event(
            ConnectorEvent.for_generation(generation, source="webhook")
        )
        await stop(grace=grace)

    runtime.stop = stop_as_a_report_lands  # type: ignore[method-assign]
    assert await hass.config_entries.async_unload(setup_entry.entry_id)
    await hass.async_block_till_done()
    assert [e.data["generation_id"] for e in completed] == [made.id]
    assert await hass.config_entries.async_setup(setup_entry.entry_id)
    await hass.async_block_till_done()
    await settle(hass, setup_entry)
    assert [e.data["generation_id"] for e in completed] == [made.id]


async def test_what_finished_while_unloaded_fires_at_the_next_start(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    from connector.sandbox.records import GenerationParams

    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    assert await hass.config_entries.async_unload(setup_entry.entry_id)
    await hass.async_block_till_done()
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="while away"))
    await finished(sandbox, made.id)
    assert await hass.config_entries.async_setup(setup_entry.entry_id)
    await hass.async_block_till_done()  # the start's own poll reports it
    await completed.wait_for(1)
    assert completed[0].data["generation_id"] == made.id
    await settle(hass, setup_entry)
    assert len(completed) == 1


# -- webhook and poller -----------------------------------------------------------------


@pytest.fixture
async def client(hass: HomeAssistant, hass_client_no_auth: Any) -> TestClient:
    """Home Assistant's HTTP server, on loopback, set as Home Assistant's external URL."""
    assert await async_setup_component(hass, "webhook", {})
    test_client: TestClient = await hass_client_no_auth()
    base = str(test_client.make_url("/")).rstrip("/")
    await hass.config.async_update(external_url=base)
    return test_client


@pytest.fixture
async def hooked_entry(
    hass: HomeAssistant, client: TestClient, config_entry: MockConfigEntry
) -> MockConfigEntry:
    """The main account's entry, loaded while Home Assistant has an external URL.

    Its poller's own timer is slow, so the tests decide which path reports first.
    """
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_POLL_INTERVAL: 3600, CONF_ACTIVE_POLL_INTERVAL: 300}
    )
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    return config_entry


def hook_path(entry: MockConfigEntry) -> str:
    """The path and query the provider is told (HA's webhook path, `?token=`)."""
    url = URL(entry.runtime_data.webhook_url)
    return str(url.relative())


async def test_webhook_url_is_given_to_the_provider(
    hass: HomeAssistant, hooked_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    url = URL(hooked_entry.runtime_data.webhook_url)
    store = hooked_entry.runtime_data.connector.store
    webhook_id = await hass.async_add_executor_job(store.secret, WEBHOOK_ID_SECRET, lambda: "x")
    assert url.path == f"/api/webhook/{webhook_id}"
    assert len(url.query["token"]) >= 32
    generation_id = await generate(hass, "tell me by webhook")
    # The sandbox was told where to deliver: Home Assistant's webhook, token and all.
    made = sandbox.sandbox.generation(generation_id)
    assert made is not None
    assert made.webhook == str(url)


async def test_completion_seen_by_webhook_and_poller_fires_once(
    hass: HomeAssistant, hooked_entry: MockConfigEntry, sandbox: SandboxHandle, client: TestClient
) -> None:
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    generation_id = await generate(hass, "webhook first")
    generation = await finished(sandbox, generation_id)
    # The sandbox delivered it to Home Assistant's webhook, which answered 200.
    (attempt,) = sandbox.sandbox.webhook_attempts_for(generation_id)
    assert attempt.status == 200
    assert attempt.response_text is not None
    assert '"new": true' in attempt.response_text
    await completed.wait_for(1)
    await hass.async_block_till_done()
    assert completed[0].data == expected(sandbox, generation, hooked_entry, "webhook")

    # The poller sees it too, and the provider's delivery is posted again: nothing new.
    await settle(hass, hooked_entry)
    payload = sandbox.sandbox.webhook_payload(generation)
    answer = await client.post(hook_path(hooked_entry), json=payload)
    assert answer.status == 200
    assert await answer.json() == {"ok": True, "new": False}
    await hass.async_block_till_done()
    assert len(completed) == 1

    # Nor after a reload: same webhook, same journal.
    url = hooked_entry.runtime_data.webhook_url
    assert await hass.config_entries.async_reload(hooked_entry.entry_id)
    await hass.async_block_till_done()
    assert hooked_entry.runtime_data.webhook_url == url  # kept: in-flight hooks still land
    answer = await client.post(hook_path(hooked_entry), json=payload)
    assert await answer.json() == {"ok": True, "new": False}
    await settle(hass, hooked_entry)
    assert len(completed) == 1


async def test_poller_first_then_webhook_fires_once(
    hass: HomeAssistant, hooked_entry: MockConfigEntry, sandbox: SandboxHandle, client: TestClient
) -> None:
    from connector.sandbox.records import GenerationParams

    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    # Made by another program: no webhook of ours; the poller reports it first.
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="poll first"))
    generation = await finished(sandbox, made.id)
    await settle(hass, hooked_entry)
    await completed.wait_for(1)
    assert completed[0].data == expected(sandbox, generation, hooked_entry, "poll")
    answer = await client.post(
        hook_path(hooked_entry), json=sandbox.sandbox.webhook_payload(generation)
    )
    assert await answer.json() == {"ok": True, "new": False}
    await hass.async_block_till_done()
    assert len(completed) == 1


async def test_posted_webhook_fires_with_the_full_record(
    hass: HomeAssistant, hooked_entry: MockConfigEntry, sandbox: SandboxHandle, client: TestClient
) -> None:
    """A delivery has no title: the event carries the full record's all the same."""
    from connector.sandbox.records import GenerationParams

    failed = Captured(hass, EVENT_GENERATION_FAILED)
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="posted"))
    generation = await finished(sandbox, made.id)
    payload = sandbox.sandbox.webhook_payload(generation)
    assert "title" not in payload
    answer = await client.post(hook_path(hooked_entry), json=payload)
    assert answer.status == 200
    assert await answer.json() == {"ok": True, "new": True}
    await completed.wait_for(1)
    await hass.async_block_till_done()
    assert completed[0].data == expected(sandbox, generation, hooked_entry, "webhook")
    await settle(hass, hooked_entry)

    doomed = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="x #fail"))
    generation = await finished(sandbox, doomed.id)
    answer = await client.post(
        hook_path(hooked_entry), json=sandbox.sandbox.webhook_payload(generation)
    )
    assert await answer.json() == {"ok": True, "new": True}
    await failed.wait_for(1)
    assert failed[0].data == expected(sandbox, generation, hooked_entry, "webhook")
    await settle(hass, hooked_entry)
    assert (len(completed), len(failed)) == (1, 1)


async def test_webhook_completion_is_on_the_bus_once_the_provider_is_answered(
    hass: HomeAssistant,
    hooked_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    client: TestClient,
) -> None:
    """The 200 means "journaled and on the bus": nothing is left for a later task that a
    crash (here: every task of the entry cancelled at once) could lose."""
    from connector.sandbox.records import GenerationParams

    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="crash"))
    generation = await finished(sandbox, made.id)
    answer = await client.post(
        hook_path(hooked_entry), json=sandbox.sandbox.webhook_payload(generation)
    )
    assert await answer.json() == {"ok": True, "new": True}
    # Already fired, with the full record, before anything else of the entry ran.
    assert [e.data for e in completed] == [expected(sandbox, generation, hooked_entry, "webhook")]
    # Home Assistant dies now: what has not run, never runs.
    for task in list(hooked_entry._tasks):
        task.cancel()
    await asyncio.sleep(0)
    assert await hass.config_entries.async_reload(hooked_entry.entry_id)
    await hass.async_block_till_done()
    await settle(hass, hooked_entry)
    assert [e.data["generation_id"] for e in completed] == [made.id]


async def test_webhook_delivery_is_checked_against_the_provider(
    hass: HomeAssistant,
    hooked_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    client: TestClient,
) -> None:
    """Deliveries are unsigned: whoever holds the URL can post one. Only the provider's
    own record is believed, so a forged "completed" (for a track the account does not
    have, or one still processing) records and fires nothing, and the real completion
    is still new when it comes, with the provider's audio URL."""
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    running = sandbox.sandbox.add_track(MAIN_ACCOUNT, status="processing")
    forged = {"id": "no-such-track", "status": "completed", "title": "Forged"}
    answer = await client.post(hook_path(hooked_entry), json=forged)
    assert answer.status == 404
    forged = {
        "id": running.id,
        "status": "completed",
        "title": "Forged",
        "audioUrl": "https://attacker.example/x.mp3",
    }
    answer = await client.post(hook_path(hooked_entry), json=forged)
    assert answer.status == 202
    assert await answer.json() == {"ok": True, "final": False}
    await hass.async_block_till_done()
    assert completed == []

    generation = sandbox.sandbox.complete_now(running.id)
    await sandbox.sandbox.settle()
    answer = await client.post(hook_path(hooked_entry), json=forged)
    assert await answer.json() == {"ok": True, "new": True}
    await hass.async_block_till_done()
    assert [e.data for e in completed] == [expected(sandbox, generation, hooked_entry, "webhook")]
    assert completed[0].data["title"] != "Forged"


async def test_webhook_answers_503_while_the_provider_cannot_confirm(
    hass: HomeAssistant,
    hooked_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    client: TestClient,
) -> None:
    """A delivery the provider cannot confirm is not recorded: 503, so a sender that
    retries will, and the poller still reports it (the journal has not marked it)."""
    from connector.sandbox.config import FaultRule
    from connector.sandbox.records import GenerationParams

    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    made = sandbox.sandbox.create_generation(MAIN_ACCOUNT, GenerationParams(tags="flaky"))
    generation = await finished(sandbox, made.id)
    payload = sandbox.sandbox.webhook_payload(generation)
    client_api = hooked_entry.runtime_data.client
    client_api.max_retries = 0  # one refused look is enough for the test
    sandbox.sandbox.faults.replace([FaultRule(route="GET /v1/generations/*", error_rate=1.0)])
    answer = await client.post(hook_path(hooked_entry), json=payload)
    assert answer.status == 503
    await hass.async_block_till_done()
    assert completed == []

    sandbox.sandbox.faults.replace([])
    await settle(hass, hooked_entry)
    assert [e.data for e in completed] == [expected(sandbox, generation, hooked_entry, "poll")]
    answer = await client.post(hook_path(hooked_entry), json=payload)
    assert await answer.json() == {"ok": True, "new": False}


@pytest.mark.parametrize(
    ("query", "body", "status"),
    [
        ("", {"id": "x", "status": "completed"}, 401),
        ("?token=wrong", {"id": "x", "status": "completed"}, 401),
        ("TOKEN&token=again", {"id": "x", "status": "completed"}, 401),
        ("TOKEN", None, 400),
        ("TOKEN", {"id": "x", "status": "processing"}, 400),
        ("TOKEN", {"status": "completed"}, 400),
    ],
)
async def test_webhook_refuses_what_is_not_a_delivery(
    hass: HomeAssistant,
    hooked_entry: MockConfigEntry,
    client: TestClient,
    query: str,
    body: Any,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    url = URL(hooked_entry.runtime_data.webhook_url)
    token = url.query["token"]
    query = query.replace("TOKEN", f"?token={token}")
    kwargs: dict[str, Any] = {"json": body} if body is not None else {"data": b"{not json"}
    caplog.set_level(logging.DEBUG)
    answer = await client.post(url.path + query, **kwargs)
    assert answer.status == status
    text = await answer.text()
    assert token not in text
    await hass.async_block_till_done()
    assert completed == []
    # Anyone can post to a public URL: a refusal is not worth a warning each time.
    ours = [r for r in caplog.records if r.name.startswith(("custom_components", "connector"))]
    assert all(r.levelno < logging.WARNING for r in ours)
    if status == 401:
        assert any("refused" in r.getMessage() for r in ours)  # still there, at DEBUG


async def test_no_webhook_for_an_address_the_provider_cannot_call(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    # Plain http on a public name: the service only calls public https URLs.
    assert await async_setup_component(hass, "webhook", {})
    await hass.config.async_update(external_url="http://music.example.net:8123")
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.runtime_data.webhook_url is None
    runtime = config_entry.runtime_data.connector.runtime
    assert runtime.webhook_url("finetuning") is None


async def test_webhook_secrets_stay_out_of_the_journal_and_logs(
    hass: HomeAssistant,
    hooked_entry: MockConfigEntry,
    sandbox: SandboxHandle,
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    completed = Captured(hass, EVENT_TRACK_COMPLETED)
    generation_id = await generate(hass, "secret keeping")
    generation = await finished(sandbox, generation_id)
    await completed.wait_for(1)
    await settle(hass, hooked_entry)
    await client.post(URL(hooked_entry.runtime_data.webhook_url).path + "?token=wrong", json={})
    url = URL(hooked_entry.runtime_data.webhook_url)
    webhook_id = url.path.rsplit("/", 1)[1]
    secrets = [url.query["token"], webhook_id, hooked_entry.data["api_key"]]
    store = hooked_entry.runtime_data.connector.store
    await hass.async_add_executor_job(store.checkpoint)

    def journal_bytes() -> bytes:
        files = store.state_dir.glob("state.db*")
        return b"".join(path.read_bytes() for path in files if path.is_file())

    journal = await hass.async_add_executor_job(journal_bytes)
    assert generation.id.encode() in journal  # the journal is readable as bytes
    # The echoed webhook URL is kept, its secrets replaced by the library's scrubber.
    assert b"/api/webhook/<redacted>" in journal
    for secret in secrets:
        assert secret.encode() not in journal
    # Our own and the library's log records (the test HTTP server's access log is the
    # test client's, not Home Assistant's: its production server logs no query strings).
    ours = [r for r in caplog.records if r.name.startswith(("custom_components", "connector"))]
    assert ours
    for record in ours:
        for secret in secrets:
            assert secret not in record.getMessage()
