"""Where the key and the server come from, the same for every command; history without a
key; missing playlists in one pass; `check --json`, `doctor --json`; usage errors.

Every command here is the real `ftconnect` in its own process, against the sandbox on
loopback, with an environment cleared of FINETUNING_* unless a test sets them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.cli import bulk, parser
from connector.endpoint import resolve_endpoint
from connector.events import Event
from connector.journal.runs import REPLAYED, RUN_STATUSES, RUNNING
from connector.journal.store import Store
from connector.providers.finetuning.models import Generation, GenerationStatus
from connector.sandbox import SandboxConfig, SandboxHandle, run_sandbox

SCRIPT = Path(sys.executable).with_name("ftconnect")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "connector.cli"]
OTHER_KEY = "ft_live_" + "ab" * 16  # well-formed, known to no sandbox account
DEMO = "Demo User"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with run_sandbox(SandboxConfig(pending_delay=0.05, processing_delay=0.1)) as handle:
        yield handle


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def _environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNING_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    return env


async def ftconnect(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Done:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else _environment(),
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def run_until_running(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`ftconnect run ...` until it says "Running", then SIGTERM; (code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else _environment(),
    )
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                break  # it ended on its own (an error): the rest tells why
            seen.append(line)
            if line.startswith("Running "):
                process.send_signal(signal.SIGTERM)
                break
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, "".join(seen) + out.decode(), err.decode()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


AUTOMATIONS = """
automations:
  - id: file_it
    triggers: [{trigger: track_completed}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beats
        tracks: "{{ trigger.generation.id }}"
"""


def automations_file(tmp_path: Path, head: str = "", body: str = AUTOMATIONS) -> Path:
    poll = "poll: {idle_interval: 0.2, active_interval: 0.1}\n"
    return write(tmp_path / "a.yaml", head + poll + f"state_dir: {tmp_path / 'state'}\n" + body)


def _api_calls(sandbox: SandboxHandle) -> int:
    return sum(1 for r in sandbox.sandbox.requests if r.path.startswith("/v1/"))


# -- 1. one precedence: flag, then file, then environment ---------------------------------


@pytest.mark.parametrize(
    ("flag", "file", "env", "expected"),
    [
        ("F", "f", "e", ("F", "flag", "--api-key")),
        (None, "f", "e", ("f", "file", "finetuning.api_key in a.yaml")),
        (None, None, "e", ("e", "env", "$FINETUNING_API_KEY")),
        (None, None, None, (None, "none", "nowhere")),
        ("  ", None, "e", ("e", "env", "$FINETUNING_API_KEY")),  # blank is unset
    ],
)
def test_one_precedence_for_the_key(
    flag: str | None, file: str | None, env: str | None, expected: tuple[str | None, str, str]
) -> None:
    environ = {"FINETUNING_API_KEY": env} if env else {}
    endpoint = resolve_endpoint(
        flag_key=flag, flag_url=None, file_key=file, file_name="a.yaml", environ=environ
    )
    assert (endpoint.api_key, endpoint.key_source, endpoint.key_origin) == expected


@pytest.mark.parametrize(
    ("flag", "file", "env", "expected"),
    [
        ("http://f", "http://file", "http://e", ("http://f", "flag", "--base-url")),
        (None, "http://file", "http://e", ("http://file", "file", "finetuning.base_url in a.yaml")),
        (None, None, "http://e", ("http://e", "env", "$FINETUNING_BASE_URL")),
        (None, None, None, ("https://pub.finetuning.ai", "default", "the default")),
    ],
)
def test_one_precedence_for_the_server(
    flag: str | None, file: str | None, env: str | None, expected: tuple[str, str, str]
) -> None:
    environ = {"FINETUNING_BASE_URL": env} if env else {}
    endpoint = resolve_endpoint(
        flag_key=None, flag_url=flag, file_url=file, file_name="a.yaml", environ=environ
    )
    assert (endpoint.base_url, endpoint.base_url_source, endpoint.base_url_origin) == expected


async def test_run_uses_the_base_url_flag_and_the_key_from_the_environment(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path)  # no finetuning section at all
    code, out, err = await run_until_running(
        "--base-url",
        sandbox.url,
        "run",
        str(config),
        env=_environment(FINETUNING_API_KEY=sandbox.api_key),
    )
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"Server: {sandbox.url} (from --base-url); key: ft_live_… (from $FINETUNING_API_KEY)"
    )
    assert "embedded sandbox" not in out + err
    assert _api_calls(sandbox) > 0  # it really went there
    assert sandbox.api_key not in out + err


async def test_run_uses_the_environment_for_both(sandbox: SandboxHandle, tmp_path: Path) -> None:
    config = automations_file(tmp_path)
    env = _environment(FINETUNING_API_KEY=sandbox.api_key, FINETUNING_BASE_URL=sandbox.url)
    code, out, err = await run_until_running("run", str(config), env=env)
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"Server: {sandbox.url} (from $FINETUNING_BASE_URL); "
        "key: ft_live_… (from $FINETUNING_API_KEY)"
    )
    assert _api_calls(sandbox) > 0


async def test_the_file_wins_over_the_environment_and_the_flag_over_both(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(
        tmp_path, f"finetuning:\n  api_key: {sandbox.api_key}\n  base_url: {sandbox.url}\n"
    )
    ambient = _environment(FINETUNING_API_KEY=OTHER_KEY, FINETUNING_BASE_URL="http://127.0.0.1:9")
    code, out, err = await run_until_running("run", str(config), env=ambient)
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"Server: {sandbox.url} (from finetuning.base_url in a.yaml); "
        "key: ft_live_… (from finetuning.api_key in a.yaml)"
    )
    # The flag beats the file: doctor FILE shows what run FILE would use.
    done = await ftconnect("--api-key", OTHER_KEY, "doctor", str(config), "--json", env=ambient)
    data = done.json()
    assert data["api_key"] == {"value": "ft_live_…", "source": "flag", "origin": "--api-key"}
    assert data["base_url"]["source"] == "file"
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["config"]["ok"] is True
    assert "INVALID_API_KEY" in checks["/v1/me"]["detail"]  # the flag's key was the one used
    assert done.code == 1


async def test_a_key_flag_stands_in_for_an_unset_env_in_the_file(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path, "finetuning:\n  api_key: !env FINETUNING_API_KEY\n")
    flags = ("--api-key", sandbox.api_key, "--base-url", sandbox.url)
    done = await ftconnect(*flags, "check", str(config))
    assert done.code == 0, done.err
    assert "1 automation(s), all valid" in done.out
    code, out, err = await run_until_running(*flags, "run", str(config))
    assert code == 0, err
    assert "key: ft_live_… (from --api-key)" in out.splitlines()[0]
    # Without the flag the file's own reference is the problem it always was.
    unset = await ftconnect("--base-url", sandbox.url, "run", str(config))
    assert unset.code == 2
    assert "finetuning.api_key: environment variable FINETUNING_API_KEY is not set" in unset.err


async def test_no_key_anywhere_is_the_embedded_sandbox_said_on_stderr(tmp_path: Path) -> None:
    config = automations_file(tmp_path)
    code, out, err = await run_until_running("run", str(config))
    assert code == 0, err
    assert out.startswith("No Finetuning.ai API key configured: running against the embedded")
    assert (
        "ftconnect: warning: no API key from --api-key, finetuning.api_key in a.yaml or "
        "$FINETUNING_API_KEY: running on the embedded sandbox"
    ) in err


async def test_a_server_named_without_a_key_is_refused_not_swapped_for_the_sandbox(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path)
    done = await ftconnect("--base-url", sandbox.url, "run", str(config))
    assert done.code == 2
    assert f"a server is named ({sandbox.url} from --base-url) but there is no API key" in (
        done.err
    )
    assert _api_calls(sandbox) == 0
    env = _environment(FINETUNING_BASE_URL=sandbox.url)
    done = await ftconnect("run", str(config), env=env)
    assert done.code == 2
    assert "from $FINETUNING_BASE_URL" in done.err


async def test_a_bad_base_url_flag_is_one_clear_line(tmp_path: Path) -> None:
    config = automations_file(tmp_path)
    done = await ftconnect("--api-key", OTHER_KEY, "--base-url", "not-a-url", "run", str(config))
    assert done.code == 2
    assert "the base URL from --base-url must be an http:// or https:// URL" in done.err
    assert "Traceback" not in done.err


async def test_api_commands_keep_flag_over_environment(sandbox: SandboxHandle) -> None:
    env = _environment(FINETUNING_API_KEY=OTHER_KEY, FINETUNING_BASE_URL="http://127.0.0.1:9")
    done = await ftconnect(
        "--api-key", sandbox.api_key, "--base-url", sandbox.url, "me", "--json", env=env
    )
    assert done.code == 0, done.err
    assert done.json()["email"] == "demo@sandbox.local"


async def test_run_names_the_tempolor_token_source(sandbox: SandboxHandle, tmp_path: Path) -> None:
    head = (
        f"finetuning:\n  api_key: {sandbox.api_key}\n  base_url: {sandbox.url}\n"
        f"tempolor:\n  api_token: !secret tempolor_token\n  base_url: {sandbox.tempolor_url}\n"
    )
    write(tmp_path / "secrets.yaml", f"tempolor_token: {sandbox.tempolor_token}\n")
    config = automations_file(tmp_path, head)
    code, out, err = await run_until_running("run", str(config))
    assert code == 0, err
    assert out.splitlines()[1] == (
        f"TemPolor: {sandbox.tempolor_url} (from tempolor.base_url in a.yaml); "
        "token: … (from tempolor.api_token in a.yaml)"
    )
    assert sandbox.tempolor_token not in out + err


# -- 2. history needs no key --------------------------------------------------------------


def _journal(state: Path) -> None:
    seeded = Event.for_generation(
        Generation(id="old-1", status=GenerationStatus.COMPLETED, title="Already There"),
        source="seed",
    )
    fired = Event.for_generation(
        Generation(id="new-1", status=GenerationStatus.COMPLETED, title="Fresh One"),
        source="poll",
    )
    with Store.open(state) as store:
        store.record_event(seeded)
        assert store.record_event(fired, runs=[("run-1", "file_it")])
        store.finish_run("run-1", "succeeded")


@pytest.mark.parametrize(
    "head",
    [
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\n",
        "finetuning:\n  api_key: !secret finetuning_key\n",  # and no secrets.yaml
    ],
)
async def test_runs_and_events_read_the_journal_without_the_secrets(
    tmp_path: Path, head: str
) -> None:
    config = automations_file(tmp_path, head)
    _journal(tmp_path / "state")
    events = await ftconnect("events", str(config))
    assert events.code == 0, events.err
    runs = await ftconnect("runs", str(config), "--json")
    assert runs.code == 0, runs.err
    assert [r["run_id"] for r in runs.json()] == ["run-1"]
    replay = await ftconnect("replay", "run-1", str(config))
    assert replay.code == 0, replay.err


async def test_a_relative_state_dir_is_found_beside_the_file_without_the_key(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    write(
        folder / "a.yaml",
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\nstate_dir: journal\n" + AUTOMATIONS,
    )
    _journal(folder / "journal")
    done = await ftconnect("runs", "conf/a.yaml", cwd=tmp_path)
    assert done.code == 0, done.err
    assert "run-1" in done.out


async def test_a_state_dir_that_cannot_be_resolved_is_still_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "a.yaml", "state_dir: !env NO_SUCH_FOLDER_VARIABLE\n")
    done = await ftconnect("runs", str(config))
    assert done.code == 2
    assert "state_dir" in done.err
    assert "NO_SUCH_FOLDER_VARIABLE" in done.err


async def test_events_text_marks_seeded_apart_from_fired(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _journal(state)
    done = await ftconnect("events", "--state-dir", str(state))
    assert done.code == 0, done.err
    lines = {line.split()[-1]: line.split() for line in done.out.splitlines()}
    assert lines["There"][3] == "seeded"
    assert lines["One"][3] == "fired"
    assert "seeded: already there at the first start, recorded without firing" in done.err
    as_json = await ftconnect("events", "--state-dir", str(state), "--json")
    assert {e["generation"]["id"]: e["source"] for e in as_json.json()} == {
        "old-1": "seed",
        "new-1": "poll",
    }


# -- 3. missing playlists: in the same pass, and a warning at start -----------------------

BROKEN = """
automations:
  - id: file_it
    triggers: [{trigger: track_completed}]
    actions:
      - action: add_to_playlist
        playlist: Focus Beat
        tracks: "{{ trigger.generation.id }}"
      - action: move_tracks
        from: focus beats
        to: Gym
        tracks: "{{ trigger.generation.id }}"
      - action: remove_from_playlist
        playlist: "{{ trigger.generation.title }}"
        tracks: "{{ trigger.generation.id }}"
      - action: generate
        tags: lofi
        durration: 30
"""


async def test_check_reports_missing_playlists_with_the_other_problems(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path, body=BROKEN)
    env = _environment(FINETUNING_API_KEY=sandbox.api_key, FINETUNING_BASE_URL=sandbox.url)
    done = await ftconnect("check", str(config), env=env)
    assert done.code == 2
    lines = done.err.splitlines()
    assert lines[0] == (
        "a.yaml, line 9: automations[0].actions[0].playlist: no playlist is named 'Focus Beat' "
        "(did you mean 'Focus Beats'?)"
    )
    assert lines[1].startswith(
        "a.yaml, line 13: automations[0].actions[1].to: no playlist is named 'Gym' "
        "(your playlists: 'Focus Beats', "
    )
    assert lines[2] == (
        "a.yaml, line 20: automations[0].actions[3].durration is not a valid option for "
        "'generate' (did you mean 'duration'?)"
    )
    assert len(lines) == 3
    # The key checked once, then one list request: names are matched locally, not one
    # lookup per reference.
    assert [r.path for r in sandbox.sandbox.requests if r.path.startswith("/v1/")] == [
        "/v1/me",
        "/v1/playlists",
    ]


async def test_check_offline_or_without_a_key_does_not_look_playlists_up(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path, body=BROKEN.replace("durration", "duration"))
    offline = await ftconnect(
        "--api-key", sandbox.api_key, "--base-url", sandbox.url, "check", str(config), "--offline"
    )
    assert offline.code == 0, offline.err
    nowhere = await ftconnect("check", str(config))
    assert nowhere.code == 0
    assert "playlists not looked up: no API key" in nowhere.err
    assert _api_calls(sandbox) == 0


async def test_check_says_when_the_lookup_itself_failed(tmp_path: Path) -> None:
    config = automations_file(tmp_path)
    done = await ftconnect(
        "--api-key", OTHER_KEY, "--base-url", "http://127.0.0.1:9", "check", str(config)
    )
    assert done.code == 1
    assert "playlists not checked on http://127.0.0.1:9 (from --base-url" in done.err
    assert "--offline skips this check" in done.err


async def test_run_warns_at_start_about_each_missing_playlist_and_runs(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = automations_file(tmp_path, body=BROKEN.replace("durration", "duration"))
    env = _environment(FINETUNING_API_KEY=sandbox.api_key, FINETUNING_BASE_URL=sandbox.url)
    code, out, err = await run_until_running("run", str(config), env=env)
    assert code == 0, err
    assert "Running 1 automation(s): file_it" in out
    warnings = [line for line in err.splitlines() if line.startswith("ftconnect: warning:")]
    assert len(warnings) == 2
    assert warnings[0] == (
        "ftconnect: warning: a.yaml, line 9: automations[0].actions[0].playlist: no playlist is "
        "named 'Focus Beat' (did you mean 'Focus Beats'?); steps naming it fail until it exists"
    )
    assert warnings[1].startswith(
        "ftconnect: warning: a.yaml, line 13: automations[0].actions[1].to: no playlist is named "
        "'Gym' (your playlists: 'Focus Beats', "
    )
    assert warnings[1].endswith("; steps naming it fail until it exists")


# -- 4. check --json and doctor --json ----------------------------------------------------


async def test_check_json_lists_every_problem(sandbox: SandboxHandle, tmp_path: Path) -> None:
    config = automations_file(tmp_path, body=BROKEN)
    flags = ("--api-key", sandbox.api_key, "--base-url", sandbox.url)
    done = await ftconnect(*flags, "check", str(config), "--json")
    assert done.code == 2
    data = done.json()
    assert data["file"] == str(config)
    assert data["valid"] is False
    assert data["automations"] == 1
    assert data["playlists"] == {"checked": True, "reason": None}
    assert data["problems"][0] == {
        "file": "a.yaml",
        "line": 9,
        "path": "automations[0].actions[0].playlist",
        "message": "no playlist is named 'Focus Beat' (did you mean 'Focus Beats'?)",
    }
    assert [p["line"] for p in data["problems"]] == [9, 13, 20]
    assert done.err == ""


async def test_check_json_of_a_valid_file(tmp_path: Path) -> None:
    config = automations_file(tmp_path)
    done = await ftconnect("check", str(config), "--json")
    assert done.code == 0, done.err
    assert done.json() == {
        "file": str(config),
        "valid": True,
        "automations": 1,
        "problems": [],
        "playlists": {
            "checked": False,
            "reason": "no API key from --api-key, finetuning.api_key in a.yaml or "
            "$FINETUNING_API_KEY",
        },
    }


async def test_check_json_of_a_missing_file(tmp_path: Path) -> None:
    done = await ftconnect("check", str(tmp_path / "nope.yaml"), "--json")
    assert done.code == 2
    data = done.json()
    assert data["valid"] is False
    assert data["automations"] is None
    assert data["problems"][0]["message"].startswith("cannot be read")


async def test_doctor_json(sandbox: SandboxHandle) -> None:
    done = await ftconnect(
        "--api-key", sandbox.api_key, "--base-url", sandbox.url, "doctor", "--json"
    )
    assert done.code == 0, done.err
    data = done.json()
    assert data["ok"] is True
    assert data["file"] is None
    assert data["base_url"] == {"value": sandbox.url, "source": "flag", "origin": "--base-url"}
    assert data["api_key"] == {"value": "ft_live_…", "source": "flag", "origin": "--api-key"}
    assert [c["name"] for c in data["checks"]] == ["API key", "/health", "/v1/me"]
    assert all(c["ok"] for c in data["checks"])
    assert sandbox.api_key not in done.out


async def test_doctor_file_uses_the_file_and_reports_its_first_problem(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    head = f"finetuning:\n  api_key: !secret finetuning_key\n  base_url: {sandbox.url}\n"
    write(tmp_path / "secrets.yaml", f"finetuning_key: {sandbox.api_key}\n")
    config = automations_file(tmp_path, head, BROKEN)
    done = await ftconnect("doctor", str(config))
    assert done.code == 1
    assert f"base URL:  {sandbox.url} (from finetuning.base_url in a.yaml)" in done.out
    assert "API key:   ft_live_… (source: file, finetuning.api_key in a.yaml)" in done.out
    assert "FAIL  config    a.yaml, line 23: automations[0].actions[3].durration" in done.out
    assert "ok    /v1/me    Demo User" in done.out
    assert sandbox.api_key not in done.out + done.err


# -- 5. smaller: run statuses, option typos, already in the playlist ----------------------


def test_runs_status_choices_are_the_journal_statuses() -> None:
    assert set(parser.RUN_STATUSES) == set(RUN_STATUSES) | {RUNNING, REPLAYED}


async def test_runs_with_an_unknown_status_exits_2_naming_the_allowed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _journal(state)
    done = await ftconnect("runs", "--state-dir", str(state), "--status", "bogus")
    assert done.code == 2
    assert "invalid choice: 'bogus'" in done.err
    for status in ("running", "succeeded", "failed", "skipped", "replayed"):
        assert f"'{status}'" in done.err
    assert done.out == ""


async def test_an_option_typo_gets_a_did_you_mean() -> None:
    done = await ftconnect("generate", "--durration", "30", "lofi")
    assert done.code == 2
    assert done.err.splitlines()[-1] == (
        "ftconnect generate: error: unrecognized arguments: --durration (did you mean --duration?)"
    )
    assert done.err.startswith("usage: ftconnect generate")
    nested = await ftconnect("playlist", "add", "--jsno", "P", "x")
    assert "--jsno (did you mean --json?)" in nested.err


async def test_a_global_option_after_the_command_says_where_it_goes() -> None:
    done = await ftconnect("me", "--api-key", OTHER_KEY)
    assert done.code == 2
    assert "--api-key (a global option: put it before the command" in done.err
    assert OTHER_KEY not in done.err  # its value may be a key: never repeated


def test_already_in_playlist_is_the_runtime_reason() -> None:
    from connector.actions._common import ALREADY_IN_PLAYLIST

    from connector.sandbox.playlists import ALREADY_IN_PLAYLIST as SANDBOX_REASON

    assert bulk.ALREADY_IN_PLAYLIST == ALREADY_IN_PLAYLIST == SANDBOX_REASON


async def test_playlist_add_of_a_track_already_there_succeeds(sandbox: SandboxHandle) -> None:
    focus = next(p for p in sandbox.sandbox.playlists(DEMO) if p.name == "Focus Beats")
    there = focus.track_ids[0]
    flags = ("--api-key", sandbox.api_key, "--base-url", sandbox.url)
    done = await ftconnect(*flags, "playlist", "add", "Focus Beats", there)
    assert done.code == 0, done.err
    assert f"{there}: already in the playlist" in done.err
    assert "added 0 of 1 (1 already in the playlist)" in done.err
    assert "error" not in done.err
    as_json = await ftconnect(*flags, "playlist", "add", "Focus Beats", there, "--json")
    assert as_json.code == 0
    assert as_json.json() == {"added": [], "errors": [], "alreadyInPlaylist": [there]}
    mixed = await ftconnect(*flags, "playlist", "add", "Focus Beats", there, "not-a-track")
    assert mixed.code == 0
    assert "not-a-track:" in mixed.err


async def test_check_tries_the_key_even_when_no_action_names_a_playlist(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    config = tmp_path / "a.yaml"
    config.write_text(
        "automations:\n  - id: a\n    triggers: [{trigger: track_completed}]\n"
        "    actions:\n      - action: generate\n        tags: lofi\n",
        encoding="utf-8",
    )
    revoked = "ft_live_" + "0" * 32
    env = _environment(FINETUNING_API_KEY=revoked, FINETUNING_BASE_URL=sandbox.url)
    done = await ftconnect("check", str(config), env=env)
    assert done.code == 1, done.err
    assert "INVALID_API_KEY" in done.err
    assert revoked not in done.err + done.out


async def test_get_and_list_json_carry_the_provider(sandbox: SandboxHandle, tmp_path: Path) -> None:
    env = _environment(FINETUNING_API_KEY=sandbox.api_key, FINETUNING_BASE_URL=sandbox.url)
    listed = await ftconnect("list", "--json", env=env)
    assert listed.code == 0, listed.err
    generations = json.loads(listed.out)["generations"]
    assert generations
    assert {g["provider"] for g in generations} == {"finetuning"}
    got = await ftconnect("get", generations[0]["id"], "--json", env=env)
    assert json.loads(got.out)["provider"] == "finetuning"
