"""Transient audio failures are retried; final ones are not, and nothing is left behind.

An aiohttp server on 127.0.0.1 plays the audio host: each request takes the
next step of a script (the last step repeats), so a test says "503, 503,
then the file" or "half the body, then the file". A GET of audio is
idempotent, so download_track retries 429/5xx, dropped connections,
timeouts and bodies cut short, each attempt into a fresh ".part"; 403, 404,
410 and other 4xx are final. The audio URL carries a token in its query,
which no error, log line or exception chain may show.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from connector.delivery import fetch
from connector.delivery.download import download_track
from connector.delivery.errors import DownloadError
from connector.delivery.fetch import RetryPolicy
from connector.events import Event
from connector.providers.finetuning.models import Generation
from connector.sandbox.audio import mp3_bytes

pytestmark = pytest.mark.e2e

TOKEN = "s3cr3t-signed-token-0123456789"
SAMPLE_MP3 = mp3_bytes(3.0, title="x")
FAST = RetryPolicy(base_delay=0.001)

Step = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Origin:
    """The audio host: /a.mp3 answers with the script's next step, the last one repeating."""

    def __init__(self) -> None:
        self.script: list[Step] = [full()]
        self.requests: list[str] = []
        self.requested = asyncio.Event()
        self.released = asyncio.Event()  # ends stalled answers, so teardown need not wait
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Origin:
        app = web.Application()
        app.router.add_get("/a.mp3", self._handle)
        app.router.add_get("/loop", _redirect_loop)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        assert self._runner is not None
        self.released.set()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        self.requested.set()
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        return await step(request)

    def audio_url(self) -> str:
        return f"{self.url}/a.mp3?token={TOKEN}&expires=99"

    def stall(self) -> Step:
        """No answer until the server closes."""

        async def step(request: web.Request) -> web.StreamResponse:
            await self.released.wait()
            return web.Response(status=503)

        return step


def full(body: bytes = SAMPLE_MP3) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="audio/mpeg")

    return step


def status(code: int, headers: dict[str, str] | None = None) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text="not now", headers=headers)

    return step


def cut_short(*, chunked: bool = False) -> Step:
    """Half the body, then the connection closed: Content-Length (or chunking) unmet."""

    async def step(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(SAMPLE_MP3)
        await response.prepare(request)
        await response.write(SAMPLE_MP3[: len(SAMPLE_MP3) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    return step


def hang_up() -> Step:
    """The connection closed before any answer."""

    async def step(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    return step


async def _redirect_loop(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"/loop?token={TOKEN}")


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = await Origin().start()
    yield server
    await server.close()


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


GENERATION_ID = "3f0c8a9e-0000-4000-8000-0000000000aa"


def generation_at(url: str) -> Generation:
    return Generation.model_validate(
        {
            "id": GENERATION_ID,
            "status": "completed",
            "title": "Flaky",
            "prompt": "glitch",
            "audioUrl": url,
            "completedAt": "2025-01-15T10:30:00Z",
        }
    )


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def audio_frames(data: bytes) -> bytes:
    """The MP3 without its ID3v2 tag (download_track replaces the tag)."""
    assert data.startswith(b"ID3")
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | byte
    return data[10 + size :]


def assert_complete(path: Path, generation_id: str = GENERATION_ID) -> None:
    """Every audio byte, once: the served MP3's frames exactly, under our tag."""
    assert audio_frames(path.read_bytes()) == audio_frames(SAMPLE_MP3)
    assert MP3(path).info.length == pytest.approx(3.0, abs=0.05)
    assert ID3(path).getall("TXXX:FINETUNING_ID")[0].text == [generation_id]


def connector_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the connector logged (the test server's own access log shows its URLs)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("connector"))


def assert_no_secret(err: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the error, its causes nor any log record shows the URL's query."""
    seen: BaseException | None = err
    while seen is not None:
        assert TOKEN not in str(seen)
        assert TOKEN not in repr(seen)
        assert TOKEN not in str(vars(seen))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    assert TOKEN not in connector_logs(caplog)


# -- transient failures, then success -------------------------------------------------

TRANSIENT = {
    "503 three times": [status(503)] * 3,
    "500, 502, 504": [status(500), status(502), status(504)],
    "429 without Retry-After": [status(429)],
    "body shorter than Content-Length": [cut_short(), cut_short()],
    "chunked body broken off": [cut_short(chunked=True)],
    "connection closed before answering": [hang_up(), hang_up()],
}


@pytest.mark.parametrize("case", list(TRANSIENT))
async def test_a_transient_failure_is_retried_and_the_file_is_complete(
    http: aiohttp.ClientSession,
    origin: Origin,
    library: Path,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    origin.script = [*TRANSIENT[case], full()]
    parts_seen: list[set[str]] = []

    def look(_done: int, _total: int | None) -> None:
        parts_seen.append({p.name for p in library.rglob(".ft-*.part")})

    result = await download_track(
        generation_at(origin.audio_url()), library, retry=FAST, on_progress=look, session=http
    )

    assert len(origin.requests) == len(TRANSIENT[case]) + 1
    assert_complete(result.path)
    assert files_under(library) == [result.path]
    assert result.bytes == result.path.stat().st_size
    # One ".part" at a time; a retry never writes into the one a broken attempt used.
    assert all(len(names) == 1 for names in parts_seen)
    if "body" in case:  # each attempt that wrote bytes had a ".part" of its own
        assert len(set().union(*parts_seen)) == len(TRANSIENT[case]) + 1
    assert TOKEN not in connector_logs(caplog)
    assert "trying again" in connector_logs(caplog)


async def test_a_timeout_is_retried(
    http: aiohttp.ClientSession, origin: Origin, library: Path
) -> None:
    origin.script = [origin.stall(), full()]

    result = await download_track(
        generation_at(origin.audio_url()), library, retry=FAST, timeout=0.3, session=http
    )

    assert len(origin.requests) == 2
    assert_complete(result.path)


async def test_retry_after_replaces_the_backoff(
    http: aiohttp.ClientSession, origin: Origin, library: Path
) -> None:
    """A 30 s backoff would outlast the 5 s limit: Retry-After: 0 is what is waited."""
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=1), usegmt=True)
    origin.script = [
        status(503, {"Retry-After": "0"}),
        status(429, {"Retry-After": past}),
        full(),
    ]
    patient = RetryPolicy(base_delay=30.0)

    async with asyncio.timeout(5):
        result = await download_track(
            generation_at(origin.audio_url()), library, retry=patient, session=http
        )

    assert len(origin.requests) == 3
    assert_complete(result.path)


async def test_a_retry_after_over_the_cap_ends_the_download_at_once(
    http: aiohttp.ClientSession, origin: Origin, library: Path, caplog: pytest.LogCaptureFixture
) -> None:
    origin.script = [status(503, {"Retry-After": "3600"})]

    with pytest.raises(DownloadError) as caught:
        await download_track(
            generation_at(origin.audio_url()),
            library,
            retry=RetryPolicy(base_delay=0.001, retry_after_cap=5),
            session=http,
        )

    assert len(origin.requests) == 1
    err = caught.value
    assert err.status == 503
    assert err.retry_after == 3600
    assert "3600 s (Retry-After)" in err.message
    assert "gave up after 1 attempt" in err.message
    assert files_under(library) == []
    assert_no_secret(err, caplog)


# -- final failures -------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 408, 410, 451])
async def test_a_client_error_is_not_retried(
    http: aiohttp.ClientSession,
    origin: Origin,
    library: Path,
    code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    origin.script = [status(code), full()]

    with pytest.raises(DownloadError, match=f"HTTP {code}") as caught:
        await download_track(generation_at(origin.audio_url()), library, retry=FAST, session=http)

    assert len(origin.requests) == 1
    assert caught.value.status == code
    assert caught.value.attempts == 1
    assert caught.value.retryable is False
    assert files_under(library) == []
    assert os.listdir(library) == []
    assert_no_secret(caught.value, caplog)


@pytest.mark.parametrize(
    ("step", "cause"),
    [
        (status(503), "answered HTTP 503 Service Unavailable"),
        (cut_short(), "ended after|broke off after"),
        (hang_up(), "ServerDisconnectedError"),
    ],
    ids=["503", "cut short", "hang up"],
)
async def test_exhausted_retries_leave_nothing_and_say_how_many(
    http: aiohttp.ClientSession,
    origin: Origin,
    library: Path,
    step: Step,
    cause: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    origin.script = [step]

    with pytest.raises(DownloadError, match=cause) as caught:
        await download_track(generation_at(origin.audio_url()), library, retry=FAST, session=http)

    err = caught.value
    # aiohttp itself resends once when a pooled connection turns out closed: >= 4.
    assert len(origin.requests) >= 4
    assert err.attempts == 4
    assert err.message.endswith("; gave up after 4 attempts")
    assert err.retryable is True
    assert err.code == "DOWNLOAD_FAILED"
    assert files_under(library) == []  # no ".part", no partial file
    assert os.listdir(library) == []  # nor the album folders it made
    assert_no_secret(err, caplog)


async def test_the_last_status_is_reported(
    http: aiohttp.ClientSession, origin: Origin, library: Path
) -> None:
    origin.script = [status(503), status(404)]

    with pytest.raises(DownloadError) as caught:
        await download_track(generation_at(origin.audio_url()), library, retry=FAST, session=http)

    assert len(origin.requests) == 2
    assert caught.value.status == 404
    assert caught.value.attempts == 2
    assert "HTTP 404" in caught.value.message
    assert "not retryable; 2 attempts made" in caught.value.message


async def test_a_redirect_loop_is_final_and_shows_no_token(
    http: aiohttp.ClientSession, origin: Origin, library: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(DownloadError, match="TooManyRedirects") as caught:
        await download_track(
            generation_at(f"{origin.url}/loop?token={TOKEN}"), library, retry=FAST, session=http
        )

    assert caught.value.attempts == 1
    assert caught.value.__cause__ is None  # aiohttp's error holds the full URL
    assert_no_secret(caught.value, caplog)


async def test_cancelling_during_the_backoff_leaves_nothing(
    http: aiohttp.ClientSession, origin: Origin, library: Path
) -> None:
    origin.script = [status(503)]
    task = asyncio.create_task(
        download_track(
            generation_at(origin.audio_url()),
            library,
            retry=RetryPolicy(base_delay=30.0),
            session=http,
        )
    )
    await asyncio.wait_for(origin.requested.wait(), 5)
    await asyncio.sleep(0.05)  # the 503 is in: the download now waits out its backoff

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert files_under(library) == []
    assert os.listdir(library) == []


# -- the policy -----------------------------------------------------------------------


def test_the_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered


@pytest.mark.parametrize(
    "bad",
    [
        {"attempts": 0},
        {"attempts": 2.5},
        {"base_delay": -1},
        {"max_delay": float("nan")},
        {"retry_after_cap": float("inf")},
    ],
)
def test_a_bad_policy_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        RetryPolicy(**bad)


def test_retry_after_reads_seconds_and_dates() -> None:
    assert fetch._retry_after("7") == 7.0
    assert fetch._retry_after(" 0 ") == 0.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = fetch._retry_after(soon)
    assert seconds is not None
    assert 25 < seconds <= 30
    assert fetch._retry_after("-3") is None
    assert fetch._retry_after("soon") is None
    assert fetch._retry_after(None) is None


# -- the action: a dead TemPolor link is fetched again, once ---------------------------


class FakeTempolor:
    """The two calls the action makes, with links handed out in order."""

    def __init__(self, links: list[str]) -> None:
        self.links = links
        self.link_requests = 0

    async def get_job(self, job_id: str) -> Any:
        generation = generation_at("http://unused.invalid/").model_copy(
            update={"id": job_id, "provider": "tempolor", "audio_url": None}
        )
        return SimpleNamespace(to_generation=lambda: generation)

    async def get_download_url(self, job_id: str, file_format: str) -> Any:
        assert file_format == "mp3"
        link = self.links[min(self.link_requests, len(self.links) - 1)]
        self.link_requests += 1
        return SimpleNamespace(url=link)


def action_context(
    tempolor: FakeTempolor, generation: Generation, session: aiohttp.ClientSession
) -> Any:
    return SimpleNamespace(
        event=Event.for_generation(generation, source="poll"),
        tempolor=tempolor,
        finetuning=SimpleNamespace(),
        session=session,
    )


@pytest.mark.parametrize("code", [403, 410])
async def test_the_action_fetches_a_fresh_tempolor_link_when_one_died(
    http: aiohttp.ClientSession, origin: Origin, library: Path, code: int
) -> None:
    from connector.actions.download_track import ACTION

    origin.script = [status(code), full()]
    tempolor = FakeTempolor([origin.audio_url() + "&n=1", origin.audio_url() + "&n=2"])
    job = generation_at("http://unused.invalid/").model_copy(
        update={"id": "job-1", "provider": "tempolor"}
    )
    options = ACTION.schema({"library": str(library), "album": "TemPolor"})

    output = await ACTION.run(action_context(tempolor, job, http), options)

    assert tempolor.link_requests == 2
    assert [request.rsplit("&n=", 1)[1] for request in origin.requests] == ["1", "2"]
    assert_complete(Path(output["path"]), "job-1")


async def test_the_action_asks_for_a_fresh_link_only_once(
    http: aiohttp.ClientSession, origin: Origin, library: Path
) -> None:
    from connector.actions.download_track import ACTION

    origin.script = [status(410)]
    tempolor = FakeTempolor([origin.audio_url()])
    job = generation_at("http://unused.invalid/").model_copy(
        update={"id": "job-1", "provider": "tempolor"}
    )
    options = ACTION.schema({"library": str(library)})

    with pytest.raises(DownloadError, match="HTTP 410"):
        await ACTION.run(action_context(tempolor, job, http), options)

    assert tempolor.link_requests == 2
    assert len(origin.requests) == 2
    assert files_under(library) == []
