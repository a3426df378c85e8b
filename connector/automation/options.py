"""Options against their voluptuous schema: every error a problem, in the file's words.

A section's options and a trigger's or action's options are validated by a
voluptuous schema; `check_options` turns each error it raises into a problem
at the line of the offending value, in the words a YAML user reads ("expected
a whole number (got 'ten')", "is not a valid option for 'generate' (did you
mean 'duration'?)"). `load_check` does the same for a spec's load-time check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import voluptuous as vol

from connector.automation.problems import Problems, shown, suggest
from connector.automation.templates import Template
from connector.automation.yaml_reader import has_unresolved, join_all, line_at, value_at

__all__ = ["check_options", "load_check", "schema_keys"]

# voluptuous's own type messages, in the words a YAML user reads.
_EXPECTED = {
    "expected int": "expected a whole number",
    "expected float": "expected a number",
    "expected bool": "expected true or false",
    "expected str": "expected text",
    "expected list": "expected a list",
    "expected dict": "expected a mapping of options",
}


def check_options(
    problems: Problems,
    schema: Any,
    options: dict[str, Any],
    raw: Any,
    path: str,
    subject: str,
    skip: Iterable[str] = (),
    anchor: int | None = None,
) -> dict[str, Any] | None:
    """Validate `options` with a voluptuous schema; report each error; None if any.

    `raw` is the loaded mapping the options came from (for line numbers);
    `anchor` the line for problems of the mapping as a whole (its own by default).
    """
    if not isinstance(schema, vol.Schema):
        schema = vol.Schema(schema)
    try:
        validated = schema(options)
    except vol.MultipleInvalid as err:
        errors = list(err.errors)
    except vol.Invalid as err:
        errors = [err]
    else:
        return dict(validated) if isinstance(validated, dict) else {"value": validated}
    skipped = set(skip)
    for error in errors:
        if not (error.path and error.path[0] in skipped):
            _report_invalid(problems, error, schema, options, raw, path, subject, anchor)
    return None


def _report_invalid(
    problems: Problems,
    error: vol.Invalid,
    schema: Any,
    options: dict[str, Any],
    raw: Any,
    path: str,
    subject: str,
    anchor: int | None,
) -> None:
    parts = [part.schema if isinstance(part, vol.Marker) else part for part in error.path]
    where = join_all(path, parts)
    line = line_at(raw, parts, anchor)
    if isinstance(error, vol.RequiredFieldInvalid):
        if error.msg == "required key not provided":
            problems.add(line, where, f"is required for {subject}")
        else:
            problems.add(line, where, error.msg)
        return
    if error.msg == "extra keys not allowed" and parts:
        container = value_at(options, parts[:-1])[1]
        present = set(container) if isinstance(container, dict) else set()
        names = [k for k in schema_keys(_schema_at(schema, parts[:-1])) if k not in present]
        problems.add(line, where, f"is not a valid option for {subject}{suggest(parts[-1], names)}")
        return
    found, value = value_at(options, parts)
    if found and has_unresolved(value):
        return  # the unreadable !env/!secret was reported on its own
    if found and isinstance(value, Template):
        problems.add(line, where, f"cannot be a template ({error.msg})")
        return
    message = _EXPECTED.get(error.msg, error.msg)
    if found and message.startswith("expected ") and "(got" not in message:
        message = f"{message} (got {shown(value)})"  # a secret shows as ***
    problems.add(line, where, message)


def load_check(
    problems: Problems,
    check: Callable[[Mapping[str, Any]], None] | None,
    options: dict[str, Any],
    raw: Any,
    path: str,
    line: int | None,
) -> None:
    """Run a spec's load-time `check` on its validated options; report what it refuses."""
    if check is None:
        return
    try:
        check(options)
    except vol.MultipleInvalid as err:
        for error in err.errors:
            _report_check(problems, error, raw, path, line)
    except vol.Invalid as err:
        _report_check(problems, err, raw, path, line)
    except ValueError as err:
        problems.add(line, path, str(err))


def _report_check(
    problems: Problems, error: vol.Invalid, raw: Any, path: str, line: int | None
) -> None:
    parts = [part.schema if isinstance(part, vol.Marker) else part for part in error.path]
    problems.add(line_at(raw, parts, line), join_all(path, parts), error.msg)


# ---------------------------------------------------------- reading a schema


def schema_keys(schema: Any) -> list[str]:
    """The option names a schema declares (looking through All/Any/Schema)."""
    if isinstance(schema, vol.Schema):
        return schema_keys(schema.schema)
    if isinstance(schema, dict):
        keys = [key.schema if isinstance(key, vol.Marker) else key for key in schema]
        return [key for key in keys if isinstance(key, str)]
    if isinstance(schema, vol.All | vol.Any):
        return [key for part in schema.validators for key in schema_keys(part)]
    return []


def _schema_at(schema: Any, parts: Iterable[object]) -> Any:
    """The sub-schema that validates the value at `parts`, as far as it can be found."""
    for part in parts:
        schema = _unwrap_to_container(schema)
        if isinstance(schema, dict):
            found = None
            for key, value in schema.items():
                if (key.schema if isinstance(key, vol.Marker) else key) == part:
                    found = value
                    break
            schema = found
        elif isinstance(schema, list) and len(schema) == 1:
            schema = schema[0]
        else:
            return None
    return schema


def _unwrap_to_container(schema: Any) -> Any:
    for _ in range(10):  # a schema nests a handful of wrappers at most
        if isinstance(schema, vol.Schema):
            schema = schema.schema
        elif hasattr(schema, "inner"):
            schema = schema.inner
        elif isinstance(schema, vol.All | vol.Any):
            containers = [v for v in schema.validators if isinstance(v, dict | list | vol.Schema)]
            schema = containers[0] if containers else None
        else:
            break
    return schema
