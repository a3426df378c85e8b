"""Voluptuous schemas as JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1).

The declarations of triggers and actions double as their API description: the
same schemas that validate the automations file give `spec_schema` (one
trigger's or action's options, an OpenAPI 3.1 Schema Object as it is) and
`registry_document` (all of them as items of an automation, one document for
form builders and `ftconnect schema`). `connector.automation.reference` makes
the README's tables from the same export.

The conversion understands the voluptuous building blocks (dicts with
Required/Optional markers, defaults and descriptions, lists, Any, All, In,
Range, Length, Coerce, Match, Url, ...) and the validators of
`connector.automation.validators`, which carry attributes for it (a validator
may also state its whole JSON Schema with `exported`). A field that accepts a
template is exported as its inner schema with `"x-template": true`: a form
builder shows the inner type, and knows a `{{ ... }}` string is allowed too.
Unknown keys are refused (`additionalProperties: false`), as the validator
refuses them. Anything it does not understand becomes `{}` with a description
naming the validator; it never raises.

Why not the voluptuous-openapi package (0.0.6 to 0.4.1): it leaves unknown
keys allowed, turns any validator it cannot read into `"type": "string"`, drops
`Schema(required=True)`, exports `Length` on a list as `minLength` and `Date`
as `date-time`, and removes `None` from an `In` validator's own list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from connector.automation.registry import Registry
from connector.automation.specs import ActionSpec, TriggerSpec
from connector.automation.validators import id_list, positive_seconds

__all__ = ["JSON_SCHEMA_DIALECT", "registry_document", "spec_schema", "to_json_schema"]

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


def spec_schema(spec: TriggerSpec | ActionSpec, *, entry: bool = False) -> JsonSchema:
    """The JSON Schema of a trigger's or action's options, with its title, description
    and example: self-contained (no `$ref`), draft 2020-12, so also an OpenAPI 3.1
    Schema Object.

    With `entry`, the schema of the item as an automation writes it: the
    `trigger:`/`action:` key fixed to the declaration's, and the keys every item
    takes (`id`, `alias`, `enabled`). Actions carry `x-providers`,
    `x-destructive` and `x-output-example`; triggers `x-providers` and `x-kinds`.
    """
    kind = "trigger" if isinstance(spec, TriggerSpec) else "action"
    options = to_json_schema(spec.schema)
    example = {name: _jsonable(value) for name, value in spec.example.items() if name != kind}
    if entry:
        example = {kind: spec.key, **example}
    head: JsonSchema = {
        "title": spec.title,
        "description": spec.description,
        "examples": [example],
    }
    schema: JsonSchema = {**head, **options, **head}  # the spec's words win, in front
    if entry:
        item_keys: JsonSchema = {
            kind: {"const": spec.key, "description": f"Which {kind} this is"},
            "id": _TRIGGER_ID if kind == "trigger" else _STEP_ID,
            **_ENTRY_KEYS,
        }
        if options.get("type") == "object" and isinstance(options.get("properties"), dict):
            schema["properties"] = {**item_keys, **options["properties"]}
            schema["required"] = [kind, *options.get("required", [])]
        else:  # options that are not a plain mapping schema are attached as they are
            schema = {**head, "type": "object", "properties": item_keys, "required": [kind]}
            schema["allOf"] = [options]
    schema["x-providers"] = sorted(spec.providers)
    if isinstance(spec, TriggerSpec):
        schema["x-kinds"] = sorted(spec.kinds)
    else:
        schema["x-destructive"] = spec.destructive
        schema["x-output-example"] = _jsonable(spec.output_example)
    return schema


def registry_document(registry: Registry) -> JsonSchema:
    """Every trigger and action of `registry` as one JSON Schema (draft 2020-12) document.

    Each declaration is under `$defs` (`trigger.<key>`, `action.<key>`): its
    `spec_schema` as an automation's item. `properties.triggers` and
    `properties.actions` accept a list of any of them.
    """
    definitions: JsonSchema = {}
    for key, trigger in sorted(registry.triggers.items()):
        definitions[f"trigger.{key}"] = spec_schema(trigger, entry=True)
    for key, action in sorted(registry.actions.items()):
        definitions[f"action.{key}"] = spec_schema(action, entry=True)
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
