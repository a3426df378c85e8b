"""Deliver a finished track into a media library (Jellyfin, Plex, Navidrome, ...).

    result = await download_track(generation, "/srv/music", also_write=("json",))
    print(result.path)  # /srv/music/Finetuning/2025-01-15/Rainy Window.mp3

What `download_track` guarantees:

* **Safe paths.** The path comes from `path_template`; every component built
  from data is sanitised (`sanitize_component`) and the final path must resolve
  inside the library, symlinks included, or nothing is written.
* **Nothing half-written.** The audio streams into a hidden temporary file in
  the target folder (".ft-….part"), is checked (size, content type, MP3
  frames), fsynced, tagged, then moved into place with one atomic
  `os.replace`. Any failure or cancellation before that move deletes the
  temporary file.
* **Readable by the media server.** Jellyfin, Plex or Navidrome often run as
  another user, so the finished file gets the mode a plain `open()` would
  give it, 0666 less the process umask (0644 under the usual 022), or
  `file_mode` when given; sidecars too. Only the ".part" file stays 0600
  while it is incomplete: the mode is set just before the rename.
* **Transient failures retried.** A GET is idempotent, so a 429, 500, 502,
  503 or 504, a refused or dropped connection, a timeout or a body cut short
  is tried again (`RetryPolicy`: 4 attempts, exponential backoff with
  jitter, Retry-After honoured up to a cap), each attempt into a fresh
  ".part". Other 4xx are final: 403, 404 and 410 mean the link is wrong or
  expired, and only the caller can fetch a new one (TemPolor's links expire).
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
import contextlib
import difflib
import json
import logging
import math
import os
import random
import re
import string
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import mutagen.id3
import mutagen.mp3
from mutagen import MutagenError
from mutagen.id3 import ID3NoHeaderError
from yarl import URL

from connector.errors import FinetuningError
from connector.providers.finetuning.models import Generation
from connector.redaction import scrub
from connector.version import USER_AGENT

_LOGGER = logging.getLogger(__name__)

DEFAULT_PATH_TEMPLATE = "{library}/Finetuning/{album}/{title}.mp3"
DEFAULT_ARTIST = "Finetuning.ai"
DEFAULT_MAX_BYTES = 50 * 2**20

PROVIDER_NAMES: dict[str, str] = {"finetuning": "Finetuning", "tempolor": "TemPolor"}
"""The folder a provider's tracks are filed under by default."""

PROVIDER_ARTISTS: dict[str, str] = {"finetuning": DEFAULT_ARTIST, "tempolor": "TemPolor"}
"""The artist tag a provider's tracks get by default."""

TEMPLATE_FIELDS: tuple[str, ...] = (
    "library",
    "artist",
    "album_artist",
    "album",
    "title",
    "id",
    "provider",
    "genre",
    "date",
    "year",
    "bpm",
    "key",
)
"""The fields `path_template` may use."""


def default_path_template(provider: str) -> str:
    """Where a provider's tracks go by default: {library}/<Provider>/{album}/{title}.mp3.

    Finetuning.ai tracks (and any provider this module does not know) go under
    "Finetuning/", TemPolor tracks under "TemPolor/".
    """
    folder = PROVIDER_NAMES.get(provider, PROVIDER_NAMES["finetuning"])
    return "{library}/" + folder + "/{album}/{title}.mp3"  # DEFAULT_PATH_TEMPLATE's shape


def default_artist(provider: str) -> str:
    """The artist tag of a provider's tracks by default: "Finetuning.ai" or "TemPolor"."""
    return PROVIDER_ARTISTS.get(provider, DEFAULT_ARTIST)


SIDECARS: tuple[str, ...] = ("json", "lrc")
"""The sidecar files `also_write` may ask for."""

ID_TAG = "FINETUNING_ID"
PROVIDER_TAG = "FINETUNING_PROVIDER"

COMPONENT_MAX_BYTES = 120
"""Longest path component built from data, in UTF-8 bytes (file systems allow 255)."""

UNTITLED = "Untitled"
UNDATED = "Undated"  # the default album of a track with no date at all

_CHUNK = 64 * 1024
_WRITE_BUFFER = 1024 * 1024  # bytes gathered before one write in a worker thread
_MAX_CLASHES = 999
_GENRES_MAX = 3
_GENRE_MAX_CHARS = 40
_TITLE_FROM_PROMPT_CHARS = 100

# Windows refuses these as a file's name, whatever the extension (CON, con.txt, ...).
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{stem}{n}" for stem in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")]
)
# Characters Windows (and SMB shares mounted by Jellyfin/Plex hosts) refuse in names.
_FORBIDDEN = frozenset('<>:"/\\|?*')
# Bidirectional overrides let "evil\u202egpj.mp3" display as "evil3pm.jpg": drop them.
_BIDI_CONTROLS = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
)
_ZWJ = "\u200d"

# ID3 USLT/COMM want an ISO 639-2 code; the API speaks ISO 639-1.
_LANGUAGES_639_2 = {
    "en": "eng",
    "ja": "jpn",
    "de": "deu",
    "fr": "fra",
    "es": "spa",
    "zh": "zho",
    "ko": "kor",
    "pt": "por",
    "it": "ita",
    "ru": "rus",
}

_LRC_TIME = re.compile(r"^\[\d{1,3}:\d{2}([.:]\d{1,3})?\]")
_KEY_PATTERN = re.compile(r"^([A-Ga-g])([#♯b♭]?)$")

_DIR_LOCKS: dict[str, threading.Lock] = {}
_DIR_LOCKS_GUARD = threading.Lock()

_UMASK_LOCK = threading.Lock()
_PROC_STATUS = "/proc/self/status"  # Linux >= 4.7 shows the umask there ("Umask:\t0022")

# Answers worth asking again: overload, gateways, rate limits. Every other 4xx is final.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})

# Sidecar keys that carry a callback URL with its token (Finetuning's `webhook`,
# TemPolor's `replyUrl`), compared lower-cased with "_" and "-" removed.
_SECRET_URL_KEYS = frozenset({"webhook", "webhookurl", "replyurl"})

_T = TypeVar("_T")

# mutagen has no annotations: its classes are reached through Any so that
# strict mypy checks this module without `type: ignore` on every frame.
_id3: Any = mutagen.id3
_mp3: Any = mutagen.mp3

ProgressCallback = Callable[[int, int | None], None]


class DownloadError(FinetuningError):
    """A track could not be delivered into the library; nothing was left behind.

    `url` is the audio URL without its query string (signed links carry
    tokens there) and `path` the folder or file concerned, when known.
    `status` is the last HTTP status answered, `attempts` how many GETs were
    made, and `retryable` whether the cause was transient (trying again later
    may work); `retry_after` is the server's Retry-After in seconds, if any.
    """

    default_code = "DOWNLOAD_FAILED"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        path: Path | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.url = url
        self.path = path
        self.retryable = retryable
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a failed audio GET is tried again.

    `attempts` counts every GET, the first included. After failed attempt n
    the wait is `base_delay * 2**(n-1)`, at most `max_delay`, jittered down
    to as little as half, so many downloads failing together do not return
    together. A Retry-After (429, 503) replaces the backoff when it is at most
    `retry_after_cap` seconds; a longer one ends the download at once, since
    waiting less than asked would only be refused again.
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"attempts must be an integer (got {self.attempts!r})")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (got {self.attempts!r})")
        for name in ("base_delay", "max_delay", "retry_after_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0 (got {value!r})")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), jittered."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = RetryPolicy()


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


# -- names -----------------------------------------------------------------------------


def _cut_utf8(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` UTF-8 bytes without splitting a character.

    Python has no grapheme segmentation, so this approximates it: the cut never
    leaves a dangling zero-width joiner, never separates a base character from
    its combining marks, variation selector or skin-tone modifier, and never
    splits a flag's pair of regional indicators.
    """
    if len(text.encode("utf-8")) <= limit:
        return text
    end = 0
    used = 0
    for char in text:
        size = len(char.encode("utf-8", "surrogatepass"))
        if used + size > limit:
            break
        used += size
        end += 1
    while end > 0 and (_extends(text[end]) or text[end - 1] == _ZWJ):
        end -= 1
    # Regional indicators pair up into flags: keep an even run before the cut.
    run = 0
    while run < end and _is_regional_indicator(text[end - 1 - run]):
        run += 1
    if run % 2 and _is_regional_indicator(text[end]):
        end -= 1
    return text[:end]


def _extends(char: str) -> bool:
    """Whether `char` belongs to the cluster of the character before it."""
    code = ord(char)
    return (
        char == _ZWJ
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (subdivision flags)
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def sanitize_component(value: str, *, max_bytes: int = COMPONENT_MAX_BYTES) -> str:
    """Make `value` safe as ONE path component on Linux, macOS and Windows shares.

    Control characters (NUL included) and bidirectional overrides go, path
    separators and the characters Windows refuses become "_", whitespace runs
    collapse, leading dots (hidden files; ".", "..") and trailing dots and
    spaces (Windows strips them) are removed, reserved device names (CON,
    com1.txt, ...) get a "_" prefix, and the result is cut to `max_bytes` of
    UTF-8 without splitting a character. Emoji and other scripts are kept.
    An empty result is "Untitled".
    """
    text = unicodedata.normalize("NFC", value)
    chars: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS:
            continue
        if category in ("Cc", "Zl", "Zp"):
            chars.append(" ")
        elif char in _FORBIDDEN or category == "Cs":
            chars.append("_")
        else:
            chars.append(char)
    text = " ".join("".join(chars).split()).strip(". ")
    # One byte is kept free for the "_" that a reserved name gets.
    text = _cut_utf8(text, max_bytes - 1).rstrip(". ")
    if text.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        text = "_" + text
    return text or UNTITLED


class _TemplateFormatter(string.Formatter):
    """`str.format` restricted to the documented fields: no attributes, no indexes."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if not field_name or any(mark in field_name for mark in ".["):
            raise ValueError(_unknown_field(field_name))
        return self.get_value(field_name, args, kwargs), field_name

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if not isinstance(key, str) or key not in TEMPLATE_FIELDS:
            raise ValueError(_unknown_field(str(key)))
        return kwargs[key]


def _unknown_field(name: str) -> str:
    allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    close = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1, cutoff=0.6)
    hint = f" (did you mean {{{close[0]}}}?)" if close else ""
    return f"path_template: unknown field {{{name}}}{hint}; allowed fields are {allowed}"


_FORMATTER = _TemplateFormatter()


@dataclass(frozen=True)
class PathTemplate:
    """A checked path template: folder components and the file's stem, all unformatted."""

    folders: tuple[str, ...]
    stem: str


def parse_template(template: str) -> PathTemplate:
    """Check `template` and split it into path components (raises ValueError).

    The template's own "/" (or "\\") separate components; a value can never add
    one, because each component is formatted and sanitised on its own. It may
    start with "{library}/" (the default does) or be relative to the library;
    "{library}" anywhere else, "..", absolute paths and file names not ending
    in ".mp3" are refused.
    """
    if not isinstance(template, str) or not template.strip():
        raise ValueError("path_template must be a non-empty string")
    rest = template
    if rest.startswith("{library}"):
        rest = rest.removeprefix("{library}")
        if rest and rest[0] not in "/\\":
            raise ValueError("path_template: {library} must be followed by '/'")
    elif rest[0] in "/\\" or re.match(r"^[A-Za-z]:", rest):
        raise ValueError(
            "path_template must start with {library}/ or be relative to the library "
            f"(got an absolute path: {template!r})"
        )
    parts = [part for part in re.split(r"[/\\]", rest) if part not in ("", ".")]
    if not parts:
        raise ValueError("path_template names no file")
    for part in parts:
        if part == "..":
            raise ValueError("path_template must not contain '..'")
        if "{library}" in part:
            raise ValueError("path_template: {library} may only start the template")
    # Formatting with placeholders finds unknown fields and broken braces before
    # anything is fetched.
    sample = dict.fromkeys(TEMPLATE_FIELDS, "x")
    for part in parts:
        _check_part(part, sample)
    name = parts[-1]
    if not name.lower().endswith(".mp3"):
        raise ValueError(f"path_template must end with a .mp3 file name (got {name!r})")
    stem = name[: -len(".mp3")]
    if not stem:
        raise ValueError("path_template: the file name needs more than '.mp3'")
    return PathTemplate(folders=tuple(parts[:-1]), stem=stem)


def _check_part(part: str, sample: Mapping[str, str]) -> None:
    """Format one component with sample values; say plainly what is wrong with it."""
    try:
        _format(part, sample)
    except ValueError as err:
        message = str(err)
        if message.startswith("path_template"):
            raise
        if "'{'" in message or "'}'" in message:
            raise ValueError(
                f"path_template: unbalanced braces in {part!r}: each field is one name "
                "between { and }, such as {title}"
            ) from None
        raise ValueError(f"path_template: malformed field in {part!r} ({message})") from None


def _format(part: str, values: Mapping[str, str]) -> str:
    try:
        return _FORMATTER.vformat(part, (), values)
    except (KeyError, IndexError) as err:  # e.g. a positional "{}" or "{0}"
        raise ValueError(_unknown_field(str(err).strip("'"))) from None


# -- metadata --------------------------------------------------------------------------


def _one_line(value: str) -> str:
    """Text for a single-line tag: controls (NUL splits v2.4 values) become spaces."""
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    return " ".join(cleaned.split())


def _multiline(value: str) -> str:
    """Text for lyrics and comments: line breaks kept, other controls dropped."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = ["".join(c for c in line if unicodedata.category(c) != "Cc") for line in lines]
    return "\n".join(line.rstrip() for line in kept).strip("\n")


def track_title(generation: Generation) -> str:
    """The title to show: the generation's title, else its prompt (shortened), else its id."""
    if generation.title and _one_line(generation.title):
        return _one_line(generation.title)
    prompt = _one_line(generation.prompt or "")
    if prompt:
        if len(prompt) <= _TITLE_FROM_PROMPT_CHARS:
            return prompt
        cut = prompt[:_TITLE_FROM_PROMPT_CHARS].rsplit(" ", 1)[0].rstrip(" ,;")
        return cut + "…"
    return generation.id


def release_date(generation: Generation) -> date | None:
    """The track's date: when it completed, else when it was created (UTC)."""
    moment = generation.completed_at or generation.created_at
    return moment.date() if moment is not None else None


def id3_key(keyscale: str | None) -> str | None:
    """The ID3 TKEY form of a key: "F# minor" -> "F#m", "C major" -> "C" (None if unreadable).

    TKEY allows at most three characters: a note A-G, an optional "#" or "b",
    and "m" for minor.
    """
    if not keyscale:
        return None
    parts = keyscale.split()
    match = _KEY_PATTERN.match(parts[0]) if parts else None
    if match is None:
        return None
    accidental = {"♯": "#", "♭": "b"}.get(match.group(2), match.group(2))
    key = match.group(1).upper() + accidental
    scale = parts[1].lower() if len(parts) > 1 else "major"
    if scale in ("minor", "min", "m"):
        return key + "m"
    return key


def genres(prompt: str | None) -> list[str]:
    """Genres from a prompt: its first short comma-separated phrases, title-cased.

    "lofi chill piano, vinyl crackle" gives ["Lofi Chill Piano", "Vinyl Crackle"].
    Phrases over 40 characters read as descriptions, not genres, and are
    skipped; at most three are kept; words keep their inner capitals ("EDM").
    """
    found: list[str] = []
    seen: set[str] = set()
    for phrase in (prompt or "").split(","):
        words = _one_line(phrase).split()
        text = " ".join(words)
        if not text or len(text) > _GENRE_MAX_CHARS:
            continue
        titled = " ".join(
            "-".join(piece[:1].upper() + piece[1:] for piece in word.split("-")) for word in words
        )
        if titled.casefold() not in seen:
            seen.add(titled.casefold())
            found.append(titled)
        if len(found) == _GENRES_MAX:
            break
    return found


def _template_values(generation: Generation, library: Path, tags: _Tags) -> dict[str, str]:
    """The values of the `path_template` fields (each component is sanitised after)."""
    day = release_date(generation)
    parameters = generation.parameters
    bpm = parameters.bpm if parameters is not None else None
    return {
        "library": str(library),
        "artist": tags.artist,
        "album_artist": tags.album_artist,
        "album": tags.album,
        "title": tags.title,
        "id": generation.id,
        "provider": generation.provider,
        "genre": tags.genres[0] if tags.genres else "",
        "date": day.isoformat() if day else "",
        "year": str(day.year) if day else "",
        "bpm": str(bpm) if bpm is not None else "",
        "key": id3_key(parameters.keyscale if parameters else None) or "",
    }


def _lyrics_of(generation: Generation, lyrics: str | None) -> str | None:
    if lyrics is None:
        # Some payloads (TemPolor, future API versions) carry the lyrics along.
        extra = (generation.model_extra or {}).get("lyrics")
        lyrics = extra if isinstance(extra, str) else None
    if lyrics is None:
        return None
    text = _multiline(lyrics)
    return text or None


@dataclass(frozen=True)
class _Tags:
    title: str
    artist: str
    album_artist: str
    album: str
    genres: list[str]
    date: str | None
    bpm: str | None
    key: str | None
    comment: str | None
    lyrics: str | None
    language: str
    generation_id: str
    provider: str


def _build_tags(tags: _Tags) -> Any:
    """An ID3v2.4 tag holding everything; written over whatever tag the file had."""
    id3 = _id3.ID3()
    utf8 = 3  # ID3v2.4 text encoding 3 = UTF-8
    id3.add(_id3.TIT2(encoding=utf8, text=[tags.title]))
    id3.add(_id3.TPE1(encoding=utf8, text=[tags.artist]))
    id3.add(_id3.TPE2(encoding=utf8, text=[tags.album_artist]))
    id3.add(_id3.TALB(encoding=utf8, text=[tags.album]))
    if tags.genres:
        id3.add(_id3.TCON(encoding=utf8, text=tags.genres))
    if tags.date:
        id3.add(_id3.TDRC(encoding=utf8, text=[tags.date]))
    if tags.bpm:
        id3.add(_id3.TBPM(encoding=utf8, text=[tags.bpm]))
    if tags.key:
        id3.add(_id3.TKEY(encoding=utf8, text=[tags.key]))
    if tags.comment:
        id3.add(_id3.COMM(encoding=utf8, lang=tags.language, desc="", text=[tags.comment]))
    if tags.lyrics:
        id3.add(_id3.USLT(encoding=utf8, lang=tags.language, desc="", text=tags.lyrics))
    id3.add(_id3.TXXX(encoding=utf8, desc=ID_TAG, text=[tags.generation_id]))
    id3.add(_id3.TXXX(encoding=utf8, desc=PROVIDER_TAG, text=[tags.provider]))
    return id3


def read_identity(path: Path) -> tuple[str | None, str | None]:
    """The (generation id, provider) an MP3's tags carry; (None, None) when untagged."""
    try:
        id3 = _id3.ID3(path)
    except (ID3NoHeaderError, MutagenError, OSError):
        return None, None

    def first(desc: str) -> str | None:
        frame = id3.get(f"TXXX:{desc}")
        if frame is None or not frame.text:
            return None
        return str(frame.text[0])

    return first(ID_TAG), first(PROVIDER_TAG)


def _is_same_track(path: Path, generation_id: str, provider: str) -> bool:
    found_id, found_provider = read_identity(path)
    # A file tagged before the provider frame existed still counts by its id.
    return found_id == generation_id and found_provider in (None, provider)


# -- file system (run in worker threads) ------------------------------------------------


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


@dataclass(frozen=True)
class _Modes:
    """Permission bits for the files written and the folders created.

    `folders` is None when mkdir's own umask handling is right (no
    `file_mode`); with a `file_mode`, created folders get it plus the
    execute (search) bit wherever it grants read, so that "0644" files are
    not locked inside a 0700 folder by a strict umask.
    """

    files: int
    folders: int | None

    @classmethod
    def resolve(cls, file_mode: int | None) -> _Modes:
        if file_mode is None:
            return cls(files=0o666 & ~current_umask(), folders=None)
        searchable = (file_mode & 0o444) >> 2
        return cls(files=file_mode, folders=file_mode | searchable)


def _set_mode(handle: Any, path: Path, mode: int) -> None:
    """chmod an open file (fchmod where it exists: not Windows before Python 3.13)."""
    if hasattr(os, "fchmod"):
        os.fchmod(handle.fileno(), mode)
    else:  # pragma: no cover - Windows
        os.chmod(path, mode)


def _lock_for(directory: Path) -> threading.Lock:
    with _DIR_LOCKS_GUARD:
        return _DIR_LOCKS.setdefault(str(directory), threading.Lock())


def _prepare_directory(
    library: Path, folders: Sequence[str], mode: int | None = None
) -> tuple[Path, list[Path]]:
    """Create the target folder inside the library.

    New folders get 0777 less the umask (mkdir applies it), or `mode` when
    given; folders that already existed are never changed. Returns the folder
    (resolved) and the folders this call created, outermost first, so that a
    failed download can remove them again.
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
            _remove_empty(created)
            raise DownloadError(f"cannot set the mode of {folder}: {err}", path=folder) from err
    return directory, created


def _discard_temp(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    _unlink_quietly(path)


def _remove_empty(folders: Sequence[Path]) -> None:
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


def _find_existing(directory: Path, generation_id: str, provider: str) -> Path | None:
    """The MP3 of this folder already holding the generation, if any."""
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
        if _is_same_track(path, generation_id, provider):
            return path
    return None


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


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        _LOGGER.warning("could not remove the temporary file %s", path)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` through a temporary file, chmod, fsync and one rename."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".ft-", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # mkstemp made it 0600; the rename must publish it with its final mode.
            _set_mode(handle, temp, mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(path.parent)


def _finish_audio(temp: Path, tags: _Tags, *, url: str, mode: int) -> None:
    """Check the downloaded file is a playable MP3, then tag, chmod and fsync it.

    The mode is set here, last thing before `_place` renames the file: the
    ".part" stays private (mkstemp's 0600) while it is incomplete.
    """
    try:
        audio = _mp3.MP3(temp)
    except (MutagenError, OSError) as err:
        raise DownloadError(f"{url} did not send a playable MP3: {err}", url=url) from err
    if not audio.info.length or audio.info.length <= 0:
        raise DownloadError(f"{url} sent an MP3 with no audio frames", url=url)
    try:
        # v1=0 drops any ID3v1 tag too: it cannot hold Unicode and would disagree.
        _build_tags(tags).save(temp, v1=0, v2_version=4)
        with temp.open("rb+") as handle:
            _set_mode(handle, temp, mode)
            os.fsync(handle.fileno())
    except (MutagenError, OSError) as err:
        raise DownloadError(f"cannot write tags to {temp}: {err}", path=temp) from err


def _place(
    temp: Path, directory: Path, stem: str, generation_id: str, provider: str
) -> tuple[Path, bool]:
    """Move `temp` to a free name in `directory`; (path, already_present)."""
    with _lock_for(directory):
        # Another download of the same track may have finished while this one ran.
        existing = _find_existing(directory, generation_id, provider)
        if existing is not None:
            _unlink_quietly(temp)
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


# -- sidecars --------------------------------------------------------------------------


def _lrc(lyrics: str, tags: _Tags, duration: float | None) -> str:
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


def _write_sidecars(
    audio_path: Path,
    kinds: Sequence[str],
    generation: Generation,
    tags: _Tags,
    mode: int,
) -> tuple[Path, ...]:
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
            _write_atomically(target, data, mode)
        except OSError as err:
            raise DownloadError(
                f"{audio_path} is in place, but its {kind} sidecar could not be written: {err}",
                path=target,
            ) from err
        written.append(target)
    return tuple(written)


# -- the download ----------------------------------------------------------------------


async def _in_thread(func: Callable[[], _T], *, undo: Callable[[_T], None] | None = None) -> _T:
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


def _display_url(url: str) -> str:
    """The URL without query or fragment: signed links carry their tokens there."""
    try:
        parsed = URL(url)
    except ValueError:
        return "(invalid URL)"
    return str(parsed.with_query(None).with_fragment(None))


def _looks_like_mp3(head: bytes) -> bool:
    """An ID3v2 tag or an MPEG audio frame sync (11 set bits) at the start."""
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _content_type_ok(content_type: str) -> bool:
    return content_type.startswith("audio/") or content_type in (
        "application/octet-stream",
        "binary/octet-stream",
    )


class _TempWriter:
    """Buffered writes to the temporary file, each flush in a worker thread."""

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
            await _in_thread(lambda: self._handle.write(chunk))

    async def commit(self) -> None:
        await self.flush()
        await _in_thread(self._sync_and_close)

    def _sync_and_close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        _unlink_quietly(self.path)


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    writer: _TempWriter,
    *,
    max_bytes: int,
    timeout: float,
    on_progress: ProgressCallback | None,
) -> int:
    """Stream the audio at `url` into `writer`; the number of bytes received."""
    shown = _display_url(url)
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "audio/mpeg, audio/*;q=0.9, application/octet-stream;q=0.5",
        # No transfer compression: Content-Length then counts the bytes that arrive.
        "Accept-Encoding": "identity",
    }
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 30.0))
    received = 0
    try:
        async with session.get(url, headers=headers, timeout=client_timeout) as response:
            status = response.status
            if not 200 <= status < 300:
                retry_after = (
                    _retry_after(response.headers.get("Retry-After"))
                    if status in _RETRY_AFTER_STATUSES
                    else None
                )
                raise DownloadError(
                    f"GET {shown} answered HTTP {status} {response.reason or ''}".rstrip(),
                    url=shown,
                    status=status,
                    retryable=status in _RETRY_STATUSES,
                    retry_after=retry_after,
                )
            content_type = response.content_type.lower()
            if not _content_type_ok(content_type):
                raise DownloadError(
                    f"GET {shown} sent {content_type!r}, not audio (expected audio/mpeg)",
                    url=shown,
                    status=response.status,
                )
            total = response.content_length
            if total is not None and total > max_bytes:
                raise DownloadError(
                    f"GET {shown} announces {total} bytes, over the limit of {max_bytes}",
                    url=shown,
                    status=response.status,
                )
            head = b""
            async for chunk in response.content.iter_chunked(_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(
                        f"GET {shown} sent more than the limit of {max_bytes} bytes",
                        url=shown,
                        status=response.status,
                    )
                if len(head) < 4:
                    head += chunk[: 4 - len(head)]
                    if len(head) >= 4 and not _looks_like_mp3(head):
                        raise DownloadError(
                            f"GET {shown} sent {content_type!r} that is not MP3 audio",
                            url=shown,
                            status=response.status,
                        )
                await writer.write(chunk)
                if on_progress is not None:
                    on_progress(received, total)
            # The length first: a body cut short is worth another try, not a verdict.
            if total is not None and received != total:
                raise DownloadError(
                    f"GET {shown} ended after {received} of {total} bytes",
                    url=shown,
                    status=status,
                    retryable=received < total,
                )
            if not _looks_like_mp3(head):
                raise DownloadError(
                    f"GET {shown} sent {received} bytes that are not MP3 audio", url=shown
                )
    except TimeoutError as err:
        raise DownloadError(
            f"GET {shown} did not finish within {timeout:g} s ({received} bytes received)",
            url=shown,
            retryable=True,
        ) from err
    except aiohttp.ClientPayloadError as err:
        raise _client_error(
            err, f"GET {shown} broke off after {received} bytes: {err}", shown, retryable=True
        ) from _safe_cause(err)
    except aiohttp.ClientError as err:
        # A connection refused, reset or closed early is transient; a bad URL, a
        # redirect loop or a certificate refused will fail the same way again.
        retryable = isinstance(err, aiohttp.ClientConnectionError) and not isinstance(
            err, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch
        )
        raise _client_error(
            err,
            f"GET {shown} failed after {received} bytes: {_describe(err)}",
            shown,
            retryable=retryable,
        ) from _safe_cause(err)
    return received


def _describe(err: aiohttp.ClientError) -> str:
    """The error's class and text; a response error's text is left out (it quotes URLs)."""
    if isinstance(err, aiohttp.ClientResponseError):
        # str() of these is "status, message=..., url=...", and a redirect loop's
        # repr adds every hop's headers (Location with its query): keep the facts.
        status = f" (HTTP {err.status})" if err.status else ""
        return f"{type(err).__name__}{status}" + (f": {err.message}" if err.message else "")
    return f"{type(err).__name__}: {err}"


def _client_error(err: Exception, message: str, shown: str, *, retryable: bool) -> DownloadError:
    """A DownloadError for an aiohttp error; URLs quoted in its text lose their query."""
    return DownloadError(_without_queries(message), url=shown, retryable=retryable)


def _safe_cause(err: Exception) -> Exception | None:
    """`err` as the cause to chain, unless it carries a full URL (query and all).

    Response errors (redirect loops, bad redirects) hold the request's URL in
    `request_info`, and some errors quote a URL whole in their text: chained,
    they would put a signed link's token in any traceback that gets logged.
    """
    text = f"{err} {err!r}"
    if isinstance(err, aiohttp.ClientResponseError) or _without_queries(text) != text:
        return None
    return err


# A URL (absolute, or a path such as a redirect's Location) and its query or fragment.
_URL_QUERY = re.compile(r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s?#'\"<>]*)[?#][^\s'\"<>]*")


def _without_queries(text: str) -> str:
    """`text` with the query and fragment of every URL or path in it cut off."""
    return _URL_QUERY.sub(r"\1", text)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110); None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _retry_delay(err: DownloadError, attempt: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when `err` is final."""
    if not err.retryable or attempt >= policy.attempts:
        return None
    if err.retry_after is not None:
        return err.retry_after if err.retry_after <= policy.retry_after_cap else None
    return policy.backoff(attempt)


def _final_error(err: DownloadError, attempt: int, policy: RetryPolicy) -> DownloadError:
    """The error to raise once `err`, from attempt number `attempt`, ends the download."""
    if attempt == 1 and not err.retryable:
        return err  # refused outright (404, not audio, ...): said as it was
    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
    if not err.retryable:
        note = f"not retryable; {tries} made"
    elif (
        attempt < policy.attempts
        and err.retry_after is not None
        and err.retry_after > policy.retry_after_cap
    ):
        note = (
            f"the server asked to wait {err.retry_after:g} s (Retry-After), more than the "
            f"{policy.retry_after_cap:g} s a download waits; gave up after {tries}"
        )
    else:
        note = f"gave up after {tries}"
    return DownloadError(
        f"{err.message}; {note}",
        url=err.url,
        path=err.path,
        status=err.status,
        retryable=err.retryable,
        retry_after=err.retry_after,
        attempts=attempt,
    )


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


# A ".part" file last written before this process started belongs to a process that
# died mid-download (SIGKILL skips every clean-up): it can only be litter.
_PROCESS_STARTED = time.time()


def _sweep_leftovers(directory: Path) -> None:
    """Delete temporary files that a killed process left in `directory`."""
    for leftover in directory.glob(".ft-*.part"):
        try:
            if leftover.stat().st_mtime < _PROCESS_STARTED:
                leftover.unlink()
                _LOGGER.info("removed %s, left by an interrupted download", leftover.name)
        except FileNotFoundError:
            continue  # another download finished or cleaned it meanwhile


async def download_track(
    generation: Generation,
    library: Path | str,
    *,
    session: aiohttp.ClientSession | None = None,
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
        raise DownloadError(f"the audio URL must be http(s) (got {_display_url(url)})")
    shown = _display_url(url)

    library_path = Path(library)
    title = track_title(generation)
    day = release_date(generation)
    album_name = _one_line(album or "") or (day.isoformat() if day else UNDATED)
    language = _LANGUAGES_639_2.get(
        (generation.parameters.language if generation.parameters else None) or "", "eng"
    )
    bpm = generation.parameters.bpm if generation.parameters else None
    prompt = _multiline(generation.prompt) if generation.prompt else None
    artist_name = _one_line(artist or "") or default_artist(generation.provider)
    tags = _Tags(
        title=title,
        artist=artist_name,
        album_artist=_one_line(album_artist or "") or artist_name,
        album=album_name,
        genres=genres(generation.prompt),
        date=day.isoformat() if day else None,
        bpm=str(bpm) if bpm is not None else None,
        key=id3_key(generation.parameters.keyscale if generation.parameters else None),
        comment=prompt or None,
        lyrics=_lyrics_of(generation, lyrics),
        language=language,
        generation_id=generation.id,
        provider=generation.provider,
    )
    values = _template_values(generation, library_path, tags)
    folders = [sanitize_component(_format(part, values)) for part in template.folders]
    stem = sanitize_component(_format(template.stem, values))

    modes = await _in_thread(lambda: _Modes.resolve(mode))
    directory, created = await _in_thread(
        lambda: _prepare_directory(library_path, folders, modes.folders),
        undo=lambda made: _remove_empty(made[1]),
    )
    try:
        existing = await _in_thread(
            lambda: _find_existing(directory, generation.id, generation.provider)
        )
    except asyncio.CancelledError:
        _remove_empty(created)
        raise
    if existing is not None:
        _LOGGER.debug("generation %s is already in %s", generation.id, existing)
        return await _result(existing, True, kinds, generation, tags, modes.files)

    await _in_thread(lambda: _sweep_leftovers(directory))
    writer: _TempWriter | None = None
    owns_session = session is None
    http = session or aiohttp.ClientSession()
    try:
        attempt = 0
        while True:
            attempt += 1
            # A fresh ".part" per attempt: nothing of a broken body is ever kept.
            writer = await _open_temp(directory)
            try:
                received = await _stream(
                    http,
                    url,
                    writer,
                    max_bytes=max_bytes,
                    timeout=timeout,
                    on_progress=on_progress,
                )
                break
            except DownloadError as err:
                writer.discard()
                writer = None
                delay = _retry_delay(err, attempt, retry)
                if delay is None:
                    final = _final_error(err, attempt, retry)
                    if final is err:
                        raise
                    raise final from err
                _LOGGER.info(
                    "%s; trying again in %.1f s (attempt %d of %d)",
                    err.message,
                    delay,
                    attempt + 1,
                    retry.attempts,
                )
                await asyncio.sleep(delay)
        part = writer.path
        await writer.commit()
        await _in_thread(lambda: _finish_audio(part, tags, url=shown, mode=modes.files))
        path, already = await _in_thread(
            lambda: _place(part, directory, stem, generation.id, generation.provider)
        )
    except BaseException as err:
        if writer is not None:
            writer.discard()
        _remove_empty(created)
        if isinstance(err, OSError):
            raise DownloadError(
                f"writing {shown} into {directory} failed: {err}", url=shown, path=directory
            ) from err
        raise
    finally:
        if owns_session:
            await http.close()
    _LOGGER.debug(
        "generation %s: %d bytes from %s into %s (attempt %d)",
        generation.id,
        received,
        shown,
        path,
        attempt,
    )
    return await _result(path, already, kinds, generation, tags, modes.files)


async def _open_temp(directory: Path) -> _TempWriter:
    """A new temporary file in `directory`, mode 0600 (mkstemp's) until it is finished."""
    try:
        # Hidden (".") and marked unfinished (".part") for anyone looking at the folder.
        fd, temp_name = await _in_thread(
            lambda: tempfile.mkstemp(suffix=".part", prefix=".ft-", dir=directory),
            undo=lambda made: _discard_temp(made[0], Path(made[1])),
        )
    except OSError as err:
        raise DownloadError(f"cannot write in {directory}: {err}", path=directory) from err
    return _TempWriter(Path(temp_name), fd)


async def _result(
    path: Path,
    already_present: bool,
    kinds: Sequence[str],
    generation: Generation,
    tags: _Tags,
    file_mode: int,
) -> DownloadResult:
    sidecars = await _in_thread(lambda: _write_sidecars(path, kinds, generation, tags, file_mode))
    size = (await _in_thread(path.stat)).st_size
    return DownloadResult(
        path=path,
        bytes=size,
        already_present=already_present,
        sidecars=sidecars,
        generation_id=generation.id,
    )
