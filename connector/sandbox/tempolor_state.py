"""The TemPolor sandbox's ground truth and job lifecycle: `TempolorRecorder`.

A job lives for ``pending_delay + processing_delay`` seconds in status 0
(GENERATING, with ``progress`` rising) and then turns 30 (COMPLETED) or 10
(FAILED): a prompt containing ``config.fail_marker`` always fails, otherwise a
hash of ``config.seed`` and the job's item id decides against
``config.failure_rate``. Nothing here knows about routing; ``tempolor.py``
serves this state over HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from . import audio
from .config import AccountConfig, SandboxConfig
from .determinism import digest_number, unit_interval
from .tempolor_params import Notes
from .tempolor_records import (
    DEFAULT_PAGE_SIZE,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_NAMES,
    TONALITIES,
    CallbackAttempt,
    DownloadLink,
    JobKind,
    RecordedRequest,
    TempolorAccount,
    TempolorJob,
)
from .webhook_urls import NOT_LOOPBACK_ERROR

# Longest track per model (the reference: v3 and i3 "max 2 min", the others "max 4.5 min").
_MODEL_MAX_SECONDS = {"v3": 120, "v3.5": 270, "i3": 120, "i3.5 beta": 270}
_MODEL_NAMES = {
    "v3": "sandbox-song-v3",
    "v3.5": "sandbox-song-v3.5",
    "i3": "sandbox-instrumental-i3",
    "i3.5 beta": "sandbox-instrumental-i3.5-beta",
}
_STYLES = (
    "Orchestral",
    "Cinematic",
    "Pop",
    "Rock",
    "Jazz",
    "Lo-fi",
    "Electronic",
    "Ambient",
    "Hip Hop",
    "Folk",
    "Classical",
    "Synthwave",
)
_TITLE_WORDS = (
    ("Midnight", "Golden", "Velvet", "Electric", "Quiet", "Endless", "Crimson", "Silver"),
    ("Echoes", "Horizon", "Rain", "Skyline", "Tides", "Embers", "Voyage", "Garden"),
)
_STEMS = {"song": ("vocals", "instrumental"), "instrumental": ("melody", "accompaniment")}


def _is_loopback(url: str) -> bool:
    host = URL(url).host
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TempolorRecorder:
    """Ground truth and control of the TemPolor sandbox.

    Read freely (treat as read-only):

    - ``jobs``: ``dict[job_id, TempolorJob]`` in creation order, every account's.
      A job carries ``owner`` (sandbox account name), ``user_id`` (TemPolor
      account), ``kind``, ``params`` (validated request), ``status``, ``error``,
      ``title``, ``key``, ``bpm``, ``duration``, ``seed``, ``created_at``,
      ``updated_at`` (epoch seconds) and ``downloads``.
    - ``callbacks``: ``list[CallbackAttempt]``, one per replyUrl delivery
      (``job_id``, ``url``, ``body``, ``at``, and ``status`` or ``error``).
    - ``requests``: ``list[RecordedRequest]``, one per answered request
      (``method``, full ``path``, ``query``, ``account``, ``status``, ``body``).
    - ``links``: ``dict[secret, DownloadLink]``, every download link handed out.
    - ``accounts``: ``dict[owner, dict[user_id, TempolorAccount]]``.

    Knobs: ``clock`` (callable returning epoch seconds; drives createTime and
    updateTime, progress, scheduler elapsed times and link expiry),
    ``sleep_until`` (async callable waiting until the clock reaches a deadline;
    a job turns final at ``created_at + pending_delay + processing_delay`` by
    it, so a manual clock drives the lifecycle too; default: event-loop
    timers), ``link_ttl`` (seconds a new download link lives, from
    ``config.download_link_ttl``) and ``page_size`` (records per list page).

    Methods: ``job(job_id)``, ``jobs_of(owner)``, ``job_body(job_id)`` (the GET
    music/{job_id} body), ``token_for(owner)``, ``complete_now(job_id)``,
    ``fail_now(job_id, error)``, ``expire_links()``, ``await settle()`` (wait
    for callback deliveries in flight) and ``await close()``. ``complete_now``
    and ``fail_now`` must be called on the event loop's thread; they raise
    KeyError for an unknown job and ValueError for one already final.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep_until: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep_until = sleep_until if sleep_until is not None else self._sleep_on_loop
        self.link_ttl = config.download_link_ttl
        self.page_size = DEFAULT_PAGE_SIZE
        self.jobs: dict[str, TempolorJob] = {}
        self.callbacks: list[CallbackAttempt] = []
        self.requests: list[RecordedRequest] = []
        self.links: dict[str, DownloadLink] = {}
        self.accounts: dict[str, dict[str, TempolorAccount]] = {}
        self._rng = random.Random(f"tempolor:{config.seed}")
        self._sequence = itertools.count()
        self._lifecycles: dict[str, asyncio.Task[None]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._files: dict[tuple[str, str], bytes] = {}

    # -- accounts -----------------------------------------------------------

    def token_for(self, owner: str) -> str:
        """The bearer token of the sandbox account named `owner`."""
        return self.config.tempolor_token_for(self._config_account(owner))

    def account_for_token(self, token: str) -> AccountConfig | None:
        """The sandbox account a bearer token belongs to, if any."""
        for account in self.config.accounts:
            if secrets.compare_digest(self.config.tempolor_token_for(account), token):
                return account
        return None

    def useapi_user(self, owner: str) -> str:
        """The useapi.net user number of a sandbox account (the ``user:<n>`` of job ids)."""
        return digest_number(f"useapi-user:{self.config.seed}:{owner}", 5)

    def accounts_of(self, owner: str) -> dict[str, TempolorAccount]:
        """TemPolor accounts configured under `owner`'s token (one by default)."""
        if owner not in self.accounts:
            user_id = digest_number(f"tempolor-user:{self.config.seed}:{owner}", 9)
            self.accounts[owner] = {
                user_id: TempolorAccount(user_id=user_id, owner=owner, updated=self.clock())
            }
        return self.accounts[owner]

    def executing(self, owner: str, user_id: str) -> list[TempolorJob]:
        """Jobs of one TemPolor account still generating."""
        return [
            job
            for job in self.jobs.values()
            if job.owner == owner and job.user_id == user_id and not job.final
        ]

    def _config_account(self, owner: str) -> AccountConfig:
        for account in self.config.accounts:
            if account.name == owner:
                return account
        raise KeyError(owner)

    # -- jobs ----------------------------------------------------------------

    def job(self, job_id: str) -> TempolorJob:
        """The job with this id; KeyError if there is none."""
        return self.jobs[job_id]

    def jobs_of(self, owner: str) -> list[TempolorJob]:
        """Jobs created with `owner`'s token, oldest first."""
        return [job for job in self.jobs.values() if job.owner == owner]

    def job_body(self, job_id: str) -> dict[str, Any]:
        """What GET music/{job_id} answers for this job right now."""
        return self._body(self.jobs[job_id])

    def create_job(
        self, owner: str, user_id: str, kind: JobKind, params: dict[str, Any]
    ) -> TempolorJob:
        """Record a new GENERATING job and start its lifecycle (needs a running loop)."""
        item_id = self._new_item_id()
        job_rng = random.Random(f"tempolor-job:{self.config.seed}:{item_id}")
        model = str(params["model"])
        prompt = str(params["prompt"])
        lowered = prompt.lower()
        style = next((s for s in _STYLES if s.lower() in lowered), job_rng.choice(_STYLES))
        adjectives, nouns = _TITLE_WORDS
        planned_status, planned_error = STATUS_COMPLETED, None
        marker = self.config.fail_marker
        if marker and marker in prompt:
            planned_status = STATUS_FAILED
            planned_error = f"Music generation failed (the prompt contains {marker!r})"
        elif unit_interval(f"{self.config.seed}:{item_id}") < self.config.failure_rate:
            planned_status = STATUS_FAILED
            planned_error = "Music generation failed"
        now = self.clock()
        job = TempolorJob(
            job_id=f"user:{self.useapi_user(owner)}-tempolor:{user_id}-job:{item_id}",
            item_id=item_id,
            owner=owner,
            user_id=user_id,
            kind=kind,
            sequence=next(self._sequence),
            params=params,
            model=model,
            title=f"{job_rng.choice(adjectives)} {job_rng.choice(nouns)}",
            style=style,
            key=str(params.get("tonality") or job_rng.choice(TONALITIES)),
            bpm=int(params.get("bpm") or job_rng.randint(70, 160)),
            duration=job_rng.randint(_MODEL_MAX_SECONDS[model] // 2, _MODEL_MAX_SECONDS[model]),
            seed=job_rng.randint(1, 2**31 - 1),
            planned_status=planned_status,
            planned_error=planned_error,
            created_at=now,
            updated_at=now,
        )
        self.jobs[job.job_id] = job
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._lifecycles[job.job_id] = task
        task.add_done_callback(lambda _: self._lifecycles.pop(job.job_id, None))
        return job

    def complete_now(self, job_id: str) -> TempolorJob:
        """Turn a GENERATING job COMPLETED at once (its callback fires as usual)."""
        return self._force(job_id, STATUS_COMPLETED, None)

    def fail_now(self, job_id: str, error: str = "Music generation failed") -> TempolorJob:
        """Turn a GENERATING job FAILED at once with this error text."""
        return self._force(job_id, STATUS_FAILED, error)

    def _force(self, job_id: str, status: int, error: str | None) -> TempolorJob:
        job = self.jobs[job_id]
        if job.final:
            raise ValueError(f"job {job_id} is already final (status {job.status})")
        lifecycle = self._lifecycles.pop(job_id, None)
        if lifecycle is not None:
            lifecycle.cancel()
        self._finalize(job, status, error)
        return job

    def _new_item_id(self) -> str:
        while True:
            item_id = f"{self._rng.getrandbits(60):015x}"
            if not any(job.item_id == item_id for job in self.jobs.values()):
                return item_id

    async def _sleep_on_loop(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.clock()))

    async def _run(self, job: TempolorJob) -> None:
        await self.sleep_until(
            job.created_at + self.config.pending_delay + self.config.processing_delay
        )
        self._finalize(job, job.planned_status, job.planned_error)

    def _progress(self, job: TempolorJob) -> int:
        if job.status == STATUS_COMPLETED:
            return 100
        if job.final:
            return job.progress
        total = self.config.pending_delay + self.config.processing_delay
        if total <= 0:
            return 0
        return max(0, min(99, int(100 * (self.clock() - job.created_at) / total)))

    def _finalize(self, job: TempolorJob, status: int, error: str | None) -> None:
        if job.final:
            return
        job.progress = self._progress(job) if status == STATUS_FAILED else 100
        job.status = status
        job.error = error
        job.updated_at = self.clock()
        url = job.reply_url
        if url is None:
            return
        body = self._body(job)
        if not _is_loopback(url):
            self.callbacks.append(
                CallbackAttempt(job.job_id, url, body, self.clock(), error=NOT_LOOPBACK_ERROR)
            )
            return
        task = asyncio.get_running_loop().create_task(self._deliver(job.job_id, url, body))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, job_id: str, url: str, body: dict[str, Any]) -> None:
        attempt = CallbackAttempt(job_id, url, body, self.clock())
        self.callbacks.append(attempt)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
        try:
            # No redirects: a redirect could lead the sandbox off loopback.
            async with self._session.post(
                url, json=body, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                attempt.status = response.status
        except asyncio.CancelledError:
            attempt.error = "cancelled: the sandbox shut down"
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt.error = type(exc).__name__ + (f": {exc}" if str(exc) else "")

    async def settle(self) -> None:
        """Wait until every callback delivery in flight has finished."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    async def close(self) -> None:
        """Cancel lifecycles and deliveries and close the callback session."""
        tasks = [*self._lifecycles.values(), *self._deliveries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lifecycles.clear()
        self._deliveries.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- bodies and files -----------------------------------------------------

    def _body(self, job: TempolorJob) -> dict[str, Any]:
        completed = job.status == STATUS_COMPLETED
        params = job.params
        prompt = job.prompt
        lyrics = str(params.get("lyrics") or "")
        child_type = "lyric_to_material" if job.kind == "song" else "text_to_material"
        body: dict[str, Any] = {
            "bizType": "ai_material_music",
            "childType": child_type,
            "matChildType": child_type,
            "sourceType": "sm_user_gen",
            "itemId": job.item_id,
            "job_id": job.job_id,
            "genItemId": job.item_id,
            "userId": job.user_id,
            "titleEn": job.title,
            "cover": "",
            "mp3OssId": f"ai_material/ai_material/mp3/{job.item_id}.mp3" if completed else "",
            "wavOssId": f"ai_material/ai_material/wav/{job.item_id}.wav" if completed else "",
            "ossWatermarkMp3": "",
            "officialPlaylistSong": False,
            "status": job.status,
            "status_name": STATUS_NAMES[job.status],
            "status_final": job.final,
            "progress": self._progress(job),
            "downloadTotal": job.downloads,
            "likeTotal": 0,
            "collectTotal": 0,
            "musicMaterial": {
                "style": job.style,
                "chord": str(params.get("chords") or ""),
                "mood": "",
                "inst": "",
                "instInfo": "",
                "scene": "",
                "otherInfo": prompt,
                "otherInfoCn": "",
                "key": job.key,
                "bpm": job.bpm,
                "dur": job.duration if completed else 0,
                "seed": job.seed,
                "waveformUrl": "",
            },
            "readStatus": False,
            "downloadStatus": job.downloads > 0,
            "createTime": int(job.created_at * 1000),
            "updateTime": int(job.updated_at * 1000),
            "materialQualityScore": 0,
            "ltmMaterialExtendDto": {
                "lyricsPrompt": lyrics,
                "description": prompt,
                "ltmVocalModel": bool(
                    params.get("artistVoiceItemId") or params.get("clonedVoiceItemId")
                ),
                "ltmMidiModel": bool(params.get("midiItemId")),
                "genItemId": job.item_id,
                "prompt": prompt,
                "genMode": 0,
                "model": _MODEL_NAMES[job.model],
                "modelShowName": job.model,
            },
            "editType": "gen",
            "operatorType": "gen",
            "rootItemId": job.item_id,
            "parentItemId": job.item_id,
            "canExtend": completed,
            "canEditLyrics": completed and job.kind == "song",
            "canFixVocals": completed and job.kind == "song",
            "canReplaced": False,
        }
        if job.error is not None:
            body["error"] = job.error
        for name in ("replyUrl", "replyRef"):
            if params.get(name):
                body[name] = params[name]
        return body

    def file_bytes(self, job: TempolorJob, file_format: str) -> bytes:
        """The downloadable file of a job in one of FILE_FORMATS (built once, then cached)."""
        key = (job.job_id, file_format)
        if key not in self._files:
            if file_format == "mp3":
                data = audio.mp3_bytes(job.duration, title=job.title, seed=job.seed)
            elif file_format == "wav":
                data = audio.wav_bytes(job.duration, seed=job.seed)
            else:
                data = audio.stems_zip(job.duration, stems=_STEMS[job.kind], seed=job.seed)
            self._files[key] = data
        return self._files[key]

    def expire_links(self) -> None:
        """Make every download link handed out so far expired."""
        now = self.clock()
        for link in self.links.values():
            link.expires_at = min(link.expires_at, now)

    def record_request(self, request: web.Request, status: int, notes: Notes) -> None:
        """Append one answered request to `requests`."""
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                account=notes.account,
                status=status,
                at=self.clock(),
                body=notes.body,
            )
        )
