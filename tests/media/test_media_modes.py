"""File modes of delivered tracks: a media server running as another user must read them.

Jellyfin, Plex and Navidrome usually run as their own user. A download
written through `mkstemp` alone ends 0600 and is invisible to them, so files
must end with the mode a plain `open()` gives (0666 less the umask) or the
action's `file_mode`, and folders the download creates with 0777 less the
umask. The umask is process-wide: each test sets it and puts it back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.automation.loader import parse_config
from connector.automation.problems import ConfigError
from connector.delivery import files
from connector.delivery.download import download_track
from connector.delivery.errors import DownloadError
from connector.delivery.files import check_file_mode, current_umask
from connector.providers.finetuning.models import Generation
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e

ACCOUNT = "Demo User"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir(mode=0o750)
    os.chmod(folder, 0o750)  # the user's own folder: never changed by a download
    return folder


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test sets with `os.umask`."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


async def seeded(sandbox: SandboxHandle, **track: Any) -> Generation:
    """A completed track in the sandbox, read back through the API."""
    added = sandbox.sandbox.add_track(ACCOUNT, **track)
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.url}/v1/generations/{added.id}"
        async with http.get(url, headers={"X-API-Key": sandbox.api_key}) as response:
            assert response.status == 200
            return Generation.model_validate((await response.json())["data"])


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def audio_requests(sandbox: SandboxHandle, gen_id: str) -> int:
    return sum(1 for r in sandbox.sandbox.requests if r.path.endswith(f"/{gen_id}.mp3"))


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(
    ("mask", "file_mode", "folder_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
async def test_files_and_new_folders_follow_the_umask(
    http: aiohttp.ClientSession,
    sandbox: SandboxHandle,
    library: Path,
    mask: int,
    file_mode: int,
    folder_mode: int,
) -> None:
    generation = await seeded(sandbox, prompt="modes")
    os.umask(mask)

    result = await download_track(
        generation, library, album="Modes", also_write=("json", "lrc"), lyrics="la la", session=http
    )

    assert mode_of(result.path) == file_mode
    assert [mode_of(sidecar) for sidecar in result.sidecars] == [file_mode, file_mode]
    assert mode_of(result.path.parent) == folder_mode  # "Modes", made by this download
    assert mode_of(result.path.parent.parent) == folder_mode  # "Finetuning" too
    assert mode_of(library) == 0o750
    assert current_umask() == mask  # read, not changed


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("given", [0o640, "0640", "640", "0o640"])
async def test_file_mode_overrides_the_umask_for_files_and_sidecars(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path, given: int | str
) -> None:
    generation = await seeded(sandbox, prompt="explicit")
    os.umask(0o022)

    result = await download_track(
        generation,
        library,
        album="Explicit",
        also_write=("json", "lrc"),
        lyrics="la la",
        file_mode=given,
        session=http,
    )

    assert mode_of(result.path) == 0o640
    assert [mode_of(sidecar) for sidecar in result.sidecars] == [0o640, 0o640]
    # New folders get the mode plus search where it reads, whatever the umask.
    assert mode_of(result.path.parent) == 0o750


@pytest.mark.usefixtures("umask")
async def test_file_mode_0644_is_reachable_under_a_strict_umask(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    """umask 077 with file_mode 0644: a 0700 album folder would hide the 0644 file."""
    generation = await seeded(sandbox, prompt="strict umask")
    existing = library / "Finetuning"
    existing.mkdir()
    os.chmod(existing, 0o711)
    os.umask(0o077)

    result = await download_track(
        generation, library, album="Shared", file_mode=0o644, session=http
    )

    assert mode_of(result.path) == 0o644
    assert mode_of(result.path.parent) == 0o755  # created by this download
    assert mode_of(existing) == 0o711  # already there: left as the user set it


@pytest.mark.usefixtures("umask")
async def test_the_part_file_stays_private_until_the_rename(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    generation = await seeded(sandbox, prompt="private part", duration=30)
    os.umask(0o022)
    part_modes: set[int] = set()

    def look(_done: int, _total: int | None) -> None:
        for part in library.rglob(".ft-*.part"):
            part_modes.add(mode_of(part))

    result = await download_track(generation, library, on_progress=look, session=http)

    assert part_modes == {0o600}
    assert mode_of(result.path) == 0o644


@pytest.mark.usefixtures("umask")
async def test_a_track_already_there_keeps_its_mode_but_sidecars_get_the_new_one(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    generation = await seeded(sandbox, prompt="again")
    os.umask(0o022)
    first = await download_track(generation, library, session=http)
    os.chmod(first.path, 0o600)  # the user's choice, made after delivery

    again = await download_track(
        generation, library, also_write=("json",), file_mode=0o640, session=http
    )

    assert again.already_present is True
    assert mode_of(first.path) == 0o600
    assert [mode_of(sidecar) for sidecar in again.sidecars] == [0o640]


@pytest.mark.parametrize(
    "bad", [0o1777, 0o4755, -1, 644, 1000, "0o1777", "rw-r--r--", "0x1a4", "", "8", 4.5, True]
)
async def test_an_invalid_file_mode_is_refused_before_any_download(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path, bad: Any
) -> None:
    generation = await seeded(sandbox, prompt="bad mode")

    with pytest.raises(ValueError, match=r"file_mode .*0000 to 0777") as caught:
        await download_track(generation, library, file_mode=bad, session=http)

    assert repr(bad) in str(caught.value)
    assert audio_requests(sandbox, generation.id) == 0
    assert os.listdir(library) == []


def test_a_decimal_number_typed_for_octal_gets_a_hint() -> None:
    with pytest.raises(ValueError, match=r'got 644, which is 0o1204; .* quoted: "0644"'):
        check_file_mode(644)


def test_the_umask_is_read_without_proc_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux, os.umask is set and restored: the process keeps its mask."""
    monkeypatch.setattr(files, "_PROC_STATUS", "/nonexistent/status")
    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # restored after the read
    finally:
        os.umask(before)


# -- the action's option, as an automations file writes it -------------------------------


def action_options(tmp_path: Path, line: str) -> dict[str, Any]:
    config = parse_config(
        f"""
automations:
  - id: deliver
    triggers: [{{trigger: track_completed}}]
    actions:
      - action: download_track
        library: {tmp_path}
        {line}
"""
    )
    return dict(config.automations[0].actions[0].options)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('file_mode: "0644"', 0o644),
        ("file_mode: '640'", 0o640),
        ("file_mode: 0644", 0o644),  # YAML 1.1: a bare leading-zero number is octal
        ("file_mode: 0o600", 0o600),  # not a YAML 1.1 number: read as the string "0o600"
        ("file_mode: 420", 0o644),
        ("also_write: [json]", None),
    ],
)
def test_the_action_reads_file_mode_as_octal(tmp_path: Path, line: str, expected: int) -> None:
    assert action_options(tmp_path, line).get("file_mode") == expected


@pytest.mark.parametrize(
    "line",
    [
        "file_mode: 644",
        'file_mode: "01777"',
        'file_mode: "u=rw"',
        "file_mode: 4.5",
        "file_mode: yes",
    ],
)
def test_the_action_refuses_a_bad_file_mode_naming_the_field_and_range(
    tmp_path: Path, line: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        action_options(tmp_path, line)

    message = str(caught.value)
    assert "file_mode: must be permission bits from 0000 to 0777" in message
    assert "line 8" in message


async def test_the_mode_is_checked_before_the_audio_url(
    http: aiohttp.ClientSession,
    library: Path,
) -> None:
    """The mode is checked before the audio URL: a bad call never reaches the network."""
    pending = Generation.model_validate({"id": "g-1", "status": "processing"})

    with pytest.raises(ValueError, match="file_mode"):
        await download_track(pending, library, file_mode=0o7777, session=http)
    with pytest.raises(DownloadError, match="no audio URL"):
        await download_track(pending, library, file_mode=0o644, session=http)
