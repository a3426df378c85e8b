"""Voluptuous schemas as JSON Schema, and the registry as one document and a Markdown table.

The declarations of triggers and actions double as documentation: the same
schemas that validate the automations file drive form builders (through
`registry_document`, a JSON Schema draft 2020-12 document) and the README
tables (`registry_markdown`); the schemas of the file's sections make its
config reference (`config_markdown`).

The conversion understands the voluptuous building blocks (dicts with
Required/Optional markers, defaults and descriptions, lists, Any, All, In,
Range, Length, Coerce, Match, Url, ...) and the validators of
`connector.automation.validators`, which carry attributes for it. A field that accepts a
template is exported as its inner schema with `"x-template": true`: a form
builder shows the inner type, and knows a `{{ ... }}` string is allowed too.
Anything it does not understand becomes `{}` with a description naming the
validator; it never raises.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from connector.automation.registry import ActionSpec, Registry, TriggerSpec
from connector.automation.validators import id_list, positive_seconds

if TYPE_CHECKING:
    from connector.automation.config import ConfigSection

__all__ = ["config_markdown", "registry_document", "registry_markdown", "to_json_schema"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

JsonSchema = dict[str, Any]

_TYPES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}

# voluptuous validators that are plain functions (made by its `message`
# decorator), known by name.
_NAMED: dict[str, JsonSchema] = {
    "Boolean": {"type": "boolean"},
    "Url": {"type": "string", "format": "uri"},
    "FqdnUrl": {"type": "string", "format": "uri"},
    "Email": {"type": "string", "format": "email"},
    "IsFile": {"type": "string", "description": "path of an existing file"},
    "IsDir": {"type": "string", "description": "path of an existing folder"},
    "PathExists": {"type": "string", "description": "an existing path"},
    "Lower": {"type": "string"},
    "Upper": {"type": "string"},
    "Capitalize": {"type": "string"},
    "Title": {"type": "string"},
    "Strip": {"type": "string"},
}


def to_json_schema(schema: Any) -> JsonSchema:
    """The JSON Schema of a voluptuous schema (or any part of one)."""
    try:
        return _convert(schema)
    except Exception:  # an exotic validator must not break the docs
        return _unknown(schema)


def _convert(node: Any) -> JsonSchema:
    if isinstance(node, vol.Schema):
        if isinstance(node.schema, dict):
            return _object(node.schema, all_required=bool(node.required), extra=node.extra)
        return to_json_schema(node.schema)
    if isinstance(node, dict):
        return _object(node, all_required=False, extra=vol.PREVENT_EXTRA)
    if isinstance(node, list):
        return _array(node)
    if node is None or isinstance(node, bool | int | float | str):
        return {"type": "null"} if node is None else {"const": node}
    if isinstance(node, type):
        return _type(node)
    if isinstance(node, vol.Any | vol.Union):
        return _any_of([to_json_schema(part) for part in node.validators])
    if isinstance(node, vol.All):
        return _merge([to_json_schema(part) for part in node.validators])
    if isinstance(node, vol.Msg):
        return to_json_schema(node.schema)
    return _validator(node)


def _validator(node: Any) -> JsonSchema:
    """A validator object or function (anything not a container)."""
    # Ours first: they carry what the export needs.
    declared = getattr(node, "json_schema", None)
    if isinstance(declared, dict):
        return dict(declared)  # a validator that states its own JSON Schema
    if getattr(node, "__name__", None) == "templatable" and hasattr(node, "inner"):
        return {**to_json_schema(node.inner), "x-template": True}
    if getattr(node, "__name__", None) == "optional" and hasattr(node, "inner"):
        return _nullable(to_json_schema(node.inner))
    if hasattr(node, "choices"):
        return {"type": "string", "enum": list(node.choices)}
    if hasattr(node, "bounds"):
        low, high = node.bounds
        return {"type": "number", "minimum": low, "maximum": high}
    if node is id_list:
        return {
            "anyOf": [
                {"type": "string", "description": "one id, or ids separated by commas"},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    if node is positive_seconds:
        return {"type": "number", "exclusiveMinimum": 0, "description": "seconds"}

    if isinstance(node, vol.Coerce):
        return _type(node.type)
    if isinstance(node, vol.In):
        container: Any = node.container
        return {"enum": [_jsonable(item) for item in container]}
    if isinstance(node, vol.NotIn):
        excluded: Any = node.container
        return {"not": {"enum": [_jsonable(item) for item in excluded]}}
    if isinstance(node, vol.Range):
        return _range(node)
    if isinstance(node, vol.Clamp):
        return {"type": "number", "description": f"clamped to [{node.min}, {node.max}]"}
    if isinstance(node, vol.Length):
        bounds: JsonSchema = {}
        if node.min is not None:
            bounds["minLength"] = node.min
        if node.max is not None:
            bounds["maxLength"] = node.max
        return bounds
    if isinstance(node, vol.Match):
        pattern = getattr(node.pattern, "pattern", node.pattern)
        return {"type": "string", "pattern": str(pattern)}
    if isinstance(node, vol.Date):
        return {"type": "string", "format": "date"}
    if isinstance(node, vol.Datetime):
        return {"type": "string", "format": "date-time"}
    if isinstance(node, vol.Equal):
        return {"const": _jsonable(node.target)}
    if isinstance(node, vol.Unique):
        return {"type": "array", "uniqueItems": True}
    if isinstance(node, vol.ExactSequence):
        return {
            "type": "array",
            "prefixItems": [to_json_schema(part) for part in node.validators],
            "items": False,
        }
    if isinstance(node, vol.Replace):
        return {"type": "string"}
    name = getattr(node, "__name__", None)
    module = getattr(node, "__module__", "") or ""
    if name in _NAMED and module.startswith("voluptuous"):
        return dict(_NAMED[name])
    return _unknown(node)


def _unknown(node: Any) -> JsonSchema:
    name = getattr(node, "__name__", None) or type(node).__name__
    return {"description": f"checked by {name}"}


def _type(python_type: Any) -> JsonSchema:
    if python_type in _TYPES:
        return {"type": _TYPES[python_type]}
    return _unknown(python_type)


def _range(node: vol.Range) -> JsonSchema:
    bounds: JsonSchema = {}
    if node.min is not None:
        bounds["minimum" if node.min_included else "exclusiveMinimum"] = node.min
    if node.max is not None:
        bounds["maximum" if node.max_included else "exclusiveMaximum"] = node.max
    return bounds


def _array(items: list[Any]) -> JsonSchema:
    if not items:
        return {"type": "array"}
    if len(items) == 1:
        return {"type": "array", "items": to_json_schema(items[0])}
    return {"type": "array", "items": _any_of([to_json_schema(item) for item in items])}


def _nullable(schema: JsonSchema) -> JsonSchema:
    """`schema`, or null (an option whose default None means "not set")."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _any_of(parts: list[JsonSchema]) -> JsonSchema:
    return parts[0] if len(parts) == 1 else {"anyOf": parts}


def _merge(parts: list[JsonSchema]) -> JsonSchema:
    """All(...) as one schema when its parts do not conflict, else allOf."""
    merged: JsonSchema = {}
    for part in parts:
        for key, value in part.items():
            if key not in merged or merged[key] == value:
                merged[key] = value
            elif key == "description":
                merged[key] = f"{merged[key]}; {value}"
            elif key == "type" and {merged[key], value} == {"integer", "number"}:
                merged[key] = "integer"  # an integer is a number: keep the narrower
            else:
                return {"allOf": parts}
    if merged.get("type") == "array":
        # Length on a list bounds its items, not characters.
        for text_key, array_key in (("minLength", "minItems"), ("maxLength", "maxItems")):
            if text_key in merged:
                merged[array_key] = merged.pop(text_key)
    return merged


def _object(schema: dict[Any, Any], *, all_required: bool, extra: int) -> JsonSchema:
    properties: JsonSchema = {}
    required: list[str] = []
    additional: Any = extra == vol.ALLOW_EXTRA
    for key, value in schema.items():
        if isinstance(key, vol.Remove):
            continue
        name = key.schema if isinstance(key, vol.Marker) else key
        if key is vol.Extra:
            additional = True
            continue
        if isinstance(name, type):
            additional = to_json_schema(value)  # {str: int}: any name, these values
            continue
        if not isinstance(name, str):
            continue
        prop = to_json_schema(value)
        default = getattr(key, "default", vol.UNDEFINED)
        has_default = default is not vol.UNDEFINED
        if isinstance(key, vol.Marker) and key.description:
            prop = {**prop, "description": str(key.description)}
        if has_default:
            prop = {**prop, "default": _jsonable(default() if callable(default) else default)}
        is_required = isinstance(key, vol.Required) or (
            all_required and not isinstance(key, vol.Optional)
        )
        if is_required and not has_default:
            required.append(name)
        properties[name] = prop
    result: JsonSchema = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    result["additionalProperties"] = additional
    return result


def _jsonable(value: Any) -> Any:
    """A value JSON can hold (defaults and examples may be any Python object)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(item) for item in items]
    source = getattr(value, "source", None)  # a compiled Template exports as its text
    return source if isinstance(source, str) else str(value)


# ------------------------------------------------------------------ the registry

_ENTRY_KEYS: dict[str, JsonSchema] = {
    "alias": {"type": "string", "description": "A name for people, shown in logs"},
    "enabled": {
        "type": "boolean",
        "default": True,
        "description": "false keeps it in the file but never runs it",
    },
}
_TRIGGER_ID: JsonSchema = {
    "type": ["string", "integer"],
    "description": "Read by templates as trigger.id",
}
_STEP_ID: JsonSchema = {
    "type": "string",
    "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
    "description": "Later steps read this step's output as steps.<id> (default step_<n>)",
}


def registry_document(registry: Registry) -> JsonSchema:
    """Every trigger and action of `registry` as one JSON Schema (draft 2020-12) document.

    Each declaration is under `$defs` (`trigger.<key>`, `action.<key>`): an
    entry as written in an automation, its `trigger:`/`action:` key fixed to
    the declaration's key, with title, description, example and options.
    Actions carry `x-providers`, `x-destructive` and `x-output-example`;
    triggers `x-providers` and `x-kinds`. `properties.triggers` and
    `properties.actions` accept a list of any of them.
    """
    definitions: JsonSchema = {}
    for key, trigger in sorted(registry.triggers.items()):
        definitions[f"trigger.{key}"] = _trigger_definition(trigger)
    for key, action in sorted(registry.actions.items()):
        definitions[f"action.{key}"] = _action_definition(action)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "ftconnect triggers and actions",
        "description": "The triggers and actions an automation can use, with their options.",
        "type": "object",
        "properties": {
            "triggers": _list_of("trigger", sorted(registry.triggers)),
            "actions": _list_of("action", sorted(registry.actions)),
        },
        "$defs": definitions,
    }


def _list_of(kind: str, keys: list[str]) -> JsonSchema:
    refs = [{"$ref": f"#/$defs/{kind}.{key}"} for key in keys]
    # An empty oneOf is not valid JSON Schema; with nothing installed, nothing fits.
    return {
        "type": "array",
        "description": f"Each item is one {kind}, chosen by its '{kind}:' key",
        "items": {"oneOf": refs} if refs else False,
    }


def _trigger_definition(spec: TriggerSpec) -> JsonSchema:
    definition = _entry_definition("trigger", spec.key, spec, {"id": _TRIGGER_ID})
    definition["x-providers"] = sorted(spec.providers)
    definition["x-kinds"] = sorted(spec.kinds)
    return definition


def _action_definition(spec: ActionSpec) -> JsonSchema:
    definition = _entry_definition("action", spec.key, spec, {"id": _STEP_ID})
    definition["x-providers"] = sorted(spec.providers)
    definition["x-destructive"] = spec.destructive
    definition["x-output-example"] = _jsonable(spec.output_example)
    return definition


def _entry_definition(
    kind: str,
    key: str,
    spec: TriggerSpec | ActionSpec,
    id_property: JsonSchema,
) -> JsonSchema:
    options = to_json_schema(spec.schema)
    entry_properties: JsonSchema = {
        kind: {"const": key, "description": f"Which {kind} this is"},
        **id_property,
        **_ENTRY_KEYS,
    }
    example = {kind: key, **_jsonable(dict(spec.example))}
    head: JsonSchema = {
        "title": spec.title,
        "description": spec.description,
        "examples": [example],
    }
    if options.get("type") == "object" and isinstance(options.get("properties"), dict):
        body = dict(options)
        body["properties"] = {**entry_properties, **options["properties"]}
        body["required"] = [kind, *options.get("required", [])]
        return {**head, **body}
    # Options that are not a plain mapping schema are attached as they are.
    return {
        **head,
        "type": "object",
        "properties": entry_properties,
        "required": [kind],
        "allOf": [options],
    }


def registry_markdown(registry: Registry) -> str:
    """The README tables of triggers and actions: key, title, description, options.

    Each option reads `name` (required, template): description (default `value`);
    "template" marks options that accept a `{{ ... }}` template.
    """
    lines = ["### Triggers", "", *_table(registry.triggers.values(), "trigger"), ""]
    lines += ["### Actions", "", *_table(registry.actions.values(), "action")]
    return "\n".join(lines) + "\n"


def _table(specs: Iterable[TriggerSpec | ActionSpec], kind: str) -> list[str]:
    rows = ["| key | title | description | options |", "|---|---|---|---|"]
    ordered = sorted(specs, key=lambda spec: spec.key)
    if not ordered:
        rows.append(f"| | | no {kind}s installed | |")
    for spec in ordered:
        description = spec.description.strip()
        if description and not description.endswith((".", "!", "?")):
            description += "."
        if isinstance(spec, ActionSpec):
            description += f" Providers: {', '.join(sorted(spec.providers))}."
            if spec.destructive:
                description += " **Destructive.**"
        cells = [f"`{spec.key}`", spec.title, description, _options_cell(spec.schema)]
        rows.append("| " + " | ".join(_cell(text) for text in cells) + " |")
    return rows


def _options_cell(schema: Any) -> str:
    exported = to_json_schema(schema)
    properties = exported.get("properties")
    if not isinstance(properties, dict) or not properties:
        return "(none)"
    required = set(exported.get("required", []))
    parts = []
    for name, prop in properties.items():
        flags = [
            flag
            for flag, on in (("required", name in required), ("template", prop.get("x-template")))
            if on
        ]
        text = f"`{name}`" + (f" ({', '.join(flags)})" if flags else "")
        description = prop.get("description")
        if description:
            text += f": {description}"
        if "default" in prop:
            text += f" (default `{json.dumps(prop['default'])}`)"
        parts.append(text)
    return "<br>".join(parts)


def _cell(text: str) -> str:
    # A pipe ends a Markdown cell and a newline ends the row.
    return " ".join(str(text).split()).replace("|", "\\|")


# ------------------------------------------------------------ the config reference


def config_markdown(sections: Sequence[ConfigSection] | None = None) -> str:
    """The README's config file reference: a table per section of the automations file.

    One row per key: its path (as error messages write it), its default, what
    values are allowed (type and range, from the schema) and its description.
    `sections` defaults to `connector.automation.config.CONFIG_REFERENCE`.
    """
    if sections is None:
        from connector.automation.config import CONFIG_REFERENCE

        sections = CONFIG_REFERENCE
    lines: list[str] = []
    for section in sections:
        heading = section.title if not section.path else f"`{section.path}`"
        if section.path and section.title != section.path:
            heading += f": {section.title.lower()}"
        lines += [f"#### {heading}", "", section.description, ""]
        lines += _reference_table(section.path, section.schema)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _reference_table(path: str, schema: Any) -> list[str]:
    exported = to_json_schema(schema)
    properties = exported.get("properties")
    rows = ["| key | default | allowed | description |", "|---|---|---|---|"]
    if not isinstance(properties, dict):
        return rows
    required = set(exported.get("required", []))
    for name, prop in properties.items():
        key = f"{path}.{name}" if path else name
        if name in required:
            default = "required"
        elif "default" in prop:
            default = _default_text(prop["default"])
        else:
            default = ""
        cells = [f"`{key}`", default, _allowed(prop), str(prop.get("description", ""))]
        rows.append("| " + " | ".join(_cell(text) for text in cells) + " |")
    return rows


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 60.0 reads as 60
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _allowed(prop: JsonSchema) -> str:
    """What a key accepts, in words: "whole number, 16 to 65536", "true or false", ..."""
    if "x-allowed" in prop:
        return str(prop["x-allowed"])
    if "enum" in prop:
        return "one of " + ", ".join(f"`{item}`" for item in prop["enum"])
    kinds = prop.get("type")
    kind = next((k for k in kinds if k != "null"), None) if isinstance(kinds, list) else kinds
    if kind == "boolean":
        return "true or false"
    if kind in ("integer", "number"):
        noun = "whole number" if kind == "integer" else "number"
        return f"{noun}{_bounds(prop)}"
    if kind == "string":
        if "minLength" in prop and prop["minLength"] > 1:
            return f"text, at least {prop['minLength']} characters"
        if "pattern" in prop:
            return f"text matching `{prop['pattern']}`"
        return "text"
    if kind == "array":
        return "a list"
    if kind == "object":
        return "a mapping"
    return ""


def _bounds(prop: JsonSchema) -> str:
    low = prop.get("minimum")
    high = prop.get("maximum")
    if low is not None and high is not None:
        return f", {_number(low)} to {_number(high)}"
    if "exclusiveMinimum" in prop:
        return f", above {_number(prop['exclusiveMinimum'])}"
    if low is not None:
        return f", at least {_number(low)}"
    if high is not None:
        return f", at most {_number(high)}"
    return ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _main(argv: Sequence[str]) -> int:
    """`python -m connector.automation.jsonschema config`: print the README's config reference."""
    if list(argv) != ["config"]:
        print("usage: python -m connector.automation.jsonschema config", file=sys.stderr)
        return 2
    print(config_markdown(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
