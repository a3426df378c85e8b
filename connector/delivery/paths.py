"""The `path_template` syntax: where in the library a track goes, and its fields.

    {library}/Finetuning/{album}/{title}.mp3        (the default)

A template is `str.format` restricted to the fields in `TEMPLATE_FIELDS`
(no attributes, no indexes, no positional fields). Its own "/" separate the
path components; each component is formatted and then sanitised on its own
(`connector.delivery.names`), so a value can never add a separator or "..".
`parse_template` checks a template before anything is fetched, so a config
file with a bad one is refused when it loads.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.delivery.names import sanitize_component
from connector.delivery.tags import Id3Tags, id3_key, release_date
from connector.providers.finetuning.models import Generation

DEFAULT_PATH_TEMPLATE = "{library}/Finetuning/{album}/{title}.mp3"

PROVIDER_NAMES: dict[str, str] = {"finetuning": "Finetuning", "tempolor": "TemPolor"}
"""The folder a provider's tracks are filed under by default."""

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

    def format(self, values: Mapping[str, str]) -> tuple[list[str], str]:
        """The folders and the file's stem for these field values, each one sanitised."""
        folders = [sanitize_component(_format(part, values)) for part in self.folders]
        return folders, sanitize_component(_format(self.stem, values))


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


def template_values(generation: Generation, library: Path, tags: Id3Tags) -> dict[str, str]:
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
