"""Deliver a finished track into a media library (Jellyfin, Plex, Navidrome, ...).

    result = await download_track(generation, "/srv/music", session=session, also_write=("json",))
    print(result.path)  # /srv/music/Finetuning/2025-01-15/Rainy Window.mp3

`download_track` is the entry the `download_track` action and `ftconnect
download` call. It puts together the other modules of this package: `paths`
(the `path_template`), `tags` (ID3), `fetch` (the GET over the connector's one
HTTP session, with its retries) and `files` (folders, atomic placement,
modes, sidecars). What it guarantees:

* **Safe paths.** The path comes from `path_template`; every component built
  from data is sanitised and the final path must resolve inside the library,
  symlinks included, or nothing is written.
* **Nothing half-written.** The audio streams into a hidden temporary file in
  the target folder (".ft-….part"), is checked (size, content type, MP3
  frames), fsynced, tagged, then moved into place with one atomic
  `os.replace`. Any failure or cancellation before that move deletes the
  temporary file. Files get 0666 less the umask, or `file_mode`.
* **Transient failures retried.** A GET is idempotent, so a 429, 500, 502,
  503 or 504, a refused or dropped connection, a timeout or a body cut short
  is tried again (`RetryPolicy`: 4 attempts, exponential backoff with
  jitter, Retry-After honoured up to a cap), each attempt into a fresh
  ".part". Other 4xx are final: 403, 404 and 410 mean the link is wrong or
  expired, and only the caller can fetch a new one (TemPolor's links expire).
* **No secret sent or shown.** The GET carries no credential (the session's
  other requests add theirs per request), so a redirect to another host has
  none to carry; signed URLs lose their query in every message and log.
* **No duplicates.** Every file carries its generation id in an ID3
  `TXXX:FINETUNING_ID` frame. Before downloading, the `.mp3` files of the
  target folder are scanned for that id (tags only: a few KB per file), so a
  track already there is recognised even if its title, and so its file name,
  changed since. The scan is repeated just before the move, under a
  per-folder lock, so two concurrent downloads of one track in this process
  keep one file. A different track with the same title gets "Title (2).mp3".

Decision: the folder scan replaces an index file. An index can go stale when
users rename, move or delete files with their media manager; the tags travel
with the files. The cost is one small read per file of the album folder, and
the limit is that a track filed under another album folder is not seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from mutagen import MutagenError
from yarl import URL

from connector.delivery.errors import DownloadError
from connector.delivery.fetch import (
    DEFAULT_RETRY,
    ProgressCallback,
    RetryPolicy,
    display_url,
    fetch_audio,
)
from connector.delivery.files import (
    SIDECARS,
    FileModes,
    TempWriter,
    check_file_mode,
    find_existing,
    in_thread,
    place,
    prepare_directory,
    remove_empty,
    set_mode,
    sweep_leftovers,
    write_sidecars,
)
from connector.delivery.paths import default_path_template, parse_template, template_values
from connector.delivery.tags import Id3Tags, id3_tags, mp3_seconds, write_id3
from connector.providers.finetuning.models import Generation

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 2**20


@dataclass(frozen=True)
class DownloadResult:
    """Where a track landed.

    `bytes` is the size of the file at `path` (tags included);
    `already_present` says the library already held this generation (nothing
    was downloaded); `sidecars` lists the sidecar files written.
    """

    path: Path
    bytes: int
    already_present: bool
    sidecars: tuple[Path, ...]
    generation_id: str


async def download_track(
    generation: Generation,
    library: Path | str,
    *,
    session: aiohttp.ClientSession,
    path_template: str | None = None,
    album: str | None = None,
    artist: str | None = None,
    album_artist: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    also_write: Sequence[str] = (),
    lyrics: str | None = None,
    audio_url: str | None = None,
    timeout: float = 300.0,
    on_progress: ProgressCallback | None = None,
    file_mode: int | str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> DownloadResult:
    """Download a completed generation's MP3 into `library`, tagged and safely named.

    `session` is the connector's HTTP session (the provider client's
    `session`, an action's `context.session`); it is used, never closed.

    `path_template` fields: {library}, {artist} and {album_artist} (the tags),
    {album} (default: the completion date, YYYY-MM-DD, or `album` such as a
    playlist name), {title} (title, else prompt, else id), {id}, {provider}
    ("finetuning", "tempolor"), {genre} (the first genre read from the
    prompt), {date}, {year}, {bpm} and {key} (ID3 form, "F#m"); a missing
    value is empty, and every component is sanitised once formatted. The
    defaults depend on the generation's provider: `path_template`
    "{library}/Finetuning/{album}/{title}.mp3" and artist "Finetuning.ai",
    for TemPolor "{library}/TemPolor/{album}/{title}.mp3" and "TemPolor"
    (`default_path_template`, `default_artist`). `also_write` adds "json" (the
    generation's metadata, minus the webhook URL) and/or "lrc" (when there
    are lyrics) next to the file. `on_progress(bytes_so_far, total_or_None)`
    is called per chunk; it starts from 0 again when a failed GET is retried.

    Files (audio and sidecars) get `file_mode` (permission bits, 0 to 0o777,
    or an octal string such as "0644"), by default 0666 less the process
    umask; folders it creates get 0777 less the umask, or with a `file_mode`
    that mode plus search wherever it grants read.
    Transient failures are retried as `retry` says; `timeout` bounds each GET.

    Returns a `DownloadResult`; when the folder already holds this generation
    nothing is downloaded and `already_present` is True (requested sidecars
    are still refreshed). Raises ValueError for a bad template, sidecar name
    or file mode before any network traffic, and `DownloadError` when the
    download fails (after its retries: `attempts` says how many), in which
    case no file and no temporary file are left behind.
    """
    kinds = _check_arguments(also_write, max_bytes, timeout)
    mode = check_file_mode(file_mode) if file_mode is not None else None
    if path_template is None:
        path_template = default_path_template(generation.provider)
    template = parse_template(path_template)
    url = audio_url or generation.audio_url
    if not url:
        raise DownloadError(
            f"generation {generation.id} has no audio URL (status {generation.status.value})"
        )
    try:
        scheme = URL(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise DownloadError(f"the audio URL must be http(s) (got {display_url(url)})")
    shown = display_url(url)

    library_path = Path(library)
    tags = id3_tags(
        generation, album=album, artist=artist, album_artist=album_artist, lyrics=lyrics
    )
    folders, stem = template.format(template_values(generation, library_path, tags))

    modes = await in_thread(lambda: FileModes.resolve(mode))
    directory, created = await in_thread(
        lambda: prepare_directory(library_path, folders, modes.folders),
        undo=lambda made: remove_empty(made[1]),
    )
    try:
        existing = await in_thread(
            lambda: find_existing(directory, generation.id, generation.provider)
        )
    except asyncio.CancelledError:
        remove_empty(created)
        raise
    if existing is not None:
        _LOGGER.debug("generation %s is already in %s", generation.id, existing)
        return await _result(existing, True, kinds, generation, tags, modes.files)

    await in_thread(lambda: sweep_leftovers(directory))
    writer: TempWriter | None = None
    try:
        writer, received, attempt = await fetch_audio(
            session,
            url,
            directory,
            max_bytes=max_bytes,
            timeout=timeout,
            on_progress=on_progress,
            retry=retry,
        )
        part = writer.path
        await writer.commit()
        await in_thread(lambda: _finish_audio(part, tags, url=shown, mode=modes.files))
        path, already = await in_thread(
            lambda: place(part, directory, stem, generation.id, generation.provider)
        )
    except BaseException as err:
        if writer is not None:
            writer.discard()
        remove_empty(created)
        if isinstance(err, OSError):
            raise DownloadError(
                f"writing {shown} into {directory} failed: {err}", url=shown, path=directory
            ) from err
        raise
    _LOGGER.debug(
        "generation %s: %d bytes from %s into %s (attempt %d)",
        generation.id,
        received,
        shown,
        path,
        attempt,
    )
    return await _result(path, already, kinds, generation, tags, modes.files)


def _check_arguments(also_write: Sequence[str], max_bytes: int, timeout: float) -> list[str]:
    if isinstance(also_write, str):
        also_write = (also_write,)
    kinds: list[str] = []
    for kind in also_write:
        if kind not in SIDECARS:
            raise ValueError(
                f"also_write: unknown sidecar {kind!r}; allowed: {', '.join(SIDECARS)}"
            )
        if kind not in kinds:
            kinds.append(kind)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer (got {max_bytes!r})")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive (got {timeout!r})")
    return kinds


def _finish_audio(temp: Path, tags: Id3Tags, *, url: str, mode: int) -> None:
    """Check the downloaded file is a playable MP3, then tag, chmod and fsync it.

    The mode is set here, last thing before `place` renames the file: the
    ".part" stays private (mkstemp's 0600) while it is incomplete.
    """
    try:
        seconds = mp3_seconds(temp)
    except (MutagenError, OSError) as err:
        raise DownloadError(f"{url} did not send a playable MP3: {err}", url=url) from err
    if seconds <= 0:
        raise DownloadError(f"{url} sent an MP3 with no audio frames", url=url)
    try:
        write_id3(temp, tags)
        with temp.open("rb+") as handle:
            set_mode(handle, temp, mode)
            os.fsync(handle.fileno())
    except (MutagenError, OSError) as err:
        raise DownloadError(f"cannot write tags to {temp}: {err}", path=temp) from err


async def _result(
    path: Path,
    already_present: bool,
    kinds: Sequence[str],
    generation: Generation,
    tags: Id3Tags,
    file_mode: int,
) -> DownloadResult:
    sidecars = await in_thread(lambda: write_sidecars(path, kinds, generation, tags, file_mode))
    size = (await in_thread(path.stat)).st_size
    return DownloadResult(
        path=path,
        bytes=size,
        already_present=already_present,
        sidecars=sidecars,
        generation_id=generation.id,
    )
