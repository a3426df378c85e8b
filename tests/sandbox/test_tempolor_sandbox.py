"""The TemPolor (useapi.net) sandbox over real loopback sockets."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mutagen.mp3 import MP3
from yarl import URL

from connector.sandbox.config import AccountConfig, SandboxConfig
from connector.sandbox.tempolor import TEMPOLOR_RECORDER, create_tempolor_app
from connector.sandbox.tempolor_records import TONALITIES
from connector.sandbox.tempolor_state import TempolorRecorder

FAST = {"pending_delay": 0.02, "processing_delay": 0.08}
SLOW = {"pending_delay": 30.0, "processing_delay": 30.0}


class FakeClock:
    """A settable clock; `sleep_until` lets it drive the job lifecycle too."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep_until(self, deadline: float) -> None:
        while self.now < deadline:
            await self._moved.wait()


@dataclass
class Sandbox:
    """A running sub-app mounted at /v1/tempolor/ on 127.0.0.1, port 0."""

    base: URL
    config: SandboxConfig
    recorder: TempolorRecorder
    session: aiohttp.ClientSession
    runner: web.AppRunner

    def headers(self, account: int = 0) -> dict[str, str]:
        token = self.config.tempolor_token_for(self.config.accounts[account])
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        account: int | None = 0,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        if headers is None:
            headers = self.headers(account) if account is not None else {}
        async with self.session.request(
            method, f"{self.base}/{path}", headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()

    async def create(self, kind: str = "song", account: int = 0, **body: Any) -> dict[str, Any]:
        body.setdefault("prompt", "A cinematic orchestral piece")
        status, data = await self.call("POST", f"music/{kind}", account=account, json=body)
        assert status == 200, data
        assert len(data["jobs"]) == 1
        job: dict[str, Any] = data["jobs"][0]
        return job

    async def wait_final(self, job_id: str, account: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                status, body = await self.call("GET", f"music/{job_id}", account=account)
                assert status == 200, body
                if body["status_final"]:
                    return dict(body)
                await asyncio.sleep(0.01)


StartSandbox = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def start(
        clock: FakeClock | None = None, *, drive_lifecycle: bool = False, **overrides: Any
    ) -> Sandbox:
        config = SandboxConfig(**{"seed": 7, **FAST, **overrides})
        if clock is None:
            recorder = TempolorRecorder(config)
        else:
            sleep_until = clock.sleep_until if drive_lifecycle else None
            recorder = TempolorRecorder(config, clock=clock, sleep_until=sleep_until)
        app = web.Application()
        app.add_subapp("/v1/tempolor/", create_tempolor_app(config, recorder))
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = URL.build(scheme="http", host=host, port=port, path="/v1/tempolor")
        return Sandbox(base, config, recorder, session, runner)

    yield start
    await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def sandbox(start_sandbox: StartSandbox) -> Sandbox:
    return await start_sandbox()


@dataclass
class Receiver:
    """A tiny replyUrl receiver on 127.0.0.1, port 0."""

    url: str
    status: int
    hits: list[tuple[str, Any]] = field(default_factory=list)


@pytest.fixture
async def start_receiver() -> AsyncIterator[Callable[[int], Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []

    async def start(status: int) -> Receiver:
        receiver = Receiver(url="", status=status)

        async def hook(request: web.Request) -> web.Response:
            receiver.hits.append((request.content_type, await request.json()))
            return web.json_response({"ok": status < 400}, status=status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{port}/hook"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


# -- auth and errors -----------------------------------------------------------

ROUTES = [
    ("POST", "music/song"),
    ("POST", "music/instrumental"),
    ("GET", "music/user:12345-tempolor:1-job:abc"),
    ("GET", "music/download/user:12345-tempolor:1-job:abc"),
    ("GET", "music/"),
    ("POST", "accounts"),
    ("GET", "accounts"),
    ("GET", "accounts/123"),
    ("GET", "scheduler"),
    ("GET", "scheduler/available"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
async def test_every_route_rejects_a_missing_or_wrong_token(
    sandbox: Sandbox, method: str, path: str, headers: dict[str, str]
) -> None:
    status, body = await sandbox.call(method, path, headers=headers, json={"prompt": "x"})

    assert status == 401
    assert body == {"error": "Unauthorized", "code": 401}
    assert sandbox.recorder.jobs == {}


async def test_each_configured_account_has_its_own_token(sandbox: Sandbox) -> None:
    for index, account in enumerate(sandbox.config.accounts):
        status, accounts = await sandbox.call("GET", "accounts", account=index)
        assert status == 200
        assert len(accounts) == 1
        assert sandbox.recorder.token_for(account.name) in sandbox.headers(index)["Authorization"]


async def test_a_token_set_in_the_config_is_used_as_is(start_sandbox: StartSandbox) -> None:
    account = AccountConfig(name="Pinned", email="p@sandbox.local", tempolor_token="user:1-abc")
    sandbox = await start_sandbox(accounts=[account])

    status, _ = await sandbox.call(
        "GET", "accounts", headers={"Authorization": "Bearer user:1-abc"}
    )

    assert status == 200


async def test_a_malformed_job_id_is_a_400(sandbox: Sandbox) -> None:
    for job_id in ("nope", "user:x-tempolor:1-job:abc", "user:1-tempolor:1-job:", "download"):
        status, body = await sandbox.call("GET", f"music/{job_id}")
        assert (status, body) == (400, {"error": "job_id has incorrect format", "code": 400})
        status, body = await sandbox.call("GET", f"music/download/{job_id}")
        assert status == 400


async def test_an_unknown_job_is_a_404_naming_it(sandbox: Sandbox) -> None:
    job_id = "user:12345-tempolor:user_id-job:abcdef123456789"

    for path in (f"music/{job_id}", f"music/download/{job_id}"):
        status, body = await sandbox.call("GET", path)
        assert (status, body) == (404, {"error": f"No record found for {job_id}", "code": 404})


async def test_another_accounts_job_is_not_found(sandbox: Sandbox) -> None:
    job = await sandbox.create()

    status, body = await sandbox.call("GET", f"music/{job['job_id']}", account=1)

    assert status == 404
    assert body["error"] == f"No record found for {job['job_id']}"


async def test_unknown_routes_answer_json_errors(sandbox: Sandbox) -> None:
    assert await sandbox.call("GET", "nothing/here") == (
        404,
        {"error": "Not Found", "code": 404},
    )
    status, body = await sandbox.call("DELETE", "music/song")
    assert (status, body["code"]) == (405, 405)


# -- validation ----------------------------------------------------------------

INVALID_BODIES = [
    ("song", {}, "Parameter prompt is required"),
    ("song", {"prompt": "   "}, "Parameter prompt is required"),
    ("song", {"prompt": 5}, "Parameter prompt must be a string"),
    ("song", {"prompt": "p" * 2001}, "Parameter prompt must be at most 2000 characters"),
    ("song", {"prompt": "p", "lyrics": "l" * 3001}, "Parameter lyrics must be at most 3000"),
    ("song", {"prompt": "p", "model_song": "v4"}, "Parameter model_song must be one of: v3, v3.5"),
    ("song", {"prompt": "p", "replyUrl": "ftp://x/y"}, "Parameter replyUrl must be an http"),
    ("song", {"prompt": "p", "replyUrl": "not a url"}, "Parameter replyUrl must be an http"),
    (
        "song",
        {"prompt": "p", "replyUrl": "http://127.0.0.1/" + "a" * 1008},
        "Parameter replyUrl must be at most 1024 characters",
    ),
    ("song", {"prompt": "p", "replyRef": "r" * 1025}, "Parameter replyRef must be at most 1024"),
    ("song", {"prompt": "p", "maxJobs": 0}, "Parameter maxJobs must be an integer from 1 to 10"),
    ("song", {"prompt": "p", "maxJobs": 11}, "Parameter maxJobs must be an integer from 1 to 10"),
    ("song", {"prompt": "p", "user_id": "nobody"}, "Parameter user_id: account nobody is not"),
    ("instrumental", {}, "Parameter prompt is required"),
    ("instrumental", {"prompt": "p" * 2001}, "Parameter prompt must be at most 2000"),
    (
        "instrumental",
        {"prompt": "p", "model_instrumental": "i4"},
        "Parameter model_instrumental must be one of: i3, i3.5 beta",
    ),
    ("instrumental", {"prompt": "p", "tonality": "H:major"}, "Parameter tonality must be one of"),
    ("instrumental", {"prompt": "p", "tonality": "D#:minor"}, "Parameter tonality must be one of"),
    ("instrumental", {"prompt": "p", "tonality": "Db:major"}, "Parameter tonality must be one of"),
    ("instrumental", {"prompt": "p", "tonality": "c:major"}, "Parameter tonality must be one of"),
    ("instrumental", {"prompt": "p", "bpm": 49}, "Parameter bpm must be an integer from 50 to 190"),
    ("instrumental", {"prompt": "p", "bpm": 191}, "Parameter bpm must be an integer from 50"),
    ("instrumental", {"prompt": "p", "bpm": "fast"}, "Parameter bpm must be an integer from 50"),
    ("instrumental", {"prompt": "p", "bpm": 120.5}, "Parameter bpm must be an integer from 50"),
    ("instrumental", {"prompt": "p", "bpm": True}, "Parameter bpm must be an integer from 50"),
    ("instrumental", {"prompt": "p", "chords": "C" * 201}, "Parameter chords must be at most 200"),
    ("instrumental", {"prompt": "p", "maxJobs": "x"}, "Parameter maxJobs must be an integer"),
]


@pytest.mark.parametrize(("kind", "body", "error"), INVALID_BODIES)
async def test_invalid_bodies_are_a_400_naming_the_field_and_range(
    sandbox: Sandbox, kind: str, body: dict[str, Any], error: str
) -> None:
    status, answer = await sandbox.call("POST", f"music/{kind}", json=body)

    assert status == 400
    assert answer["code"] == 400
    assert answer["error"].startswith(error)
    assert sandbox.recorder.jobs == {}


async def test_bodies_at_the_limits_are_accepted(sandbox: Sandbox) -> None:
    song = await sandbox.create(
        "song",
        prompt="p" * 2000,
        lyrics="l" * 3000,
        model_song="v3",
        replyUrl="http://127.0.0.1:9/" + "a" * 1005,
        replyRef="r" * 1024,
        maxJobs=10,
    )
    low = await sandbox.create("instrumental", bpm=50, chords="C" * 200, model_instrumental="i3")
    high = await sandbox.create("instrumental", bpm="190")

    assert song["ltmMaterialExtendDto"]["modelShowName"] == "v3"
    assert len(song["replyUrl"]) == 1024
    assert low["musicMaterial"]["bpm"] == 50
    assert low["musicMaterial"]["chord"] == "C" * 200
    assert high["musicMaterial"]["bpm"] == 190


async def test_every_documented_tonality_is_accepted(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(pending_delay=0.0, processing_delay=0.0)

    for tonality in TONALITIES:
        job = await sandbox.create("instrumental", tonality=tonality)
        assert job["musicMaterial"]["key"] == tonality

    assert len(TONALITIES) == 24


async def test_defaults_are_the_documented_models(sandbox: Sandbox) -> None:
    song = await sandbox.create("song")
    instrumental = await sandbox.create("instrumental")

    assert song["ltmMaterialExtendDto"]["modelShowName"] == "v3.5"
    assert instrumental["ltmMaterialExtendDto"]["modelShowName"] == "i3.5 beta"


async def test_unknown_fields_are_tolerated(sandbox: Sandbox) -> None:
    job = await sandbox.create("song", prompt="p", somethingNew={"a": 1}, temperature=0.3)

    assert job["status"] == 0


async def test_a_body_that_is_not_json_is_a_400(sandbox: Sandbox) -> None:
    for data in (b"{not json", b"[1, 2]"):
        status, body = await sandbox.call(
            "POST", "music/song", data=data, headers={**sandbox.headers(), "Content-Type": "x"}
        )
        assert status == 400
        assert body["code"] == 400


async def test_multipart_bodies_are_accepted(sandbox: Sandbox) -> None:
    with aiohttp.MultipartWriter("form-data") as writer:
        for name, value in {
            "prompt": "A relaxing lo-fi beat",
            "tonality": "Eb:major",
            "bpm": "80",
            "chords": "C F G Am",
            "maxJobs": "3",
            "replyRef": "ref-1",
        }.items():
            part = writer.append(value)
            part.set_content_disposition("form-data", name=name)

    status, data = await sandbox.call("POST", "music/instrumental", data=writer)

    assert status == 200, data
    job = data["jobs"][0]
    assert job["musicMaterial"]["key"] == "Eb:major"
    assert job["musicMaterial"]["bpm"] == 80
    assert job["musicMaterial"]["chord"] == "C F G Am"
    assert job["musicMaterial"]["style"] == "Lo-fi"
    assert job["replyRef"] == "ref-1"
    assert sandbox.recorder.job(job["job_id"]).params["bpm"] == 80


async def test_multipart_bodies_are_validated_too(sandbox: Sandbox) -> None:
    form = aiohttp.FormData({"prompt": "beat", "bpm": "300"}, default_to_multipart=True)

    status, body = await sandbox.call("POST", "music/instrumental", data=form)

    assert status == 400
    assert body["error"] == "Parameter bpm must be an integer from 50 to 190"


# -- lifecycle -------------------------------------------------------------------


async def test_a_job_generates_then_completes_with_the_full_status_shape(
    sandbox: Sandbox,
) -> None:
    created = await sandbox.create(
        "instrumental", prompt="Dark synthwave drive", tonality="F:minor", bpm=128
    )
    job_id = created["job_id"]
    account = sandbox.config.accounts[0]
    user_id = next(iter(sandbox.recorder.accounts_of(account.name)))

    assert job_id.startswith(f"user:{sandbox.recorder.useapi_user(account.name)}-tempolor:")
    assert f"-tempolor:{user_id}-job:{created['itemId']}" in job_id
    assert created["status"] == 0
    assert created["status_name"] == "GENERATING"
    assert created["status_final"] is False
    assert 0 <= created["progress"] < 100
    assert created["musicMaterial"]["dur"] == 0
    assert created["mp3OssId"] == ""

    progress = [created["progress"]]
    final = await sandbox.wait_final(job_id)
    progress.append(final["progress"])

    assert progress == sorted(progress)
    assert final["status"] == 30
    assert final["status_name"] == "COMPLETED"
    assert final["status_final"] is True
    assert final["progress"] == 100
    assert "error" not in final
    material = final["musicMaterial"]
    assert material["key"] == "F:minor"
    assert material["bpm"] == 128
    assert material["style"] == "Synthwave"
    assert 135 <= material["dur"] <= 270  # i3.5 beta: up to 4.5 minutes
    assert isinstance(material["seed"], int)
    assert final["createTime"] <= final["updateTime"]
    assert final["createTime"] > 1_600_000_000_000  # epoch milliseconds
    extend = final["ltmMaterialExtendDto"]
    assert extend["prompt"] == extend["description"] == "Dark synthwave drive"
    assert extend["modelShowName"] == "i3.5 beta"
    assert extend["genMode"] == 0
    assert final["titleEn"]
    assert final["userId"] == user_id
    assert final["mp3OssId"] == f"ai_material/ai_material/mp3/{final['itemId']}.mp3"
    assert final["canExtend"] is True
    for name in ("bizType", "childType", "sourceType", "genItemId", "cover", "wavOssId"):
        assert name in final


async def test_progress_rises_while_generating(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(pending_delay=0.1, processing_delay=0.3)
    job_id = (await sandbox.create())["job_id"]

    seen = []
    for _ in range(4):
        await asyncio.sleep(0.06)
        seen.append((await sandbox.call("GET", f"music/{job_id}"))[1]["progress"])

    assert seen == sorted(seen)
    assert seen[-1] > seen[0]
    assert all(0 <= value < 100 for value in seen)


async def test_an_injected_clock_drives_timestamps_progress_and_lifecycle(
    start_sandbox: StartSandbox,
) -> None:
    clock = FakeClock()
    sandbox = await start_sandbox(
        clock, drive_lifecycle=True, pending_delay=10.0, processing_delay=30.0
    )
    job_id = (await sandbox.create())["job_id"]

    clock.advance(20)
    await asyncio.sleep(0.02)
    halfway = (await sandbox.call("GET", f"music/{job_id}"))[1]
    clock.advance(20)
    final = await sandbox.wait_final(job_id)

    assert (halfway["status"], halfway["progress"]) == (0, 50)
    assert halfway["createTime"] == int(1_750_000_000.0 * 1000)
    assert final["status"] == 30
    assert final["updateTime"] - final["createTime"] == 40_000


async def test_a_prompt_with_the_fail_marker_fails(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create(prompt="a song #fail please"))["job_id"]

    final = await sandbox.wait_final(job_id)

    assert final["status"] == 10
    assert final["status_name"] == "FAILED"
    assert final["status_final"] is True
    assert "#fail" in final["error"]
    assert final["musicMaterial"]["dur"] == 0
    assert final["mp3OssId"] == ""


async def test_failure_rate_one_fails_every_job(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(failure_rate=1.0)
    job_id = (await sandbox.create())["job_id"]

    final = await sandbox.wait_final(job_id)

    assert (final["status"], final["error"]) == (10, "Music generation failed")


async def test_outcomes_are_deterministic_for_a_seed(start_sandbox: StartSandbox) -> None:
    runs: list[list[tuple[str, str, int]]] = []
    for _ in range(2):
        sandbox = await start_sandbox(failure_rate=0.5, **SLOW)
        jobs = [await sandbox.create() for _ in range(8)]
        recorder = sandbox.recorder
        runs.append(
            [
                (job["job_id"], job["titleEn"], recorder.job(job["job_id"]).planned_status)
                for job in jobs
            ]
        )

    assert runs[0] == runs[1]
    # 8 jobs at 50%: both outcomes occur for seed 7.
    assert {status for _, _, status in runs[0]} == {10, 30}


async def test_complete_now_and_fail_now_finish_a_job_at_once(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(**SLOW)
    first = (await sandbox.create())["job_id"]
    second = (await sandbox.create())["job_id"]

    sandbox.recorder.complete_now(first)
    sandbox.recorder.fail_now(second, "Moderated prompt")

    assert (await sandbox.call("GET", f"music/{first}"))[1]["status"] == 30
    failed = (await sandbox.call("GET", f"music/{second}"))[1]
    assert (failed["status"], failed["error"]) == (10, "Moderated prompt")
    with pytest.raises(ValueError, match="already final"):
        sandbox.recorder.complete_now(first)
    with pytest.raises(KeyError):
        sandbox.recorder.fail_now("user:1-tempolor:2-job:3", "x")


async def test_cleanup_cancels_running_jobs_without_leaving_tasks(
    start_sandbox: StartSandbox, start_receiver: Callable[[int], Awaitable[Receiver]]
) -> None:
    sandbox = await start_sandbox(**SLOW)
    receiver = await start_receiver(200)
    job_id = (await sandbox.create(replyUrl=receiver.url))["job_id"]

    await sandbox.runner.cleanup()

    assert sandbox.recorder.job(job_id).status == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert receiver.hits == []


# -- downloads ---------------------------------------------------------------------


async def test_download_before_completion_is_refused(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(**SLOW)
    job_id = (await sandbox.create())["job_id"]

    status, body = await sandbox.call("GET", f"music/download/{job_id}")

    assert (status, body) == (400, {"error": "Generation is not completed yet (0)", "code": 400})
    sandbox.recorder.fail_now(job_id)
    status, body = await sandbox.call("GET", f"music/download/{job_id}")
    assert (status, body["error"]) == (400, "Generation is not completed yet (10)")


async def test_a_completed_job_downloads_as_a_playable_mp3(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create(prompt="Epic orchestral"))["job_id"]
    final = await sandbox.wait_final(job_id)

    status, link = await sandbox.call("GET", f"music/download/{job_id}")

    assert status == 200
    assert link["remainSeconds"] == int(sandbox.config.download_link_ttl)
    url = URL(link["url"])
    assert url.is_absolute()
    assert (url.host, url.port) == (sandbox.base.host, sandbox.base.port)
    assert url.path == f"/v1/tempolor/files/{final['itemId']}.mp3"
    async with sandbox.session.get(url) as response:  # the link needs no token
        assert response.status == 200
        assert response.content_type == "audio/mpeg"
        data = await response.read()
    mp3 = MP3(io.BytesIO(data))
    assert abs(mp3.info.length - final["musicMaterial"]["dur"]) < 0.05
    assert str(mp3.tags["TIT2"]) == final["titleEn"]
    after = (await sandbox.call("GET", f"music/{job_id}"))[1]
    assert (after["downloadTotal"], after["downloadStatus"]) == (1, True)


async def test_wav_and_stems_download_as_valid_files(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create("song"))["job_id"]
    await sandbox.wait_final(job_id)

    _, wav_link = await sandbox.call("GET", f"music/download/{job_id}?file_format=wav")
    _, stems_link = await sandbox.call(
        "GET", f"music/download/{job_id}", params={"file_format": "stems"}
    )

    async with sandbox.session.get(wav_link["url"]) as response:
        assert response.content_type == "audio/wav"
        assert (await response.read())[:4] == b"RIFF"
    async with sandbox.session.get(stems_link["url"]) as response:
        assert response.content_type == "application/zip"
        with zipfile.ZipFile(io.BytesIO(await response.read())) as archive:
            assert archive.namelist() == ["vocals.wav", "instrumental.wav"]
    status, body = await sandbox.call("GET", f"music/download/{job_id}?file_format=flac")
    assert (status, body["error"]) == (400, "Parameter file_format must be one of: mp3, wav, stems")


async def test_a_download_link_expires_after_its_ttl(start_sandbox: StartSandbox) -> None:
    clock = FakeClock()
    sandbox = await start_sandbox(clock=clock, download_link_ttl=60.0)
    job_id = (await sandbox.create())["job_id"]
    sandbox.recorder.complete_now(job_id)
    _, link = await sandbox.call("GET", f"music/download/{job_id}")
    assert link["remainSeconds"] == 60

    clock.advance(59)
    async with sandbox.session.get(link["url"]) as response:
        assert response.status == 200
    clock.advance(1)
    async with sandbox.session.get(link["url"]) as response:
        assert response.status == 410
        assert await response.json() == {"error": "Download link expired", "code": 410}


async def test_the_link_ttl_can_be_changed_per_call(start_sandbox: StartSandbox) -> None:
    clock = FakeClock()
    sandbox = await start_sandbox(clock=clock)
    job_id = (await sandbox.create())["job_id"]
    sandbox.recorder.complete_now(job_id)

    sandbox.recorder.link_ttl = 5
    _, short = await sandbox.call("GET", f"music/download/{job_id}")
    sandbox.recorder.link_ttl = 3600
    _, long = await sandbox.call("GET", f"music/download/{job_id}")
    clock.advance(10)

    assert (short["remainSeconds"], long["remainSeconds"]) == (5, 3600)
    async with sandbox.session.get(short["url"]) as response:
        assert response.status == 410
    async with sandbox.session.get(long["url"]) as response:
        assert response.status == 200
    sandbox.recorder.expire_links()
    async with sandbox.session.get(long["url"]) as response:
        assert response.status == 410


async def test_a_guessed_or_altered_link_is_forbidden(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create())["job_id"]
    sandbox.recorder.complete_now(job_id)
    _, link = await sandbox.call("GET", f"music/download/{job_id}")
    url = URL(link["url"])
    key = url.query["auth_key"]

    for bad in (
        url.with_query(auth_key=key[:-1] + ("0" if key[-1] != "0" else "1")),
        url.with_query(None),
        url.with_name("other.mp3"),
    ):
        async with sandbox.session.get(bad) as response:
            assert response.status == 403
            assert await response.json() == {"error": "Forbidden", "code": 403}


# -- replyUrl callbacks ----------------------------------------------------------


async def test_the_callback_fires_once_with_the_status_body_even_on_500(
    sandbox: Sandbox, start_receiver: Callable[[int], Awaitable[Receiver]]
) -> None:
    receiver = await start_receiver(500)
    job_id = (await sandbox.create(replyUrl=receiver.url, replyRef="my-ref"))["job_id"]

    final = await sandbox.wait_final(job_id)
    await sandbox.recorder.settle()
    await asyncio.sleep(0.15)  # room for a retry, which must not come

    assert len(receiver.hits) == 1
    content_type, body = receiver.hits[0]
    assert content_type == "application/json"
    assert body == final
    assert body["replyRef"] == "my-ref"
    [attempt] = sandbox.recorder.callbacks
    assert (attempt.job_id, attempt.url, attempt.status, attempt.error) == (
        job_id,
        receiver.url,
        500,
        None,
    )


async def test_a_failed_job_calls_back_too(
    sandbox: Sandbox, start_receiver: Callable[[int], Awaitable[Receiver]]
) -> None:
    receiver = await start_receiver(200)
    job_id = (await sandbox.create(prompt="#fail", replyUrl=receiver.url))["job_id"]

    await sandbox.wait_final(job_id)
    await sandbox.recorder.settle()

    [(_, body)] = receiver.hits
    assert (body["status"], body["status_name"]) == (10, "FAILED")
    assert sandbox.recorder.callbacks[0].status == 200


async def test_an_error_status_from_the_receiver_is_recorded(
    start_sandbox: StartSandbox, start_receiver: Callable[[int], Awaitable[Receiver]]
) -> None:
    sandbox = await start_sandbox(**SLOW)
    receiver = await start_receiver(200)
    url = receiver.url.replace("/hook", "/missing")  # a 404 from a live receiver
    job_id = (await sandbox.create(replyUrl=url))["job_id"]

    sandbox.recorder.complete_now(job_id)
    await sandbox.recorder.settle()

    [attempt] = sandbox.recorder.callbacks
    assert attempt.status == 404


async def test_a_non_loopback_reply_url_is_accepted_but_not_delivered(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create(replyUrl="https://example.com/hook"))["job_id"]

    await sandbox.wait_final(job_id)
    await sandbox.recorder.settle()

    [attempt] = sandbox.recorder.callbacks
    assert attempt.url == "https://example.com/hook"
    assert attempt.status is None
    assert attempt.error == "not delivered: the sandbox only delivers to loopback"


async def test_a_refused_connection_is_recorded_as_an_error(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(**SLOW)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on this port any more
    job_id = (await sandbox.create(replyUrl=f"http://127.0.0.1:{port}/hook"))["job_id"]

    sandbox.recorder.complete_now(job_id)
    await sandbox.recorder.settle()

    [attempt] = sandbox.recorder.callbacks
    assert attempt.status is None
    assert attempt.error is not None
    assert "Connect" in attempt.error


# -- list, accounts, scheduler ------------------------------------------------------


async def test_the_list_is_newest_first_with_cursor_pages(sandbox: Sandbox) -> None:
    sandbox.recorder.page_size = 2
    songs = [(await sandbox.create("song", prompt=f"song {n}"))["job_id"] for n in range(5)]
    instrumental = (await sandbox.create("instrumental"))["job_id"]
    await sandbox.create("song", account=1)

    seen, cursor, pages = [], "", 0
    while True:
        status, page = await sandbox.call("GET", "music/", params={"cursor": cursor})
        assert status == 200, page
        pages += 1
        seen += [record["job_id"] for record in page["records"]]
        if not page["hasNext"]:
            assert page["cursor"] == ""
            break
        cursor = page["cursor"]
        assert cursor

    assert pages == 3
    assert seen == songs[::-1]
    _, only = await sandbox.call("GET", "music", params={"type": "instrumental"})
    assert [record["job_id"] for record in only["records"]] == [instrumental]
    assert only["records"][0]["status"] in (0, 30)


async def test_list_parameters_are_validated(sandbox: Sandbox) -> None:
    for params, error in (
        ({"type": "podcast"}, "Parameter type must be one of: song, instrumental"),
        ({"cursor": "not-a-cursor"}, "Parameter cursor is invalid"),
        ({"user_id": "nobody"}, "Parameter user_id: account nobody is not configured"),
    ):
        status, body = await sandbox.call("GET", "music/", params=params)
        assert status == 400
        assert body["error"].startswith(error)


async def test_accounts_can_be_added_and_then_the_list_needs_user_id(sandbox: Sandbox) -> None:
    owner = sandbox.config.accounts[0].name
    default_user = next(iter(sandbox.recorder.accounts_of(owner)))
    status, body = await sandbox.call("POST", "accounts", json={"maxJobs": 3})
    assert (status, body) == (400, {"error": "Parameter requestParams is required", "code": 400})

    status, added = await sandbox.call(
        "POST", "accounts", json={"requestParams": {"user_id": "555", "token": "t"}, "maxJobs": 3}
    )
    assert status == 200
    assert added["user_id"] == "555"
    assert added["maxJobs"] == 3
    assert added["requestParams"] == {"user_id": "555", "token": "t"}
    assert added["updatedUTC"].endswith("Z")

    _, accounts = await sandbox.call("GET", "accounts")
    assert set(accounts) == {default_user, "555"}
    assert (await sandbox.call("GET", "accounts/555"))[1]["maxJobs"] == 3
    status, body = await sandbox.call("GET", "accounts/999")
    assert status == 404
    assert body["error"].startswith("Configuration not found")

    job = await sandbox.create(user_id="555")
    assert job["userId"] == "555"
    assert "-tempolor:555-job:" in job["job_id"]
    status, body = await sandbox.call("GET", "music/")
    assert (status, body["error"]) == (
        400,
        "Parameter user_id is required when more than one account is configured",
    )
    _, page = await sandbox.call("GET", "music/", params={"user_id": "555"})
    assert [record["job_id"] for record in page["records"]] == [job["job_id"]]


async def test_accounts_accept_multipart_with_request_params_as_json_text(
    sandbox: Sandbox,
) -> None:
    form = aiohttp.FormData(
        {"requestParams": json.dumps({"session": "abc"}), "maxJobs": "2"},
        default_to_multipart=True,
    )

    status, added = await sandbox.call("POST", "accounts", data=form)

    assert status == 200
    assert added["requestParams"] == {"session": "abc"}
    assert len(added["user_id"]) == 9
    assert added["maxJobs"] == 2


async def test_max_jobs_caps_concurrent_jobs_with_a_429(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(**SLOW)
    await sandbox.create(maxJobs=1)

    status, body = await sandbox.call("POST", "music/song", json={"prompt": "p", "maxJobs": 1})

    assert status == 429
    assert body["code"] == 429
    await sandbox.create(maxJobs=2)


async def test_the_scheduler_shows_running_jobs_and_free_slots(
    start_sandbox: StartSandbox,
) -> None:
    sandbox = await start_sandbox(**SLOW)
    job_id = (await sandbox.create(replyUrl="http://127.0.0.1:9/h", replyRef="ref"))["job_id"]

    _, running = await sandbox.call("GET", "scheduler")
    _, available = await sandbox.call("GET", "scheduler/available")

    [entry] = running
    assert entry["job_id"] == job_id
    assert entry["started"].endswith("Z")
    assert entry["elapsed"] == "00:00"
    assert (entry["replyUrl"], entry["replyRef"]) == ("http://127.0.0.1:9/h", "ref")
    assert available["executing"] == running
    [slots] = available["available"]
    assert (slots["maxJobs"], slots["executing"], slots["available"]) == (10, 1, 9)
    assert (await sandbox.call("GET", "scheduler", account=1))[1] == []

    sandbox.recorder.complete_now(job_id)
    assert (await sandbox.call("GET", "scheduler"))[1] == []


# -- ground truth -----------------------------------------------------------------


async def test_the_recorder_keeps_jobs_requests_and_is_on_the_app(sandbox: Sandbox) -> None:
    job_id = (await sandbox.create(prompt="recorded"))["job_id"]
    await sandbox.call("GET", f"music/{job_id}", account=1)
    await sandbox.call("GET", "music/", headers={})

    recorder = sandbox.recorder
    job = recorder.job(job_id)
    assert job.owner == sandbox.config.accounts[0].name
    assert job.prompt == "recorded"
    assert recorder.jobs_of(sandbox.config.accounts[1].name) == []
    assert recorder.job_body(job_id)["job_id"] == job_id
    create, lookup, anonymous = recorder.requests
    assert (create.method, create.path, create.status) == ("POST", "/v1/tempolor/music/song", 200)
    assert create.account == sandbox.config.accounts[0].name
    assert create.body == {"prompt": "recorded"}
    assert (lookup.account, lookup.status) == (sandbox.config.accounts[1].name, 404)
    assert (anonymous.account, anonymous.status) == (None, 401)
    sub_apps = [
        resource.get_info()["app"]
        for resource in sandbox.runner.app.router.resources()
        if "app" in resource.get_info()
    ]
    assert sub_apps[0][TEMPOLOR_RECORDER] is recorder
