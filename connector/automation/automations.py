"""Each automation of the file: its id, triggers, conditions and steps, checked up front.

Every trigger and action entry is checked against its declaration in the
registry (its key, its voluptuous schema, its providers, its load-time check)
and every template is compiled. The registry is discovered only when an
automation needs it, so a file of sections alone loads even while a trigger
module is broken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from connector.automation.model import AutomationConfig, SecretValue, StepConfig, TriggerConfig
from connector.automation.options import check_options, load_check, schema_keys
from connector.automation.problems import Problems, got, kind_of, shown, suggest
from connector.automation.provider_rules import provider_after, provider_before, providers_agree
from connector.automation.registry import Registry
from connector.automation.schema import AUTOMATION_SCHEMA, ENTRY_KEYS, STEP_ID
from connector.automation.specs import ActionSpec, TriggerSpec
from connector.automation.templates import Template, TemplateError, is_template
from connector.automation.validators import expand_home, no_home
from connector.automation.yaml_reader import LineMapping, LineSequence, Unresolved, join, key_line

__all__ = ["AUTOMATION_KEYS", "AutomationValidator", "text_or_none"]

AUTOMATION_KEYS = (*schema_keys(AUTOMATION_SCHEMA), "trigger", "condition", "action")

# What Home Assistant called these keys before 2024.10, for a helpful hint.
_OLD_ENTRY_KEYS = {"trigger": "platform", "action": "service"}


class AutomationValidator:
    """Walks the `automations:` list and turns everything wrong into problems."""

    def __init__(
        self, problems: Problems, registry: Registry | Callable[[], Registry], base_dir: Path
    ) -> None:
        self.problems = problems
        self._registry = registry
        self.base_dir = base_dir
        self.disabled: set[str] = set()  # paths of triggers and steps with enabled: false

    @property
    def registry(self) -> Registry:
        # Discovered only when an automation needs it, so a file of sections
        # alone loads even while a trigger module is broken.
        if not isinstance(self._registry, Registry):
            self._registry = self._registry()
        return self._registry

    def add(self, line: int | None, path: str, message: str) -> None:
        self.problems.add(line, path, message)

    # -- templates -------------------------------------------------------------

    def compile(self, value: Any, path: str, line: int | None) -> Any:
        """Compile every template in `value`; a broken one becomes an unresolved value."""
        if isinstance(value, SecretValue | Unresolved):
            return value  # a secret is never a template, whatever it holds
        if is_template(value):
            try:
                return Template(value)
            except TemplateError as err:
                self.add(line, path, str(err))
                return Unresolved(None)
        if isinstance(value, dict):
            return {
                key: self.compile(item, join(path, key), key_line(value, key) or line)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                self.compile(item, join(path, index), key_line(value, index) or line)
                for index, item in enumerate(value)
            ]
        return value

    # -- the automations -------------------------------------------------------

    def automations(self, data: LineMapping) -> list[AutomationConfig] | None:
        raw = data.get("automations")
        if raw is None or isinstance(raw, Unresolved):
            return [] if raw is None else None
        if not isinstance(raw, LineSequence):
            self.add(
                data.key_lines.get("automations"),
                "automations",
                f"must be a list of automations (got {kind_of(raw)})",
            )
            return None
        built: list[AutomationConfig] = []
        first_of: dict[str, tuple[str, int | None]] = {}  # id -> (path, line)
        for index, item in enumerate(raw):
            path = join("automations", index)
            line = raw.item_lines[index]
            if not isinstance(item, LineMapping):
                self.add(
                    line, path, f"must be a mapping with triggers and actions (got {kind_of(item)})"
                )
                continue
            # The id is checked first so a clash is reported even when the
            # automation has other problems.
            automation_id = self.automation_id(item, index, path)
            if automation_id is not None and automation_id in first_of:
                first_path, first_line = first_of[automation_id]
                made = "" if "id" in item else " (made from its alias; give it an id)"
                self.add(
                    key_line(item, "id"),
                    join(path, "id"),
                    f"{automation_id!r}{made} is already the id of {first_path} "
                    f"(line {first_line})",
                )
            elif automation_id is not None:
                first_of[automation_id] = (path, item.line)
            automation = self.automation(item, path, automation_id)
            if automation is not None:
                built.append(automation)
        return built

    def automation(
        self, raw: LineMapping, path: str, automation_id: str | None
    ) -> AutomationConfig | None:
        before = len(self.problems.items)
        for key in raw:
            if key not in AUTOMATION_KEYS:
                self.add(
                    raw.key_lines.get(key),
                    join(path, key),
                    f"is not a valid option for an automation{suggest(key, AUTOMATION_KEYS)}",
                )
        alias = self.optional_text(raw, "alias", path)
        description = self.optional_text(raw, "description", path)
        enabled = self.flag(raw, "enabled", path)
        triggers = self.entries(raw, "trigger", path, self.trigger, required=True)
        conditions = self.entries(raw, "condition", path, self.condition, required=False)
        actions = self.entries(raw, "action", path, self.step, required=True)
        # Disabled steps keep their ids reserved: enabling one later must not clash.
        step_ids: dict[str, StepConfig] = {}
        for step in actions:
            if step is None:
                continue
            if step.id in step_ids:
                first = step_ids[step.id]
                self.add(
                    step.line,
                    join(step.path, "id"),
                    f"{step.id!r} is already the id of {first.path} (line {first.line})",
                )
            step_ids.setdefault(step.id, step)
        valid_triggers = [t for t in triggers if t is not None]
        if valid_triggers:  # the registry was read for them: no discovery for nothing
            providers_agree(
                self.problems,
                self.registry.actions,
                valid_triggers,
                [s for s in actions if s is not None],
            )
        if len(self.problems.items) > before or automation_id is None:
            return None
        return AutomationConfig(
            id=automation_id,
            alias=alias,
            description=description,
            enabled=enabled,
            triggers=[t for t in triggers if t is not None and t.path not in self.disabled],
            conditions=[c for c in conditions if c is not None],
            actions=[s for s in actions if s is not None and s.path not in self.disabled],
            path=path,
            line=raw.line,
        )

    def automation_id(self, raw: LineMapping, index: int, path: str) -> str | None:
        """The automation's id: given, or made from its alias, or `automation_<n>`."""
        value = raw.get("id")
        if value is None:
            alias = raw.get("alias")
            slug = _slug(str(alias)) if isinstance(alias, str | int | float) else ""
            return slug or f"automation_{index + 1}"
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `id: 1700000000` is an id, not a number
        if not isinstance(value, str) or not value.strip():
            self.add(raw.key_lines.get("id"), join(path, "id"), f"must be text {got(value)}")
            return None
        return value

    def optional_text(self, raw: LineMapping, key: str, path: str) -> str | None:
        value = raw.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.add(raw.key_lines.get(key), join(path, key), f"must be text {got(value)}")
        return None

    def flag(self, raw: LineMapping, key: str, path: str) -> bool:
        value = raw.get(key, True)
        if isinstance(value, bool):
            return value
        self.add(
            raw.key_lines.get(key),
            join(path, key),
            f"must be true or false (got {shown(value)})",
        )
        return True

    def entries(
        self,
        raw: LineMapping,
        singular: str,
        path: str,
        build: Callable[[Any, str, int | None, int], Any],
        *,
        required: bool,
    ) -> list[Any]:
        """The items under `triggers:` (or its alias `trigger:`), one item or a list."""
        plural = singular + "s"
        if singular in raw and plural in raw:
            self.add(
                raw.key_lines.get(singular),
                path,
                f"has both {singular!r} and {plural!r}; use one of them",
            )
        key = plural if plural in raw else singular
        value = raw.get(key)
        if isinstance(value, Unresolved):
            return []
        if value is None or value == []:
            if required:
                self.add(
                    raw.key_lines.get(key, raw.line),
                    path,
                    f"has no {plural}; add '{plural}:' with at least one",
                )
            return []
        key_path = join(path, key)
        if not isinstance(value, LineSequence):
            return [build(value, key_path, raw.key_lines.get(key), 0)]
        return [
            build(item, join(key_path, index), value.item_lines[index], index)
            for index, item in enumerate(value)
        ]

    def condition(
        self, value: Any, path: str, line: int | None, index: int
    ) -> Template | bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, Unresolved):
            return None
        if isinstance(value, str) and not isinstance(value, SecretValue) and "{{" in value:
            compiled = self.compile(value, path, line)
            return compiled if isinstance(compiled, Template) else None
        shown = "text without {{ }}" if isinstance(value, str) else kind_of(value)
        self.add(
            line,
            path,
            'must be a template such as "{{ trigger.generation.duration >= 60 }}" '
            f"or true/false (got {shown})",
        )
        return None

    def trigger(self, raw: Any, path: str, line: int | None, index: int) -> TriggerConfig | None:
        found = self.entry(raw, path, line, "trigger", self.registry.triggers)
        if found is None:
            return None
        spec, options = found
        trigger_id = raw.get("id")
        return TriggerConfig(
            key=spec.key,
            options=options,
            path=path,
            line=line,
            id=None if trigger_id is None else str(trigger_id),
            alias=text_or_none(raw.get("alias")),
        )

    def step(self, raw: Any, path: str, line: int | None, index: int) -> StepConfig | None:
        found = self.entry(raw, path, line, "action", self.registry.actions)
        if found is None:
            return None
        spec, options = found
        return StepConfig(
            action=spec.key,
            id=str(raw.get("id", f"step_{index + 1}")),  # 1-based, as people count steps
            options=options,
            path=path,
            line=line,
            alias=text_or_none(raw.get("alias")),
        )

    def entry(
        self,
        raw: Any,
        path: str,
        line: int | None,
        kind: str,
        specs: Mapping[str, TriggerSpec] | Mapping[str, ActionSpec],
    ) -> tuple[TriggerSpec | ActionSpec, dict[str, Any]] | None:
        """Check one trigger or action entry against its declaration.

        Returns (spec, validated options), or None after reporting. An entry
        with `enabled: false` is checked all the same, and remembered as disabled.
        """
        if isinstance(raw, Unresolved):
            return None
        if not isinstance(raw, LineMapping):
            self.add(line, path, f"must be a mapping with '{kind}: <name>' (got {kind_of(raw)})")
            return None
        before = len(self.problems.items)
        key = raw.get(kind)
        if key is None:
            old = _OLD_ENTRY_KEYS[kind]
            if old in raw:
                hint = f" (Home Assistant's '{old}:' is now '{kind}:')"
            else:
                example = f", e.g. {min(specs)!r}" if specs else ""
                hint = f" (the name of the {kind}{example})"
            self.add(line, path, f"is missing '{kind}:'{hint}")
            return None
        if not isinstance(key, str):
            self.add(key_line(raw, kind), join(path, kind), f"must be a name {got(key)}")
            return None
        spec = specs.get(key)
        if spec is None:
            known = sorted(specs)
            hint = suggest(key, known)
            if not hint and known:
                hint = f" (known: {', '.join(known)})"
            self.add(key_line(raw, kind), join(path, kind), f"{key!r} is not a known {kind}{hint}")
            return None

        if not self.flag(raw, "enabled", path):
            self.disabled.add(path)
        self.optional_text(raw, "alias", path)
        self.entry_id(raw, path, kind)
        options = LineMapping(raw.line)  # keeps key lines for template errors
        for option, value in raw.items():
            if option != kind and option not in ENTRY_KEYS:
                options[option] = value
                options.key_lines[option] = raw.key_lines[option]
        compiled = self.compile(options, path, line)
        subject = repr(spec.key)

        provider_reported = provider_before(self.problems, spec, options, raw, path)
        skip = ("provider",) if provider_reported else ()
        validated = check_options(self.problems, spec.schema, compiled, raw, path, subject, skip)
        if validated is None:
            return None
        if not provider_reported:
            provider_after(self.problems, spec, validated, raw, path, line)
        for name in getattr(spec, "paths", ()):
            value = validated.get(name)
            if isinstance(value, str) and not isinstance(value, Template):
                where = expand_home(value)
                if where is None:
                    self.add(key_line(raw, name) or line, join(path, name), no_home(value))
                    return None
                validated[name] = str(where if where.is_absolute() else self.base_dir / where)
        load_check(self.problems, getattr(spec, "check", None), validated, raw, path, line)
        if len(self.problems.items) > before:
            return None
        return spec, validated

    def entry_id(self, raw: LineMapping, path: str, kind: str) -> None:
        if "id" not in raw:
            return
        value = raw["id"]
        where = join(path, "id")
        line = raw.key_lines.get("id")
        if kind == "action":
            if not isinstance(value, str) or not STEP_ID.match(value):
                self.add(
                    line,
                    where,
                    "must be a name of letters, digits and _ (not starting with a digit), "
                    f"so templates can read steps.<id> (got {shown(value)})",
                )
        elif not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            self.add(line, where, f"must be text {got(value)}")


def text_or_none(value: Any) -> str | None:
    """Secrets leave as plain text: the client needs a str, not our wrapper."""
    return None if value is None else str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
