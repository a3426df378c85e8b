"""An automations file read as YAML nodes, leniently: what a command needs from it even when
the file is invalid or its secrets cannot be read (the journal's folder, the key and server
for a lookup, the playlists its actions name, each with its line)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from connector.automation.registry import Registry
from connector.automation.schema import DEFAULT_STATE_DIR
from connector.automation.specs import ActionSpec
from connector.automation.validators import PLAYLIST
from connector.automation.yaml_reader import SECRETS_FILE
from connector.endpoint import Endpoint, resolve_endpoint
from connector.redaction import register_secret


class RawFile:
    """An automations file's YAML nodes, and what can be read from them."""

    def __init__(self, path: Path, root: Any, environ: Mapping[str, str]) -> None:
        self.path = path
        self.root = root
        self.environ = environ
        self._secrets: dict[Any, Any] | None = None

    @classmethod
    def read(cls, path: Path, environ: Mapping[str, str] | None = None) -> RawFile | None:
        """The file's nodes, or None when it cannot be read or is not YAML."""
        file = path.expanduser().resolve()
        try:
            root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return cls(file, root, os.environ if environ is None else environ)

    @staticmethod
    def get(node: Any, key: str) -> Any:
        """The value node of `key` in a mapping node (the last, as YAML loads it), or None."""
        found = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    found = value_node
        return found

    def text(self, node: Any) -> str | None:
        """A scalar's text, `!env` and `!secret` resolved; None when absent or unreadable."""
        if not isinstance(node, yaml.ScalarNode):
            return None
        name = str(node.value).strip()
        if node.tag == "!env":
            return self.environ.get(name)
        if node.tag == "!secret":
            value = self._read_secrets().get(name)
            if isinstance(value, str):
                register_secret(value)
                return value
            return None
        if node.tag == "tag:yaml.org,2002:str":
            return str(node.value)
        return None

    def _read_secrets(self) -> dict[Any, Any]:
        if self._secrets is None:
            try:
                data = yaml.safe_load((self.path.parent / SECRETS_FILE).read_text("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                data = None
            self._secrets = data if isinstance(data, dict) else {}
        return self._secrets

    def finetuning(self, option: str) -> str | None:
        """`finetuning.<option>`, resolved, or None."""
        return self.text(self.get(self.get(self.root, "finetuning"), option))

    def state_dir(self) -> Path | None:
        """The journal's folder as `run` would use it, or None when it cannot be told."""
        node = self.get(self.root, "state_dir")
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return self.path.parent / DEFAULT_STATE_DIR
        value = self.text(node)
        if value is None or not value.strip():
            return None
        folder = Path(value).expanduser()
        return folder if folder.is_absolute() else self.path.parent / folder

    def automations(self) -> Iterator[tuple[int, Any]]:
        node = self.get(self.root, "automations")
        if isinstance(node, yaml.SequenceNode):
            yield from enumerate(node.value)

    def playlist_references(self, registry: Registry) -> list[tuple[int, str, str]]:
        """(line, path, name or id) of each playlist named as plain text in an enabled
        action step (a template is only known when it renders)."""
        found: list[tuple[int, str, str]] = []
        for index, automation in self.automations():
            if self._disabled(automation):
                continue
            for path, step in self._steps(automation, f"automations[{index}]"):
                name = self.text(self.get(step, "action"))
                spec = registry.actions.get(name) if name else None
                if spec is None or self._disabled(step):
                    continue
                for option in playlist_options(spec):
                    node = self.get(step, option)
                    value = self.text(node)
                    if value is None or not value.strip() or "{{" in value or "{%" in value:
                        continue
                    found.append((node.start_mark.line + 1, f"{path}.{option}", value.strip()))
        return found

    def _steps(self, automation: Any, path: str) -> Iterator[tuple[str, Any]]:
        # `actions:` or its alias `action:`, a list or one step (as the config reads them).
        key = "actions" if self.get(automation, "actions") is not None else "action"
        node = self.get(automation, key)
        if isinstance(node, yaml.SequenceNode):
            for index, step in enumerate(node.value):
                yield f"{path}.{key}[{index}]", step
        elif isinstance(node, yaml.MappingNode):
            yield f"{path}.{key}", node

    def _disabled(self, node: Any) -> bool:
        flag = self.get(node, "enabled")
        return isinstance(flag, yaml.ScalarNode) and str(flag.value).lower() in ("false", "no")

    def endpoint(self, api_key: str | None, base_url: str | None) -> Endpoint:
        """The endpoint as `load_file` decides it, from what can be read of the file."""
        file_key = self.finetuning("api_key")
        register_secret(file_key)  # kept out of everything written, as load_config does
        return resolve_endpoint(
            flag_key=api_key,
            flag_url=base_url,
            file_key=file_key,
            file_url=self.finetuning("base_url"),
            file_name=self.path.name,
        )

    def automation_count(self) -> int:
        return sum(1 for _ in self.automations())


def lenient_endpoint(
    path: Path, *, api_key: str | None = None, base_url: str | None = None
) -> Endpoint:
    """The endpoint `load_file` would decide, from what can be read of a file that does
    not load (the same precedence; an unreadable file counts as saying nothing)."""
    raw = RawFile.read(path)
    if raw is None:
        return resolve_endpoint(flag_key=api_key, flag_url=base_url, file_name=path.name)
    return raw.endpoint(api_key, base_url)


def playlist_options(spec: ActionSpec) -> list[str]:
    """The options of an action that name a playlist (declared with `validators.PLAYLIST`)."""
    names: list[str] = []
    for marker, validator in spec.schema.schema.items():
        name = getattr(marker, "schema", marker)
        if validator is PLAYLIST and isinstance(name, str):
            names.append(name)
    return names
