"""`ftconnect` commands end to end against the sandbox: output, JSON, exit codes 0/1/2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ft_cli_support import Cli, Terminal, run_main

from connector.cli import main as cli_module
from connector.cli import tracks
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation, GenerationRequest
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox
from connector.sandbox.records import Generation as SandboxGeneration

DEMO = "Demo User"


def _tracks(sandbox: SandboxHandle, *, public: bool) -> list[SandboxGeneration]:
    return [t for t in sandbox.sandbox.generations(DEMO) if t.is_public == public]


def _playlist_id(sandbox: SandboxHandle, name: str) -> str:
    return next(p.id for p in sandbox.sandbox.playlists(DEMO) if p.name == name)


def _posts(sandbox: SandboxHandle) -> list[str]:
    return [r.path for r in sandbox.sandbox.requests if r.method == "POST"]


def _generation(sandbox: SandboxHandle, generation_id: str) -> SandboxGeneration:
    generation = sandbox.sandbox.generation(generation_id)
    assert generation is not None
    return generation


def _size(path: Path) -> int:
    return path.stat().st_size


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# -- me, list, get ------------------------------------------------------------------------


async def test_me_shows_account_and_credits(cli: Cli) -> None:
    result = await cli("me")
    assert result.code == 0
    assert "Demo User <demo@sandbox.local>  plan: pro" in result.out
    assert "credits: 2000 left" in result.out


async def test_me_json_is_the_api_shape(cli: Cli) -> None:
    result = await cli("me", "--json")
    assert result.code == 0
    data = result.json()
    assert data["email"] == "demo@sandbox.local"
    assert data["limits"]["totalRemaining"] == 2000


async def test_list_prints_a_page_and_hints_at_the_next_offset(cli: Cli) -> None:
    result = await cli("list", "--limit", "2")
    assert result.code == 0
    assert len(result.out.splitlines()) == 2
    assert "re-run with --offset 2" in result.err


async def test_list_json_parses_and_filters_by_status(cli: Cli, sandbox: SandboxHandle) -> None:
    sandbox.sandbox.add_track(DEMO, status="processing")
    result = await cli("list", "--status", "processing", "--json")
    assert result.code == 0
    page = result.json()
    assert [g["status"] for g in page["generations"]] == ["processing"]
    assert page["hasMore"] is False
    assert "re-run" not in result.err


async def test_list_limit_out_of_range_exits_2_before_any_request(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("list", "--limit", "500")
    assert result.code == 2
    assert result.err.startswith("ftconnect: error: ")
    assert "limit: must be between 1 and 100" in result.err
    assert not [r for r in sandbox.sandbox.requests if r.path == "/v1/generations"]


async def test_server_validation_error_exits_2(cli: Cli, sandbox: SandboxHandle) -> None:
    # The client lets any offset >= 0 through; the server refuses this one.
    result = await cli("list", "--offset", "10000000000")
    assert result.code == 2
    assert "VALIDATION_ERROR" in result.err
    assert [r.status for r in sandbox.sandbox.requests if r.path == "/v1/generations"] == [400]


async def test_get_shows_one_generation(cli: Cli, sandbox: SandboxHandle) -> None:
    track = _tracks(sandbox, public=True)[0]
    result = await cli("get", track.id)
    assert result.code == 0
    assert f"id:        {track.id}" in result.out
    assert f"title:     {track.title}" in result.out
    assert f"/audio/{track.id}.mp3" in result.out


async def test_get_json_parses(cli: Cli, sandbox: SandboxHandle) -> None:
    track = _tracks(sandbox, public=True)[0]
    result = await cli("get", track.id, "--json")
    assert result.json()["id"] == track.id


async def test_get_unknown_id_exits_1(cli: Cli) -> None:
    result = await cli("get", "no-such-generation")
    assert result.code == 1
    assert result.out == ""
    assert "ftconnect: error: HTTP 404 NOT_FOUND" in result.err


async def test_missing_key_exits_1_and_says_how_to_set_one(cli: Cli) -> None:
    result = await cli("me", auth=False)
    assert result.code == 1
    assert "FINETUNING_API_KEY" in result.err


async def test_unknown_key_exits_1_with_a_doctor_hint(cli: Cli) -> None:
    result = await cli("me", key="ft_live_" + "0" * 32)
    assert result.code == 1
    assert "INVALID_API_KEY" in result.err
    assert "ftconnect doctor" in result.err


async def test_key_and_base_url_come_from_the_environment(
    sandbox: SandboxHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNING_API_KEY", sandbox.api_key)
    monkeypatch.setenv("FINETUNING_BASE_URL", sandbox.url)
    result = await run_main(capsys, "me")
    assert result.code == 0
    assert "Demo User" in result.out


async def test_verbose_logs_requests_with_the_key_redacted(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("-v", "me")
    assert result.code == 0
    assert f"-> GET {sandbox.url}/v1/me X-API-Key: ft_live_…" in result.err
    assert "<- 200 GET" in result.err
    assert sandbox.api_key not in result.err
    assert sandbox.api_key not in result.out


# -- generate -----------------------------------------------------------------------------


async def test_generate_waits_and_prints_the_finished_track(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("generate", "lofi", "chill", "piano", "--duration", "30", "--bpm", "80")
    assert result.code == 0
    made = sandbox.sandbox.generations(DEMO)[-1]
    assert made.prompt == "lofi chill piano"  # tags joined with spaces
    assert (made.requested_duration, made.bpm) == (30, 80)
    assert made.status == "completed"
    assert f"id:        {made.id}" in result.out
    assert "title:     Lofi Chill Piano" in result.out
    assert f"/audio/{made.id}.mp3" in result.out
    assert f"submitted {made.id}" in result.err
    assert "\r" not in result.err  # stderr is not a terminal: no progress line


async def test_generate_json_prints_the_completed_generation(cli: Cli) -> None:
    result = await cli("generate", "ambient", "--duration", "20", "--key", "Bb", "--json")
    assert result.code == 0
    data = result.json()
    assert data["status"] == "completed"
    assert data["parameters"]["keyscale"].startswith("A#")
    assert data["audioUrl"].endswith(f"{data['id']}.mp3")


async def test_generate_with_a_bad_duration_exits_2_and_sends_nothing(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("generate", "lofi", "--duration", "300")
    assert result.code == 2
    assert "duration: must be between 5 and 210 seconds (got 300)" in result.err
    assert _posts(sandbox) == []
    assert sandbox.sandbox.credits_spent(DEMO) == 0


async def test_generate_names_every_bad_field(cli: Cli, sandbox: SandboxHandle) -> None:
    result = await cli("generate", "x", "--bpm", "fast", "--key", "H", "--time-sig", "9")
    assert result.code == 2
    for field in ("bpm:", "key:", "timesignature:"):
        assert field in result.err
    assert _posts(sandbox) == []


async def test_generate_no_wait_returns_the_submitted_generation(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("generate", "drum", "and", "bass", "--no-wait", "--json")
    assert result.code == 0
    data = result.json()
    assert data["status"] == "pending"
    assert f"ftconnect get {data['id']}" in result.err
    polls = [r for r in sandbox.sandbox.requests if r.path == f"/v1/generations/{data['id']}"]
    assert polls == []


async def test_generate_webhook_implies_no_wait(cli: Cli, sandbox: SandboxHandle) -> None:
    result = await cli("generate", "synthwave", "--webhook", "http://127.0.0.1:9/hook")
    assert result.code == 0
    made = sandbox.sandbox.generations(DEMO)[-1]
    assert made.webhook == "http://127.0.0.1:9/hook"
    assert "status:    pending" in result.out
    assert not [r for r in sandbox.sandbox.requests if r.path == f"/v1/generations/{made.id}"]


async def test_generate_download_with_no_wait_is_a_usage_error(
    cli: Cli, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    result = await cli("generate", "x", "--no-wait", "--download", str(tmp_path))
    assert result.code == 2
    assert "--download" in result.err
    assert _posts(sandbox) == []


async def test_generate_download_saves_the_mp3_in_the_library(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    result = await cli(
        "generate", "rainy", "window", "--duration", "10", "--download", str(tmp_path)
    )
    assert result.code == 0
    saved = [line for line in result.out.splitlines() if line.startswith("saved:")]
    path = Path(saved[0].removeprefix("saved:").strip())
    assert path.parent.parent == tmp_path / "Finetuning"
    assert path.name == "Rainy Window.mp3"
    made = sandbox.sandbox.generations(DEMO)[-1]
    assert _size(path) >= len(sandbox.sandbox.audio_bytes(made))


async def test_generate_download_into_a_missing_folder_spends_no_credit(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    result = await cli("generate", "x", "--download", str(tmp_path / "nope"))
    assert result.code == 2
    assert "does not exist" in result.err
    assert _posts(sandbox) == []


async def test_generate_reads_lyrics_from_a_file(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    lyrics = tmp_path / "song.txt"
    lyrics.write_text("la la la\nsecond line\n", encoding="utf-8")
    result = await cli("generate", "pop", "--lyrics", f"@{lyrics}", "--no-wait")
    assert result.code == 0
    assert sandbox.sandbox.generations(DEMO)[-1].lyrics == "la la la\nsecond line\n"


async def test_generate_with_an_unreadable_lyrics_file_exits_2(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    result = await cli("generate", "pop", "--lyrics", f"@{tmp_path / 'missing.txt'}")
    assert result.code == 2
    assert "lyrics: cannot read" in result.err
    assert _posts(sandbox) == []


async def test_generate_that_fails_exits_1_with_the_reason(cli: Cli) -> None:
    result = await cli("generate", "glitch", "#fail")  # the sandbox fails tagged generations
    assert result.code == 1
    assert "failed: GPU job timed out after 240s" in result.err


async def test_generate_warns_when_the_server_clamps(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox rejects out-of-range values; make it look like a server that clamps instead.
    real_create = FinetuningClient.create_generation

    async def clamping_create(self: FinetuningClient, request: GenerationRequest) -> Generation:
        generation = await real_create(self, request)
        assert generation.parameters is not None
        generation.parameters.duration = 120
        return generation

    monkeypatch.setattr(FinetuningClient, "create_generation", clamping_create)
    result = await cli("generate", "long", "ambient", "--duration", "200", "--no-wait")
    assert result.code == 0
    assert "ftconnect: warning: duration clamped from 200 to 120" in result.err
    assert "bpm clamped" not in result.err


def test_clamp_warnings_compare_duration_and_bpm() -> None:
    request = GenerationRequest(tags="x", duration=200, bpm=190)
    generation = Generation.model_validate(
        {"id": "g", "status": "pending", "parameters": {"duration": 120, "bpm": 180}}
    )
    assert tracks.clamp_warnings(request, generation) == [
        "duration clamped from 200 to 120",
        "bpm clamped from 190 to 180",
    ]


async def test_generate_timeout_exits_1_and_says_to_check_later(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracks, "POLL_TIMEOUT", 0.2)
    async with run_sandbox(SandboxConfig(pending_delay=0.01, processing_delay=60)) as slow:
        result = await run_main(
            capsys, "--base-url", slow.url, "--api-key", slow.api_key, "generate", "slow"
        )
        made = slow.sandbox.generations(DEMO)[-1]
    assert result.code == 1
    assert f"check it later with `ftconnect get {made.id}`" in result.err
    assert "keeps running on the server" in result.err


async def test_generate_interrupted_says_the_credit_is_spent_and_exits_130(
    cli: Cli, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*_args: object, **_kwargs: object) -> Generation:
        raise KeyboardInterrupt

    monkeypatch.setattr(FinetuningClient, "wait_for_generation", interrupted)
    result = await cli("generate", "lofi")
    made = sandbox.sandbox.generations(DEMO)[-1]
    assert result.code == 130
    assert result.out.strip() == made.id
    assert "keeps running on the server" in result.err
    assert "credit is spent" in result.err


# -- download -----------------------------------------------------------------------------


async def test_download_to_an_output_file(cli: Cli, sandbox: SandboxHandle, tmp_path: Path) -> None:
    track = _tracks(sandbox, public=True)[0]
    target = tmp_path / "mine.mp3"
    result = await cli("download", track.id, "-o", str(target))
    assert result.code == 0
    assert result.out.strip() == str(target)
    assert target.read_bytes()[:3] == b"ID3"


async def test_download_into_a_library_json(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    track = _tracks(sandbox, public=False)[0]
    result = await cli("download", track.id, "--library", str(tmp_path), "--json")
    assert result.code == 0
    data = result.json()
    assert data["id"] == track.id
    assert Path(data["path"]).is_relative_to(tmp_path / "Finetuning")
    assert data["bytes"] == _size(Path(data["path"]))
    again = await cli("download", track.id, "--library", str(tmp_path), "--json")
    assert again.json()["alreadyPresent"] is True


async def test_download_defaults_to_slug_and_short_id_in_the_current_directory(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    track = _tracks(sandbox, public=True)[0]
    result = await cli("download", track.id)
    assert result.code == 0
    saved = Path(result.out.strip())
    assert saved.parent == tmp_path
    assert saved.name.endswith(f"-{track.id.replace('-', '')[:8]}.mp3")


async def test_download_of_an_unfinished_generation_exits_1(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    running = sandbox.sandbox.add_track(DEMO, status="processing")
    result = await cli("download", running.id, "--library", str(tmp_path))
    assert result.code == 1
    assert "is processing" in result.err
    assert "only a completed generation" in result.err
    assert _files(tmp_path) == []


async def test_download_output_must_be_an_mp3(cli: Cli, sandbox: SandboxHandle) -> None:
    result = await cli("download", "anything", "-o", "track.wav")
    assert result.code == 2
    assert "--output: must name an .mp3 file" in result.err
    assert sandbox.sandbox.requests == []


# -- delete -------------------------------------------------------------------------------


async def test_delete_with_yes_deletes(cli: Cli, sandbox: SandboxHandle) -> None:
    track = _tracks(sandbox, public=False)[0]
    result = await cli("delete", track.id, "--yes")
    assert result.code == 0
    assert result.out.split() == [track.id]
    assert _generation(sandbox, track.id).deleted


async def test_delete_partial_failure_warns_and_exits_0(cli: Cli, sandbox: SandboxHandle) -> None:
    track = _tracks(sandbox, public=False)[0]
    result = await cli("delete", track.id, "not-mine", "--yes", "--json")
    assert result.code == 0
    assert result.json() == {
        "deleted": [track.id],
        "errors": [{"id": "not-mine", "error": "Track not found or not owned by you"}],
    }
    assert "ftconnect: warning: not-mine: Track not found or not owned by you" in result.err


async def test_delete_where_nothing_succeeds_exits_1(cli: Cli) -> None:
    result = await cli("delete", "ghost-1", "ghost-2", "--yes")
    assert result.code == 1
    assert result.out == ""
    assert "ftconnect: error: nothing deleted" in result.err


async def test_delete_without_yes_refuses_when_stdin_is_not_a_terminal(
    cli: Cli, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    track = _tracks(sandbox, public=False)[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # a pipe: nobody to ask
    result = await cli("delete", track.id)
    assert result.code == 1
    assert "stdin is not a terminal" in result.err
    assert "--yes" in result.err
    assert _posts(sandbox) == []


async def test_delete_asks_and_deletes_on_yes(
    cli: Cli, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    track = _tracks(sandbox, public=False)[0]
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    result = await cli("delete", track.id)
    assert result.code == 0
    assert "Permanently delete 1 generation? This cannot be undone. [y/N]" in result.err
    assert _generation(sandbox, track.id).deleted


async def test_delete_asks_and_keeps_everything_on_no(
    cli: Cli, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    track = _tracks(sandbox, public=False)[0]
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    result = await cli("delete", track.id)
    assert result.code == 1
    assert "aborted: nothing deleted" in result.err
    assert _posts(sandbox) == []


async def test_delete_many_ids_is_chunked_by_100(cli: Cli, sandbox: SandboxHandle) -> None:
    ids = [sandbox.sandbox.add_track(DEMO).id for _ in range(150)]
    result = await cli("delete", *ids, "--yes")
    assert result.code == 0
    assert result.out.split() == ids
    assert _posts(sandbox) == ["/v1/generations/bulk-delete"] * 2


# -- playlists ----------------------------------------------------------------------------


async def test_playlists_text_and_json(cli: Cli) -> None:
    text = await cli("playlists")
    assert text.code == 0
    assert "Focus Beats" in text.out
    assert "public " in text.out
    listed = (await cli("playlists", "--json")).json()
    assert sorted(p["name"] for p in listed) == ["Focus Beats", "Inbox", "Public Picks"]


async def test_playlist_show_by_name_ignores_case(cli: Cli, sandbox: SandboxHandle) -> None:
    result = await cli("playlist", "show", "focus beats")
    assert result.code == 0
    assert result.out.startswith("Focus Beats  (private, 3 tracks")
    detail = (await cli("playlist", "show", "FOCUS BEATS", "--json")).json()
    assert detail["id"] == _playlist_id(sandbox, "Focus Beats")
    assert len(detail["tracks"]) == 3


async def test_playlist_unknown_name_exits_1_listing_the_names(cli: Cli) -> None:
    result = await cli("playlist", "show", "Gym")
    assert result.code == 1
    assert "no playlist is named 'Gym'" in result.err
    assert "'Focus Beats'" in result.err


async def test_playlist_add_by_name(cli: Cli, sandbox: SandboxHandle) -> None:
    outside = next(t for t in _tracks(sandbox, public=False) if t.id not in _focus_ids(sandbox))
    result = await cli("playlist", "add", "Focus Beats", outside.id)
    assert result.code == 0
    assert result.out.split() == [outside.id]
    assert outside.id in _focus_ids(sandbox)


def _focus_ids(sandbox: SandboxHandle) -> list[str]:
    playlist = sandbox.sandbox.playlist(_playlist_id(sandbox, "Focus Beats"))
    assert playlist is not None
    return playlist.track_ids


async def test_playlist_add_private_track_to_public_playlist_hints_and_exits_1(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    private = _tracks(sandbox, public=False)[0]
    result = await cli("playlist", "add", "Public Picks", private.id)
    assert result.code == 1
    assert f"{private.id}: Cannot add private track to public playlist" in result.err
    assert "make the track public in the web app first" in result.err
    assert "the API never changes" in result.err


async def test_playlist_add_partial_success_json_exits_0(cli: Cli, sandbox: SandboxHandle) -> None:
    public_outside = sandbox.sandbox.add_track(DEMO, is_public=True)
    private = _tracks(sandbox, public=False)[0]
    result = await cli("playlist", "add", "Public Picks", public_outside.id, private.id, "--json")
    assert result.code == 0
    assert result.json() == {
        "added": [public_outside.id],
        "errors": [{"trackId": private.id, "error": "Cannot add private track to public playlist"}],
    }
    assert "make the track public" in result.err


async def test_playlist_remove_json(cli: Cli, sandbox: SandboxHandle) -> None:
    first = _focus_ids(sandbox)[0]
    result = await cli("playlist", "remove", "Focus Beats", first, "--json")
    assert result.code == 0
    assert result.json() == {"removed": [first], "errors": []}
    assert first not in _focus_ids(sandbox)
    assert _generation(sandbox, first).deleted is False


async def test_playlist_remove_where_nothing_succeeds_exits_1(cli: Cli) -> None:
    result = await cli("playlist", "remove", "Focus Beats", "not-there")
    assert result.code == 1
    assert "not-there: Track not found in playlist or not authorized" in result.err


async def test_playlist_move_between_playlists_by_name(cli: Cli, sandbox: SandboxHandle) -> None:
    road_trip = sandbox.sandbox.add_playlist(DEMO, "Road Trip")
    track = _focus_ids(sandbox)[1]
    result = await cli("playlist", "move", "Focus Beats", "road trip", track)
    assert result.code == 0
    assert result.out.split() == [track]
    assert road_trip.track_ids == [track]
    assert track not in _focus_ids(sandbox)


async def test_playlist_move_to_the_same_playlist_is_refused(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    focus = _playlist_id(sandbox, "Focus Beats")
    track = _focus_ids(sandbox)[0]
    result = await cli("playlist", "move", "focus beats", focus, track)
    assert result.code == 2
    assert "DST: must differ from SRC" in result.err
    assert _posts(sandbox) == []


# -- doctor -------------------------------------------------------------------------------


async def test_doctor_reports_every_check_and_never_the_key(
    cli: Cli, sandbox: SandboxHandle
) -> None:
    result = await cli("doctor")
    assert result.code == 0
    assert "version:   ftconnect " in result.out
    assert f"base URL:  {sandbox.url} (from --base-url)" in result.out
    assert "API key:   ft_live_… (source: flag, --api-key)" in result.out
    assert "ok    /health" in result.out
    assert "ok    /v1/me    Demo User <demo@sandbox.local>, plan pro, 2000 credits left" in (
        result.out
    )
    assert "FAIL" not in result.out
    secret = sandbox.api_key.removeprefix("ft_live_")
    assert secret[:4] not in result.out + result.err


async def test_doctor_with_the_key_from_the_environment(
    sandbox: SandboxHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNING_API_KEY", sandbox.api_key)
    result = await run_main(capsys, "--base-url", sandbox.url, "doctor")
    assert result.code == 0
    assert "(source: env, $FINETUNING_API_KEY)" in result.out
    assert sandbox.api_key not in result.out


async def test_doctor_without_a_key_fails_the_key_checks(cli: Cli) -> None:
    result = await cli("doctor", auth=False)
    assert result.code == 1
    assert "API key:   (none) (source: none, nowhere)" in result.out
    assert "FAIL  API key" in result.out
    assert "ok    /health" in result.out
    assert "FAIL  /v1/me    not checked" in result.out
    assert "ftconnect: error: 2 checks failed" in result.err


async def test_doctor_with_a_revoked_key_fails_me(cli: Cli) -> None:
    unknown = "ft_live_" + "ab" * 16
    result = await cli("doctor", key=unknown)
    assert result.code == 1
    assert "FAIL  /v1/me    HTTP 401 INVALID_API_KEY" in result.out
    assert unknown not in result.out + result.err


async def test_doctor_with_a_malformed_key(cli: Cli) -> None:
    result = await cli("doctor", key="sk-not-a-finetuning-key")
    assert result.code == 1
    assert "FAIL  API key   the API key is malformed" in result.out
    assert "sk-not-a-finetuning-key" not in result.out + result.err


async def test_doctor_when_the_api_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = await run_main(capsys, "--base-url", "http://127.0.0.1:9", "doctor")
    assert result.code == 1
    assert "FAIL  /health   unreachable" in result.out


# -- help and version ---------------------------------------------------------------------


def test_an_installed_plugin_that_cannot_load_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Point:
        name = "shout"
        value = "broken_plugin.shout"

        def load(self) -> object:
            raise ModuleNotFoundError("No module named 'missing_dependency'")

    monkeypatch.setattr(
        "connector.automation.registry.entry_points",
        lambda *, group: [Point()] if group == "ftconnect.actions" else [],
    )
    monkeypatch.setattr("connector.automation.registry._REGISTRY", None)
    assert cli_module.main(["schema"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "ftconnect: error: plugin broken_plugin.shout (entry point 'shout' of "
        "ftconnect.actions) cannot be loaded: ModuleNotFoundError: No module named "
        "'missing_dependency'\n"
    )


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli_module._COMMANDS:
        assert command.split()[0] in out
    assert "examples:" in out


@pytest.mark.parametrize(
    "command",
    [
        ["me"],
        ["list"],
        ["get"],
        ["generate"],
        ["download"],
        ["delete"],
        ["playlists"],
        ["playlist"],
        ["playlist", "show"],
        ["playlist", "add"],
        ["playlist", "remove"],
        ["playlist", "move"],
        ["doctor"],
    ],
)
def test_every_command_help_has_a_description_and_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_module.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: ftconnect {' '.join(command)}" in out
    assert "example:\n  ftconnect " in out


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    cli_module.main(["generate", "--help"])
    out = capsys.readouterr().out
    assert "(default: 60)" in out
    assert "(default: 120)" in out
    cli_module.main(["list", "--help"])
    assert "(default: 20)" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(["list", "--status", "done"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ftconnect ")
