"""download_track's `path_template` is checked when the file loads, not at every run."""

from __future__ import annotations

from pathlib import Path

import pytest
from connector.actions.download_track import ACTION

from connector.automation.loader import parse_config
from connector.automation.problems import ConfigError
from connector.delivery.paths import TEMPLATE_FIELDS

ALLOWED = ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS)


def config_with(library: Path, template: str) -> str:
    return f"""\
automations:
  - id: deliver
    triggers:
      - trigger: track_completed
    actions:
      - action: notify_webhook
        url: http://127.0.0.1:9/hook
      - action: download_track
        library: {library}
        path_template: '{template}'
"""


def problems_of(library: Path, template: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(library, template), environ={})
    return [str(problem) for problem in caught.value.problems]


WHERE = "automations.yaml, line 10: automations[0].actions[1].path_template"


def test_an_unknown_field_is_named_with_the_closest_and_every_allowed_one(
    tmp_path: Path,
) -> None:
    assert problems_of(tmp_path, "{library}/{album_artst}/{title}.mp3") == [
        f"{WHERE}: unknown field {{album_artst}} (did you mean {{album_artist}}?); "
        f"allowed fields are {ALLOWED}"
    ]


def test_an_unknown_field_with_nothing_close_lists_the_allowed_ones(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "{library}/{composer}/{title}.mp3") == [
        f"{WHERE}: unknown field {{composer}}; allowed fields are {ALLOWED}"
    ]


@pytest.mark.parametrize(
    ("template", "component"),
    [
        ("{library}/{album/{title}.mp3", "{album"),
        ("{library}/{album}}/{title}.mp3", "{album}}"),
        ("{library}/album}/{title}.mp3", "album}"),
        ("{library}/{al{b}um}/{title}.mp3", "{al{b}um}"),
    ],
)
def test_unbalanced_braces_are_refused_naming_the_component(
    tmp_path: Path, template: str, component: str
) -> None:
    assert problems_of(tmp_path, template) == [
        f"{WHERE}: unbalanced braces in {component!r}: each field is one name between "
        "{ and }, such as {title}"
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{library}/{title:d}.mp3", "malformed field in '{title:d}.mp3'"),
        ("{library}/{title!z}.mp3", "malformed field in '{title!z}.mp3'"),
        ("{library}/../{title}.mp3", "must not contain '..'"),
        ("/etc/{title}.mp3", "must start with {library}/ or be relative to the library"),
        ("{library}/{title}.flac", "must end with a .mp3 file name"),
        ("{library}/{title.__class__}.mp3", "unknown field {title.__class__}"),
    ],
)
def test_other_broken_templates_are_refused_at_load_time(
    tmp_path: Path, template: str, message: str
) -> None:
    (problem,) = problems_of(tmp_path, template)

    assert problem.startswith(f"{WHERE}: ")
    assert message in problem


def test_a_jinja_template_is_not_a_path_template(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "{{ trigger.generation.id }}.mp3")

    assert problem.startswith(f"{WHERE}: cannot be a template (must be text such as ")


def test_every_field_a_media_library_needs_is_accepted(tmp_path: Path) -> None:
    template = "{library}/{album_artist}/{year} - {album}/{artist} - {title} [{genre}].mp3"
    config = parse_config(config_with(tmp_path, template), environ={})

    step = config.automations[0].actions[1]
    assert step.options["path_template"] == template
    everything = "/".join("{" + name + "}" for name in TEMPLATE_FIELDS if name != "library")
    parse_config(config_with(tmp_path, "{library}/" + everything + ".mp3"), environ={})


def test_without_a_template_or_artist_the_provider_decides_at_run_time(tmp_path: Path) -> None:
    options = ACTION.schema({"library": str(tmp_path)})

    # No schema default: a TemPolor track must not be filed under Finetuning/.
    assert "path_template" not in options
    assert "artist" not in options


def test_the_option_descriptions_name_the_fields_and_the_provider_defaults() -> None:
    described = {
        str(key.schema): str(key.description) for key in ACTION.schema.schema if key.description
    }

    for name in TEMPLATE_FIELDS:
        assert "{" + name + "}" in described["path_template"]
    assert "{library}/Finetuning/{album}/{title}.mp3" in described["path_template"]
    assert "{library}/TemPolor/{album}/{title}.mp3" in described["path_template"]
    assert "Finetuning.ai" in described["artist"]
    assert "TemPolor" in described["artist"]
