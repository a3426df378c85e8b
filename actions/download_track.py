"""Action: deliver a finished track into a media library (Jellyfin, Plex, Navidrome)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.delivery.download import DownloadResult, download_track
from connector.delivery.errors import DownloadError
from connector.delivery.files import SIDECARS, check_file_mode
from connector.delivery.paths import TEMPLATE_FIELDS, default_path_template, parse_template
from connector.delivery.tags import PROVIDER_ARTISTS
from connector.plugin import ActionContext, ActionSpec, one_of, templatable
from connector.providers.finetuning.models import Generation, GenerationStatus


def _sidecars(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or any(item not in SIDECARS for item in items):
        raise vol.Invalid(f"must list sidecars among {', '.join(SIDECARS)} (got {value!r})")
    return list(items)


def _file_mode(value: Any) -> int:
    """Octal permission bits: "0644" (quoted), or a number (YAML reads a bare 0644 as octal)."""
    try:
        return check_file_mode(value)
    except ValueError as err:
        raise vol.Invalid(str(err).removeprefix("file_mode ")) from None


def _path_template(value: Any) -> str:
    """A template whose fields all exist and whose braces pair up, checked at load time."""
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text such as {default_path_template('finetuning')!r}")
    try:
        parse_template(value)
    except ValueError as err:
        raise vol.Invalid(str(err).removeprefix("path_template").lstrip(": ")) from None
    return value


_path_template.json_schema = {"type": "string"}  # type: ignore[attr-defined]  # for the export

_FIELDS = " ".join("{" + name + "}" for name in TEMPLATE_FIELDS)
_PATH_TEMPLATE_HELP = (
    f"where the file goes, from the fields {_FIELDS}, each value made safe as a file "
    f"name (default: {default_path_template('finetuning')}; for TemPolor tracks "
    f"{default_path_template('tempolor')})"
)
_ARTIST_HELP = (
    f"artist tag (default: {PROVIDER_ARTISTS['finetuning']}; for TemPolor tracks "
    f"{PROVIDER_ARTISTS['tempolor']})"
)


# An expired or refused TemPolor link answers one of these: a fresh link may work.
_LINK_EXPIRED = frozenset({403, 410})


def check(options: Mapping[str, Any]) -> None:
    """A library folder that does not exist is refused before anything runs."""
    library = options.get("library")
    if isinstance(library, str) and not os.path.isdir(os.path.expanduser(library)):
        raise vol.Invalid(
            f"library folder {library!r} does not exist (create it or mount it; a relative "
            "folder is relative to the automations file)"
        )


async def _generation(
    context: ActionContext, track: str | None, provider: str
) -> tuple[Generation, str | None]:
    """The full record of the track, and for TemPolor a fresh (expiring) download link."""
    event_generation = context.event.generation
    if track is None:
        if event_generation is None:
            raise vol.Invalid("no track: set 'track' (this trigger carries no generation)")
        track = event_generation.id
    if provider == "tempolor":
        job = await context.tempolor.get_job(track)
        generation = job.to_generation()
        if generation.status is not GenerationStatus.COMPLETED:
            return generation, None
        link = await context.tempolor.get_download_url(track, "mp3")
        return generation, link.url
    # The event may come from a webhook payload without a title: read the full record.
    return await context.finetuning.get_generation(track), None


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Download, tag and file the track; a track already in the library is not fetched again."""
    event_generation = context.event.generation
    provider = options.get("provider") or (
        event_generation.provider if event_generation else "finetuning"
    )
    generation, audio_url = await _generation(context, options.get("track"), provider)
    if generation.status is not GenerationStatus.COMPLETED:
        raise vol.Invalid(f"track {generation.id} is {generation.status.value}, not completed")

    async def download(url: str | None) -> DownloadResult:
        return await download_track(
            generation,
            os.path.expanduser(options["library"]),  # noqa: ASYNC240  # string work, no I/O
            session=context.session,
            path_template=options.get("path_template"),  # None: the provider's default
            album=options.get("album"),
            artist=options.get("artist"),  # None: the provider's name
            album_artist=options.get("album_artist"),
            also_write=options["also_write"],
            lyrics=options.get("lyrics"),
            audio_url=url,
            file_mode=options.get("file_mode"),
        )

    try:
        result = await download(audio_url)
    except DownloadError as err:
        # download_track never retries a 403/410: the link itself is dead. TemPolor's
        # links expire (the retries of a flaky CDN can outlast one), so ask for a new
        # one, once. A Finetuning.ai generation has only its one audio URL.
        if provider != "tempolor" or err.status not in _LINK_EXPIRED:
            raise
        link = await context.tempolor.get_download_url(generation.id, "mp3")
        result = await download(link.url)
    return {
        "path": str(result.path),
        "bytes": result.bytes,
        "already_present": result.already_present,
        "sidecars": [str(p) for p in result.sidecars],
        "generation_id": generation.id,
    }


ACTION = ActionSpec(
    key="download_track",
    title="Download to media library",
    description="Saves a completed track's MP3 into a library folder, tagged (title, artist, "
    "album, genre, date, BPM, key, prompt, lyrics, generation id) and safely named, as "
    "Jellyfin, Plex and Navidrome expect. Downloading the same track again does nothing.",
    schema=vol.Schema(
        {
            vol.Required("library", description="library folder (must exist)"): str,
            vol.Optional(
                "provider", description="finetuning or tempolor (default: the trigger's)"
            ): one_of("finetuning", "tempolor"),
            vol.Optional("track", description="track id (default: the trigger's)"): templatable(
                str
            ),
            # No schema default: both depend on the provider, known only at run time.
            vol.Optional("path_template", description=_PATH_TEMPLATE_HELP): _path_template,
            vol.Optional("album", description="album tag and folder (default: the date)"): (
                templatable(str)
            ),
            vol.Optional("artist", description=_ARTIST_HELP): templatable(str),
            vol.Optional("album_artist", description="album artist (default: artist)"): (
                templatable(str)
            ),
            vol.Optional("lyrics", description="lyrics to embed (USLT) and write as .lrc"): (
                templatable(str)
            ),
            vol.Optional("also_write", default=[], description="sidecars: json, lrc"): _sidecars,
            # _file_mode first, so its message (naming the range) is the one shown;
            # vol.Any after it only tells the JSON Schema export: a string or an integer.
            vol.Optional(
                "file_mode",
                description='file permissions, octal in quotes: "0644" (default: 0666 less '
                "the umask)",
            ): vol.All(_file_mode, vol.Any(str, int)),
        }
    ),
    example={"action": "download_track", "library": "/srv/music", "album": "Focus Beats"},
    run=run,
    check=check,
    paths=("library",),
    providers=frozenset({"finetuning", "tempolor"}),
    output_example={"path": "/srv/music/Finetuning/Focus Beats/Lofi Chill Piano.mp3"},
)
