"""Valid automations files load into typed config objects."""

from __future__ import annotations

from pathlib import Path

from ft_config_support import make_registry, parse

from connector.automation.loader import load_config
from connector.automation.model import (
    AutomationConfig,
    ConnectorConfig,
    PollConfig,
    ProviderConfig,
    StepConfig,
    TriggerConfig,
    WebhookConfig,
)
from connector.automation.templates import Template

FULL = """\
finetuning:
  api_key: !env FINETUNING_API_KEY
  base_url: https://pub.finetuning.ai
tempolor:
  api_token: !env TEMPOLOR_TOKEN
  base_url: https://api.useapi.net/v1/tempolor
webhook:
  listen: 0.0.0.0:8123
  public_url: https://music.example.net/hooks/finetuning
  token: !env WEBHOOK_TOKEN
poll:
  idle_interval: 60
  active_interval: 2.5
  backfill: true
state_dir: ./state
runtime:
  max_concurrent_runs: 4
  retention_days: 7.5
automations:
  - id: file_new_lofi
    alias: File new lofi tracks
    description: Every lofi track of a minute or more goes to Focus Beats.
    triggers:
      - trigger: track_completed
        tags_contain: lofi
    conditions:
      - "{{ trigger.generation.duration >= 60 }}"
    actions:
      - action: add_to_playlist
        id: file_it
        playlist: Focus Beats
        tracks: "{{ trigger.generation.id }}"
"""

ENV = {
    "FINETUNING_API_KEY": "ft_live_0123456789abcdef0123456789abcdef",
    "TEMPOLOR_TOKEN": "tp_token_0123456789",
    "WEBHOOK_TOKEN": "wh_token_0123456789",
}


def test_every_section_is_read(tmp_path: Path) -> None:
    config = parse(FULL, environ=ENV, base_dir=tmp_path)

    assert config.source is None
    assert config.finetuning == ProviderConfig(
        "ft_live_0123456789abcdef0123456789abcdef", "https://pub.finetuning.ai"
    )
    assert config.tempolor == ProviderConfig(
        "tp_token_0123456789", "https://api.useapi.net/v1/tempolor"
    )
    assert config.webhook == WebhookConfig(
        host="0.0.0.0",
        port=8123,
        public_url="https://music.example.net/hooks/finetuning",
        token="wh_token_0123456789",
    )
    assert config.poll == PollConfig(idle_interval=60, active_interval=2.5, backfill=True)
    assert config.state_dir == tmp_path / "state"
    assert config.max_concurrent_runs == 4
    assert config.retention_days == 7.5


def test_an_automation_is_read_with_compiled_templates(tmp_path: Path) -> None:
    config = parse(FULL, environ=ENV, base_dir=tmp_path)

    assert config.automations == [
        AutomationConfig(
            id="file_new_lofi",
            alias="File new lofi tracks",
            description="Every lofi track of a minute or more goes to Focus Beats.",
            enabled=True,
            triggers=[
                TriggerConfig(
                    key="track_completed",
                    options={"tags_contain": "lofi"},
                    path="automations[0].triggers[0]",
                    line=24,
                )
            ],
            conditions=[Template("{{ trigger.generation.duration >= 60 }}")],
            actions=[
                StepConfig(
                    action="add_to_playlist",
                    id="file_it",
                    options={
                        "provider": "finetuning",
                        "playlist": "Focus Beats",
                        "tracks": Template("{{ trigger.generation.id }}"),
                    },
                    path="automations[0].actions[0]",
                    line=29,
                )
            ],
            path="automations[0]",
            line=20,
        )
    ]


def test_secrets_are_plain_strings_in_the_config(tmp_path: Path) -> None:
    config = parse(FULL, environ=ENV, base_dir=tmp_path)

    assert type(config.finetuning.api_key) is str
    assert config.webhook is not None
    assert type(config.webhook.token) is str


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = parse("", base_dir=tmp_path)

    assert config == ConnectorConfig(
        source=None,
        finetuning=ProviderConfig(api_key=None, base_url=None),
        tempolor=None,
        webhook=None,
        poll=PollConfig(idle_interval=60, active_interval=3, backfill=False),
        state_dir=tmp_path / ".ftconnect",
        max_concurrent_runs=10,
        retention_days=30,
        automations=[],
    )


def test_empty_sections_take_their_defaults(tmp_path: Path) -> None:
    config = parse("finetuning:\ntempolor:\npoll:\nruntime:\nautomations:\n", base_dir=tmp_path)

    assert config.finetuning == ProviderConfig(None, None)
    assert config.tempolor == ProviderConfig(None, None)
    assert config.poll == PollConfig()
    assert config.automations == []


def test_webhook_listen_accepts_ipv6_and_only_needs_listen() -> None:
    config = parse('webhook:\n  listen: "[::1]:9000"\n')

    assert config.webhook == WebhookConfig(host="::1", port=9000, public_url=None, token=None)


def test_state_dir_absolute_and_home_relative(tmp_path: Path) -> None:
    absolute = parse(f"state_dir: {tmp_path / 'elsewhere'}\n", base_dir=tmp_path / "conf")
    home = parse("state_dir: ~/ftstate\n", base_dir=tmp_path)

    assert absolute.state_dir == tmp_path / "elsewhere"
    assert home.state_dir == Path("~/ftstate").expanduser()


def test_singular_keys_are_aliases_of_the_plural_ones() -> None:
    config = parse(
        """
        automations:
          - id: single
            trigger:
              trigger: track_completed
            condition: "{{ trigger.generation.duration > 30 }}"
            action:
              action: generate
              tags: lofi
          - id: listed
            trigger:
              - trigger: track_completed
              - trigger: generation_failed
            condition: [true]
            action:
              - action: generate
                tags: lofi
              - action: generate
                tags: jazz
        """
    )
    single, listed = config.automations

    assert [t.key for t in single.triggers] == ["track_completed"]
    assert single.triggers[0].path == "automations[0].trigger"
    assert single.conditions == [Template("{{ trigger.generation.duration > 30 }}")]
    assert [(s.action, s.id, s.path) for s in single.actions] == [
        ("generate", "step_1", "automations[0].action")
    ]
    assert [t.key for t in listed.triggers] == ["track_completed", "generation_failed"]
    assert listed.conditions == [True]
    assert [s.path for s in listed.actions] == [
        "automations[1].action[0]",
        "automations[1].action[1]",
    ]


def test_step_ids_default_to_their_1_based_position() -> None:
    config = parse(
        """
        automations:
          - id: steps
            triggers: {trigger: track_completed}
            actions:
              - {action: generate, tags: a}
              - {action: generate, tags: b, id: named}
              - {action: generate, tags: c}
        """
    )

    assert [step.id for step in config.automations[0].actions] == ["step_1", "named", "step_3"]


def test_missing_ids_are_made_from_the_alias_or_the_position() -> None:
    config = parse(
        """
        automations:
          - alias: "File new LoFi tracks!"
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: a}
          - triggers: {trigger: track_completed}
            actions: {action: generate, tags: b}
          - id: 1700000000
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: c}
        """
    )

    assert [a.id for a in config.automations] == [
        "file_new_lofi_tracks",
        "automation_2",
        "1700000000",
    ]


def test_disabled_automations_stay_and_disabled_entries_are_left_out() -> None:
    config = parse(
        """
        automations:
          - id: switched_off
            enabled: false
            triggers:
              - trigger: track_completed
              - trigger: generation_failed
                enabled: false
            actions:
              - action: generate
                tags: a
                enabled: false
              - action: generate
                tags: b
        """
    )
    automation = config.automations[0]

    assert automation.enabled is False
    assert [t.key for t in automation.triggers] == ["track_completed"]
    assert [(s.id, s.options["tags"]) for s in automation.actions] == [("step_2", "b")]


def test_options_are_validated_with_defaults_and_templates_kept() -> None:
    config = parse(
        """
        automations:
          - id: gen
            triggers:
              - trigger: track_completed
                id: done
                alias: When done
                provider: tempolor
            actions:
              - action: generate
                alias: Make one
                provider: tempolor
                tags: "reprise of {{ trigger.generation.title }}"
                duration: "{{ trigger.generation.duration / 2 }}"
                scale: MINOR
                parameters: {bpm: 80}
        """
    )
    trigger = config.automations[0].triggers[0]
    step = config.automations[0].actions[0]

    assert (trigger.id, trigger.alias, trigger.options) == (
        "done",
        "When done",
        {"provider": "tempolor"},
    )
    assert step.alias == "Make one"
    assert step.options == {
        "provider": "tempolor",
        "tags": Template("reprise of {{ trigger.generation.title }}"),
        "duration": Template("{{ trigger.generation.duration / 2 }}"),
        "scale": "minor",
        "wait": False,
        "parameters": {"bpm": 80},
    }


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = parse(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - &base {action: generate, tags: lofi, duration: 30}
              - <<: *base
                duration: 60
        """
    )

    assert [s.options["duration"] for s in config.automations[0].actions] == [30, 60]


def test_load_config_reads_a_file_relative_to_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "automations.yaml"
    path.write_text(FULL, encoding="utf-8")

    config = load_config(path, registry=make_registry(), environ=ENV)

    assert config.source == path.resolve()
    assert config.state_dir == tmp_path.resolve() / "state"
    assert [a.id for a in config.automations] == ["file_new_lofi"]


def test_load_config_with_a_string_path_and_default_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("automations: []\n", encoding="utf-8")

    config = load_config(str(path), registry=make_registry(), environ={})

    assert config.state_dir == tmp_path.resolve() / ".ftconnect"
