"""Voluptuous schemas as JSON Schema (2020-12, OpenAPI 3.1); the registry as one document
and as the README's tables.

Every exported schema is checked against the 2020-12 meta-schema and used to
validate examples, with the `jsonschema` package (a test dependency).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
import voluptuous as vol
from ft_config_support import make_registry
from jsonschema import Draft202012Validator

from connector.automation.jsonschema import (
    JSON_SCHEMA_DIALECT,
    registry_document,
    spec_schema,
    to_json_schema,
)
from connector.automation.reference import registry_markdown
from connector.automation.registry import Registry
from connector.automation.schema import CONFIG_REFERENCE
from connector.automation.specs import ActionSpec, TriggerSpec
from connector.automation.validators import (
    id_list,
    number_range,
    one_of,
    positive_seconds,
    templatable,
)

REAL = Registry.discover(with_plugins=False)
REAL_SPECS: list[TriggerSpec | ActionSpec] = [*REAL.triggers.values(), *REAL.actions.values()]


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(instance)


def assert_invalid(instance: Any, schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert not Draft202012Validator(schema).is_valid(instance), instance


SAMPLE = vol.Schema(
    {
        vol.Required("tags", description="music description"): vol.All(str, vol.Length(max=700)),
        vol.Optional("duration", default=60, description="seconds"): vol.All(
            vol.Coerce(int), vol.Range(min=5, max=210)
        ),
        vol.Optional("labels", default=list): [str],
        vol.Optional("mood"): vol.Any(None, vol.In(["calm", "happy"])),
        vol.Optional("ids"): vol.All([int], vol.Length(min=1)),
        vol.Optional("homepage"): vol.Url(),
        vol.Optional("loud"): vol.Boolean(),
        vol.Optional("code"): vol.Match(r"^[A-Z]{3}$"),
        vol.Optional("ratio"): vol.Range(min=0, max=1, min_included=False),
        "plain": float,
    }
)


def test_a_sample_schema_exports_to_json_schema() -> None:
    assert to_json_schema(SAMPLE) == {
        "type": "object",
        "properties": {
            "tags": {"type": "string", "maxLength": 700, "description": "music description"},
            "duration": {
                "type": "integer",
                "minimum": 5,
                "maximum": 210,
                "description": "seconds",
                "default": 60,
            },
            "labels": {"type": "array", "items": {"type": "string"}, "default": []},
            "mood": {"anyOf": [{"type": "null"}, {"enum": ["calm", "happy"]}]},
            "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "homepage": {"type": "string", "format": "uri"},
            "loud": {"type": "boolean"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "ratio": {"exclusiveMinimum": 0, "maximum": 1},
            "plain": {"type": "number"},
        },
        "required": ["tags"],
        "additionalProperties": False,
    }


def test_an_example_validates_against_the_exported_sample() -> None:
    schema = to_json_schema(SAMPLE)

    assert_valid({"tags": "lofi", "duration": 90, "labels": ["a"], "mood": None}, schema)
    assert_invalid({"duration": 90}, schema)  # tags missing
    assert_invalid({"tags": "lofi", "duration": 300}, schema)
    assert_invalid({"tags": "lofi", "durration": 90}, schema)


def test_our_validators_export_what_they_carry() -> None:
    schema = vol.Schema(
        {
            vol.Required("duration"): templatable(number_range(5, 210, " seconds")),
            vol.Optional("scale"): one_of("major", "minor"),
            vol.Optional("tracks"): templatable(id_list),
            vol.Optional("every"): positive_seconds,
            vol.Optional("bpm"): vol.All(int, number_range(60, 200)),
        }
    )

    assert to_json_schema(schema)["properties"] == {
        "duration": {"type": "number", "minimum": 5, "maximum": 210, "x-template": True},
        "scale": {"type": "string", "enum": ["major", "minor"]},
        "tracks": {
            "anyOf": [
                {"type": "string", "description": "one id, or ids separated by commas"},
                {"type": "array", "items": {"type": "string"}},
            ],
            "x-template": True,
        },
        "every": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        "bpm": {"type": "integer", "minimum": 60, "maximum": 200},
    }


def test_more_voluptuous_building_blocks() -> None:
    assert to_json_schema(vol.Schema({"a": int}, required=True))["required"] == ["a"]
    assert (
        to_json_schema(vol.Schema({"a": int}, extra=vol.ALLOW_EXTRA))["additionalProperties"]
        is True
    )
    assert to_json_schema({str: int}) == {
        "type": "object",
        "properties": {},
        "additionalProperties": {"type": "integer"},
    }
    assert to_json_schema(vol.Maybe(str)) == {"anyOf": [{"type": "null"}, {"type": "string"}]}
    assert to_json_schema(vol.Msg(int, "a whole number")) == {"type": "integer"}
    assert to_json_schema(vol.Equal("x")) == {"const": "x"}
    assert to_json_schema(vol.Datetime()) == {"type": "string", "format": "date-time"}
    assert to_json_schema(vol.Date()) == {"type": "string", "format": "date"}
    assert to_json_schema(vol.Email()) == {"type": "string", "format": "email"}
    assert to_json_schema([int, str]) == {
        "type": "array",
        "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    }
    assert to_json_schema(vol.All(int, str)) == {"allOf": [{"type": "integer"}, {"type": "string"}]}
    assert to_json_schema({vol.Optional("when", default=date(2025, 1, 2)): str})["properties"][
        "when"
    ] == {"type": "string", "default": "2025-01-02"}


def test_an_unknown_validator_is_described_not_fatal() -> None:
    def is_even(value: int) -> int:
        return value

    class Exploding:
        @property
        def choices(self) -> Any:
            raise RuntimeError("boom")

    assert to_json_schema(is_even) == {"description": "checked by is_even"}
    assert to_json_schema(Exploding()) == {"description": "checked by Exploding"}
    assert to_json_schema({"x": vol.Clamp(min=1, max=3)})["properties"]["x"] == {
        "type": "number",
        "description": "clamped to [1, 3]",
    }


def test_the_registry_is_one_draft_2020_12_document() -> None:
    document = registry_document(make_registry())

    assert (
        document["$schema"]
        == JSON_SCHEMA_DIALECT
        == ("https://json-schema.org/draft/2020-12/schema")
    )
    assert document["properties"]["triggers"]["items"] == {
        "oneOf": [
            {"$ref": "#/$defs/trigger.generation_failed"},
            {"$ref": "#/$defs/trigger.track_completed"},
        ]
    }
    assert document["properties"]["actions"]["items"] == {
        "oneOf": [
            {"$ref": "#/$defs/action.add_to_playlist"},
            {"$ref": "#/$defs/action.bulk_delete"},
            {"$ref": "#/$defs/action.generate"},
        ]
    }
    json.dumps(document)  # the whole document is JSON


def test_each_declaration_carries_title_description_example_and_extras() -> None:
    definitions = registry_document(make_registry())["$defs"]
    generate = definitions["action.generate"]
    delete = definitions["action.bulk_delete"]
    completed = definitions["trigger.track_completed"]

    assert generate["title"] == "Generate a track"
    assert generate["description"] == "Starts a generation."
    assert generate["examples"] == [
        {"action": "generate", "tags": "lofi chill piano", "duration": 90}
    ]
    assert generate["x-providers"] == ["finetuning", "tempolor"]
    assert generate["x-destructive"] is False
    assert generate["x-output-example"] == {"id": "gen_1", "status": "completed"}
    assert generate["required"] == ["action", "tags"]
    assert generate["properties"]["action"] == {
        "const": "generate",
        "description": "Which action this is",
    }
    assert generate["properties"]["id"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    assert generate["properties"]["duration"] == {
        "type": "number",
        "minimum": 5,
        "maximum": 210,
        "x-template": True,
        "description": "seconds",
        "default": 60,
    }
    assert delete["x-destructive"] is True
    assert completed["x-kinds"] == ["track_completed"]
    assert completed["x-providers"] == ["finetuning", "tempolor"]
    # An example written without its key gets it, so it is a complete entry.
    add = definitions["action.add_to_playlist"]
    assert add["examples"][0]["action"] == "add_to_playlist"


def test_every_example_validates_against_the_document() -> None:
    document = registry_document(make_registry())

    for kind in ("triggers", "actions"):
        examples = [
            definition["examples"][0]
            for name, definition in document["$defs"].items()
            if name.startswith(kind[:-1] + ".")
        ]
        assert_valid({kind: examples}, document)
    assert_invalid({"actions": [{"action": "generate", "durration": 3}]}, document)
    assert_invalid({"actions": [{"action": "no_such_action"}]}, document)


def test_an_empty_registry_accepts_no_entries() -> None:
    document = registry_document(Registry())

    assert document["$defs"] == {}
    assert document["properties"]["triggers"]["items"] is False


def test_the_markdown_tables() -> None:
    assert registry_markdown(make_registry()) == (
        "### Triggers\n"
        "\n"
        "| key | title | description | options |\n"
        "|---|---|---|---|\n"
        "| `generation_failed` | Generation failed | A generation failed. | (none) |\n"
        "| `track_completed` | Track completed | A generation finished. | "
        "`provider`: only this provider<br>`tags_contain` (template): words the tags contain"
        "<br>`min_duration`: seconds at least |\n"
        "\n"
        "### Actions\n"
        "\n"
        "| key | title | description | options |\n"
        "|---|---|---|---|\n"
        "| `add_to_playlist` | Add to playlist | Adds tracks to a playlist. Providers: "
        'finetuning. | `provider` (default `"finetuning"`)<br>`playlist` (required, template): '
        "name or id<br>`tracks` (required, template): track ids |\n"
        "| `bulk_delete` | Delete tracks | Deletes tracks for good. Providers: finetuning. "
        "**Destructive.** | `tracks` (required, template)<br>`confirm` (default `false`) |\n"
        "| `generate` | Generate a track | Starts a generation. Providers: finetuning, "
        'tempolor. | `provider` (default `"finetuning"`)<br>`tags` (required, template): music '
        "description<br>`duration` (template): seconds (default `60`)<br>`scale` (template)"
        "<br>`wait` (default `false`)<br>`parameters` |\n"
    )


def test_markdown_cells_escape_pipes_and_newlines() -> None:
    registry = Registry()
    spec = make_registry().actions["generate"]
    registry.add_action(replace(spec, description="Either a | b\nor c"), "tests")

    row = registry_markdown(registry).splitlines()[-1]
    assert "| Either a \\| b or c. Providers:" in row


def test_an_empty_registry_renders_placeholder_rows() -> None:
    assert "| | | no triggers installed | |" in registry_markdown(Registry())


# ------------------------------------------------------ the installed triggers and actions


@pytest.mark.parametrize("spec", REAL_SPECS, ids=lambda spec: spec.key)
def test_each_spec_is_a_valid_schema_its_example_passes(spec: TriggerSpec | ActionSpec) -> None:
    options = spec_schema(spec)
    entry = spec_schema(spec, entry=True)
    kind = "trigger" if isinstance(spec, TriggerSpec) else "action"

    assert options["title"] == entry["title"] == spec.title
    assert options["description"] == entry["description"] == spec.description
    assert "$ref" not in json.dumps(options)  # self-contained: an OpenAPI 3.1 Schema Object
    assert_valid(options["examples"][0], options)
    assert_valid(entry["examples"][0], entry)
    assert entry["examples"][0][kind] == spec.key
    assert kind not in options["properties"]
    assert_invalid({**options["examples"][0], "no_such_option": 1}, options)
    assert_invalid({**entry["examples"][0], kind: "another"}, entry)


def test_every_default_passes_its_own_option_schema() -> None:
    schemas = [to_json_schema(spec.schema) for spec in REAL_SPECS]
    schemas += [to_json_schema(section.schema) for section in CONFIG_REFERENCE]
    checked = 0
    for schema in schemas:
        for name, prop in schema.get("properties", {}).items():
            if "default" in prop:
                assert Draft202012Validator(prop).is_valid(prop["default"]), (name, prop)
                checked += 1
    assert checked >= 20


def test_the_config_sections_export_valid_schemas() -> None:
    for section in CONFIG_REFERENCE:
        Draft202012Validator.check_schema(to_json_schema(section.schema))


def test_the_schedule_trigger_wants_exactly_one_of_cron_or_interval() -> None:
    schedule = spec_schema(REAL.triggers["schedule"])

    assert_valid({"cron": "30 7 * * *", "timezone": "Europe/Paris"}, schedule)
    assert_valid({"interval": 60}, schedule)
    assert_invalid({}, schedule)
    assert_invalid({"cron": "30 7 * * *", "interval": 60}, schedule)
    assert_invalid({"interval": 0}, schedule)
    assert schedule["properties"]["cron"]["type"] == "string"


def test_the_real_registry_document_is_valid_and_takes_every_example() -> None:
    document = registry_document(REAL)
    examples = {
        kind: [spec_schema(spec, entry=True)["examples"][0] for spec in specs.values()]
        for kind, specs in (("triggers", REAL.triggers), ("actions", REAL.actions))
    }

    assert_valid(examples, document)
    assert_invalid({"actions": [{"action": "generate", "tags": "x", "durration": 3}]}, document)
