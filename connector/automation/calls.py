"""An action called from outside the file (the HTTP API): its options, checked as in YAML.

`check_call` runs a request's options through the same checks a step of the
automations file gets (the action's schema, its provider rules, its load-time
check such as `bulk_delete`'s `confirm: true`), so a caller reads the same
field paths and did-you-means a YAML user does. Three things differ, all
because the options come from a request rather than from the file's owner:

* no templates: a value that looks like one is refused, not rendered (a
  request carries values; templates read events, which a call has none of);
* no secret options (`notify_webhook`'s `secret`): a call's options are
  journaled so the run can resume after a crash, and the journal never holds
  a secret. Signed webhooks belong in the file, where the secret is `!secret`;
* no entry keys (`id`, `alias`, `enabled`): the body is the options alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.automation.automations import AutomationValidator
from connector.automation.loader import SECRET_OPTIONS
from connector.automation.problems import Problems
from connector.automation.registry import Registry
from connector.automation.schema import ENTRY_KEYS
from connector.automation.specs import ActionSpec
from connector.automation.templates import Template
from connector.automation.yaml_reader import LineMapping, join

__all__ = ["CallProblem", "check_call"]


@dataclass(frozen=True)
class CallProblem:
    """One thing wrong with a call's options: where (`duration`, `tracks[2]`) and what."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def check_call(
    registry: Registry, key: str, options: Mapping[str, Any], *, base_dir: Path
) -> tuple[ActionSpec, dict[str, Any]] | list[CallProblem]:
    """The action and its validated options, or every problem found (never both).

    `key` must be a registered action (the caller answers "not found" for
    others). `base_dir` is where a relative path option (`download_track`'s
    folder) starts: the automations file's folder, as for the file's steps.
    """
    spec = registry.actions[key]
    found: list[CallProblem] = []
    for name in options:
        if not isinstance(name, str):
            found.append(CallProblem(str(name), "option names are text"))
        elif name in (*ENTRY_KEYS, "action"):
            found.append(
                CallProblem(
                    name,
                    f"is not an option of {key!r}: the body holds the action's options alone "
                    "(the action is named in the URL)",
                )
            )
        elif name in SECRET_OPTIONS and options[name] is not None:
            found.append(
                CallProblem(
                    name,
                    "cannot be given in an API call: a call's options are kept in the "
                    "journal, which never holds a secret; send signed webhooks from an "
                    "automation in the file, with the secret read by !secret",
                )
            )
    if found:
        return found
    problems = Problems("request")
    validator = AutomationValidator(problems, registry, base_dir)
    raw = LineMapping(0)
    raw["action"] = key
    for name, value in options.items():
        raw[name] = value
        raw.key_lines[name] = 0
    entry = validator.entry(raw, "", None, "action", registry.actions)
    templates = [] if entry is None else list(_templates(entry[1], ""))
    if entry is None or templates or problems.items:
        problems_found = [CallProblem(p.path or "(body)", p.message) for p in problems.items]
        problems_found += [
            CallProblem(path, "cannot be a template in an API call: send the value itself")
            for path in templates
        ]
        return problems_found
    entry_spec, validated = entry
    assert isinstance(entry_spec, ActionSpec)
    return spec, validated


def _templates(value: Any, path: str) -> list[str]:
    """The paths inside `value` that hold a template."""
    if isinstance(value, Template):
        return [path or "(body)"]
    if isinstance(value, Mapping):
        return [found for k, v in value.items() for found in _templates(v, join(path, k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _templates(v, join(path, i))]
    return []
