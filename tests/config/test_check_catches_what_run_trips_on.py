"""What a careless-user review found `check` passing and `run` then tripping on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connector.automation.loader import load_config, parse_config
from connector.automation.problems import ConfigError

STEP = """
    actions:
      - action: add_to_playlist
        playlist: X
        tracks: a
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, filename="a.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_cron_that_never_fires_is_a_problem_at_its_line() -> None:
    text = "automations:\n  - id: never\n    triggers: [{trigger: schedule, cron: '0 7 31 2 *'}]"
    assert _problems(text + STEP) == [
        "a.yaml, line 3: automations[0].triggers[0].cron: '0 7 31 2 *' never matches a real date"
    ]


def test_a_plain_http_public_url_is_refused_unless_on_loopback() -> None:
    head = "webhook:\n  listen: 127.0.0.1:8123\n  public_url: {url}\nautomations: []\n"
    (problem,) = _problems(head.format(url="http://music.example.net/hooks/finetuning"))
    assert problem.startswith("a.yaml, line 3: webhook.public_url: must be an https:// URL")
    config = parse_config(head.format(url="http://127.0.0.1:9/hooks/finetuning"), filename="a")
    assert config.webhook is not None
    assert config.webhook.public_url == "http://127.0.0.1:9/hooks/finetuning"
    # Loopback as the rest of the connector knows it (providers.hosts), not three spellings.
    for url in ("http://127.0.0.2:9/h", "http://localhost.:9/h", "http://app.localhost:9/h"):
        assert parse_config(head.format(url=url), filename="a").webhook is not None


def test_a_relative_library_is_relative_to_the_file_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub" / "lib").mkdir(parents=True)
    file = tmp_path / "sub" / "a.yaml"
    file.write_text(
        "automations:\n  - id: a\n    triggers: [{trigger: track_completed}]\n"
        "    actions:\n      - action: download_track\n        library: ./lib\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # ./lib does not exist here
    config = load_config(file)
    assert config.automations[0].actions[0].options["library"] == str(tmp_path / "sub" / "lib")


def test_run_on_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "w.yaml").write_text(
            f"webhook: {{listen: 127.0.0.1:{port}}}\nstate_dir: ./state\n"
            "automations:\n  - id: a\n    triggers: [{trigger: track_completed}]" + STEP,
            encoding="utf-8",
        )
        result = subprocess.run(
            [sys.executable, "-m", "connector.cli", "run", "w.yaml"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"webhook.listen 127.0.0.1:{port}: cannot listen there" in result.stderr


def test_an_option_written_at_the_top_level_is_pointed_to_its_section() -> None:
    text = "api_key: ft_live_0123456789abcdef0123456789abcdef\nautomations: []\n"
    (problem,) = _problems(text)
    assert problem == (
        "a.yaml, line 1: api_key is not a valid section (it is an option of 'finetuning:': "
        "indent it under that section)"
    )
    assert "0123456789abcdef" not in problem


def test_type_errors_say_what_they_got_in_yaml_words() -> None:
    text = (
        "automations:\n  - id: a\n    triggers: [{trigger: track_completed}]\n"
        "    actions:\n      - action: generate\n        tags: lofi\n        wait: yes please\n"
    )
    assert _problems(text) == [
        "a.yaml, line 7: automations[0].actions[0].wait: expected true or false (got 'yes please')"
    ]
