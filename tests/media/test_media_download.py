"""download_track against the sandbox and a raw loopback server, over real sockets.

The sandbox serves real MP3s; a hand-written HTTP server (raw asyncio
streams, so it can misbehave precisely) plays the broken origins: bodies cut
short, wrong content types, oversized bodies, stalls.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from connector.delivery import files
from connector.delivery.download import download_track
from connector.delivery.errors import DownloadError
from connector.delivery.fetch import RetryPolicy
from connector.delivery.files import SIDECARS
from connector.delivery.names import COMPONENT_MAX_BYTES, sanitize_component
from connector.delivery.paths import TEMPLATE_FIELDS
from connector.delivery.tags import genres, id3_key, read_identity
from connector.errors import ConnectorError, DeliveryError, ProviderError
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation, GenerationRequest
from connector.sandbox import FaultRule, SandboxConfig, SandboxHandle, run_sandbox
from connector.sandbox.audio import mp3_bytes

pytestmark = pytest.mark.e2e

ACCOUNT = "Demo User"
# Transient failures are retried; the real backoff (seconds) would only slow the tests.
FAST_RETRY = RetryPolicy(base_delay=0.001)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=0.05)) as handle:
        yield handle


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


async def fetch(sandbox: SandboxHandle, http: aiohttp.ClientSession, gen_id: str) -> Generation:
    """The generation as the API shows it (GET /v1/generations/:id)."""
    url = f"{sandbox.url}/v1/generations/{gen_id}"
    async with http.get(url, headers={"X-API-Key": sandbox.api_key}) as response:
        assert response.status == 200
        return Generation.model_validate((await response.json())["data"])


async def seeded(sandbox: SandboxHandle, http: aiohttp.ClientSession, **track: Any) -> Generation:
    """A completed track added straight into the sandbox, read back through the API."""
    added = sandbox.sandbox.add_track(ACCOUNT, **track)
    return await fetch(sandbox, http, added.id)


def files_under(root: Path) -> list[Path]:
    """Every file below `root` (hidden ones included), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def entries(folder: Path) -> list[str]:
    """The names directly inside `folder`, sorted."""
    return sorted(os.listdir(folder))


def resolved(path: Path) -> Path:
    return path.resolve()


def audio_requests(sandbox: SandboxHandle, gen_id: str) -> int:
    return sum(1 for r in sandbox.sandbox.requests if r.path.endswith(f"/{gen_id}.mp3"))


def text_of(tags: Any, frame_id: str) -> list[str]:
    return [str(t) for t in tags[frame_id].text]


# -- the happy path --------------------------------------------------------------------


async def test_a_generated_track_lands_tagged_and_playable(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
        request = GenerationRequest(
            tags="dark synthwave, retro drums, night drive",
            duration=20,
            bpm=96,
            key="F#",
            scale="minor",
            language="en",
        )
        created = await client.create_generation(request)
        done = await client.wait_for_generation(
            created.id, first_delay=0.02, max_delay=0.05, timeout=10
        )
    assert done.completed_at is not None
    assert done.title
    day = done.completed_at.date().isoformat()

    result = await download_track(
        done,
        library,
        lyrics="[verse]\nNeon lights\nOn the highway",
        album_artist="Various",
        session=http,
    )

    assert result.already_present is False
    assert result.generation_id == done.id
    assert result.path == resolved(library) / "Finetuning" / day / f"{done.title}.mp3"
    assert result.bytes == result.path.stat().st_size
    assert result.sidecars == ()
    audio = MP3(result.path)
    assert done.duration is not None
    assert audio.info.length == pytest.approx(done.duration, abs=0.05)
    tags = ID3(result.path)
    assert tags.version == (2, 4, 0)
    assert text_of(tags, "TIT2") == [done.title]
    assert text_of(tags, "TPE1") == ["Finetuning.ai"]
    assert text_of(tags, "TPE2") == ["Various"]
    assert text_of(tags, "TALB") == [day]
    assert text_of(tags, "TCON") == ["Dark Synthwave", "Retro Drums", "Night Drive"]
    assert text_of(tags, "TDRC") == [day]
    assert text_of(tags, "TBPM") == ["96"]
    assert text_of(tags, "TKEY") == ["F#m"]
    comments = tags.getall("COMM")
    assert [c.text for c in comments] == [["dark synthwave, retro drums, night drive"]]
    lyrics = tags.getall("USLT")
    assert [u.text for u in lyrics] == ["[verse]\nNeon lights\nOn the highway"]
    assert lyrics[0].lang == "eng"
    assert text_of(tags, "TXXX:FINETUNING_ID") == [done.id]
    assert text_of(tags, "TXXX:FINETUNING_PROVIDER") == ["finetuning"]
    assert read_identity(result.path) == (done.id, "finetuning")
    assert files_under(library) == [result.path]


async def test_the_servers_own_tag_is_replaced_and_the_audio_is_untouched(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, prompt="ambient pads", duration=8)
    assert generation.audio_url is not None
    async with http.get(generation.audio_url) as response:
        original = await response.read()
    # The sandbox's MP3 starts with an ID3v2.3 tag holding only its title.
    assert original.startswith(b"ID3\x03")
    original_tag_size = ID3(fileobj=_BytesFile(original)).size

    result = await download_track(
        generation.model_copy(update={"title": "Renamed"}), library, session=http
    )

    stored = result.path.read_bytes()
    tags = ID3(result.path)
    assert tags.version == (2, 4, 0)
    assert text_of(tags, "TIT2") == ["Renamed"]
    assert stored[tags.size :] == original[original_tag_size:]
    assert stored[-128:-125] != b"TAG"  # and no ID3v1 tag was added


class _BytesFile:
    """Just enough of a file object for mutagen to read a tag from bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._data)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


async def test_progress_is_reported_up_to_the_announced_total(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, duration=30)
    seen: list[tuple[int, int | None]] = []

    result = await download_track(
        generation, library, session=http, on_progress=lambda n, t: seen.append((n, t))
    )

    assert seen
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert seen[-1] == (generation.file_size, generation.file_size)
    assert result.path.exists()


async def test_a_custom_template_fills_every_field(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, bpm=128, key="A#", scale="major")
    assert generation.completed_at is not None
    day = generation.completed_at.date()

    result = await download_track(
        generation,
        library,
        album="Morning Mix",
        path_template="{provider}/{year}/{album}/{date} {bpm} {key} {title} [{id}].mp3",
        session=http,
    )

    expected = f"{day.isoformat()} 128 A# {generation.title} [{generation.id}].mp3"
    assert result.path == resolved(library) / "finetuning" / str(day.year) / "Morning Mix" / (
        expected
    )
    assert text_of(ID3(result.path), "TALB") == ["Morning Mix"]


# -- hostile names ---------------------------------------------------------------------

HOSTILE_TITLES = [
    "../../etc/passwd",
    "..",
    ".",
    "...",
    "CON",
    "con.txt",
    "Lpt9",
    "com1.mp3",
    "a" * 300,
    "é" * 300,
    "🎵🎶" * 60,
    "👩‍👩‍👧‍👦" * 40,
    "",
    "   ",
    "a/b\\c",
    "trailing dots...",
    "trailing space   ",
    "nul\x00byte\x1fand\x7fcontrols",
    "line\nbreak\ttab",
    '<>:"|?*',
    "evil\u202egpj.mp3",
    "/absolute/path",
    "C:\\Windows\\system32",
]


def assert_safe_name(name: str) -> None:
    device = name.split(".", 1)[0].rstrip(" ").upper()
    assert device not in {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10))}
    assert device not in {f"LPT{i}" for i in range(10)}
    assert "/" not in name
    assert "\\" not in name
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    assert not name.startswith(".")
    assert name == name.strip()
    stem = name.removesuffix(".mp3")
    assert not stem.endswith(".")
    assert not stem.endswith(" ")
    assert len(name.encode("utf-8")) <= COMPONENT_MAX_BYTES + len(" (99).mp3")


@pytest.mark.parametrize("title", HOSTILE_TITLES, ids=range(len(HOSTILE_TITLES)))
async def test_hostile_titles_land_safely_inside_the_library(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, tmp_path: Path, title: str
) -> None:
    library = tmp_path / "deep" / "library"
    library.mkdir(parents=True)
    real = await seeded(sandbox, http, duration=5)
    generation = real.model_copy(update={"title": title, "prompt": None})

    result = await download_track(generation, library, album=title or "Album", session=http)

    assert result.path.exists()
    assert result.path.resolve().is_relative_to(resolved(library))
    relative = result.path.relative_to(resolved(library))
    assert len(relative.parts) == 3  # Finetuning / album / file: no extra levels
    for part in relative.parts:
        assert_safe_name(part)
    assert result.path.suffix == ".mp3"
    assert files_under(tmp_path) == [result.path]
    # The tag keeps the real title (on one line); only the file name is cleaned.
    expected_title = " ".join(
        "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in title).split()
    )
    assert text_of(ID3(result.path), "TIT2") == [expected_title or generation.id]


def test_sanitize_component_examples() -> None:
    assert sanitize_component("../../etc/passwd") == "_.._etc_passwd"
    assert sanitize_component("..") == "Untitled"
    assert sanitize_component("") == "Untitled"
    assert sanitize_component("CON") == "_CON"
    assert sanitize_component("con.txt") == "_con.txt"
    assert sanitize_component("CON .txt") == "_CON .txt"
    assert sanitize_component("COM²") == "_COM²"
    assert sanitize_component("Console") == "Console"
    assert sanitize_component("a/b\\c") == "a_b_c"
    assert sanitize_component("trailing dots... ") == "trailing dots"
    assert sanitize_component(".hidden") == "hidden"
    assert sanitize_component("tab\there\x00nul") == "tab here nul"
    assert sanitize_component("evil\u202egpj.mp3") == "evilgpj.mp3"
    assert sanitize_component("Café 🎵") == "Café 🎵"


@pytest.mark.parametrize(
    "text",
    ["a" * 300, "é" * 300, "🎵" * 100, "👍🏽" * 50, "👩‍👩‍👧‍👦" * 30, "🇫🇷" * 40, "日本語" * 100],
)
def test_long_names_are_cut_to_the_byte_limit_on_a_character_boundary(text: str) -> None:
    cut = sanitize_component(text)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= COMPONENT_MAX_BYTES
    # At most one (long) emoji cluster is given up, never most of the name.
    assert len(encoded) >= COMPONENT_MAX_BYTES - 30
    assert text.startswith(cut)
    assert encoded.decode("utf-8") == cut


def test_emoji_sequences_are_never_split() -> None:
    family = "👩‍👩‍👧‍👦"
    cut = sanitize_component(family * 30)
    assert cut == family * (len(cut) // len(family))
    flags = sanitize_component("🇫🇷" * 40)
    assert flags == "🇫🇷" * (len(flags) // 2)
    thumbs = sanitize_component("👍🏽" * 50)
    assert thumbs == "👍🏽" * (len(thumbs) // 2)
    accents = sanitize_component("e\u0301" * 100)
    assert accents == "é" * len(accents)  # NFC composes them first


async def test_a_symlink_leading_out_of_the_library_is_refused(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (library / "Finetuning").symlink_to(outside, target_is_directory=True)
    generation = await seeded(sandbox, http)

    with pytest.raises(DownloadError, match="outside the library"):
        await download_track(generation, library, session=http)

    assert entries(outside) == []
    assert audio_requests(sandbox, generation.id) == 0


async def test_a_missing_library_is_refused_and_not_created(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    generation = await seeded(sandbox, http)

    with pytest.raises(DownloadError, match="does not exist"):
        await download_track(generation, tmp_path / "unmounted-share", session=http)

    assert entries(tmp_path) == []


# -- arguments -------------------------------------------------------------------------


async def test_an_unknown_template_field_names_it_and_the_allowed_ones(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    with pytest.raises(ValueError, match=r"\{composer\}") as caught:
        await download_track(
            generation, library, path_template="{library}/{composer}/{title}.mp3", session=http
        )

    for field in TEMPLATE_FIELDS:
        assert "{" + field + "}" in str(caught.value)
    assert audio_requests(sandbox, generation.id) == 0


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{library}/{title.__class__}.mp3", "unknown field"),
        ("{library}/{title[0]}.mp3", "unknown field"),
        ("{library}/{}.mp3", "unknown field"),
        ("{library}/{0}.mp3", "unknown field"),
        ("{library}/{title:{secret}}.mp3", "unknown field"),
        ("{library}/../{title}.mp3", r"\.\."),
        ("/etc/{title}.mp3", "absolute"),
        ("{library}/{title}.flac", r"\.mp3"),
        ("{library}/x/{library}/{title}.mp3", "only start"),
        ("{library}{title}.mp3", "followed by"),
    ],
)
async def test_bad_templates_are_refused_before_any_download(
    sandbox: SandboxHandle,
    http: aiohttp.ClientSession,
    library: Path,
    template: str,
    problem: str,
) -> None:
    generation = await seeded(sandbox, http)

    with pytest.raises(ValueError, match=problem):
        await download_track(generation, library, path_template=template, session=http)

    assert files_under(library) == []


async def test_an_unknown_sidecar_lists_the_allowed_ones(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    with pytest.raises(ValueError, match="nfo") as caught:
        await download_track(generation, library, also_write=("json", "nfo"), session=http)

    for kind in SIDECARS:
        assert kind in str(caught.value)


async def test_a_generation_without_audio_is_a_download_error(
    http: aiohttp.ClientSession, library: Path
) -> None:
    pending = Generation.model_validate({"id": "g-1", "status": "processing"})

    with pytest.raises(DownloadError, match="no audio URL") as caught:
        await download_track(pending, library, session=http)

    assert caught.value.code == "DOWNLOAD_FAILED"
    # A delivery failure, not a provider's: both under the one root.
    assert isinstance(caught.value, DeliveryError)
    assert isinstance(caught.value, ConnectorError)
    assert not isinstance(caught.value, ProviderError)


def test_tag_helpers() -> None:
    assert id3_key("F# minor") == "F#m"
    assert id3_key("C major") == "C"
    assert id3_key("Bb minor") == "Bbm"
    assert id3_key("g") == "G"
    assert id3_key("H minor") is None
    assert id3_key(None) is None
    assert genres("lofi chill piano, vinyl crackle") == ["Lofi Chill Piano", "Vinyl Crackle"]
    assert genres("EDM, hip-hop, edm, lo-fi, jazz") == ["EDM", "Hip-Hop", "Lo-Fi"]
    long_phrase = "a slow song about the sea and the sky at night, ambient"
    assert genres(long_phrase) == ["Ambient"]
    assert genres(None) == []


# -- duplicates ------------------------------------------------------------------------


async def test_the_same_track_twice_makes_one_file_and_one_download(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    first = await download_track(generation, library, session=http)
    second = await download_track(generation, library, session=http)

    assert first.already_present is False
    assert second.already_present is True
    assert second.path == first.path
    assert second.bytes == first.bytes
    assert files_under(library) == [first.path]
    assert audio_requests(sandbox, generation.id) == 1


async def test_a_renamed_track_is_still_recognised_by_its_id_tag(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)
    first = await download_track(generation, library, session=http)

    renamed = generation.model_copy(update={"title": "A Brand New Title"})
    second = await download_track(renamed, library, also_write=("json",), session=http)

    assert second.already_present is True
    assert second.path == first.path
    assert second.sidecars == (first.path.with_suffix(".json"),)
    assert files_under(library) == sorted([first.path, first.path.with_suffix(".json")])
    assert audio_requests(sandbox, generation.id) == 1


async def test_concurrent_downloads_of_one_track_keep_one_file(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    results = await asyncio.gather(
        *(download_track(generation, library, session=http) for _ in range(4))
    )

    assert {r.path for r in results} == {results[0].path}
    assert files_under(library) == [results[0].path]


async def test_two_tracks_with_one_title_get_numbered_names(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    one = (await seeded(sandbox, http)).model_copy(update={"title": "Same Name"})
    two = (await seeded(sandbox, http, seed=7)).model_copy(update={"title": "Same Name"})
    three = (await seeded(sandbox, http, seed=8)).model_copy(update={"title": "Same Name"})
    album = {"album": "Mix"}

    first = await download_track(one, library, **album, session=http)
    second = await download_track(two, library, **album, session=http)
    third = await download_track(three, library, **album, session=http)
    again = await download_track(two, library, **album, session=http)

    assert first.path.name == "Same Name.mp3"
    assert second.path.name == "Same Name (2).mp3"
    assert third.path.name == "Same Name (3).mp3"
    assert again.path == second.path
    assert again.already_present is True
    assert read_identity(second.path) == (two.id, "finetuning")


async def test_a_foreign_file_with_the_name_is_left_alone(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = (await seeded(sandbox, http)).model_copy(update={"title": "Mine"})
    folder = library / "Finetuning" / "Mix"
    folder.mkdir(parents=True)
    foreign = folder / "Mine.mp3"
    foreign.write_bytes(b"the user's own file")

    result = await download_track(generation, library, album="Mix", session=http)

    assert result.path.name == "Mine (2).mp3"
    assert foreign.read_bytes() == b"the user's own file"


# -- sidecars --------------------------------------------------------------------------


async def test_json_and_lrc_sidecars(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http, duration=65)

    result = await download_track(
        generation,
        library,
        also_write=("json", "lrc"),
        lyrics="First line\nSecond line",
        session=http,
    )

    json_path = result.path.with_suffix(".json")
    lrc_path = result.path.with_suffix(".lrc")
    assert result.sidecars == (json_path, lrc_path)
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["id"] == generation.id
    assert document["provider"] == "finetuning"
    assert document["file"] == result.path.name
    assert document["audioUrl"] == generation.audio_url
    lrc = lrc_path.read_text(encoding="utf-8").splitlines()
    assert lrc[:4] == [
        f"[ti:{generation.title}]",
        "[ar:Finetuning.ai]",
        f"[al:{result.path.parent.name}]",
        "[length:01:05]",
    ]
    assert lrc[4:] == ["[00:00.00]First line", "Second line"]
    assert files_under(library) == sorted([result.path, json_path, lrc_path])


async def test_lrc_without_lyrics_writes_nothing(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    result = await download_track(generation, library, also_write=("lrc",), session=http)

    assert result.sidecars == ()
    assert files_under(library) == [result.path]


# -- failures leave nothing ------------------------------------------------------------

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback HTTP/1.1 server written by hand, so each answer can break exactly."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.url = ""

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        # Stalling handlers are cut short (Server.close_clients() needs Python 3.13).
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            self.requests.append(target)
            await self.routes[target.split("?", 1)[0]](writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


def response_head(status: str, content_type: str, length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


SAMPLE_MP3 = mp3_bytes(3.0, title="x")


def answer(
    status: str = "200 OK",
    content_type: str = "audio/mpeg",
    body: bytes = SAMPLE_MP3,
    *,
    length: int | None = -1,
    send: int | None = None,
    stall: float = 0.0,
) -> Handler:
    """A handler: head (Content-Length = len(body) unless given), `send` bytes, then close."""

    async def handle(writer: asyncio.StreamWriter) -> None:
        announced = len(body) if length == -1 else length
        writer.write(response_head(status, content_type, announced))
        sent = body if send is None else body[:send]
        for start in range(0, len(sent), 8192):
            writer.write(sent[start : start + 8192])
            await writer.drain()
        if stall:
            await asyncio.sleep(stall)

    return handle


@pytest.fixture
async def origin() -> AsyncIterator[RawServer]:
    server = await RawServer().start()
    yield server
    await server.close()


def generation_at(url: str, title: str = "Broken") -> Generation:
    return Generation.model_validate(
        {
            "id": "3f0c8a9e-0000-4000-8000-000000000001",
            "status": "completed",
            "title": title,
            "prompt": "glitch",
            "audioUrl": url,
            "completedAt": "2025-01-15T10:30:00Z",
        }
    )


FAILURES = {
    "half the body, then closed": (answer(send=len(SAMPLE_MP3) // 2), "broke off"),
    "404": (answer("404 Not Found", "application/json", b'{"error":"nope"}'), "HTTP 404"),
    "text/html": (answer(content_type="text/html", body=b"<html>login</html>"), "text/html"),
    "announced over max_bytes": (answer(), "announces"),
    "over max_bytes without a length": (answer(length=None), "more than the limit"),
    "octet-stream that is not MP3": (
        answer(content_type="application/octet-stream", body=b"PK\x03\x04" + b"0" * 500),
        "not MP3",
    ),
    "audio/mpeg holding HTML": (answer(body=b"<!DOCTYPE html>" * 40), "not MP3"),
    "MPEG-looking bytes that do not play": (
        answer(body=b"\xff\xfb" + b"\x00" * 600),
        "playable MP3",
    ),
    "500": (answer("500 Internal Server Error", "text/plain", b"oops"), "HTTP 500"),
}
RETRIED = {"half the body, then closed", "500"}  # transient: tried FAST_RETRY.attempts times


@pytest.mark.parametrize("case", list(FAILURES))
async def test_a_failed_download_leaves_nothing_behind(
    http: aiohttp.ClientSession, origin: RawServer, library: Path, case: str
) -> None:
    handler, message = FAILURES[case]
    origin.routes["/a.mp3"] = handler
    small_limit = "max_bytes" in case

    with pytest.raises(DownloadError, match=message) as caught:
        await download_track(
            generation_at(origin.url + "/a.mp3?token=s3cr3t"),
            library,
            max_bytes=1000 if small_limit else 50 * 2**20,
            timeout=5,
            retry=FAST_RETRY,
            session=http,
        )

    assert files_under(library) == []
    assert entries(library) == []  # the album folders it made are gone too
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.code == "DOWNLOAD_FAILED"
    expected_attempts = FAST_RETRY.attempts if case in RETRIED else 1
    assert caught.value.attempts == expected_attempts
    assert len(origin.requests) == expected_attempts


async def test_octet_stream_that_is_mp3_is_accepted(
    http: aiohttp.ClientSession, origin: RawServer, library: Path
) -> None:
    origin.routes["/a.mp3"] = answer(content_type="application/octet-stream")

    result = await download_track(generation_at(origin.url + "/a.mp3"), library, session=http)

    assert MP3(result.path).info.length == pytest.approx(3.0, abs=0.05)


async def test_a_stalled_body_times_out_and_leaves_nothing(
    http: aiohttp.ClientSession, origin: RawServer, library: Path
) -> None:
    origin.routes["/a.mp3"] = answer(send=5000, stall=5)

    with pytest.raises(DownloadError, match=r"did not finish within 0\.3 s"):
        await download_track(
            generation_at(origin.url + "/a.mp3"),
            library,
            timeout=0.3,
            retry=FAST_RETRY,
            session=http,
        )

    assert files_under(library) == []


async def test_cancelling_mid_body_leaves_nothing(
    http: aiohttp.ClientSession, origin: RawServer, library: Path
) -> None:
    origin.routes["/a.mp3"] = answer(send=5000, stall=5)
    started = asyncio.Event()

    task = asyncio.create_task(
        download_track(
            generation_at(origin.url + "/a.mp3"),
            library,
            on_progress=lambda *_: started.set(),
            session=http,
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    parts = [p for p in files_under(library) if p.name.endswith(".part")]
    assert len(parts) == 1
    assert parts[0].name.startswith(".")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert files_under(library) == []
    assert entries(library) == []


async def test_a_dropped_connection_at_the_sandbox_leaves_nothing(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)
    sandbox.sandbox.faults.replace([FaultRule(route="GET /audio/*", drop_rate=1.0)])

    with pytest.raises(DownloadError, match="failed after 0 bytes"):
        await download_track(generation, library, session=http, retry=FAST_RETRY)

    assert files_under(library) == []
    sandbox.sandbox.faults.replace([])
    result = await download_track(generation, library, session=http)
    assert result.path.exists()


async def test_a_failure_keeps_folders_that_already_held_files(
    http: aiohttp.ClientSession, origin: RawServer, library: Path
) -> None:
    origin.routes["/ok.mp3"] = answer()
    origin.routes["/bad.mp3"] = answer("404 Not Found", "text/plain", b"no")
    kept = await download_track(
        generation_at(origin.url + "/ok.mp3", "Kept"), library, session=http
    )
    other = generation_at(origin.url + "/bad.mp3", "Lost").model_copy(update={"id": "other"})

    with pytest.raises(DownloadError):
        await download_track(other, library, session=http)

    assert files_under(library) == [kept.path]
    assert os.listdir(kept.path.parent) == [kept.path.name]


async def test_timed_lyrics_keep_their_own_timestamps(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, library: Path
) -> None:
    generation = await seeded(sandbox, http)

    result = await download_track(
        generation,
        library,
        also_write=("lrc",),
        lyrics="[00:01.50]Hello\n[00:04.00]Again",
        session=http,
    )

    lrc = result.sidecars[0].read_text(encoding="utf-8").splitlines()
    assert lrc[-2:] == ["[00:01.50]Hello", "[00:04.00]Again"]


async def test_part_files_left_by_a_killed_process_are_swept_but_live_ones_kept(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    track = sandbox.sandbox.add_track("Demo User", prompt="swept track", duration=6)
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
        generation = await client.get_generation(track.id)
    folder = library / "Finetuning" / "Swept"
    folder.mkdir(parents=True)
    stale = folder / ".ft-killed.part"
    stale.write_bytes(b"half a download")
    before_start = files._PROCESS_STARTED - 60
    os.utime(stale, (before_start, before_start))
    live = folder / ".ft-in-progress.part"  # another download of this process, still going
    live.write_bytes(b"being written")

    await download_track(generation, library, album="Swept", session=http)

    assert not stale.exists()
    assert live.exists()
