"""The webhook listener over real loopback sockets: deliveries, refusals, limits, health."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_protocol import RequestHandler
from ft_listener_support import (
    MAX_BODY,
    TOKEN,
    Client,
    FailingRecorder,
    Recorder,
    body_of,
    chunks,
    fixture,
)
from yarl import URL

from connector.events import GENERATION_FAILED, TRACK_COMPLETED
from connector.ingress import webhooks as listener_module
from connector.ingress.webhooks import WebhookListener
from connector.providers.finetuning.models import Generation, GenerationStatus
from connector.providers.tempolor.models import TempolorJob

UNAUTHORIZED = {"error": "unauthorized"}


def padded_to(payload: dict[str, Any], size: int) -> bytes:
    """`payload` with an extra field that brings its JSON to exactly `size` bytes."""
    empty = body_of({**payload, "padding": ""})
    body = body_of({**payload, "padding": "x" * (size - len(empty))})
    assert len(body) == size
    return body


# -- deliveries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "status"),
    [
        ("webhook_completed.json", TRACK_COMPLETED, GenerationStatus.COMPLETED),
        ("webhook_failed.json", GENERATION_FAILED, GenerationStatus.FAILED),
    ],
)
async def test_finetuning_delivery_records_one_event(
    client: Client, recorder: Recorder, name: str, kind: str, status: GenerationStatus
) -> None:
    answer = await client.hook("finetuning", body_of(fixture(name)))

    assert answer.status == 200
    assert answer.json() == {"ok": True, "new": True}
    assert len(recorder.events) == 1
    event = recorder.events[0]
    assert event.kind == kind
    assert event.key == f"finetuning:gen_abc123def456:{status.value}"
    assert event.provider == "finetuning"
    assert event.source == "webhook"
    assert event.generation is not None
    assert event.generation.status is status
    if status is GenerationStatus.COMPLETED:
        assert event.generation.duration == 90.3
    else:
        assert event.generation.error_message == "GPU job timed out after 240s"


async def test_same_payload_twice_reports_what_record_said(
    client: Client, recorder: Recorder
) -> None:
    body = body_of(fixture("webhook_completed.json"))

    first = await client.hook("finetuning", body)
    second = await client.hook("finetuning", body)

    assert first.status == 200
    assert second.status == 200
    assert first.json()["new"] is True
    assert second.json()["new"] is False
    assert len(recorder.events) == 2
    assert recorder.events[0].key == recorder.events[1].key


async def test_extra_fields_are_tolerated_and_provider_is_not_the_senders(
    client: Client, recorder: Recorder
) -> None:
    payload = {**fixture("webhook_completed.json"), "provider": "tempolor", "brandNew": [1, 2]}

    answer = await client.hook("finetuning", body_of(payload))

    assert answer.status == 200
    assert recorder.events[0].provider == "finetuning"
    assert recorder.events[0].key.startswith("finetuning:")


async def test_tempolor_completed_job_records_a_tempolor_event(
    client: Client, recorder: Recorder
) -> None:
    job = fixture("tempolor_job_completed.json")

    answer = await client.hook("tempolor", body_of(job))

    assert answer.status == 200
    assert answer.json() == {"ok": True, "new": True}
    assert len(recorder.events) == 1
    event = recorder.events[0]
    assert event.provider == "tempolor"
    assert event.kind == TRACK_COMPLETED
    assert event.key == f"tempolor:{job['job_id']}:completed"
    assert event.source == "webhook"
    assert event.generation is not None
    assert event.generation.duration == 180.0


async def test_tempolor_failed_job_is_a_generation_failed_event(
    client: Client, recorder: Recorder
) -> None:
    job = {**fixture("tempolor_job_completed.json"), "status": 10, "status_name": "FAILED"}
    job["error"] = "Generation failed"

    answer = await client.hook("tempolor", body_of(job))

    assert answer.status == 200
    assert recorder.events[0].kind == GENERATION_FAILED
    assert recorder.events[0].generation is not None
    assert recorder.events[0].generation.error_message == "Generation failed"


async def test_tempolor_progress_ping_is_accepted_but_not_recorded(
    client: Client, recorder: Recorder
) -> None:
    job = {**fixture("tempolor_job_completed.json"), "status": 0, "status_name": "GENERATING"}
    job.update(status_final=False, progress=40)

    answer = await client.hook("tempolor", body_of(job))

    assert answer.status == 202
    assert answer.json() == {"ok": True, "final": False}
    assert recorder.events == []


async def test_tempolor_id_only_callback_asks_for_the_job() -> None:
    job = fixture("tempolor_job_completed.json")
    asked: list[str] = []

    async def tempolor_job(job_id: str) -> Generation | None:
        asked.append(job_id)
        return TempolorJob.model_validate(job).to_generation()

    recorder = Recorder()
    listener = WebhookListener(token=TOKEN, record=recorder, tempolor_job=tempolor_job)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(listener, session)
            answer = await client.hook("tempolor", body_of({"job_id": job["job_id"]}))
    finally:
        await listener.stop()

    assert answer.status == 200
    assert asked == [job["job_id"]]
    assert recorder.events[0].key == f"tempolor:{job['job_id']}:completed"


async def _tempolor_with_fetcher(fetch: Any, recorder: Recorder, body: bytes) -> Any:
    listener = WebhookListener(token=TOKEN, record=recorder, tempolor_job=fetch)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            return await Client(listener, session).hook("tempolor", body)
    finally:
        await listener.stop()


async def test_tempolor_id_only_callback_for_an_unknown_job_is_202() -> None:
    async def nothing(job_id: str) -> Generation | None:
        return None

    recorder = Recorder()
    answer = await _tempolor_with_fetcher(nothing, recorder, body_of({"job_id": "j1"}))

    assert answer.status == 202
    assert recorder.events == []


async def test_tempolor_fetch_failing_is_503() -> None:
    async def broken(job_id: str) -> Generation | None:
        raise ConnectionError("useapi.net unreachable")

    recorder = Recorder()
    answer = await _tempolor_with_fetcher(broken, recorder, body_of({"job_id": "j1"}))

    assert answer.status == 503
    assert answer.json() == {"error": "not recorded, retry later"}
    assert recorder.events == []


async def test_tempolor_body_with_a_status_is_not_fetched_again() -> None:
    async def must_not_be_called(job_id: str) -> Generation | None:
        raise AssertionError("the body was the job")

    recorder = Recorder()
    body = body_of(fixture("tempolor_job_completed.json"))
    answer = await _tempolor_with_fetcher(must_not_be_called, recorder, body)

    assert answer.status == 200
    assert len(recorder.events) == 1


# -- the token -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"token": "wrong-token-of-other-length"}, id="wrong"),
        pytest.param({"token": TOKEN[:-1] + "X"}, id="same-length"),
        pytest.param({"token": TOKEN[:-1]}, id="prefix"),
        pytest.param({"token": TOKEN + "x"}, id="longer"),
        pytest.param({"token": ""}, id="empty"),
        pytest.param(None, id="missing"),
        pytest.param({"secret": TOKEN}, id="other-param"),
        pytest.param({"Token": TOKEN}, id="other-case"),
        pytest.param({"token": "ключ-😀-✓"}, id="non-ascii"),
        pytest.param([("token", TOKEN), ("token", TOKEN)], id="twice"),
        pytest.param([("token", "nope"), ("token", TOKEN)], id="second"),
    ],
)
async def test_wrong_or_missing_token_is_401_without_detail(
    client: Client, recorder: Recorder, params: Any
) -> None:
    body = body_of(fixture("webhook_completed.json"))

    for provider in ("finetuning", "tempolor"):
        answer = await client.request("POST", f"/hooks/{provider}", params=params, data=body)

        assert answer.status == 401
        assert answer.json() == UNAUTHORIZED
    assert recorder.events == []


async def test_raw_non_ascii_and_undecodable_token_bytes_are_401(
    listener: WebhookListener, recorder: Recorder
) -> None:
    # Bytes no client library would send: raw UTF-8 and invalid percent-escapes.
    for query in (b"token=\xd0\xba\xd0\xbb", b"token=%ff%fe", b"token=%", b"token=%C3%28"):
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(
            b"POST /hooks/finetuning?" + query + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        status = int(reply.split(b" ", 2)[1])
        assert status in (400, 401)
    assert recorder.events == []


async def test_configured_non_ascii_token_round_trips_through_hook_url() -> None:
    recorder = Recorder()
    listener = WebhookListener(token="geheim-ключ-✓", record=recorder)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = listener.hook_url("finetuning")
            body = body_of(fixture("webhook_completed.json"))
            async with session.post(url, data=body) as response:
                assert response.status == 200
            async with session.post(url.split("?")[0], params={"token": "geheim"}) as response:
                assert response.status == 401
    finally:
        await listener.stop()
    assert len(recorder.events) == 1


# -- body size -------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_the_limit_is_413(
    client: Client, recorder: Recorder, chunked: bool
) -> None:
    body = padded_to(fixture("webhook_completed.json"), MAX_BODY + 1)

    answer = await client.hook("finetuning", chunks(body) if chunked else body)

    assert answer.status == 413
    assert "too large" in answer.json()["error"]
    assert recorder.events == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_of_exactly_the_limit_is_read(
    client: Client, recorder: Recorder, chunked: bool
) -> None:
    body = padded_to(fixture("webhook_completed.json"), MAX_BODY)

    answer = await client.hook("finetuning", chunks(body) if chunked else body)

    assert answer.status == 200
    assert len(recorder.events) == 1


def _is_request_body(stream: StreamReader) -> bool:
    # The client reads its responses through StreamReader too; only count the server's.
    return isinstance(getattr(stream, "_protocol", None), RequestHandler)


async def test_oversized_declared_length_is_refused_before_reading(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_by_stream: defaultdict[int, int] = defaultdict(int)
    original = StreamReader.read

    async def counting_read(self: StreamReader, n: int = -1) -> bytes:
        data = await original(self, n)
        if _is_request_body(self):
            read_by_stream[id(self)] += len(data)
        return data

    monkeypatch.setattr(StreamReader, "read", counting_read)

    answer = await client.hook("finetuning", b"x" * (MAX_BODY + 1))

    assert answer.status == 413
    assert sum(read_by_stream.values()) == 0


async def test_chunked_body_is_read_with_a_bound(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the handler takes out of the stream, whatever the sender keeps sending
    # (aiohttp drains and discards the rest of an unread body after the answer).
    read_by_stream: defaultdict[int, int] = defaultdict(int)
    original = StreamReader.read

    async def counting_read(self: StreamReader, n: int = -1) -> bytes:
        data = await original(self, n)
        if _is_request_body(self):
            assert n != -1
            read_by_stream[id(self)] += len(data)
        return data

    monkeypatch.setattr(StreamReader, "read", counting_read)

    answer = await client.hook("finetuning", chunks(b"x" * (1024 * 1024), size=8192))

    assert answer.status == 413
    assert read_by_stream
    assert max(read_by_stream.values()) == MAX_BODY + 1


async def test_smaller_max_body_is_honoured() -> None:
    recorder = Recorder()
    listener = WebhookListener(token=TOKEN, record=recorder, max_body=100)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            answer = await Client(listener, session).hook(
                "finetuning", body_of(fixture("webhook_completed.json"))
            )
    finally:
        await listener.stop()
    assert answer.status == 413
    assert answer.json() == {"error": "body too large (limit 100 bytes)"}


async def test_stalled_body_is_408(
    listener: WebhookListener, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "BODY_READ_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(
        f"POST /hooks/finetuning?token={quote(TOKEN, safe='')} HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()

    reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)

    writer.close()
    await writer.wait_closed()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert recorder.events == []


# -- bad input -------------------------------------------------------------------------


def _completed(**changes: Any) -> bytes:
    return body_of({**fixture("webhook_completed.json"), **changes})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"   \n", "not JSON", id="blank"),
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00garbage", "not JSON", id="binary"),
        pytest.param(b'{"id": "g", "status": "completed", "duration": NaN}', "not JSON", id="nan"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "not JSON", id="deep-nesting"),
        pytest.param(b"1" * 5000, "not JSON", id="huge-integer"),
        pytest.param(b"[1, 2]", "expected a JSON object", id="array"),
        pytest.param(b'"completed"', "expected a JSON object", id="string"),
        pytest.param(b"null", "expected a JSON object", id="null"),
        pytest.param(_completed(status=5), "status", id="status-5"),
        pytest.param(_completed(status="done"), "status", id="status-unknown"),
        pytest.param(_completed(id=None), "id", id="id-null"),
        pytest.param(_completed(id=""), "id must not be empty", id="id-empty"),
        pytest.param(_completed(duration="abc"), "duration", id="duration-abc"),
        pytest.param(_completed(createdAt="yesterday"), "createdAt", id="bad-timestamp"),
        pytest.param(_completed(parameters=[1]), "parameters", id="parameters-list"),
        pytest.param(
            _completed(status="processing"), "status must be completed or failed", id="processing"
        ),
        pytest.param(
            _completed(status="pending"), "status must be completed or failed", id="pending"
        ),
        pytest.param(body_of({"status": "completed"}), "id", id="no-id"),
    ],
)
async def test_bad_finetuning_payload_is_400_with_a_reason(
    client: Client, recorder: Recorder, body: bytes, reason: str
) -> None:
    answer = await client.hook("finetuning", body)

    assert answer.status == 400
    error = answer.json()["error"]
    assert reason in error
    assert len(error) <= 200
    assert recorder.events == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param([], "expected a JSON object", id="array"),
        pytest.param({"status": 30}, "job_id is required", id="no-job-id"),
        pytest.param({"job_id": "  ", "status": 30}, "job_id is required", id="blank-job-id"),
        pytest.param({"job_id": 5, "status": 30}, "job_id", id="job-id-number"),
        pytest.param({"job_id": "j", "status": "abc"}, "status", id="status-text"),
        pytest.param({"error": "No record found for x", "code": 404}, "job_id", id="error-body"),
        pytest.param(
            {"job_id": "j", "status": 30, "musicMaterial": "x"}, "musicMaterial", id="material"
        ),
    ],
)
async def test_bad_tempolor_payload_is_400_with_a_reason(
    client: Client, recorder: Recorder, payload: Any, reason: str
) -> None:
    answer = await client.hook("tempolor", body_of(payload))

    assert answer.status == 400
    assert reason in answer.json()["error"]
    assert recorder.events == []


async def test_broken_compressed_body_is_400(client: Client, recorder: Recorder) -> None:
    answer = await client.hook(
        "finetuning",
        body_of(fixture("webhook_completed.json")),
        headers={"Content-Encoding": "gzip"},
    )

    assert answer.status == 400
    assert answer.json() == {"error": "could not read the body"}
    assert recorder.events == []


# -- record failing ----------------------------------------------------------------------


async def test_record_raising_is_503_and_the_server_keeps_working() -> None:
    failing = FailingRecorder()
    listener = WebhookListener(token=TOKEN, record=failing)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(listener, session)
            body = body_of(fixture("webhook_completed.json"))
            first = await client.hook("finetuning", body)
            second = await client.hook("tempolor", body_of(fixture("tempolor_job_completed.json")))
            health = await client.request("GET", "/healthz")
    finally:
        await listener.stop()

    assert first.status == 503
    assert first.json() == {"error": "not recorded, retry later"}
    assert second.status == 503
    assert failing.calls == 2
    assert health.status == 200


async def test_failing_health_is_503_not_500(recorder: Recorder) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("store closed")

    listener = WebhookListener(token=TOKEN, record=recorder, health=broken)
    await listener.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(listener, session)
            answer = await client.request("GET", "/healthz")
            after = await client.hook("finetuning", body_of(fixture("webhook_completed.json")))
    finally:
        await listener.stop()

    assert answer.status == 503
    assert answer.json() == {"error": "internal error, retry later"}
    assert after.status == 200


# -- routes ----------------------------------------------------------------------------


async def test_healthz_reports_the_health_fields(client: Client) -> None:
    answer = await client.request("GET", "/healthz")

    assert answer.status == 200
    body = answer.json()
    assert isinstance(body.pop("open_connections"), int)
    assert body == {"status": "ok", "last_poll_age": 1.5, "pending": 2}


async def test_healthz_answers_head(client: Client) -> None:
    answer = await client.request("HEAD", "/healthz")

    assert answer.status == 200
    assert answer.body == b""


async def test_healthz_without_health_and_with_odd_values(recorder: Recorder) -> None:
    when = datetime(2026, 5, 15, 8, 25, 47, tzinfo=UTC)
    for health, expected in (
        (None, {"status": "ok"}),
        (lambda: {"last_poll": when}, {"status": "ok", "last_poll": str(when)}),
    ):
        listener = WebhookListener(token=TOKEN, record=recorder, health=health)
        await listener.start()
        try:
            async with aiohttp.ClientSession() as session:
                answer = await Client(listener, session).request("GET", "/healthz")
        finally:
            await listener.stop()
        body = answer.json()
        assert body.pop("open_connections") == 1  # this request's own connection
        assert body == expected


@pytest.mark.parametrize(
    "path", ["/", "/hooks", "/hooks/other", "/hooks/finetuning/", "/HOOKS/finetuning", "/x?y=z"]
)
async def test_unknown_path_is_json_404(client: Client, path: str) -> None:
    answer = await client.request("POST", path, params={"token": TOKEN})

    assert answer.status == 404
    assert answer.json() == {"error": "not found"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/hooks/finetuning", "POST"),
        ("PUT", "/hooks/tempolor", "POST"),
        ("DELETE", "/hooks/finetuning", "POST"),
        ("POST", "/healthz", "GET,HEAD"),
    ],
)
async def test_wrong_method_is_json_405(
    client: Client, recorder: Recorder, method: str, path: str, allowed: str
) -> None:
    answer = await client.request(method, path, params={"token": TOKEN})

    assert answer.status == 405
    assert answer.json() == {"error": "method not allowed"}
    assert set(answer.headers["Allow"].split(",")) == set(allowed.split(","))
    assert recorder.events == []


async def test_app_works_with_aiohttp_test_server(recorder: Recorder) -> None:
    listener = WebhookListener(token=TOKEN, record=recorder)
    server = TestServer(listener.app(), **listener.server_options())
    async with TestClient(server) as test_client:
        response = await test_client.post(
            "/hooks/finetuning",
            params={"token": TOKEN},
            data=body_of(fixture("webhook_completed.json")),
        )
        assert response.status == 200
        assert await response.json() == {"ok": True, "new": True}
    assert len(recorder.events) == 1


async def test_many_deliveries_at_once(client: Client, recorder: Recorder) -> None:
    base = fixture("webhook_completed.json")
    bodies = [body_of({**base, "id": f"gen_{n}"}) for n in range(50)]

    answers = await asyncio.gather(*(client.hook("finetuning", body) for body in bodies))

    assert {answer.status for answer in answers} == {200}
    assert len(recorder.keys) == 50


# -- lifecycle, URLs and repr ------------------------------------------------------------


async def test_port_zero_binds_a_real_port_and_restart_keeps_it(recorder: Recorder) -> None:
    listener = WebhookListener(token=TOKEN, record=recorder)
    with pytest.raises(RuntimeError):
        _ = listener.url

    await listener.start()
    port = listener.port
    try:
        assert port > 0
        assert listener.url == f"http://127.0.0.1:{port}"
        assert listener.started
        with pytest.raises(RuntimeError):
            await listener.start()
    finally:
        await listener.stop()
    assert not listener.started

    await listener.start()
    try:
        assert listener.port == port
    finally:
        await listener.stop()
    await listener.stop()  # stopping twice is harmless


async def test_bind_failure_leaves_the_listener_stopped(
    listener: WebhookListener, recorder: Recorder
) -> None:
    taken = WebhookListener(token=TOKEN, record=recorder, port=listener.port)

    with pytest.raises(OSError, match=r"address already in use|Errno"):
        await taken.start()

    assert not taken.started


def test_hook_url_local_appends_the_token() -> None:
    listener = WebhookListener(token=TOKEN, record=Recorder(), port=8123)

    url = listener.hook_url("finetuning")
    tempolor = listener.hook_url("tempolor")

    assert url.startswith("http://127.0.0.1:8123/hooks/finetuning?token=")
    assert tempolor.startswith("http://127.0.0.1:8123/hooks/tempolor?token=")
    assert URL(url).query["token"] == TOKEN


def test_hook_url_public_keeps_other_params_and_derives_tempolor() -> None:
    listener = WebhookListener(token=TOKEN, record=Recorder(), port=8123)
    public = "https://hooks.example.com/base/hooks/finetuning?region=eu&v=2"

    finetuning = URL(listener.hook_url("finetuning", public))
    tempolor = URL(listener.hook_url("tempolor", public))

    assert finetuning.scheme == "https"
    assert finetuning.host == "hooks.example.com"
    assert finetuning.path == "/base/hooks/finetuning"
    assert tempolor.path == "/base/hooks/tempolor"
    for url in (finetuning, tempolor):
        assert dict(url.query) == {"region": "eu", "v": "2", "token": TOKEN}


def test_hook_url_replaces_a_token_already_in_the_public_url() -> None:
    listener = WebhookListener(token=TOKEN, record=Recorder(), port=8123)

    url = URL(listener.hook_url("finetuning", "https://h.example.com/hooks/finetuning?token=old"))

    assert url.query.getall("token") == [TOKEN]


@pytest.mark.parametrize(
    ("provider", "public_url"),
    [("suno", None), ("finetuning", "ftp://h.example.com/x"), ("finetuning", "/hooks/finetuning")],
)
def test_hook_url_rejects_bad_arguments(provider: str, public_url: str | None) -> None:
    listener = WebhookListener(token=TOKEN, record=Recorder(), port=8123)

    with pytest.raises(ValueError, match=r"provider|public_url"):
        listener.hook_url(provider, public_url)


@pytest.mark.parametrize("token", ["", "   "])
def test_empty_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        WebhookListener(token=token, record=Recorder())


async def test_repr_shows_the_url_but_not_the_token(listener: WebhookListener) -> None:
    shown = repr(listener)

    assert listener.url in shown
    assert TOKEN not in shown
    assert "token" not in shown
    assert json.dumps(TOKEN)[1:-1] not in shown
    assert "<unbound>" in repr(WebhookListener(token=TOKEN, record=Recorder()))
