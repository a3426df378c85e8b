"""!env and !secret: values come from the environment and secrets.yaml, and never leak."""

from __future__ import annotations

from pathlib import Path

import pytest
from ft_config_support import parse, problems

from connector.automation.model import ProviderConfig, SecretValue, WebhookConfig
from connector.automation.problems import ConfigError

KEY = "ft_live_5ec12e7c0ffee0000000000000000042"
TOKEN = "wh_t0k3n_ab12cd34"


def write_secrets(folder: Path, text: str) -> None:
    (folder / "secrets.yaml").write_text(text, encoding="utf-8")


def test_env_reads_the_variable() -> None:
    config = parse(
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\n", environ={"FINETUNING_API_KEY": KEY}
    )

    assert config.finetuning.api_key == KEY


def test_an_unset_env_variable_is_named_with_its_line() -> None:
    assert problems(
        """
        finetuning:
          base_url: https://pub.finetuning.ai
          api_key: !env FINETUNING_API_KEY
        """
    ) == [
        "automations.yaml, line 4: finetuning.api_key: environment variable "
        "FINETUNING_API_KEY is not set (read by !env)"
    ]


def test_env_takes_exactly_one_name() -> None:
    assert problems("finetuning:\n  api_key: !env\n  base_url: !env A B\n") == [
        "automations.yaml, line 2: finetuning.api_key: !env takes one name (got '')",
        "automations.yaml, line 3: finetuning.base_url: !env takes one name (got 'A B')",
    ]


def test_env_on_a_mapping_is_refused() -> None:
    assert problems("finetuning:\n  api_key: !env {name: X}\n") == [
        "automations.yaml, line 2: finetuning.api_key: !env takes one name (got a mapping)"
    ]


def test_secret_reads_secrets_yaml_beside_the_file(tmp_path: Path) -> None:
    write_secrets(tmp_path, f"finetuning_key: {KEY}\nwebhook_token: {TOKEN}\nport: 8123\n")

    config = parse(
        """
        finetuning:
          api_key: !secret finetuning_key
        webhook:
          listen: 127.0.0.1:8123
          token: !secret webhook_token
        """,
        base_dir=tmp_path,
    )

    assert config.finetuning.api_key == KEY
    assert config.webhook is not None
    assert config.webhook.token == TOKEN


def test_a_missing_secret_names_the_closest(tmp_path: Path) -> None:
    write_secrets(tmp_path, f"finetuning_api_key: {KEY}\n")

    assert problems("finetuning:\n  api_key: !secret finetuning_key\n", base_dir=tmp_path) == [
        "automations.yaml, line 2: finetuning.api_key: secret 'finetuning_key' is not in "
        "secrets.yaml (did you mean 'finetuning_api_key'?)"
    ]


def test_a_missing_secrets_file_is_reported_at_each_use(tmp_path: Path) -> None:
    assert problems(
        """
        finetuning:
          api_key: !secret finetuning_key
        tempolor:
          api_token: !secret tempolor_token
        """,
        base_dir=tmp_path,
    ) == [
        "automations.yaml, line 3: finetuning.api_key: secret 'finetuning_key' needs a "
        f"secrets.yaml beside the file (none in {tmp_path})",
        "automations.yaml, line 5: tempolor.api_token: secret 'tempolor_token' needs a "
        f"secrets.yaml beside the file (none in {tmp_path})",
    ]


def test_a_broken_secrets_file_is_reported_once_with_its_own_line(tmp_path: Path) -> None:
    write_secrets(tmp_path, "a: 1\n b: 2\n")

    assert problems(
        """
        poll:
          backfill: maybe
        finetuning:
          api_key: !secret a
          base_url: !secret b
        """,
        base_dir=tmp_path,
    ) == [
        "automations.yaml, line 3: poll.backfill: must be true or false (got 'maybe')",
        "secrets.yaml, line 2: invalid YAML: mapping values are not allowed here",
    ]


def test_a_secrets_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    write_secrets(tmp_path, "- a\n- b\n")

    assert problems("finetuning:\n  api_key: !secret a\n", base_dir=tmp_path) == [
        "secrets.yaml, line 1: must be a mapping of names to secrets (got a list)"
    ]


def test_an_unreadable_value_is_one_problem_not_two() -> None:
    assert problems(
        """
        poll:
          idle_interval: !env POLL_SECONDS
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: !env TAGS
        """
    ) == [
        "automations.yaml, line 3: poll.idle_interval: environment variable POLL_SECONDS is "
        "not set (read by !env)",
        "automations.yaml, line 9: automations[0].actions[0].tags: environment variable TAGS "
        "is not set (read by !env)",
    ]


def test_secrets_never_appear_in_problems(tmp_path: Path) -> None:
    write_secrets(tmp_path, "url: not-a-url-but-secret\nplaylist: forbidden-secret-list\n")
    environ = {"SECONDS": "sixty-secret-seconds", "SCALE": "dorian-secret"}

    with pytest.raises(ConfigError) as caught:
        parse(
            """
            webhook:
              listen: 127.0.0.1:8123
              public_url: !secret url
            poll:
              idle_interval: !env SECONDS
            automations:
              - id: a
                triggers: {trigger: track_completed}
                actions:
                  - action: generate
                    tags: lofi
                    scale: !env SCALE
                  - action: add_to_playlist
                    playlist: !secret playlist
                    tracks: x
            """,
            base_dir=tmp_path,
            environ=environ,
        )

    text = str(caught.value)
    for secret in ("not-a-url-but-secret", "sixty-secret-seconds", "dorian-secret"):
        assert secret not in text
    assert text.splitlines() == [
        "automations.yaml, line 4: webhook.public_url: must be an http:// or https:// URL "
        "(got '***')",
        "automations.yaml, line 6: poll.idle_interval: must be a number of seconds (got '***')",
        "automations.yaml, line 13: automations[0].actions[0].scale: must be one of major, "
        "minor (got '***')",
    ]


def test_a_secret_in_a_message_built_with_str_is_scrubbed(tmp_path: Path) -> None:
    # The test action's check mentions the playlist with str(), not repr().
    write_secrets(tmp_path, "playlist: forbidden\n")

    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: add_to_playlist
                playlist: !secret playlist
                tracks: x
        """,
        base_dir=tmp_path,
    ) == ["automations.yaml, line 6: automations[0].actions[0]: the playlist '***' cannot be used"]


def test_reprs_hide_keys_and_tokens() -> None:
    config = parse(
        """
        finetuning: {api_key: !env KEY}
        tempolor: {api_token: !env KEY}
        webhook: {listen: "127.0.0.1:8123", token: !env TOKEN}
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions: {action: add_to_playlist, playlist: !env TOKEN, tracks: x}
        """,
        environ={"KEY": KEY, "TOKEN": TOKEN},
    )

    text = repr(config)
    assert KEY not in text
    assert TOKEN not in text
    assert repr(config.finetuning) == "ProviderConfig(api_key='***', base_url=None)"
    assert repr(config.webhook) == (
        "WebhookConfig(host='127.0.0.1', port=8123, public_url=None, token='***')"
    )
    assert repr(ProviderConfig()) == "ProviderConfig(api_key=None, base_url=None)"
    assert repr(WebhookConfig("h", 1)) == (
        "WebhookConfig(host='h', port=1, public_url=None, token=None)"
    )


def test_a_secret_option_keeps_its_value_and_hides_its_repr() -> None:
    config = parse(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions: {action: add_to_playlist, playlist: !env PLAYLIST, tracks: x}
        """,
        environ={"PLAYLIST": "{{ not a template }}"},
    )
    playlist = config.automations[0].actions[0].options["playlist"]

    # A secret is never compiled as a template, whatever it holds.
    assert isinstance(playlist, SecretValue)
    assert playlist == "{{ not a template }}"
    assert repr(playlist) == "'***'"


@pytest.mark.parametrize(
    "name",
    ["ft_live_0123456789abcdef0123456789abcdef", "ft_live_0123456789abcdef-with/odd+chars"],
)
def test_a_key_written_where_the_variable_name_goes_is_never_repeated(name: str) -> None:
    from connector.automation.loader import parse_config
    from connector.automation.problems import ConfigError

    text = f"finetuning:\n  api_key: !env {name}\nautomations: []\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, filename="a.yaml", environ={})
    message = str(caught.value)
    assert name not in message
    assert "a.yaml, line 2" in message
    assert "FINETUNING_API_KEY" in message
