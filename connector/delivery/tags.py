"""ID3 tags of a delivered track: what they say, read from its generation, and mutagen I/O.

`id3_tags` derives everything a track's tags hold (title, artist, album,
genres, date, BPM, key, prompt, lyrics, generation id); `write_id3` writes it
as one ID3v2.4 tag, `read_identity` reads back which generation a file holds.
The generation id travels in a `TXXX:FINETUNING_ID` frame: that is how the
library recognises a track it already has, whatever the file is called now.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mutagen.id3
import mutagen.mp3
from mutagen import MutagenError
from mutagen.id3 import ID3NoHeaderError

from connector.providers.finetuning.models import Generation

DEFAULT_ARTIST = "Finetuning.ai"

PROVIDER_ARTISTS: dict[str, str] = {"finetuning": DEFAULT_ARTIST, "tempolor": "TemPolor"}
"""The artist tag a provider's tracks get by default."""

ID_TAG = "FINETUNING_ID"
PROVIDER_TAG = "FINETUNING_PROVIDER"

UNDATED = "Undated"  # the default album of a track with no date at all

_GENRES_MAX = 3
_GENRE_MAX_CHARS = 40
_TITLE_FROM_PROMPT_CHARS = 100

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

_KEY_PATTERN = re.compile(r"^([A-Ga-g])([#♯b♭]?)$")

# mutagen has no annotations: its classes are reached through Any so that
# strict mypy checks this module without `type: ignore` on every frame.
_id3: Any = mutagen.id3
_mp3: Any = mutagen.mp3


def default_artist(provider: str) -> str:
    """The artist tag of a provider's tracks by default: "Finetuning.ai" or "TemPolor"."""
    return PROVIDER_ARTISTS.get(provider, DEFAULT_ARTIST)


# -- what the tags say --------------------------------------------------------------------


@dataclass(frozen=True)
class Id3Tags:
    """Everything written into a track's ID3 tag (and its .lrc sidecar's header)."""

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


def id3_tags(
    generation: Generation,
    *,
    album: str | None = None,
    artist: str | None = None,
    album_artist: str | None = None,
    lyrics: str | None = None,
) -> Id3Tags:
    """The tags of `generation`'s track; `album` defaults to its date, `artist` to its provider."""
    day = release_date(generation)
    parameters = generation.parameters
    language = _LANGUAGES_639_2.get((parameters.language if parameters else None) or "", "eng")
    bpm = parameters.bpm if parameters else None
    prompt = multiline(generation.prompt) if generation.prompt else None
    artist_name = one_line(artist or "") or default_artist(generation.provider)
    return Id3Tags(
        title=track_title(generation),
        artist=artist_name,
        album_artist=one_line(album_artist or "") or artist_name,
        album=one_line(album or "") or (day.isoformat() if day else UNDATED),
        genres=genres(generation.prompt),
        date=day.isoformat() if day else None,
        bpm=str(bpm) if bpm is not None else None,
        key=id3_key(parameters.keyscale if parameters else None),
        comment=prompt or None,
        lyrics=_lyrics_of(generation, lyrics),
        language=language,
        generation_id=generation.id,
        provider=generation.provider,
    )


def one_line(value: str) -> str:
    """Text for a single-line tag: controls (NUL splits v2.4 values) become spaces."""
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    return " ".join(cleaned.split())


def multiline(value: str) -> str:
    """Text for lyrics and comments: line breaks kept, other controls dropped."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = ["".join(c for c in line if unicodedata.category(c) != "Cc") for line in lines]
    return "\n".join(line.rstrip() for line in kept).strip("\n")


def track_title(generation: Generation) -> str:
    """The title to show: the generation's title, else its prompt (shortened), else its id."""
    if generation.title and one_line(generation.title):
        return one_line(generation.title)
    prompt = one_line(generation.prompt or "")
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
        words = one_line(phrase).split()
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


def _lyrics_of(generation: Generation, lyrics: str | None) -> str | None:
    if lyrics is None:
        # Some payloads (TemPolor, future API versions) carry the lyrics along.
        extra = (generation.model_extra or {}).get("lyrics")
        lyrics = extra if isinstance(extra, str) else None
    if lyrics is None:
        return None
    text = multiline(lyrics)
    return text or None


# -- mutagen ------------------------------------------------------------------------------


def mp3_seconds(path: Path) -> float:
    """The length of the MP3 audio at `path` (0 without frames); MutagenError if not an MP3."""
    length = _mp3.MP3(path).info.length
    return float(length or 0.0)


def write_id3(path: Path, tags: Id3Tags) -> None:
    """Replace whatever tag the MP3 at `path` had by one ID3v2.4 tag holding `tags`.

    `v1=0` drops any ID3v1 tag too: it cannot hold Unicode and would disagree.
    """
    _build_id3(tags).save(path, v1=0, v2_version=4)


def _build_id3(tags: Id3Tags) -> Any:
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


def holds_track(path: Path, generation_id: str, provider: str) -> bool:
    """Whether the MP3 at `path` is tagged as this provider's generation."""
    found_id, found_provider = read_identity(path)
    # A file tagged before the provider frame existed still counts by its id.
    return found_id == generation_id and found_provider in (None, provider)
