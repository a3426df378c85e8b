"""The README's reference, in Markdown, made from the schemas' JSON Schema export.

`registry_markdown` gives the tables of triggers and actions (`ftconnect schema
--markdown`); `config_markdown` the config file reference, one table per section
of the automations file (`python -m connector.automation.reference config`).
Tests keep both README sections equal to them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from connector.automation.jsonschema import JsonSchema, to_json_schema
from connector.automation.registry import Registry
from connector.automation.schema import CONFIG_REFERENCE, ConfigSection
from connector.automation.specs import ActionSpec, TriggerSpec

__all__ = ["config_markdown", "registry_markdown"]


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


def config_markdown(sections: Sequence[ConfigSection] = CONFIG_REFERENCE) -> str:
    """The README's config file reference: a table per section of the automations file.

    One row per key: its path (as error messages write it), its default, what
    values are allowed (type and range, from the schema) and its description.
    """
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
    """`python -m connector.automation.reference config`: print the README's config reference."""
    if list(argv) != ["config"]:
        print("usage: python -m connector.automation.reference config", file=sys.stderr)
        return 2
    print(config_markdown(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
