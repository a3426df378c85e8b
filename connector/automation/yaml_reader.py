"""The automations file as YAML that knows its lines, with `!env` and `!secret`.

`read_yaml` loads a document whose mappings and sequences remember the line of
each key and item (`LineMapping`, `LineSequence`) and the keys given twice.
`!env NAME` reads an environment variable and `!secret name` an entry of the
`secrets.yaml` beside the file; both give `SecretValue`s, hidden from every
problem. One that cannot be read becomes an `Unresolved` value that carries
its message, so the validator reports it with the path where it is used.

The helpers at the end walk a loaded document by path (`join`, `line_at`,
`value_at`) so a problem is reported at the deepest line that exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from connector.automation.model import SecretValue
from connector.automation.problems import Problems, kind_of, suggest

__all__ = [
    "SECRETS_FILE",
    "LineMapping",
    "LineSequence",
    "Tags",
    "Unresolved",
    "has_unresolved",
    "join",
    "join_all",
    "key_line",
    "line_at",
    "plain",
    "read_yaml",
    "value_at",
]

SECRETS_FILE = "secrets.yaml"


class LineMapping(dict[Any, Any]):
    """A YAML mapping that remembers its line, its keys' lines and repeated keys."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.explicit_lines: dict[Any, int] = {}
        self.repeated: list[tuple[Any, int, int]] = []  # (key, line, first line)


class LineSequence(list[Any]):
    """A YAML sequence that remembers its line and its items' lines."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class Unresolved:
    """Stands in for an `!env` / `!secret` that could not be read.

    `message` is reported (with the path where it is used) by the walk over the
    loaded document; None means the cause was already reported elsewhere.
    Validation ignores these values so one missing variable is one problem.
    """

    __slots__ = ("message",)

    def __init__(self, message: str | None) -> None:
        self.message = message

    def __repr__(self) -> str:
        return "<unresolved>"


def read_yaml(text: str, tags: Tags) -> Any:
    """The document in `text`, with lines; a YAML error raises ConfigError at its line."""
    try:
        loader = _Loader(text, tags)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        tags.problems.add(_yaml_line(err), "", _yaml_message(err, text))
        raise tags.problems.error() from None


# ---------------------------------------------------------------- !env, !secret


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _looks_like_a_key(name: str) -> bool:
    """A Finetuning.ai key (ft_live_/ft_test_...) or a long lower-case token, not a name."""
    lowered = name.lower()
    return lowered.startswith(("ft_live_", "ft_test_", "whsec_")) or (
        len(name) >= 24 and name != name.upper()
    )


class Tags:
    """Resolves `!env NAME` and `!secret name` for one file."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path, problems: Problems) -> None:
        self.environ = environ
        self.base_dir = base_dir
        self.problems = problems
        self._secrets: dict[Any, Any] | None = None
        self._secrets_state = "unread"  # "unread", "read", "missing", "broken"
        self.read_secrets: list[str] = []  # every value read with !secret

    def env(self, name: str) -> Any:
        if not _ENV_NAME.fullmatch(name):
            # Likely the value pasted in place of the name (`!env ft_live_...`): never
            # repeat it, it may be the secret itself.
            self.problems.hide(name)
            return Unresolved(
                "!env takes the name of an environment variable (letters, digits and _, "
                "such as FINETUNING_API_KEY), not its value"
            )
        if name not in self.environ:
            if _looks_like_a_key(name):
                self.problems.hide(name)
                return Unresolved(
                    "!env takes the name of an environment variable, and this looks like a key: "
                    "export it (export FINETUNING_API_KEY=...) and write "
                    "!env FINETUNING_API_KEY"
                )
            return Unresolved(f"environment variable {name} is not set (read by !env)")
        value = SecretValue(self.environ[name])
        self.problems.hide(value)
        return value

    def secret(self, name: str) -> Any:
        secrets = self._read_secrets()
        if self._secrets_state == "missing":
            return Unresolved(
                f"secret {name!r} needs a {SECRETS_FILE} beside the file (none in {self.base_dir})"
            )
        if secrets is None:
            return Unresolved(None)  # secrets.yaml itself was reported
        if name not in secrets:
            names = [key for key in secrets if isinstance(key, str)]
            return Unresolved(f"secret {name!r} is not in {SECRETS_FILE}{suggest(name, names)}")
        value = secrets[name]
        self.problems.hide(value)
        if isinstance(value, str):
            self.read_secrets.append(value)
        return SecretValue(value) if isinstance(value, str) else value

    def _read_secrets(self) -> dict[Any, Any] | None:
        if self._secrets_state != "unread":
            return self._secrets
        path = self.base_dir / SECRETS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._secrets_state = "missing"
            return None
        except (OSError, UnicodeDecodeError) as err:
            self._secrets_state = "broken"
            self.problems.add(None, "", f"cannot be read: {err}", file=SECRETS_FILE)
            return None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            self._secrets_state = "broken"
            self.problems.add(_yaml_line(err), "", _yaml_message(err, text), file=SECRETS_FILE)
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self._secrets_state = "broken"
            self.problems.add(
                1,
                "",
                f"must be a mapping of names to secrets (got {kind_of(data)})",
                file=SECRETS_FILE,
            )
            return None
        self._secrets_state = "read"
        self._secrets = data
        return data


# ------------------------------------------------------------------ the loader


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML is untyped
    """A safe loader whose mappings and sequences carry line numbers, with !env and !secret."""

    def __init__(self, stream: str, tags: Tags) -> None:
        super().__init__(stream)
        self.tags = tags


def _construct_mapping(loader: _Loader, node: Any) -> LineMapping:
    # Keys pulled in by a merge (`<<: *defaults`) may be overridden by explicit
    # ones; only an explicit key given twice is a mistake.
    explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit
    mapping = LineMapping(node.start_mark.line + 1)
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not _hashable(key):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found unhashable key",
                key_node.start_mark,
            )
        line = key_node.start_mark.line + 1
        if index >= merged:
            if key in mapping.explicit_lines:
                mapping.repeated.append((key, line, mapping.explicit_lines[key]))
            else:
                mapping.explicit_lines[key] = line
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_sequence(loader: _Loader, node: Any) -> LineSequence:
    sequence = LineSequence(node.start_mark.line + 1)
    for child in node.value:
        sequence.append(loader.construct_object(child, deep=True))
        sequence.item_lines.append(child.start_mark.line + 1)
    return sequence


def _tag_argument(loader: _Loader, node: Any, tag: str) -> str | Unresolved:
    if not isinstance(node, yaml.ScalarNode):
        return Unresolved(f"{tag} takes one name (got {_node_kind(node)})")
    name = str(loader.construct_scalar(node)).strip()
    if not name or len(name.split()) != 1:
        return Unresolved(f"{tag} takes one name (got {name!r})")
    return name


def _construct_env(loader: _Loader, node: Any) -> Any:
    name = _tag_argument(loader, node, "!env")
    return name if isinstance(name, Unresolved) else loader.tags.env(name)


def _construct_secret(loader: _Loader, node: Any) -> Any:
    name = _tag_argument(loader, node, "!secret")
    return name if isinstance(name, Unresolved) else loader.tags.secret(name)


def _construct_timestamp(loader: _Loader, node: Any) -> Any:
    # PyYAML lets datetime's ValueError escape without a line; give it one.
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as err:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid date: {err}", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor("!env", _construct_env)
_Loader.add_constructor("!secret", _construct_secret)


def _node_kind(node: Any) -> str:
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"


def _yaml_line(err: Exception) -> int | None:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return None if mark is None else int(mark.line) + 1


def _yaml_message(err: Exception, text: str = "") -> str:
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    line = _yaml_line(err)
    lines = text.splitlines()
    source = lines[line - 1] if line is not None and 0 < line <= len(lines) else ""
    if problem == "found unhashable key" or _UNQUOTED_TEMPLATE.search(source):
        # An unquoted `{{ ... }}` is a YAML flow mapping: the classic template mistake.
        message += '; a template must be quoted: "{{ ... }}"'
    return message


# `key: {{ ...` or `- {{ ...`: a template where YAML expects a value, without quotes.
_UNQUOTED_TEMPLATE = re.compile(r"(:|^\s*-)\s+\{\{")


# ------------------------------------------------- paths and lines in a document


def join(path: str, part: object) -> str:
    """`path` one step down: `a.b` for a key, `a[2]` for an index."""
    if isinstance(part, vol.Marker):
        part = part.schema
    if isinstance(part, int) and not isinstance(part, bool):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def join_all(path: str, parts: Iterable[object]) -> str:
    for part in parts:
        path = join(path, part)
    return path


def key_line(container: Any, key: Any) -> int | None:
    """The line of `key` in a loaded mapping (or of an item in a sequence)."""
    if isinstance(container, LineMapping):
        return container.key_lines.get(key, container.line)
    if isinstance(container, LineSequence) and isinstance(key, int) and 0 <= key < len(container):
        return container.item_lines[key]
    return getattr(container, "line", None)


def _child(node: Any, part: object) -> tuple[bool, Any]:
    """(found, value) of one step down a loaded document."""
    key = part.schema if isinstance(part, vol.Marker) else part
    if isinstance(node, dict) and _hashable(key) and key in node:
        return True, node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return True, node[key]
    return False, None


def line_at(node: Any, parts: Iterable[object], line: int | None) -> int | None:
    """The line of the deepest node along `parts` that exists in the loaded document.

    `line` is where the document node itself is reported (its own line when None).
    """
    if line is None:
        line = getattr(node, "line", None)
    for part in parts:
        found, child = _child(node, part)
        if not found:
            break
        line = key_line(node, part.schema if isinstance(part, vol.Marker) else part) or line
        node = child
    return line


def value_at(node: Any, parts: Iterable[object]) -> tuple[bool, Any]:
    """(found, value) at `parts` below `node`."""
    for part in parts:
        found, node = _child(node, part)
        if not found:
            return False, None
    return True, node


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def has_unresolved(value: Any) -> bool:
    """Whether an unreadable `!env` / `!secret` is in `value` (already reported)."""
    if isinstance(value, Unresolved):
        return True
    if isinstance(value, dict):
        return any(has_unresolved(item) for item in value.values())
    if isinstance(value, list):
        return any(has_unresolved(item) for item in value)
    return False


def plain(value: Any) -> Any:
    """The loaded value without line bookkeeping (plain dicts and lists)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
