"""path_template fields for media libraries, and defaults that follow the provider.

Real MP3s from the sandbox over loopback; every value that lands in a path is
sanitised as one component, whatever it holds.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from mutagen.id3 import ID3

from connector.delivery.download import download_track
from connector.delivery.paths import TEMPLATE_FIELDS, default_path_template, parse_template
from connector.delivery.tags import default_artist
from connector.events import Event
from connector.providers.finetuning.models import Generation
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e

ACCOUNT = "Demo User"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder.resolve()  # as download_track reports paths


async def seeded(sandbox: SandboxHandle, http: aiohttp.ClientSession, **track: Any) -> Generation:
    """A completed track added straight into the sandbox, read back through the API."""
    added = sandbox.sandbox.add_track(ACCOUNT, **track)
    url = f"{sandbox.url}/v1/generations/{added.id}"
    async with http.get(url, headers={"X-API-Key": sandbox.api_key}) as response:
        assert response.status == 200
        return Generation.model_validate((await response.json())["data"])


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_new_fields_are_allowed() -> None:
    for name in ("artist", "album_artist", "provider", "genre", "year"):
        assert name in TEMPLATE_FIELDS
    parse_template("{library}/{album_artist}/{year}/{genre}/{provider}/{artist} - {title}.mp3")


def test_an_unknown_field_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown field \{artsit\} \(did you mean \{artist\}\?\)"):
        parse_template("{library}/{artsit}/{title}.mp3")


def test_provider_defaults() -> None:
    assert default_path_template("finetuning") == "{library}/Finetuning/{album}/{title}.mp3"
    assert default_path_template("tempolor") == "{library}/TemPolor/{album}/{title}.mp3"
    assert default_path_template("someday") == "{library}/Finetuning/{album}/{title}.mp3"
    assert default_artist("finetuning") == "Finetuning.ai"
    assert default_artist("tempolor") == "TemPolor"


async def test_artist_album_artist_genre_and_year_build_the_path(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, prompt="dream pop, shoegaze haze")
    generation = generation.model_copy(update={"title": "Glass Rain"})

    result = await download_track(
        generation,
        library,
        path_template="{library}/{album_artist}/{year} - {album}/{genre}/{artist} - {title}.mp3",
        album="Summer",
        artist="Nadia K",
        album_artist="Various Artists",
        session=http,
    )

    completed = generation.completed_at or generation.created_at
    assert completed is not None
    year = completed.year  # {year}: of the completion date, as the date tag
    assert result.path == library / (
        f"Various Artists/{year} - Summer/Dream Pop/Nadia K - Glass Rain.mp3"
    )
    tags = ID3(result.path)
    assert [str(t) for t in tags["TPE1"].text] == ["Nadia K"]
    assert [str(t) for t in tags["TPE2"].text] == ["Various Artists"]


async def test_values_with_separators_and_dots_stay_one_safe_component(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, prompt="../../etc, AC/DC style")

    result = await download_track(
        generation,
        library,
        path_template="{artist}/{album_artist}/{genre}/{title}.mp3",
        artist="../../etc/passwd",
        album_artist="CON",
        session=http,
    )

    relative = result.path.relative_to(library)
    assert relative.parts[:3] == ("_.._etc_passwd", "_CON", "_.._etc")
    assert len(relative.parts) == 4
    assert relative_files(library) == [str(relative)]


async def test_an_empty_genre_is_an_empty_value(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)
    generation = generation.model_copy(update={"prompt": None, "title": "Quiet"})

    result = await download_track(
        generation, library, path_template="[{genre}] {title}.mp3", session=http
    )

    assert result.path.name == "[] Quiet.mp3"


async def test_a_tempolor_track_is_filed_under_tempolor_by_default(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)
    job = generation.model_copy(update={"provider": "tempolor", "title": "Neon Drive"})

    result = await download_track(job, library, album="Night", session=http)

    assert result.path == library / "TemPolor" / "Night" / "Neon Drive.mp3"
    tags = ID3(result.path)
    assert [str(t) for t in tags["TPE1"].text] == ["TemPolor"]
    assert [str(t) for t in tags["TPE2"].text] == ["TemPolor"]


async def test_a_finetuning_track_keeps_its_defaults(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)
    generation = generation.model_copy(update={"title": "Dawn"})

    result = await download_track(generation, library, album="Mornings", session=http)

    assert result.path == library / "Finetuning" / "Mornings" / "Dawn.mp3"
    assert [str(t) for t in ID3(result.path)["TPE1"].text] == ["Finetuning.ai"]


class FakeTempolor:
    """The two calls download_track makes for a TemPolor job, answered from the sandbox."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation

    async def get_job(self, job_id: str) -> Any:
        job = self.generation.model_copy(
            update={"id": job_id, "provider": "tempolor", "audio_url": None}
        )
        return SimpleNamespace(to_generation=lambda: job)

    async def get_download_url(self, job_id: str, file_format: str) -> Any:
        return SimpleNamespace(url=self.generation.audio_url)


async def test_the_action_files_tempolor_jobs_under_tempolor_with_its_artist(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    from connector.actions.download_track import ACTION

    generation = await seeded(sandbox, http)
    generation = generation.model_copy(update={"title": "Job Song"})
    job = generation.model_copy(update={"id": "job-7", "provider": "tempolor"})
    context = SimpleNamespace(
        event=Event.for_generation(job, source="poll"),
        tempolor=FakeTempolor(generation),
        finetuning=SimpleNamespace(),
        session=http,
    )
    options = ACTION.schema({"library": str(library), "album": "Jobs"})

    output = await ACTION.run(context, options)  # type: ignore[arg-type]

    path = Path(output["path"])
    assert path == library / "TemPolor" / "Jobs" / "Job Song.mp3"
    assert [str(t) for t in ID3(path)["TPE1"].text] == ["TemPolor"]


async def test_the_action_honours_an_explicit_template_and_artist(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    from connector.actions.download_track import ACTION

    generation = await seeded(sandbox, http)
    generation = generation.model_copy(update={"title": "Mine"})
    job = generation.model_copy(update={"id": "job-8", "provider": "tempolor"})
    context = SimpleNamespace(
        event=Event.for_generation(job, source="poll"),
        tempolor=FakeTempolor(generation),
        finetuning=SimpleNamespace(),
        session=http,
    )
    options = ACTION.schema(
        {
            "library": str(library),
            "path_template": "{library}/{artist}/{provider}/{title}.mp3",
            "artist": "Me",
        }
    )

    output = await ACTION.run(context, options)  # type: ignore[arg-type]

    assert Path(output["path"]) == library / "Me" / "tempolor" / "Mine.mp3"
