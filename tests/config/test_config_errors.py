"""Invalid files: every problem, each with file, line, path and a did-you-mean when one fits."""

from __future__ import annotations

from pathlib import Path

import pytest
from ft_config_support import make_registry, parse, problems

from connector.automation.loader import load_config
from connector.automation.problems import ConfigError, ConfigProblem


def test_a_misspelt_option_names_the_one_it_resembles() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
                durration: 90
        """
    ) == [
        "automations.yaml, line 8: automations[0].actions[0].durration is not a valid option "
        "for 'generate' (did you mean 'duration'?)"
    ]


def test_a_misspelt_nested_option_is_found_in_the_nested_schema() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
                parameters:
                  bmp: 80
        """
    ) == [
        "automations.yaml, line 9: automations[0].actions[0].parameters.bmp is not a valid "
        "option for 'generate' (did you mean 'bpm'?)"
    ]


def test_an_option_resembling_nothing_gets_no_suggestion() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed, colour: blue}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0].triggers.colour is not a valid option "
        "for 'track_completed'"
    ]


def test_a_missing_required_option_points_at_the_step() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                duration: 90
        """
    ) == ["automations.yaml, line 6: automations[0].actions[0].tags is required for 'generate'"]


def test_a_bad_value_uses_the_validators_message() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
              - action: generate
                tags: lofi
                duration: 300
        """
    ) == [
        "automations.yaml, line 10: automations[0].actions[1].duration: "
        "must be between 5 and 210 seconds (got 300)"
    ]


def test_a_template_where_none_is_accepted_says_so() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
                wait: "{{ true }}"
        """
    ) == [
        "automations.yaml, line 8: automations[0].actions[0].wait: "
        "cannot be a template (expected bool)"
    ]


def test_an_unknown_trigger_or_action_names_the_closest() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers:
              - trigger: track_complete
            actions:
              - action: bulk_delet
                tracks: x
        """
    ) == [
        "automations.yaml, line 5: automations[0].triggers[0].trigger: 'track_complete' is not "
        "a known trigger (did you mean 'track_completed'?)",
        "automations.yaml, line 7: automations[0].actions[0].action: 'bulk_delet' is not "
        "a known action (did you mean 'bulk_delete'?)",
    ]


def test_an_unknown_action_resembling_nothing_lists_the_known_ones() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions: {action: launch_rocket}
        """
    ) == [
        "automations.yaml, line 5: automations[0].actions.action: 'launch_rocket' is not "
        "a known action (known: add_to_playlist, bulk_delete, generate)"
    ]


def test_an_entry_without_its_key_is_explained() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers:
              - tags_contain: lofi
            actions:
              - service: generate
                tags: lofi
        """
    ) == [
        "automations.yaml, line 5: automations[0].triggers[0] is missing 'trigger:' "
        "(the name of the trigger, e.g. 'generation_failed')",
        "automations.yaml, line 7: automations[0].actions[0] is missing 'action:' "
        "(Home Assistant's 'service:' is now 'action:')",
    ]


def test_an_entry_that_is_not_a_mapping() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: [track_completed]
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0].triggers[0]: must be a mapping with "
        "'trigger: <name>' (got text)"
    ]


def test_an_action_on_a_provider_it_does_not_support() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: add_to_playlist
                provider: tempolor
                playlist: Focus Beats
                tracks: "{{ trigger.generation.id }}"
        """
    ) == [
        "automations.yaml, line 7: automations[0].actions[0].provider: 'add_to_playlist' is "
        "not available for provider 'tempolor' (only finetuning)"
    ]


def test_a_trigger_on_a_provider_it_does_not_support() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: generation_failed, provider: tempolor}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0].triggers.provider: 'generation_failed' is "
        "not available for provider 'tempolor' (only finetuning)"
    ]


def test_a_misspelt_provider_is_left_to_the_schema_message() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed, provider: TEMPOLOR}
            actions: {action: generate, tags: lofi, provider: tempolr}
        """
    ) == [
        "automations.yaml, line 5: automations[0].actions.provider: must be one of "
        "finetuning, tempolor (got 'tempolr')"
    ]


def test_the_load_time_check_of_an_action_refuses_it() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: generation_failed}
            actions:
              - action: bulk_delete
                tracks: "{{ trigger.generation.id }}"
              - action: add_to_playlist
                playlist: forbidden
                tracks: x
        """
    ) == [
        "automations.yaml, line 6: automations[0].actions[0].confirm: "
        "deleting cannot be undone; add 'confirm: true'",
        "automations.yaml, line 8: automations[0].actions[1]: "
        "the playlist 'forbidden' cannot be used",
    ]


def test_a_template_that_does_not_compile_is_reported_with_its_line() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            conditions:
              - "{{ trigger.generation.duration >= }}"
            actions:
              - action: generate
                tags: "reprise of {{ trigger.generation.title }"
        """
    ) == [
        "automations.yaml, line 6: automations[0].conditions[0]: template "
        "'{{ trigger.generation.duration >= }}' does not compile: "
        "unexpected 'end of print statement'",
        "automations.yaml, line 9: automations[0].actions[0].tags: template "
        "'reprise of {{ trigger.generation.title }' does not compile: unexpected '}'",
    ]


def test_a_condition_must_be_a_template_or_a_boolean() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            conditions:
              - trigger.generation.duration >= 60
              - 3
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 6: automations[0].conditions[0]: must be a template such as "
        '"{{ trigger.generation.duration >= 60 }}" or true/false (got text without {{ }})',
        "automations.yaml, line 7: automations[0].conditions[1]: must be a template such as "
        '"{{ trigger.generation.duration >= 60 }}" or true/false (got a number)',
    ]


def test_singular_and_plural_together_is_an_error() -> None:
    assert problems(
        """
        automations:
          - id: a
            trigger: {trigger: track_completed}
            triggers: {trigger: generation_failed}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0] has both 'trigger' and 'triggers'; "
        "use one of them"
    ]


def test_an_automation_needs_triggers_and_actions() -> None:
    assert problems(
        """
        automations:
          - id: a
            alias: Nothing yet
          - id: b
            triggers: []
            actions:
        """
    ) == [
        "automations.yaml, line 3: automations[0] has no triggers; "
        "add 'triggers:' with at least one",
        "automations.yaml, line 3: automations[0] has no actions; add 'actions:' with at least one",
        "automations.yaml, line 6: automations[1] has no triggers; "
        "add 'triggers:' with at least one",
        "automations.yaml, line 7: automations[1] has no actions; add 'actions:' with at least one",
    ]


def test_an_unknown_automation_key_names_the_closest() -> None:
    assert problems(
        """
        automations:
          - id: a
            tirggers: {trigger: track_completed}
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0].tirggers is not a valid option for an "
        "automation (did you mean 'triggers'?)"
    ]


def test_a_duplicate_automation_id_points_at_the_second_and_names_the_first() -> None:
    assert problems(
        """
        automations:
          - id: file_it
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: lofi}
          - id: file_it
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: jazz}
        """
    ) == [
        "automations.yaml, line 6: automations[1].id: 'file_it' is already the id of "
        "automations[0] (line 3)"
    ]


def test_a_duplicate_generated_id_says_where_it_came_from() -> None:
    assert problems(
        """
        automations:
          - alias: File it
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: lofi}
          - alias: file-it
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: jazz}
        """
    ) == [
        "automations.yaml, line 6: automations[1].id: 'file_it' (made from its alias; give it "
        "an id) is already the id of automations[0] (line 3)"
    ]


def test_duplicate_and_malformed_step_ids() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - {action: generate, tags: a, id: step_2}
              - {action: generate, tags: b}
              - {action: generate, tags: c, id: 2nd-step}
        """
    ) == [
        "automations.yaml, line 7: automations[0].actions[1].id: 'step_2' is already the id of "
        "automations[0].actions[0] (line 6)",
        "automations.yaml, line 8: automations[0].actions[2].id: must be a name of letters, "
        "digits and _ (not starting with a digit), so templates can read steps.<id> "
        "(got '2nd-step')",
    ]


def test_a_key_given_twice_is_reported() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
                tags: jazz
        """
    ) == [
        "automations.yaml, line 8: automations[0].actions[0].tags is given twice (first on line 7)"
    ]


def test_yes_no_on_off_read_as_booleans_get_a_hint() -> None:
    assert problems(
        """
        automations:
          - id: off
            triggers: {trigger: track_completed}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 3: automations[0].id: must be text (got false: YAML reads "
        "yes/no/on/off as true/false; quote it)"
    ]


def test_enabled_and_alias_are_type_checked() -> None:
    assert problems(
        """
        automations:
          - id: a
            enabled: sometimes
            alias: [x]
            triggers: {trigger: track_completed, enabled: 1}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 4: automations[0].enabled: must be true or false (got 'sometimes')",
        "automations.yaml, line 5: automations[0].alias: must be text (got a list)",
        "automations.yaml, line 6: automations[0].triggers.enabled: must be true or false (got 1)",
    ]


# --------------------------------------------------------------- the sections


def test_an_unknown_section_names_the_closest() -> None:
    assert problems("automatons: []\nfinetunning: {}\nweird: 1\n") == [
        "automations.yaml, line 1: automatons is not a valid section (did you mean 'automations'?)",
        "automations.yaml, line 2: finetunning is not a valid section (did you mean 'finetuning'?)",
        "automations.yaml, line 3: weird is not a valid section",
    ]


def test_every_section_is_type_checked() -> None:
    assert problems(
        """
        finetuning:
          api_key: 12
          base_url: ftp://pub.finetuning.ai
        tempolor:
          api_key: x
        webhook:
          listen: 0.0.0.0:99999
          public_url: music.example.net/hooks
        poll:
          idle_interval: 0
          active_interval: soon
          backfill: maybe
        state_dir: 5
        runtime:
          max_concurrent_runs: 0
          retention_days: -1
        """
    ) == [
        "automations.yaml, line 3: finetuning.api_key: must be text (got a number)",
        "automations.yaml, line 4: finetuning.base_url: must be an http:// or https:// URL "
        "(got 'ftp://pub.finetuning.ai')",
        "automations.yaml, line 6: tempolor.api_key is not a valid option for 'tempolor' "
        "(did you mean 'api_token'?)",
        'automations.yaml, line 8: webhook.listen: must be "host:port" with a port from '
        "1 to 65535 (got '0.0.0.0:99999')",
        "automations.yaml, line 9: webhook.public_url: must be an http:// or https:// URL "
        "(got 'music.example.net/hooks')",
        "automations.yaml, line 11: poll.idle_interval: must be more than 0 seconds (got 0)",
        "automations.yaml, line 12: poll.active_interval: must be a number of seconds (got 'soon')",
        "automations.yaml, line 13: poll.backfill: must be true or false (got 'maybe')",
        "automations.yaml, line 14: state_dir: must be a folder path (got a number)",
        "automations.yaml, line 16: runtime.max_concurrent_runs: must be a whole number of "
        "at least 1 (got 0)",
        "automations.yaml, line 17: runtime.retention_days: must be a number of days above 0 "
        "(got -1)",
    ]


def test_webhook_needs_listen_and_sections_must_be_mappings() -> None:
    assert problems("webhook:\n  token: abcdefghijklmnop\npoll: 5\nautomations: {}\n") == [
        "automations.yaml, line 1: webhook.listen is required for 'webhook'",
        "automations.yaml, line 3: poll: must be a mapping of options (got a number)",
        "automations.yaml, line 4: automations: must be a list of automations (got a mapping)",
    ]


def test_the_file_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == [
        "automations.yaml, line 1: the file must be a mapping of sections such as "
        "'finetuning:' and 'automations:' (got a list)"
    ]


# --------------------------------------------------------------------- YAML


def test_a_yaml_syntax_error_reports_file_and_line() -> None:
    assert problems(
        """
        poll:
          idle_interval: 5
         active_interval: 3
        """,
        filename="mine.yaml",
    ) == [
        "mine.yaml, line 4: invalid YAML: expected <block end>, but found '<block mapping "
        "start>' (while parsing a block mapping)"
    ]


def test_an_unquoted_template_gets_a_hint() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            conditions:
              - {{ trigger.generation.duration > 60 }}
            actions: {action: generate, tags: lofi}
        """
    ) == [
        "automations.yaml, line 6: invalid YAML: found unhashable key (while constructing "
        'a mapping); a template must be quoted: "{{ ... }}"'
    ]


def test_an_unquoted_template_as_a_value_gets_the_hint_too() -> None:
    assert problems(
        """
        automations:
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: {{ trigger.generation.tags }} reprise
        """
    ) == [
        "automations.yaml, line 7: invalid YAML: expected <block end>, but found '<scalar>' "
        '(while parsing a block mapping); a template must be quoted: "{{ ... }}"'
    ]


def test_an_impossible_date_is_a_yaml_error_with_its_line() -> None:
    assert problems("poll:\n  since: 2024-13-45\n") == [
        "automations.yaml, line 2: invalid YAML: '2024-13-45' is not a valid date: "
        "month must be in 1..12"
    ]


def test_an_unknown_tag_is_a_yaml_error() -> None:
    assert problems("automations: !include automations/\n") == [
        "automations.yaml, line 1: invalid YAML: could not determine a constructor for the tag "
        "'!include'"
    ]


# ------------------------------------------------------------ all at once


def test_every_problem_is_collected_in_file_order() -> None:
    found = problems(
        """
        poll:
          idle_interval: -5
        automations:
          - id: a
            triggers:
              - trigger: track_complete
            actions:
              - action: generate
                durration: 90
          - id: a
            triggers: {trigger: track_completed}
            actions:
              - action: generate
                tags: lofi
                duration: 1
        stat_dir: here
        """
    )

    assert found == [
        "automations.yaml, line 3: poll.idle_interval: must be more than 0 seconds (got -5)",
        "automations.yaml, line 7: automations[0].triggers[0].trigger: 'track_complete' is not "
        "a known trigger (did you mean 'track_completed'?)",
        "automations.yaml, line 9: automations[0].actions[0].tags is required for 'generate'",
        "automations.yaml, line 10: automations[0].actions[0].durration is not a valid option "
        "for 'generate' (did you mean 'duration'?)",
        "automations.yaml, line 11: automations[1].id: 'a' is already the id of "
        "automations[0] (line 5)",
        "automations.yaml, line 16: automations[1].actions[0].duration: must be between 5 and "
        "210 seconds (got 1)",
        "automations.yaml, line 17: stat_dir is not a valid section (did you mean 'state_dir'?)",
    ]


def test_config_error_carries_structured_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("poll:\n  backfill: maybe\n")

    assert caught.value.problems == [
        ConfigProblem(
            file="automations.yaml",
            line=2,
            path="poll.backfill",
            message="must be true or false (got 'maybe')",
        )
    ]


def test_problem_text_without_line_or_path() -> None:
    assert str(ConfigProblem("a.yaml", None, "", "cannot be read")) == "a.yaml: cannot be read"
    assert str(ConfigProblem("a.yaml", 3, "x.y", "is required for 'z'")) == (
        "a.yaml, line 3: x.y is required for 'z'"
    )


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing, registry=make_registry(), environ={})

    assert str(caught.value) == f"{missing}: cannot be read: No such file or directory"


def test_the_file_name_not_the_full_path_is_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "automations.yaml"
    path.write_text("poll:\n  backfill: maybe\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path, registry=make_registry(), environ={})

    assert str(caught.value) == (
        "automations.yaml, line 2: poll.backfill: must be true or false (got 'maybe')"
    )


def test_webhook_token_guard_and_listener_limits_are_checked() -> None:
    text = (
        "webhook:\n  listen: 127.0.0.1:8123\n  token: short\n  max_connections: 5\n"
        "  header_timeout: 0\nautomations: []\n"
    )
    assert problems(text) == [
        "automations.yaml, line 3: webhook.token: must be at least 16 characters (got 5); "
        "leave it out and one is generated",
        "automations.yaml, line 4: webhook.max_connections: must be a whole number from 16 "
        "to 65536 (got 5)",
        "automations.yaml, line 5: webhook.header_timeout: must be from 1 to 300 seconds (got 0)",
    ]
