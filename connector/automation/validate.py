"""The validator: walks a loaded automations file and turns everything wrong into problems.

The file has the Home Assistant shape: provider sections (`finetuning`,
`tempolor`), `webhook`, `poll`, `state_dir`, `runtime` and a list of
`automations`, each with `triggers`, `conditions` and `actions`. Every section
is checked against its schema (`connector.automation.schema`), the automations
by `connector.automation.automations`; every problem is collected, not just
the first, and the file becomes a `ConnectorConfig` only when there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from connector.automation.automations import AutomationValidator, text_or_none
from connector.automation.model import ConnectorConfig, PollConfig, ProviderConfig, WebhookConfig
from connector.automation.options import check_options, schema_keys
from connector.automation.problems import Problems, got, kind_of, suggest
from connector.automation.registry import Registry
from connector.automation.schema import (
    DEFAULT_STATE_DIR,
    DOCUMENT_SCHEMA,
    SECRET_FIELDS,
    SECTION_SCHEMAS,
)
from connector.automation.yaml_reader import LineMapping, LineSequence, Unresolved, join, plain

__all__ = ["SECTIONS", "Validator"]

SECTIONS = tuple(schema_keys(DOCUMENT_SCHEMA))


class Validator:
    """Walks the loaded document and turns everything wrong into problems."""

    def __init__(
        self,
        problems: Problems,
        registry: Registry | Callable[[], Registry],
        base_dir: Path,
        source: Path | None,
    ) -> None:
        self.problems = problems
        self.base_dir = base_dir
        self.source = source
        self.automations = AutomationValidator(problems, registry, base_dir)

    def add(self, line: int | None, path: str, message: str) -> None:
        self.problems.add(line, path, message)

    # -- what the loader found --------------------------------------------------

    def report_loader_findings(self, value: Any, path: str, line: int | None) -> None:
        """Unreadable !env/!secret values and keys given twice, with their paths."""
        if isinstance(value, Unresolved):
            if value.message:
                self.add(line, path, value.message)
        elif isinstance(value, LineMapping):
            for key, given, first_line in value.repeated:
                self.add(given, join(path, key), f"is given twice (first on line {first_line})")
            for key, item in value.items():
                self.report_loader_findings(item, join(path, key), value.key_lines.get(key))
        elif isinstance(value, LineSequence):
            for index, item in enumerate(value):
                self.report_loader_findings(item, join(path, index), value.item_lines[index])

    # -- the document ----------------------------------------------------------

    def document(self, data: Any) -> ConnectorConfig | None:
        """Validate the whole file; None when anything is wrong (problems say what)."""
        if data is None:
            data = LineMapping(1)
        if not isinstance(data, LineMapping):
            self.add(
                getattr(data, "line", 1),
                "",
                "the file must be a mapping of sections such as 'finetuning:' and "
                f"'automations:' (got {kind_of(data)})",
            )
            return None
        self.report_loader_findings(data, "", data.line)
        for key in data:
            if key not in SECTIONS:
                home = _section_of(key)
                hint = (
                    f" (it is an option of '{home}:': indent it under that section)"
                    if home
                    else suggest(key, SECTIONS)
                )
                self.add(data.key_lines.get(key), join("", key), f"is not a valid section{hint}")

        finetuning = self.section(data, "finetuning")
        tempolor = self.section(data, "tempolor") if "tempolor" in data else None
        webhook = self.section(data, "webhook") if "webhook" in data else None
        poll = self.section(data, "poll")
        runtime = self.section(data, "runtime")
        state_dir = self.state_dir(data)
        automations = self.automations.automations(data)

        if (
            self.problems.items
            or finetuning is None
            or poll is None
            or runtime is None
            or state_dir is None
            or automations is None
        ):
            return None
        return ConnectorConfig(
            source=self.source,
            finetuning=ProviderConfig(
                text_or_none(finetuning["api_key"]),
                finetuning["base_url"],
                reads_per_window=finetuning["reads_per_window"],
                generations_per_window=finetuning["generations_per_window"],
                rate_window=finetuning["rate_window"],
                retry_backoff=finetuning["retry_backoff"],
            ),
            tempolor=None
            if tempolor is None
            else ProviderConfig(text_or_none(tempolor["api_token"]), tempolor["base_url"]),
            webhook=None
            if webhook is None
            else WebhookConfig(
                host=webhook["listen"][0],
                port=webhook["listen"][1],
                public_url=webhook["public_url"],
                token=text_or_none(webhook["token"]),
                max_connections=webhook["max_connections"],
                header_timeout=webhook["header_timeout"],
            ),
            poll=PollConfig(**poll),
            state_dir=state_dir,
            max_concurrent_runs=runtime["max_concurrent_runs"],
            retention_days=runtime["retention_days"],
            automations=automations,
        )

    def section(self, data: LineMapping, name: str) -> dict[str, Any] | None:
        """One top-level section (absent or empty means all defaults)."""
        raw = data.get(name)
        line = data.key_lines.get(name, data.line)
        if raw is None:
            raw = LineMapping(line)
        if isinstance(raw, Unresolved):
            return None
        if not isinstance(raw, dict):
            self.add(line, name, f"must be a mapping of options (got {kind_of(raw)})")
            return None
        # A key written in the file itself is as secret as one read with !env: no
        # message may repeat it, whatever reports it (a malformed one included).
        for key in SECRET_FIELDS.get(name, ()):
            self.problems.hide(raw.get(key))
        # A missing option is reported at the section's name, not its first option.
        return check_options(
            self.problems, SECTION_SCHEMAS[name], plain(raw), raw, name, f"{name!r}", anchor=line
        )

    def state_dir(self, data: LineMapping) -> Path | None:
        raw = data.get("state_dir")
        if raw is None:
            return self.base_dir / DEFAULT_STATE_DIR
        if isinstance(raw, Unresolved):
            return None
        if not isinstance(raw, str) or not raw.strip():
            self.add(
                data.key_lines.get("state_dir"),
                "state_dir",
                f"must be a folder path {got(raw)}",
            )
            return None
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def _section_of(key: object) -> str | None:
    """The section an option belongs to, for a key written at the top level by mistake."""
    for name, schema in SECTION_SCHEMAS.items():
        if key in schema_keys(schema):
            return name
    return None
