"""TemPolor through useapi.net, as an aiohttp sub-application of the sandbox.

Mount it with ``app.add_subapp("/v1/tempolor/", create_tempolor_app(config))``; a
client's base URL is then ``<sandbox>/v1/tempolor``. Contract: the public
useapi.net TemPolor reference.

Each sandbox account (``config.accounts``) is one useapi.net user whose bearer
token is ``config.tempolor_token_for(account)``, with one TemPolor account
configured from the start (more can be added with POST accounts). The jobs,
their lifecycle and the ground truth live in ``TempolorRecorder``
(``tempolor_state.py``); this module is the HTTP surface.

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

import base64
import binascii
import contextlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from .config import SandboxConfig
from .determinism import digest_number
from .errors import TempolorApiError
from .tempolor_params import (
    NOTES,
    Notes,
    choice_param,
    identifier_param,
    instrumental_params,
    integer_param,
    parse_request_params,
    read_params,
    reply_url_param,
    song_params,
    text_param,
)
from .tempolor_records import (
    FILE_FORMATS,
    JOB_ID_PATTERN,
    MAX_JOBS_LIMIT,
    STATUS_COMPLETED,
    DownloadLink,
    JobKind,
    TempolorAccount,
    TempolorJob,
    iso,
)
from .tempolor_state import TempolorRecorder

_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "stems": "application/zip"}
_EXTENSIONS = {"mp3": "mp3", "wav": "wav", "stems": "zip"}

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
        notes = Notes()
        token = NOTES.set(notes)
        try:
            response = await handler(request)
        except TempolorApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = TempolorApiError(exc.status, exc.reason).response()
        finally:
            NOTES.reset(token)
        self.recorder.record_request(request, response.status, notes)
        return response

    def _authorize(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        account = self.recorder.account_for_token(token.strip()) if scheme == "Bearer" else None
        if account is None:
            raise TempolorApiError(401, "Unauthorized")
        NOTES.get().account = account.name
        return account.name

    def _owned_job(self, owner: str, job_id: str) -> TempolorJob:
        if not JOB_ID_PATTERN.match(job_id):
            raise TempolorApiError(400, "job_id has incorrect format")
        job = self.recorder.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise TempolorApiError(404, f"No record found for {job_id}")
        return job

    def _pick_account(self, owner: str, params: Mapping[str, Any]) -> TempolorAccount:
        accounts = self.recorder.accounts_of(owner)
        user_id = identifier_param(params, "user_id")
        if user_id:
            if user_id not in accounts:
                raise TempolorApiError(
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
        raw = await read_params(request)
        params = song_params(raw) if kind == "song" else instrumental_params(raw)
        params["replyUrl"] = reply_url_param(raw)
        params["replyRef"] = text_param(raw, "replyRef", 1024)
        max_jobs = integer_param(raw, "maxJobs", 1, MAX_JOBS_LIMIT)
        account = self._pick_account(owner, raw)
        params["user_id"] = account.user_id
        limit = max_jobs or account.max_jobs
        running = len(self.recorder.executing(owner, account.user_id))
        if running >= limit:
            raise TempolorApiError(
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
        file_format = choice_param(request.query, "file_format", FILE_FORMATS, "mp3")
        job = self._owned_job(owner, request.match_info["job_id"])
        if job.status != STATUS_COMPLETED:
            raise TempolorApiError(400, f"Generation is not completed yet ({job.status})")
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
            raise TempolorApiError(403, "Forbidden")
        if self.recorder.clock() >= link.expires_at:
            raise TempolorApiError(410, "Download link expired")
        job = self.recorder.jobs[link.job_id]
        return web.Response(
            body=self.recorder.file_bytes(job, link.file_format),
            content_type=_CONTENT_TYPES[link.file_format],
        )

    async def list_jobs(self, request: web.Request) -> web.Response:
        """GET music/?user_id=&type=song|instrumental&cursor=."""
        owner = self._authorize(request)
        query = request.query
        kind = choice_param(query, "type", ("song", "instrumental"), "song")
        accounts = self.recorder.accounts_of(owner)
        user_id = query.get("user_id", "")
        if user_id and user_id not in accounts:
            raise TempolorApiError(
                400, f"Parameter user_id: account {user_id} is not configured, see POST accounts"
            )
        if not user_id:
            if len(accounts) > 1:
                raise TempolorApiError(
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
        raw = await read_params(request)
        request_params = parse_request_params(raw.get("requestParams"))
        max_jobs = integer_param(raw, "maxJobs", 1, MAX_JOBS_LIMIT) or MAX_JOBS_LIMIT
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
            user_id = digest_number(f"tempolor-account:{canonical}", 9)
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
            raise TempolorApiError(404, "No accounts configured, see POST accounts")
        return web.json_response({uid: account.as_json() for uid, account in accounts.items()})

    async def get_account(self, request: web.Request) -> web.Response:
        """GET accounts/{user_id}."""
        owner = self._authorize(request)
        user_id = request.match_info["user_id"]
        account = self.recorder.accounts_of(owner).get(user_id)
        if account is None:
            raise TempolorApiError(
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
                "started": iso(job.created_at),
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
    raise TempolorApiError(400, "Parameter cursor is invalid")


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
