"""Voluptuous schemas as JSON Schema; the registry as one document and as README tables."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace
from datetime import date
from typing import Any

import voluptuous as vol
from ft_config_support import make_registry

from connector.automation.jsonschema import (
    JSON_SCHEMA_DIALECT,
    registry_document,
    registry_markdown,
    to_json_schema,
)
from connector.automation.registry import Registry
from connector.automation.validators import (
    id_list,
    number_range,
    one_of,
    positive_seconds,
    templatable,
)


def conforms(instance: Any, schema: Any, root: dict[str, Any]) -> bool:
    """A small JSON Schema checker for the keywords the export produces.

    Used when the `jsonschema` package is not installed (it is not a
    dependency), so examples are still checked against their exported schema.
    """
    if schema is True or schema == {}:
        return True
    if schema is False:
        return False
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return conforms(instance, target, root)
    checks = [
        ("type", lambda t: _is_type(instance, t)),
        ("const", lambda c: instance == c),
        ("enum", lambda e: instance in e),
        ("minimum", lambda m: instance >= m),
        ("maximum", lambda m: instance <= m),
        ("exclusiveMinimum", lambda m: instance > m),
        ("pattern", lambda p: re.search(p, instance) is not None),
        ("anyOf", lambda parts: any(conforms(instance, p, root) for p in parts)),
        ("allOf", lambda parts: all(conforms(instance, p, root) for p in parts)),
        ("oneOf", lambda parts: sum(conforms(instance, p, root) for p in parts) == 1),
    ]
    for keyword, check in checks:
        if keyword in schema and not check(schema[keyword]):
            return False
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        if any(name not in instance for name in schema.get("required", [])):
            return False
        for name, value in instance.items():
            sub = properties.get(name, schema.get("additionalProperties", True))
            if not conforms(value, sub, root):
                return False
    if isinstance(instance, list) and "items" in schema:
        return all(conforms(item, schema["items"], root) for item in instance)
    return True


def _is_type(instance: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    python = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "object": dict,
        "array": list,
        "null": type(None),
    }
    for name in names:
        if isinstance(instance, bool) and name in ("integer", "number"):
            continue
        if isinstance(instance, python[name]):
            return True
    return False


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    """Validate with the `jsonschema` package when installed, else with `conforms`."""
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        assert conforms(instance, schema, schema), (instance, schema)
    else:
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(instance)


def assert_invalid(instance: Any, schema: dict[str, Any]) -> None:
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        assert not conforms(instance, schema, schema), (instance, schema)
    else:
        assert not jsonschema.Draft202012Validator(schema).is_valid(instance)


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
