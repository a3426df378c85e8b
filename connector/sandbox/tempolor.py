"""TemPolor through useapi.net, as an aiohttp sub-application of the sandbox.

Mount it with ``app.add_subapp("/v1/tempolor/", create_tempolor_app(config))``; a
client's base URL is then ``<sandbox>/v1/tempolor``. Contract:
``shared/api/TEMPOLOR.md`` and the public useapi.net TemPolor reference.

Each sandbox account (``config.accounts``) is one useapi.net user whose bearer
token is ``config.tempolor_token_for(account)``, with one TemPolor account
configured from the start (more can be added with POST accounts). A job lives
for ``pending_delay + processing_delay`` seconds in status 0 (GENERATING, with
``progress`` rising) and then turns 30 (COMPLETED) or 10 (FAILED): a prompt
containing ``config.fail_marker`` always fails, otherwise a hash of
``config.seed`` and the job's item id decides against ``config.failure_rate``.

Choices where the reference is silent or only half-visible, kept consistent with
the job-status page:

- POST music/song and POST music/instrumental both answer 200 ``{"jobs": [job]}``
  where ``job`` is the full GET music/{job_id} body (status 0). One request makes
  one job.
- ``tonality`` accepts exactly the 24 values the reference lists (sharps C# and
  F#, flats Ab, Bb and Eb, naturals otherwise); "D#:minor" or "Db:major" are 400.
- ``maxJobs`` is 1-10 (TemPolor runs at most 10 tracks at once, per the setup
  page). A create beyond the chosen account's limit answers 429.
- ``user_id`` naming no configured account is 400. Without ``user_id`` a create
  takes the account with the most free slots; the list requires ``user_id`` once
  a token has more than one account, as the reference says.
- The list answers ``{"records": [...], "hasNext": bool, "cursor": str}``, the
  shape of the other useapi.net TemPolor lists; newest first, 20 per page, the
  cursor opaque and ``""`` on the last page.
- POST accounts takes the TemPolor ``user_id`` from ``requestParams.user_id``
  (or ``userId``/``ucid``) when given, otherwise derives a stable one from it.
- A job's ``musicMaterial.dur`` is 0 until it completes; ``mp3OssId`` and
  ``wavOssId`` are empty until then. ``cover`` and ``waveformUrl`` are always
  empty (the sandbox serves no images). ``replyUrl``/``replyRef`` appear in the
  job body when they were given, so the callback carries ``replyRef``.
- ``ltmMaterialExtendDto.model`` holds sandbox names such as "sandbox-song-v3.5";
  ``modelShowName`` holds the public model name.
- Download links look like the real CDN's,
  ``<sandbox>/v1/tempolor/files/<itemId>.mp3?auth_key=<expiry>-0-0-<secret>``:
  an unknown or altered key answers 403, an expired one 410. "wav" is an 8 kHz
  8-bit WAV and "stems" a ZIP of such WAVs, both of the job's length.
- Downloading a job that failed answers 400 "Generation is not completed yet (10)".
- replyUrl gets one POST when the job turns final (no progress updates, no
  retry, no redirects followed), and only on loopback: any other host is
  accepted and recorded as not delivered. ``strict_webhooks`` does not apply:
  useapi.net documents no https requirement for replyUrl.
- The account tier of the Finetuning side does not matter here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import itertools
import json
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web
from yarl import URL

from connector.sandbox import audio
from connector.sandbox.config import AccountConfig, SandboxConfig

STATUS_GENERATING = 0
STATUS_FAILED = 10
STATUS_COMPLETED = 30
STATUS_NAMES = {
    STATUS_GENERATING: "GENERATING",
    STATUS_FAILED: "FAILED",
    STATUS_COMPLETED: "COMPLETED",
}

SONG_MODELS = ("v3", "v3.5")
INSTRUMENTAL_MODELS = ("i3", "i3.5 beta")
TONALITIES = tuple(
    f"{root}:{mode}"
    for root in ("A", "Ab", "B", "Bb", "C#", "C", "D", "E", "Eb", "F#", "F", "G")
    for mode in ("major", "minor")
)
FILE_FORMATS = ("mp3", "wav", "stems")
MAX_JOBS_LIMIT = 10
DEFAULT_PAGE_SIZE = 20

JOB_ID_PATTERN = re.compile(
    r"^user:(?P<user>[0-9]+)-tempolor:(?P<user_id>[A-Za-z0-9_.]+)-job:(?P<item>[0-9A-Za-z]+)$"
)

JobKind = Literal["song", "instrumental"]

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
_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "stems": "application/zip"}
_EXTENSIONS = {"mp3": "mp3", "wav": "wav", "stems": "zip"}
_NOT_DELIVERED = "not delivered: the sandbox only delivers to loopback"
# Per-request notes for the recorder: who called, and the body as parsed.
_ACCOUNT_KEY = web.RequestKey[str]("tempolor_account")
_BODY_KEY = web.RequestKey[dict[str, Any]]("tempolor_body")


@dataclass
class TempolorAccount:
    """A TemPolor account configured under one useapi.net token (POST accounts)."""

    user_id: str
    owner: str  # name of the sandbox account whose token configured it
    max_jobs: int = MAX_JOBS_LIMIT
    request_params: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        """The body of GET accounts/{user_id}."""
        return {
            "user_id": self.user_id,
            "updated": int(self.updated * 1000),
            "updatedUTC": _iso(self.updated),
            "maxJobs": self.max_jobs,
            "requestParams": self.request_params,
        }


@dataclass
class TempolorJob:
    """One generation job: what was asked, what was decided, where it stands."""

    job_id: str
    item_id: str
    owner: str  # sandbox account name (the token that created it)
    user_id: str  # TemPolor account it runs on
    kind: JobKind
    sequence: int  # creation order, for newest-first listing
    params: dict[str, Any]  # the validated request parameters
    model: str  # public model name, e.g. "v3.5" or "i3.5 beta"
    title: str
    style: str
    key: str  # e.g. "F:minor"
    bpm: int
    duration: int  # seconds, reported as musicMaterial.dur once completed
    seed: int
    planned_status: int  # outcome the lifecycle will apply (30 or 10)
    planned_error: str | None
    created_at: float  # epoch seconds, from the recorder's clock
    updated_at: float
    status: int = STATUS_GENERATING
    progress: int = 0
    error: str | None = None
    downloads: int = 0

    @property
    def prompt(self) -> str:
        """The prompt the job was created with."""
        return str(self.params["prompt"])

    @property
    def reply_url(self) -> str | None:
        """The replyUrl to call when the job turns final, if any."""
        value = self.params.get("replyUrl")
        return str(value) if value else None

    @property
    def final(self) -> bool:
        """True once the job is COMPLETED or FAILED."""
        return self.status != STATUS_GENERATING


@dataclass
class CallbackAttempt:
    """One replyUrl delivery: `status` when the receiver answered, else `error`."""

    job_id: str
    url: str
    body: dict[str, Any]
    at: float
    status: int | None = None
    error: str | None = None


@dataclass
class RecordedRequest:
    """One request the sub-application answered (the bearer token is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    account: str | None  # sandbox account name when the token was valid
    status: int
    at: float
    body: dict[str, Any] | None = None


@dataclass
class DownloadLink:
    """A download URL handed out by GET music/download/{job_id}."""

    secret: str
    job_id: str
    file_format: str
    filename: str
    url: str
    expires_at: float  # epoch seconds, compared with the recorder's clock


class ApiError(Exception):
    """An error answered as ``{"error": <message>, "code": <status>}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        """The JSON error response."""
        return web.json_response({"error": self.message, "code": self.status}, status=self.status)


def _iso(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _digest_number(text: str, digits: int) -> str:
    """A stable decimal number of exactly `digits` digits derived from `text`."""
    value = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    low = 10 ** (digits - 1)
    return str(low + value % (9 * low))


def _unit_interval(text: str) -> float:
    """A stable number in [0, 1) derived from `text`."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16) / float(1 << 52)


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
        return _digest_number(f"useapi-user:{self.config.seed}:{owner}", 5)

    def accounts_of(self, owner: str) -> dict[str, TempolorAccount]:
        """TemPolor accounts configured under `owner`'s token (one by default)."""
        if owner not in self.accounts:
            user_id = _digest_number(f"tempolor-user:{self.config.seed}:{owner}", 9)
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
        elif _unit_interval(f"{self.config.seed}:{item_id}") < self.config.failure_rate:
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
                CallbackAttempt(job.job_id, url, body, self.clock(), error=_NOT_DELIVERED)
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

    def record_request(self, request: web.Request, status: int) -> None:
        """Append one answered request to `requests`."""
        body = request.get(_BODY_KEY)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                account=request.get(_ACCOUNT_KEY),
                status=status,
                at=self.clock(),
                body=body,
            )
        )


# -- request parsing and validation -------------------------------------------


async def _read_params(request: web.Request) -> dict[str, Any]:
    """The body as a dict, from JSON or multipart/form-data (or urlencoded)."""
    params: dict[str, Any]
    if not request.body_exists:
        params = {}
    elif request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        params = {}
        for name, value in form.items():
            if isinstance(value, str):
                params[name] = value
            elif isinstance(value, web.FileField):  # a part sent as a file: take its text
                params[name] = value.file.read().decode("utf-8", errors="replace")
            else:
                params[name] = bytes(value).decode("utf-8", errors="replace")
    else:
        try:
            data = json.loads(await request.text())
        except ValueError:
            raise ApiError(400, "Request body must be JSON or multipart/form-data") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Request body must be a JSON object")
        params = data
    request[_BODY_KEY] = params
    return params


def _text(params: Mapping[str, Any], name: str, max_length: int, *, required: bool = False) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"Parameter {name} is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"Parameter {name} must be a string")
    if required and not value.strip():
        raise ApiError(400, f"Parameter {name} is required")
    if len(value) > max_length:
        raise ApiError(
            400,
            f"Parameter {name} must be at most {max_length} characters long (got {len(value)})",
        )
    return value


def _choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise ApiError(400, f"Parameter {name} must be one of: {', '.join(choices)}")
    return str(value)


def _integer(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value)
    ):
        number = int(value)
    if number is None or not low <= number <= high:
        raise ApiError(400, f"Parameter {name} must be an integer from {low} to {high}")
    return number


def _reply_url(params: Mapping[str, Any]) -> str:
    value = _text(params, "replyUrl", 1024)
    if value:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ApiError(400, "Parameter replyUrl must be an http or https URL")
    return value


def _identifier(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(400, f"Parameter {name} must be a string")
    return str(value)


def _song_params(params: Mapping[str, Any]) -> dict[str, Any]:
    validated: dict[str, Any] = {
        "prompt": _text(params, "prompt", 2000, required=True),
        "lyrics": _text(params, "lyrics", 3000),
        "model": _choice(params, "model_song", SONG_MODELS, "v3.5"),
    }
    for name in ("artistVoiceItemId", "clonedVoiceItemId", "midiItemId"):
        validated[name] = _identifier(params, name)
    return validated


def _instrumental_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _text(params, "prompt", 2000, required=True),
        "model": _choice(params, "model_instrumental", INSTRUMENTAL_MODELS, "i3.5 beta"),
        "tonality": _choice(params, "tonality", TONALITIES, ""),
        "bpm": _integer(params, "bpm", 50, 190),
        "chords": _text(params, "chords", 200),
    }


def _parse_request_params(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        raise ApiError(400, "Parameter requestParams is required")
    if isinstance(value, str):  # multipart bodies carry it as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(400, "Parameter requestParams must be a JSON object") from None
    if not isinstance(value, dict):
        raise ApiError(400, "Parameter requestParams must be a JSON object")
    return value


# -- the HTTP surface ----------------------------------------------------------

TEMPOLOR_RECORDER = web.AppKey("tempolor_recorder", TempolorRecorder)
"""Where `create_tempolor_app` stores its recorder on the sub-application."""


class _TempolorApi:
    """Request handlers; all state lives in the recorder."""

    def __init__(self, recorder: TempolorRecorder) -> None:
        self.recorder = recorder

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Render errors as useapi.net JSON and record every answered request."""
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = ApiError(exc.status, exc.reason).response()
        self.recorder.record_request(request, response.status)
        return response

    def _authorize(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        account = self.recorder.account_for_token(token.strip()) if scheme == "Bearer" else None
        if account is None:
            raise ApiError(401, "Unauthorized")
        request[_ACCOUNT_KEY] = account.name
        return account.name

    def _owned_job(self, owner: str, job_id: str) -> TempolorJob:
        if not JOB_ID_PATTERN.match(job_id):
            raise ApiError(400, "job_id has incorrect format")
        job = self.recorder.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise ApiError(404, f"No record found for {job_id}")
        return job

    def _pick_account(self, owner: str, params: Mapping[str, Any]) -> TempolorAccount:
        accounts = self.recorder.accounts_of(owner)
        user_id = _identifier(params, "user_id")
        if user_id:
            if user_id not in accounts:
                raise ApiError(
                    400,
                    f"Parameter user_id: account {user_id} is not configured, see POST accounts",
                )
            return accounts[user_id]
        return max(
            accounts.values(),
            key=lambda a: a.max_jobs - len(self.recorder.executing(owner, a.user_id)),
        )

    async def create(self, request: web.Request, kind: JobKind) -> web.Response:
        owner = self._authorize(request)
        raw = await _read_params(request)
        params = _song_params(raw) if kind == "song" else _instrumental_params(raw)
        params["replyUrl"] = _reply_url(raw)
        params["replyRef"] = _text(raw, "replyRef", 1024)
        max_jobs = _integer(raw, "maxJobs", 1, MAX_JOBS_LIMIT)
        account = self._pick_account(owner, raw)
        params["user_id"] = account.user_id
        limit = max_jobs or account.max_jobs
        running = len(self.recorder.executing(owner, account.user_id))
        if running >= limit:
            raise ApiError(
                429,
                f"Account {account.user_id} is running {running} of {limit} jobs, "
                "wait 10..30 seconds and retry",
            )
        job = self.recorder.create_job(owner, account.user_id, kind, params)
        return web.json_response({"jobs": [self.recorder.job_body(job.job_id)]})

    async def create_song(self, request: web.Request) -> web.Response:
        """POST music/song."""
        return await self.create(request, "song")

    async def create_instrumental(self, request: web.Request) -> web.Response:
        """POST music/instrumental."""
        return await self.create(request, "instrumental")

    async def get_job(self, request: web.Request) -> web.Response:
        """GET music/{job_id}."""
        owner = self._authorize(request)
        job = self._owned_job(owner, request.match_info["job_id"])
        return web.json_response(self.recorder.job_body(job.job_id))

    async def download(self, request: web.Request) -> web.Response:
        """GET music/download/{job_id}?file_format=mp3|wav|stems."""
        owner = self._authorize(request)
        file_format = _choice(request.query, "file_format", FILE_FORMATS, "mp3")
        job = self._owned_job(owner, request.match_info["job_id"])
        if job.status != STATUS_COMPLETED:
            raise ApiError(400, f"Generation is not completed yet ({job.status})")
        recorder = self.recorder
        secret = secrets.token_hex(16)
        expires_at = recorder.clock() + recorder.link_ttl
        filename = f"{job.item_id}.{_EXTENSIONS[file_format]}"
        path = request.app.router["tempolor_file"].url_for(filename=filename)
        url = request.url.origin().join(path).with_query(auth_key=f"{int(expires_at)}-0-0-{secret}")
        recorder.links[secret] = DownloadLink(
            secret, job.job_id, file_format, filename, str(url), expires_at
        )
        job.downloads += 1
        return web.json_response({"url": str(url), "remainSeconds": int(recorder.link_ttl)})

    async def serve_file(self, request: web.Request) -> web.Response:
        """The download links' target: the file while its link is alive."""
        secret = request.query.get("auth_key", "").rpartition("-")[2]
        link = self.recorder.links.get(secret) if secret else None
        filename = request.match_info["filename"]
        if link is None or link.filename != filename:
            raise ApiError(403, "Forbidden")
        if self.recorder.clock() >= link.expires_at:
            raise ApiError(410, "Download link expired")
        job = self.recorder.jobs[link.job_id]
        return web.Response(
            body=self.recorder.file_bytes(job, link.file_format),
            content_type=_CONTENT_TYPES[link.file_format],
        )

    async def list_jobs(self, request: web.Request) -> web.Response:
        """GET music/?user_id=&type=song|instrumental&cursor=."""
        owner = self._authorize(request)
        query = request.query
        kind = _choice(query, "type", ("song", "instrumental"), "song")
        accounts = self.recorder.accounts_of(owner)
        user_id = query.get("user_id", "")
        if user_id and user_id not in accounts:
            raise ApiError(
                400, f"Parameter user_id: account {user_id} is not configured, see POST accounts"
            )
        if not user_id:
            if len(accounts) > 1:
                raise ApiError(
                    400, "Parameter user_id is required when more than one account is configured"
                )
            user_id = next(iter(accounts))
        before = _decode_cursor(query.get("cursor", ""))
        matching = sorted(
            (
                job
                for job in self.recorder.jobs.values()
                if job.owner == owner
                and job.user_id == user_id
                and job.kind == kind
                and (before is None or job.sequence < before)
            ),
            key=lambda job: job.sequence,
            reverse=True,
        )
        page = matching[: self.recorder.page_size]
        has_next = len(matching) > len(page)
        return web.json_response(
            {
                "records": [self.recorder.job_body(job.job_id) for job in page],
                "hasNext": has_next,
                "cursor": _encode_cursor(page[-1].sequence) if has_next else "",
            }
        )

    async def add_account(self, request: web.Request) -> web.Response:
        """POST accounts: configure (or update) a TemPolor account for this token."""
        owner = self._authorize(request)
        raw = await _read_params(request)
        request_params = _parse_request_params(raw.get("requestParams"))
        max_jobs = _integer(raw, "maxJobs", 1, MAX_JOBS_LIMIT) or MAX_JOBS_LIMIT
        named = next(
            (
                request_params[key]
                for key in ("user_id", "userId", "ucid")
                if isinstance(request_params.get(key), str | int)
                and not isinstance(request_params.get(key), bool)
                and str(request_params[key])
            ),
            None,
        )
        if named is not None and re.fullmatch(r"[A-Za-z0-9_.]+", str(named)):
            user_id = str(named)
        else:
            canonical = json.dumps(request_params, sort_keys=True)
            user_id = _digest_number(f"tempolor-account:{canonical}", 9)
        account = TempolorAccount(
            user_id=user_id,
            owner=owner,
            max_jobs=max_jobs,
            request_params=request_params,
            updated=self.recorder.clock(),
        )
        self.recorder.accounts_of(owner)[user_id] = account
        return web.json_response(account.as_json())

    async def list_accounts(self, request: web.Request) -> web.Response:
        """GET accounts."""
        owner = self._authorize(request)
        accounts = self.recorder.accounts_of(owner)
        if not accounts:
            raise ApiError(404, "No accounts configured, see POST accounts")
        return web.json_response({uid: account.as_json() for uid, account in accounts.items()})

    async def get_account(self, request: web.Request) -> web.Response:
        """GET accounts/{user_id}."""
        owner = self._authorize(request)
        user_id = request.match_info["user_id"]
        account = self.recorder.accounts_of(owner).get(user_id)
        if account is None:
            raise ApiError(
                404,
                f"Configuration not found for user_id {user_id}. "
                "To create configuration use POST accounts.",
            )
        return web.json_response(account.as_json())

    def _executing_json(self, owner: str) -> list[dict[str, Any]]:
        now = self.recorder.clock()
        entries = []
        for job in self.recorder.jobs_of(owner):
            if job.final:
                continue
            seconds = max(0, int(now - job.created_at))
            entry: dict[str, Any] = {
                "job_id": job.job_id,
                "user_id": job.user_id,
                "started": _iso(job.created_at),
                "elapsed": f"{seconds // 60:02d}:{seconds % 60:02d}",
            }
            for name in ("replyUrl", "replyRef"):
                if job.params.get(name):
                    entry[name] = job.params[name]
            entries.append(entry)
        return entries

    async def scheduler(self, request: web.Request) -> web.Response:
        """GET scheduler: this token's jobs still generating."""
        owner = self._authorize(request)
        return web.json_response(self._executing_json(owner))

    async def scheduler_available(self, request: web.Request) -> web.Response:
        """GET scheduler/available: running jobs and free slots per account."""
        owner = self._authorize(request)
        available: list[dict[str, Any]] = []
        for account in self.recorder.accounts_of(owner).values():
            running = len(self.recorder.executing(owner, account.user_id))
            available.append(
                {
                    "user_id": account.user_id,
                    "maxJobs": account.max_jobs,
                    "executing": running,
                    "available": max(0, account.max_jobs - running),
                }
            )
        available.sort(key=lambda entry: -int(entry["available"]))
        return web.json_response({"executing": self._executing_json(owner), "available": available})


def _encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"before:{sequence}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    if not cursor:
        return None
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix == "before" and number.isdigit():
            return int(number)
    raise ApiError(400, "Parameter cursor is invalid")


def create_tempolor_app(
    config: SandboxConfig, recorder: TempolorRecorder | None = None
) -> web.Application:
    """The TemPolor (useapi.net) sandbox, to mount at ``/v1/tempolor/``.

    Its recorder (the one given, or a new one) is ``app[TEMPOLOR_RECORDER]``; the
    app's cleanup cancels the jobs' lifecycles and callback deliveries.
    """
    recorder = recorder if recorder is not None else TempolorRecorder(config)
    api = _TempolorApi(recorder)
    app = web.Application(middlewares=[api.middleware])
    app[TEMPOLOR_RECORDER] = recorder
    routes = app.router
    routes.add_post("/music/song", api.create_song)
    routes.add_post("/music/instrumental", api.create_instrumental)
    routes.add_get("/music", api.list_jobs)
    routes.add_get("/music/", api.list_jobs)
    routes.add_get("/music/download/{job_id}", api.download)
    routes.add_get("/music/{job_id}", api.get_job)
    routes.add_post("/accounts", api.add_account)
    routes.add_get("/accounts", api.list_accounts)
    routes.add_get("/accounts/", api.list_accounts)
    routes.add_get("/accounts/{user_id}", api.get_account)
    routes.add_get("/scheduler", api.scheduler)
    routes.add_get("/scheduler/", api.scheduler)
    routes.add_get("/scheduler/available", api.scheduler_available)
    routes.add_get("/files/{filename}", api.serve_file, name="tempolor_file")

    async def close_recorder(_: web.Application) -> None:
        await recorder.close()

    app.on_cleanup.append(close_recorder)
    return app
