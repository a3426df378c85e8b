"""The library on disk: folders, atomic writes, file modes, placement and sidecars.

Everything here blocks, so the download runs it in worker threads
(`in_thread`), and everything here leaves nothing half-done behind:

* **Inside the library.** Folders are created only below the library, checked
  (symlinks resolved) before and after `mkdir`; a missing library (often an
  unmounted share) is refused rather than filling the mount point.
* **Nothing half-written.** Audio streams into a hidden ".ft-….part" file
  (`open_temp`, mode 0600 while incomplete) and sidecars are written through
  one (`write_atomically`); each is fsynced, given its final mode, then
  moved into place with one `os.replace`. Litter from a killed process is
  swept (`sweep_leftovers`).
* **Readable by the media server.** Jellyfin, Plex or Navidrome often run as
  another user, so finished files get the mode a plain `open()` would give
  them, 0666 less the process umask (0644 under the usual 022), or
  `file_mode` when given (`FileModes`).
* **No duplicates.** `place` looks for an MP3 of the folder already tagged
  with the generation, under a per-folder lock, before it picks a free name
  ("Title.mp3", "Title (2).mp3", ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from connector.delivery.errors import DownloadError
from connector.delivery.tags import Id3Tags, holds_track
from connector.providers.finetuning.models import Generation
from connector.redaction import scrub

_LOGGER = logging.getLogger(__name__)

SIDECARS: tuple[str, ...] = ("json", "lrc")
"""The sidecar files `also_write` may ask for."""

_WRITE_BUFFER = 1024 * 1024  # bytes gathered before one write in a worker thread
_MAX_CLASHES = 999

_DIR_LOCKS: dict[str, threading.Lock] = {}
_DIR_LOCKS_GUARD = threading.Lock()

_UMASK_LOCK = threading.Lock()
_PROC_STATUS = "/proc/self/status"  # Linux >= 4.7 shows the umask there ("Umask:\t0022")

# A ".part" file last written before this process started belongs to a process that
# died mid-download (SIGKILL skips every clean-up): it can only be litter.
_PROCESS_STARTED = time.time()

# Sidecar keys that carry a callback URL with its token (Finetuning's `webhook`,
# TemPolor's `replyUrl`), compared lower-cased with "_" and "-" removed.
_SECRET_URL_KEYS = frozenset({"webhook", "webhookurl", "replyurl"})
_LRC_TIME = re.compile(r"^\[\d{1,3}:\d{2}([.:]\d{1,3})?\]")

_T = TypeVar("_T")


# -- modes -------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux (4.7 and later) shows it in /proc/self/status. Elsewhere the only
    way is `os.umask`, which sets a new mask to return the old one: for that
    instant the mask is process-wide, so a file another thread creates then
    gets it. The mask set meanwhile is 0o077, the strictest, so the worst such
    a race can do is make one file too private, never world-writable; the lock
    only keeps two readers here from restoring each other's value. Read at
    every download (it is cheap) rather than once at import, so a umask set
    later, by a service manager's wrapper or a test, is honoured.
    """
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask & 0o777


def check_file_mode(value: Any) -> int:
    """Permission bits for `file_mode`: an int, or an octal string ("0644", "644", "0o644").

    Only the nine permission bits are accepted: setuid, setgid and sticky
    make no sense on a song, and a number over 0o777 is almost always a
    decimal typed for octal (644 is 0o1204). Raises ValueError naming the field.
    """
    mode: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if re.fullmatch(r"[0-7]{1,4}", text):
            mode = int(text, 8)
    if mode is None or not 0 <= mode <= 0o777:
        hint = ""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0o777:
            hint = f", which is {value:#o}"
            if re.fullmatch(r"[0-7]{3}", str(value)):
                hint += f'; for {value} in octal write it quoted: "0{value}"'
        raise ValueError(
            "file_mode must be permission bits from 0000 to 0777, in octal such as "
            f'"0644" (got {value!r}{hint})'
        )
    return mode


@dataclass(frozen=True)
class FileModes:
    """Permission bits for the files written and the folders created.

    `folders` is None when mkdir's own umask handling is right (no
    `file_mode`); with a `file_mode`, created folders get it plus the
    execute (search) bit wherever it grants read, so that "0644" files are
    not locked inside a 0700 folder by a strict umask.
    """

    files: int
    folders: int | None

    @classmethod
    def resolve(cls, file_mode: int | None) -> FileModes:
        if file_mode is None:
            return cls(files=0o666 & ~current_umask(), folders=None)
        searchable = (file_mode & 0o444) >> 2
        return cls(files=file_mode, folders=file_mode | searchable)


def set_mode(handle: Any, path: Path, mode: int) -> None:
    """chmod an open file (fchmod where it exists: not Windows before Python 3.13)."""
    if hasattr(os, "fchmod"):
        os.fchmod(handle.fileno(), mode)
    else:  # pragma: no cover - Windows
        os.chmod(path, mode)


# -- folders -----------------------------------------------------------------------------


def prepare_directory(
    library: Path, folders: Sequence[str], mode: int | None = None
) -> tuple[Path, list[Path]]:
    """Create the target folder inside the library.

    New folders get 0777 less the umask (mkdir applies it), or `mode` when
    given; folders that already existed are never changed. Returns the folder
    (resolved) and the folders this call created, outermost first, so that a
    failed download can remove them again (`remove_empty`).
    """
    library = library.expanduser()
    if not library.is_dir():
        # A missing library is often an unmounted share: writing would fill the mount point.
        raise DownloadError(f"the library folder {library} does not exist", path=library)
    root = library.resolve()
    directory = root.joinpath(*folders)
    _check_inside(root, directory)
    created = [
        folder
        for folder in (root.joinpath(*folders[:depth]) for depth in range(1, len(folders) + 1))
        if not os.path.lexists(folder)
    ]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create {directory}: {err}", path=directory) from err
    # Checked again once it exists: a symlink may have been planted meanwhile.
    _check_inside(root, directory)
    if mode is not None:
        try:
            for folder in created:
                os.chmod(folder, mode)  # mkdir applied the umask; file_mode overrides it
        except OSError as err:
            remove_empty(created)
            raise DownloadError(f"cannot set the mode of {folder}: {err}", path=folder) from err
    return directory, created


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove folders a failed download created, innermost first, if still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: another download is using it, or a user put something there


def _check_inside(root: Path, path: Path) -> None:
    resolved = path.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise DownloadError(
            f"refusing to write to {path}: it resolves to {resolved}, outside the library {root}",
            path=path,
        )


def find_existing(directory: Path, generation_id: str, provider: str) -> Path | None:
    """The MP3 of this folder already holding the generation, if any (tags only are read)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(".mp3"):
            continue
        try:
            if not entry.is_file():
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if holds_track(path, generation_id, provider):
            return path
    return None


def sweep_leftovers(directory: Path) -> None:
    """Delete temporary files that a killed process left in `directory`."""
    for leftover in directory.glob(".ft-*.part"):
        try:
            if leftover.stat().st_mtime < _PROCESS_STARTED:
                leftover.unlink()
                _LOGGER.info("removed %s, left by an interrupted download", leftover.name)
        except FileNotFoundError:
            continue  # another download finished or cleaned it meanwhile


def _lock_for(directory: Path) -> threading.Lock:
    with _DIR_LOCKS_GUARD:
        return _DIR_LOCKS.setdefault(str(directory), threading.Lock())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable on POSIX; Windows cannot open a folder this way.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- files -------------------------------------------------------------------------------


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        _LOGGER.warning("could not remove the temporary file %s", path)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` through a temporary file, chmod, fsync and one rename."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".ft-", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # mkstemp made it 0600; the rename must publish it with its final mode.
            set_mode(handle, temp, mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        unlink_quietly(temp)
        raise
    _fsync_directory(path.parent)


def place(
    temp: Path, directory: Path, stem: str, generation_id: str, provider: str
) -> tuple[Path, bool]:
    """Move `temp` to a free name in `directory`; (path, already_present)."""
    with _lock_for(directory):
        # Another download of the same track may have finished while this one ran.
        existing = find_existing(directory, generation_id, provider)
        if existing is not None:
            unlink_quietly(temp)
            return existing, True
        for number in range(1, _MAX_CLASHES + 1):
            name = f"{stem}.mp3" if number == 1 else f"{stem} ({number}).mp3"
            target = directory / name
            # lexists: a dangling symlink is someone's file too, never write through it.
            if not os.path.lexists(target):
                os.replace(temp, target)
                _fsync_directory(directory)
                return target, False
    raise DownloadError(
        f"{_MAX_CLASHES} files named {stem!r} already exist in {directory}", path=directory
    )


async def in_thread(func: Callable[[], _T], *, undo: Callable[[_T], None] | None = None) -> _T:
    """Run blocking file work off the event loop.

    A thread cannot be interrupted, so on cancellation this waits for it to
    finish, hands what it made to `undo` (a temporary file to delete, say),
    then re-raises: cleanup never races a write still running.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue
        if not task.cancelled() and task.exception() is None and undo is not None:
            undo(task.result())
        raise


class TempWriter:
    """Buffered writes to a download's temporary file, each flush in a worker thread."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._handle = os.fdopen(fd, "wb")
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _WRITE_BUFFER:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            await in_thread(lambda: self._handle.write(chunk))

    async def commit(self) -> None:
        await self.flush()
        await in_thread(self._sync_and_close)

    def _sync_and_close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        unlink_quietly(self.path)


async def open_temp(directory: Path) -> TempWriter:
    """A new temporary file in `directory`, mode 0600 (mkstemp's) until it is finished."""
    try:
        # Hidden (".") and marked unfinished (".part") for anyone looking at the folder.
        fd, temp_name = await in_thread(
            lambda: tempfile.mkstemp(suffix=".part", prefix=".ft-", dir=directory),
            undo=lambda made: _discard_temp(made[0], Path(made[1])),
        )
    except OSError as err:
        raise DownloadError(f"cannot write in {directory}: {err}", path=directory) from err
    return TempWriter(Path(temp_name), fd)


def _discard_temp(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    unlink_quietly(path)


# -- sidecars ----------------------------------------------------------------------------


def write_sidecars(
    audio_path: Path,
    kinds: Sequence[str],
    generation: Generation,
    tags: Id3Tags,
    mode: int,
) -> tuple[Path, ...]:
    """Write the sidecars `kinds` asks for next to `audio_path`; the files written."""
    written: list[Path] = []
    for kind in kinds:
        target = audio_path.with_name(audio_path.stem + "." + kind)
        if kind == "json":
            data = _json_sidecar(generation, audio_path)
        elif tags.lyrics:
            data = _lrc(tags.lyrics, tags, generation.duration).encode("utf-8")
        else:
            continue  # "lrc" without lyrics: nothing to write
        try:
            write_atomically(target, data, mode)
        except OSError as err:
            raise DownloadError(
                f"{audio_path} is in place, but its {kind} sidecar could not be written: {err}",
                path=target,
            ) from err
        written.append(target)
    return tuple(written)


def _lrc(lyrics: str, tags: Id3Tags, duration: float | None) -> str:
    lines = [f"[ti:{tags.title}]", f"[ar:{tags.artist}]", f"[al:{tags.album}]"]
    if duration:
        minutes, seconds = divmod(round(duration), 60)
        lines.append(f"[length:{minutes:02d}:{seconds:02d}]")
    body = lyrics.split("\n")
    if not any(_LRC_TIME.match(line) for line in body):
        # Plain lyrics: one timestamp on the first line, so players that need one
        # show the text from the start. Already timed lyrics are kept as they are.
        body[0] = "[00:00.00]" + body[0]
    return "\n".join(lines + body) + "\n"


def _for_sidecar(value: Any) -> Any:
    """`value` made safe to publish: callback URLs dropped, non-finite numbers null.

    The generation echoes the webhook URL it was created with, token and all
    (`webhook`; TemPolor's `replyUrl` in its extra data). Whoever reads the
    library must not be able to forge events, so those keys go at any depth,
    whatever the models did already (defence in depth). NaN and Infinity are
    not JSON: strict parsers (jq, JavaScript's JSON.parse) refuse them.
    """
    if isinstance(value, Mapping):
        return {
            key: _for_sidecar(item)
            for key, item in value.items()
            if not (
                isinstance(key, str)
                and key.lower().replace("_", "").replace("-", "") in _SECRET_URL_KEYS
            )
        }
    if isinstance(value, list | tuple):
        return [_for_sidecar(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_sidecar(generation: Generation, audio_path: Path) -> bytes:
    """The generation's metadata as strict JSON, without the secrets it echoes.

    `scrub` then removes any secret the process has registered (API key,
    tokens), wherever a provider may have echoed one.
    """
    document = scrub(
        _for_sidecar(
            {**generation.to_wire(), "provider": generation.provider, "file": audio_path.name}
        )
    )
    text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
    return text.encode("utf-8") + b"\n"
