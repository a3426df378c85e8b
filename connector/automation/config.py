"""The automations file: load it, resolve `!env` / `!secret`, validate everything.

The file has the Home Assistant shape: provider sections (`finetuning`,
`tempolor`), `webhook`, `poll`, `state_dir`, `runtime` and a list of
`automations`, each with `triggers`, `conditions` and `actions`. Every trigger
and action entry is checked against its declaration in the registry (its key,
its voluptuous schema, its providers, its load-time check) and every template
is compiled, so a mistake is reported before anything runs.

Every problem is collected, not just the first, and each one names the file,
the line and the path of the offending value:

    automations.yaml, line 12: automations[2].actions[0].durration is not a valid
    option for 'generate' (did you mean 'duration'?)

Values read with `!env` or `!secret` are secrets: they never appear in an
error message or a repr; so are the API key, the TemPolor token and the
webhook token however they are written. A key or token the client would refuse
(`ft_live_` and 32 hex characters for Finetuning.ai) is a problem of the file,
at its line, so a file `ftconnect check` accepts is one `ftconnect run` starts.

`CONFIG_REFERENCE` describes every section and key (defaults, ranges,
descriptions) from the same schemas; the README's config reference is made
from it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import voluptuous as vol
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

from connector.automation.registry import (
    PROVIDERS,
    ActionSpec,
    Registry,
    TriggerSpec,
    default_registry,
)
from connector.automation.templates import Template, TemplateError, is_template
from connector.errors import InvalidApiKeyError
from connector.providers.finetuning.client import API_KEY_PATTERN, check_api_key
from connector.providers.finetuning.client import DEFAULT_BASE_URL as FT_BASE_URL
from connector.providers.tempolor.client import DEFAULT_BASE_URL as TP_BASE_URL
from connector.providers.tempolor.client import check_api_token
from connector.redaction import register_secret

__all__ = [
    "CONFIG_REFERENCE",
    "AutomationConfig",
    "ConfigError",
    "ConfigProblem",
    "ConfigSection",
    "ConnectorConfig",
    "PollConfig",
    "ProviderConfig",
    "SecretValue",
    "StepConfig",
    "TriggerConfig",
    "WebhookConfig",
    "api_key_problem",
    "load_config",
    "parse_config",
]

SECRETS_FILE = "secrets.yaml"
DEFAULT_STATE_DIR = ".ftconnect"
DEFAULT_PROVIDER = "finetuning"
HIDDEN = "'***'"

# Keys of a trigger or action entry that belong to the automation, not to the
# trigger's or action's own options.
ENTRY_KEYS = ("id", "alias", "enabled")

# A step id is read in templates as `steps.<id>`, so it must be a name.
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Secrets shorter than this are only hidden by their repr: scrubbing every
# occurrence of a two-letter string would garble messages for nothing.
_MIN_SCRUBBED_SECRET = 4


# --------------------------------------------------------------------- problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file, with where it is.

    `str()` gives `automations.yaml, line 12: <path> <message>`. When the
    message reads as a predicate of the path ("is required for 'generate'")
    path and message are joined with a space, otherwise with a colon
    (`...actions[1].duration: must be between 5 and 210 seconds (got 300)`).
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        if not self.path:
            return f"{where}: {self.message}"
        joiner = " " if self.message.startswith(("is ", "are ", "has ")) else ": "
        return f"{where}: {self.path}{joiner}{self.message}"


class ConfigError(Exception):
    """The file is invalid; `problems` lists everything wrong with it, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# ------------------------------------------------------------------ the config


class SecretValue(str):
    """A string read with `!env` or `!secret`: equal to the text, but its repr hides it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return HIDDEN


def _hidden(value: str | None) -> str:
    return "None" if value is None else HIDDEN


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach one provider; `api_key` None means the embedded sandbox."""

    api_key: str | None = None
    base_url: str | None = None
    # The client's budgets and backoff (Finetuning.ai; documented: 60 and 10 per 60 s).
    reads_per_window: int = 60
    generations_per_window: int = 10
    rate_window: float = 60.0
    retry_backoff: float = 1.0

    def __repr__(self) -> str:
        return f"ProviderConfig(api_key={_hidden(self.api_key)}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class WebhookConfig:
    """Where the webhook receiver listens, the URL providers call, and its token."""

    host: str
    port: int
    public_url: str | None = None
    token: str | None = None
    max_connections: int = 512  # open at once; past it the longest-idle one is closed
    header_timeout: float = 10.0  # seconds to send a request's headers (slowloris)

    def __repr__(self) -> str:
        return (
            f"WebhookConfig(host={self.host!r}, port={self.port!r}, "
            f"public_url={self.public_url!r}, token={_hidden(self.token)})"
        )


@dataclass(frozen=True)
class PollConfig:
    """Polling cadence: slow when nothing is pending, fast while generations run."""

    idle_interval: float = 60
    active_interval: float = 3
    backfill: bool = False


@dataclass(frozen=True)
class TriggerConfig:
    """One validated trigger: its key, its options (templates compiled) and where it is."""

    key: str
    options: dict[str, Any]
    path: str
    line: int | None
    id: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class StepConfig:
    """One validated action step; later steps read its output as `steps.<id>`."""

    action: str
    id: str
    options: dict[str, Any]
    path: str
    line: int | None
    alias: str | None = None


@dataclass(frozen=True)
class AutomationConfig:
    """One automation: when it starts, what must hold, and the steps it runs.

    Triggers and steps marked `enabled: false` are validated, then left out.
    """

    id: str
    alias: str | None
    description: str | None
    enabled: bool
    triggers: list[TriggerConfig]
    conditions: list[Template | bool]
    actions: list[StepConfig]
    path: str
    line: int | None


@dataclass(frozen=True)
class ConnectorConfig:
    """The whole validated file."""

    source: Path | None
    finetuning: ProviderConfig
    tempolor: ProviderConfig | None
    webhook: WebhookConfig | None
    poll: PollConfig
    state_dir: Path
    max_concurrent_runs: int
    retention_days: float
    automations: list[AutomationConfig] = field(default_factory=list)


# ------------------------------------------------------- YAML that knows lines


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its line, its keys' lines and repeated keys."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.explicit_lines: dict[Any, int] = {}
        self.repeated: list[tuple[Any, int, int]] = []  # (key, line, first line)


class _Sequence(list[Any]):
    """A YAML sequence that remembers its line and its items' lines."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _Unresolved:
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


class _Problems:
    """Collects problems; hides secrets from every message."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.items: list[ConfigProblem] = []
        self.secrets: set[str] = set()

    def add(self, line: int | None, path: str, message: str, *, file: str | None = None) -> None:
        self.items.append(ConfigProblem(file or self.filename, line, path, message))

    def hide(self, value: Any) -> None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= _MIN_SCRUBBED_SECRET:
                self.secrets.add(text)

    def _scrub(self, text: str) -> str:
        # Longest first, so a secret that contains another is hidden whole.
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def error(self) -> ConfigError:
        """Every problem, secrets hidden, the file's own first and in line order."""
        # Scrubbed here, not when added, so a secret read after a problem is hidden too.
        scrubbed = (
            ConfigProblem(p.file, p.line, self._scrub(p.path), self._scrub(p.message))
            for p in self.items
        )
        ordered = sorted(
            dict.fromkeys(scrubbed),  # one problem reached twice is said once
            key=lambda p: (p.file != self.filename, p.line or 0),
        )
        return ConfigError(ordered)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _looks_like_a_key(name: str) -> bool:
    """A Finetuning.ai key (ft_live_/ft_test_...) or a long lower-case token, not a name."""
    lowered = name.lower()
    return lowered.startswith(("ft_live_", "ft_test_", "whsec_")) or (
        len(name) >= 24 and name != name.upper()
    )


class _Tags:
    """Resolves `!env NAME` and `!secret name` for one file."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path, problems: _Problems) -> None:
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
            return _Unresolved(
                "!env takes the name of an environment variable (letters, digits and _, "
                "such as FINETUNING_API_KEY), not its value"
            )
        if name not in self.environ:
            if _looks_like_a_key(name):
                self.problems.hide(name)
                return _Unresolved(
                    "!env takes the name of an environment variable, and this looks like a key: "
                    "export it (export FINETUNING_API_KEY=...) and write "
                    "!env FINETUNING_API_KEY"
                )
            return _Unresolved(f"environment variable {name} is not set (read by !env)")
        value = SecretValue(self.environ[name])
        self.problems.hide(value)
        return value

    def secret(self, name: str) -> Any:
        secrets = self._read_secrets()
        if self._secrets_state == "missing":
            return _Unresolved(
                f"secret {name!r} needs a {SECRETS_FILE} beside the file (none in {self.base_dir})"
            )
        if secrets is None:
            return _Unresolved(None)  # secrets.yaml itself was reported
        if name not in secrets:
            names = [key for key in secrets if isinstance(key, str)]
            return _Unresolved(f"secret {name!r} is not in {SECRETS_FILE}{_suggest(name, names)}")
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
                f"must be a mapping of names to secrets (got {_kind(data)})",
                file=SECRETS_FILE,
            )
            return None
        self._secrets_state = "read"
        self._secrets = data
        return data


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML is untyped
    """A safe loader whose mappings and sequences carry line numbers, with !env and !secret."""

    def __init__(self, stream: str, tags: _Tags) -> None:
        super().__init__(stream)
        self.tags = tags


def _construct_mapping(loader: _Loader, node: Any) -> _Mapping:
    # Keys pulled in by a merge (`<<: *defaults`) may be overridden by explicit
    # ones; only an explicit key given twice is a mistake.
    explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit
    mapping = _Mapping(node.start_mark.line + 1)
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


def _construct_sequence(loader: _Loader, node: Any) -> _Sequence:
    sequence = _Sequence(node.start_mark.line + 1)
    for child in node.value:
        sequence.append(loader.construct_object(child, deep=True))
        sequence.item_lines.append(child.start_mark.line + 1)
    return sequence


def _tag_argument(loader: _Loader, node: Any, tag: str) -> str | _Unresolved:
    if not isinstance(node, yaml.ScalarNode):
        return _Unresolved(f"{tag} takes one name (got {_node_kind(node)})")
    name = str(loader.construct_scalar(node)).strip()
    if not name or len(name.split()) != 1:
        return _Unresolved(f"{tag} takes one name (got {name!r})")
    return name


def _construct_env(loader: _Loader, node: Any) -> Any:
    name = _tag_argument(loader, node, "!env")
    return name if isinstance(name, _Unresolved) else loader.tags.env(name)


def _construct_secret(loader: _Loader, node: Any) -> Any:
    name = _tag_argument(loader, node, "!secret")
    return name if isinstance(name, _Unresolved) else loader.tags.secret(name)


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


# ----------------------------------------------------------------- small helpers


def _kind(value: Any) -> str:
    """What a value is, in the user's words (never the value itself)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# voluptuous's own type messages, in the words a YAML user reads.
_EXPECTED = {
    "expected int": "expected a whole number",
    "expected float": "expected a number",
    "expected bool": "expected true or false",
    "expected str": "expected text",
    "expected list": "expected a list",
    "expected dict": "expected a mapping of options",
}


def _section_of(key: object) -> str | None:
    """The section an option belongs to, for a key written at the top level by mistake."""
    for name, schema in (
        ("finetuning", _FINETUNING),
        ("tempolor", _TEMPOLOR),
        ("webhook", _WEBHOOK),
        ("poll", _POLL),
        ("runtime", _RUNTIME),
    ):
        if key in _schema_keys(schema):
            return name
    return None


def _got(value: Any) -> str:
    """'(got a number)'; for true/false, why a word may have become one."""
    if isinstance(value, bool):
        return f"(got {str(value).lower()}: YAML reads yes/no/on/off as true/false; quote it)"
    return f"(got {_kind(value)})"


def _shown(value: Any) -> str:
    """A short repr for messages; secrets show as '***'."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: object, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    matches = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _join(path: str, part: object) -> str:
    if isinstance(part, vol.Marker):
        part = part.schema
    if isinstance(part, int) and not isinstance(part, bool):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def _join_all(path: str, parts: Iterable[object]) -> str:
    for part in parts:
        path = _join(path, part)
    return path


def _key_line(container: Any, key: Any) -> int | None:
    if isinstance(container, _Mapping):
        return container.key_lines.get(key, container.line)
    if isinstance(container, _Sequence) and isinstance(key, int) and 0 <= key < len(container):
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


def _line_at(node: Any, parts: Iterable[object], line: int | None) -> int | None:
    """The line of the deepest node along `parts` that exists in the loaded document.

    `line` is where the document node itself is reported (its own line when None).
    """
    if line is None:
        line = getattr(node, "line", None)
    for part in parts:
        found, child = _child(node, part)
        if not found:
            break
        line = _key_line(node, part.schema if isinstance(part, vol.Marker) else part) or line
        node = child
    return line


def _value_at(node: Any, parts: Iterable[object]) -> tuple[bool, Any]:
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


def _has_unresolved(value: Any) -> bool:
    if isinstance(value, _Unresolved):
        return True
    if isinstance(value, dict):
        return any(_has_unresolved(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_unresolved(item) for item in value)
    return False


def _plain(value: Any) -> Any:
    """The loaded value without line bookkeeping (plain dicts and lists)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# ----------------------------------------------------- voluptuous, our messages


def _schema_keys(schema: Any) -> list[str]:
    """The option names a schema declares (looking through All/Any/Schema)."""
    if isinstance(schema, vol.Schema):
        return _schema_keys(schema.schema)
    if isinstance(schema, dict):
        keys = [key.schema if isinstance(key, vol.Marker) else key for key in schema]
        return [key for key in keys if isinstance(key, str)]
    if isinstance(schema, vol.All | vol.Any):
        return [key for part in schema.validators for key in _schema_keys(part)]
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


class _Validator:
    """Walks the loaded document and turns everything wrong into problems."""

    def __init__(
        self,
        problems: _Problems,
        registry: Registry | Callable[[], Registry],
        base_dir: Path,
        source: Path | None,
    ) -> None:
        self.problems = problems
        self._registry = registry
        self.base_dir = base_dir
        self.source = source
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

    # -- what the loader found --------------------------------------------------

    def report_loader_findings(self, value: Any, path: str, line: int | None) -> None:
        """Unreadable !env/!secret values and keys given twice, with their paths."""
        if isinstance(value, _Unresolved):
            if value.message:
                self.add(line, path, value.message)
        elif isinstance(value, _Mapping):
            for key, key_line, first_line in value.repeated:
                self.add(key_line, _join(path, key), f"is given twice (first on line {first_line})")
            for key, item in value.items():
                self.report_loader_findings(item, _join(path, key), value.key_lines.get(key))
        elif isinstance(value, _Sequence):
            for index, item in enumerate(value):
                self.report_loader_findings(item, _join(path, index), value.item_lines[index])

    # -- voluptuous -------------------------------------------------------------

    def check_options(
        self,
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
                self._report_invalid(error, schema, options, raw, path, subject, anchor)
        return None

    def _report_invalid(
        self,
        error: vol.Invalid,
        schema: Any,
        options: dict[str, Any],
        raw: Any,
        path: str,
        subject: str,
        anchor: int | None,
    ) -> None:
        parts = [part.schema if isinstance(part, vol.Marker) else part for part in error.path]
        where = _join_all(path, parts)
        line = _line_at(raw, parts, anchor)
        if isinstance(error, vol.RequiredFieldInvalid):
            if error.msg == "required key not provided":
                self.add(line, where, f"is required for {subject}")
            else:
                self.add(line, where, error.msg)
            return
        if error.msg == "extra keys not allowed" and parts:
            container = _value_at(options, parts[:-1])[1]
            present = set(container) if isinstance(container, dict) else set()
            names = [k for k in _schema_keys(_schema_at(schema, parts[:-1])) if k not in present]
            suggestion = _suggest(parts[-1], names)
            self.add(line, where, f"is not a valid option for {subject}{suggestion}")
            return
        found, value = _value_at(options, parts)
        if found and _has_unresolved(value):
            return  # the unreadable !env/!secret was reported on its own
        if found and isinstance(value, Template):
            self.add(line, where, f"cannot be a template ({error.msg})")
            return
        message = _EXPECTED.get(error.msg, error.msg)
        if found and message.startswith("expected ") and "(got" not in message:
            message = f"{message} (got {_shown(value)})"  # a secret shows as ***
        self.add(line, where, message)

    # -- templates -------------------------------------------------------------

    def compile(self, value: Any, path: str, line: int | None) -> Any:
        """Compile every template in `value`; a broken one becomes an unresolved value."""
        if isinstance(value, SecretValue | _Unresolved):
            return value  # a secret is never a template, whatever it holds
        if is_template(value):
            try:
                return Template(value)
            except TemplateError as err:
                self.add(line, path, str(err))
                return _Unresolved(None)
        if isinstance(value, dict):
            return {
                key: self.compile(item, _join(path, key), _key_line(value, key) or line)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                self.compile(item, _join(path, index), _key_line(value, index) or line)
                for index, item in enumerate(value)
            ]
        return value

    # -- the document ----------------------------------------------------------

    def document(self, data: Any) -> ConnectorConfig | None:
        """Validate the whole file; None when anything is wrong (problems say what)."""
        if data is None:
            data = _Mapping(1)
        if not isinstance(data, _Mapping):
            self.add(
                getattr(data, "line", 1),
                "",
                "the file must be a mapping of sections such as 'finetuning:' and "
                f"'automations:' (got {_kind(data)})",
            )
            return None
        self.report_loader_findings(data, "", data.line)
        for key in data:
            if key not in _SECTIONS:
                home = _section_of(key)
                hint = (
                    f" (it is an option of '{home}:': indent it under that section)"
                    if home
                    else _suggest(key, _SECTIONS)
                )
                self.add(data.key_lines.get(key), _join("", key), f"is not a valid section{hint}")

        finetuning = self.section(data, "finetuning", _FINETUNING)
        tempolor = self.section(data, "tempolor", _TEMPOLOR) if "tempolor" in data else None
        webhook = self.section(data, "webhook", _WEBHOOK) if "webhook" in data else None
        poll = self.section(data, "poll", _POLL)
        runtime = self.section(data, "runtime", _RUNTIME)
        state_dir = self.state_dir(data)
        automations = self.automations(data)

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
                _text_or_none(finetuning["api_key"]),
                finetuning["base_url"],
                reads_per_window=finetuning["reads_per_window"],
                generations_per_window=finetuning["generations_per_window"],
                rate_window=finetuning["rate_window"],
                retry_backoff=finetuning["retry_backoff"],
            ),
            tempolor=None
            if tempolor is None
            else ProviderConfig(_text_or_none(tempolor["api_token"]), tempolor["base_url"]),
            webhook=None
            if webhook is None
            else WebhookConfig(
                host=webhook["listen"][0],
                port=webhook["listen"][1],
                public_url=webhook["public_url"],
                token=_text_or_none(webhook["token"]),
                max_connections=webhook["max_connections"],
                header_timeout=webhook["header_timeout"],
            ),
            poll=PollConfig(**poll),
            state_dir=state_dir,
            max_concurrent_runs=runtime["max_concurrent_runs"],
            retention_days=runtime["retention_days"],
            automations=automations,
        )

    def section(self, data: _Mapping, name: str, schema: vol.Schema) -> dict[str, Any] | None:
        """One top-level section (absent or empty means all defaults)."""
        raw = data.get(name)
        line = data.key_lines.get(name, data.line)
        if raw is None:
            raw = _Mapping(line)
        if isinstance(raw, _Unresolved):
            return None
        if not isinstance(raw, dict):
            self.add(line, name, f"must be a mapping of options (got {_kind(raw)})")
            return None
        # A key written in the file itself is as secret as one read with !env: no
        # message may repeat it, whatever reports it (a malformed one included).
        for key in _SECRET_FIELDS.get(name, ()):
            self.problems.hide(raw.get(key))
        # A missing option is reported at the section's name, not its first option.
        return self.check_options(schema, _plain(raw), raw, name, f"{name!r}", anchor=line)

    def state_dir(self, data: _Mapping) -> Path | None:
        raw = data.get("state_dir")
        if raw is None:
            return self.base_dir / DEFAULT_STATE_DIR
        if isinstance(raw, _Unresolved):
            return None
        if not isinstance(raw, str) or not raw.strip():
            self.add(
                data.key_lines.get("state_dir"),
                "state_dir",
                f"must be a folder path {_got(raw)}",
            )
            return None
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def automations(self, data: _Mapping) -> list[AutomationConfig] | None:
        raw = data.get("automations")
        if raw is None or isinstance(raw, _Unresolved):
            return [] if raw is None else None
        if not isinstance(raw, _Sequence):
            self.add(
                data.key_lines.get("automations"),
                "automations",
                f"must be a list of automations (got {_kind(raw)})",
            )
            return None
        built: list[AutomationConfig] = []
        first_of: dict[str, tuple[str, int | None]] = {}  # id -> (path, line)
        for index, item in enumerate(raw):
            path = _join("automations", index)
            line = raw.item_lines[index]
            if not isinstance(item, _Mapping):
                self.add(
                    line, path, f"must be a mapping with triggers and actions (got {_kind(item)})"
                )
                continue
            # The id is checked first so a clash is reported even when the
            # automation has other problems.
            automation_id = self.automation_id(item, index, path)
            if automation_id is not None and automation_id in first_of:
                first_path, first_line = first_of[automation_id]
                made = "" if "id" in item else " (made from its alias; give it an id)"
                self.add(
                    _key_line(item, "id"),
                    _join(path, "id"),
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
        self, raw: _Mapping, path: str, automation_id: str | None
    ) -> AutomationConfig | None:
        before = len(self.problems.items)
        for key in raw:
            if key not in _AUTOMATION_KEYS:
                self.add(
                    raw.key_lines.get(key),
                    _join(path, key),
                    f"is not a valid option for an automation{_suggest(key, _AUTOMATION_KEYS)}",
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
                    _join(step.path, "id"),
                    f"{step.id!r} is already the id of {first.path} (line {first.line})",
                )
            step_ids.setdefault(step.id, step)
        self.providers_agree(
            [t for t in triggers if t is not None], [s for s in actions if s is not None]
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

    def automation_id(self, raw: _Mapping, index: int, path: str) -> str | None:
        """The automation's id: given, or made from its alias, or `automation_<n>`."""
        value = raw.get("id")
        if value is None:
            alias = raw.get("alias")
            slug = _slug(str(alias)) if isinstance(alias, str | int | float) else ""
            return slug or f"automation_{index + 1}"
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `id: 1700000000` is an id, not a number
        if not isinstance(value, str) or not value.strip():
            self.add(raw.key_lines.get("id"), _join(path, "id"), f"must be text {_got(value)}")
            return None
        return value

    def optional_text(self, raw: _Mapping, key: str, path: str) -> str | None:
        value = raw.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.add(raw.key_lines.get(key), _join(path, key), f"must be text {_got(value)}")
        return None

    def flag(self, raw: _Mapping, key: str, path: str) -> bool:
        value = raw.get(key, True)
        if isinstance(value, bool):
            return value
        self.add(
            raw.key_lines.get(key),
            _join(path, key),
            f"must be true or false (got {_shown(value)})",
        )
        return True

    def entries(
        self,
        raw: _Mapping,
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
        if isinstance(value, _Unresolved):
            return []
        if value is None or value == []:
            if required:
                self.add(
                    raw.key_lines.get(key, raw.line),
                    path,
                    f"has no {plural}; add '{plural}:' with at least one",
                )
            return []
        key_path = _join(path, key)
        if not isinstance(value, _Sequence):
            return [build(value, key_path, raw.key_lines.get(key), 0)]
        return [
            build(item, _join(key_path, index), value.item_lines[index], index)
            for index, item in enumerate(value)
        ]

    def condition(
        self, value: Any, path: str, line: int | None, index: int
    ) -> Template | bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, _Unresolved):
            return None
        if isinstance(value, str) and not isinstance(value, SecretValue) and "{{" in value:
            compiled = self.compile(value, path, line)
            return compiled if isinstance(compiled, Template) else None
        shown = "text without {{ }}" if isinstance(value, str) else _kind(value)
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
            alias=_text_or_none(raw.get("alias")),
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
            alias=_text_or_none(raw.get("alias")),
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
        if isinstance(raw, _Unresolved):
            return None
        if not isinstance(raw, _Mapping):
            self.add(line, path, f"must be a mapping with '{kind}: <name>' (got {_kind(raw)})")
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
            self.add(_key_line(raw, kind), _join(path, kind), f"must be a name {_got(key)}")
            return None
        spec = specs.get(key)
        if spec is None:
            known = sorted(specs)
            hint = _suggest(key, known)
            if not hint and known:
                hint = f" (known: {', '.join(known)})"
            self.add(
                _key_line(raw, kind), _join(path, kind), f"{key!r} is not a known {kind}{hint}"
            )
            return None

        if not self.flag(raw, "enabled", path):
            self.disabled.add(path)
        self.optional_text(raw, "alias", path)
        self.entry_id(raw, path, kind)
        options = _Mapping(raw.line)  # keeps key lines for template errors
        for option, value in raw.items():
            if option != kind and option not in ENTRY_KEYS:
                options[option] = value
                options.key_lines[option] = raw.key_lines[option]
        compiled = self.compile(options, path, line)
        subject = repr(spec.key)

        provider_reported = self.provider_before(spec, options, raw, path)
        skip = ("provider",) if provider_reported else ()
        validated = self.check_options(spec.schema, compiled, raw, path, subject, skip)
        if validated is None:
            return None
        if not provider_reported:
            self.provider_after(spec, validated, raw, path, line)
        for name in getattr(spec, "paths", ()):
            value = validated.get(name)
            if isinstance(value, str) and not isinstance(value, Template):
                where = Path(value).expanduser()
                validated[name] = str(where if where.is_absolute() else self.base_dir / where)
        self.load_check(spec, validated, raw, path, line)
        if len(self.problems.items) > before:
            return None
        return spec, validated

    def entry_id(self, raw: _Mapping, path: str, kind: str) -> None:
        if "id" not in raw:
            return
        value = raw["id"]
        where = _join(path, "id")
        line = raw.key_lines.get("id")
        if kind == "action":
            if not isinstance(value, str) or not _STEP_ID.match(value):
                self.add(
                    line,
                    where,
                    "must be a name of letters, digits and _ (not starting with a digit), "
                    f"so templates can read steps.<id> (got {_shown(value)})",
                )
        elif not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            self.add(line, where, f"must be text {_got(value)}")

    def provider_before(
        self, spec: TriggerSpec | ActionSpec, options: dict[str, Any], raw: _Mapping, path: str
    ) -> bool:
        """Report a known provider the spec does not support, before the schema does.

        An unknown name (a typo) is left to the schema, whose message lists the choices.
        """
        provider = options.get("provider")
        if not isinstance(provider, str) or is_template(provider):
            return False
        name = provider.lower()  # provider names are matched like one_of() does
        if name in PROVIDERS and name not in spec.providers:
            self._provider_problem(spec, name, raw.key_lines.get("provider"), path)
            return True
        return False

    def provider_after(
        self,
        spec: TriggerSpec | ActionSpec,
        options: dict[str, Any],
        raw: _Mapping,
        path: str,
        line: int | None,
    ) -> None:
        # Actions run on the default provider when none is named; triggers
        # without one listen to every provider they support.
        default = DEFAULT_PROVIDER if isinstance(spec, ActionSpec) else None
        provider = options.get("provider", default)
        if isinstance(provider, str) and provider not in spec.providers:
            self._provider_problem(spec, provider, raw.key_lines.get("provider", line), path)

    def providers_agree(self, triggers: list[TriggerConfig], steps: list[StepConfig]) -> None:
        """An automation whose triggers fire only for one provider cannot use actions that
        provider lacks (TemPolor has no playlists): refuse it now, not at run time."""
        providers = {t.options.get("provider") for t in triggers}
        if len(providers) != 1 or None in providers:
            return
        (provider,) = providers
        for step in steps:
            spec = self.registry.actions.get(step.action)
            if spec is None or "provider" in step.options or provider in spec.providers:
                continue
            self.add(
                step.line,
                step.path,
                f"{step.action!r} is not available for provider {provider!r} "
                f"(only {', '.join(sorted(spec.providers))}), and every trigger of this "
                f"automation fires only for {provider!r} generations",
            )

    def _provider_problem(
        self, spec: TriggerSpec | ActionSpec, provider: str, line: int | None, path: str
    ) -> None:
        self.add(
            line,
            _join(path, "provider"),
            f"{spec.key!r} is not available for provider {provider!r} "
            f"(only {', '.join(sorted(spec.providers))})",
        )

    def load_check(
        self,
        spec: TriggerSpec | ActionSpec,
        options: dict[str, Any],
        raw: _Mapping,
        path: str,
        line: int | None,
    ) -> None:
        check = getattr(spec, "check", None)
        if check is None:
            return
        try:
            check(options)
        except vol.MultipleInvalid as err:
            for error in err.errors:
                self._report_check(error, raw, path, line)
        except vol.Invalid as err:
            self._report_check(err, raw, path, line)
        except ValueError as err:
            self.add(line, path, str(err))

    def _report_check(self, error: vol.Invalid, raw: _Mapping, path: str, line: int | None) -> None:
        parts = [part.schema if isinstance(part, vol.Marker) else part for part in error.path]
        self.add(_line_at(raw, parts, line), _join_all(path, parts), error.msg)


def _text_or_none(value: Any) -> str | None:
    # Secrets leave as plain text: the client needs a str, not our wrapper.
    return None if value is None else str(value)


# ------------------------------------------------------------- section schemas


_V = TypeVar("_V", bound=Callable[..., Any])


def _exported(json_schema: dict[str, Any]) -> Callable[[_V], _V]:
    """Attach to a validator the JSON Schema it stands for.

    `connector.automation.jsonschema` reads it for the export and for the README's config
    reference; `x-allowed` there is the "allowed" column in words.
    """

    def attach(validator: _V) -> _V:
        validator.json_schema = json_schema  # type: ignore[attr-defined]
        return validator

    return attach


def _optional(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    validate.__name__ = "optional"
    validate.inner = validator  # type: ignore[attr-defined]  # read by the JSON Schema export
    return validate


@_exported({"type": "string", "minLength": 1})
def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"must be text {_got(value)}")
    return value


@_exported({"type": "string", "format": "uri", "x-allowed": "an http:// or https:// URL"})
def _http_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    raise vol.Invalid(f"must be an http:// or https:// URL (got {_shown(value)})")


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@_exported({"type": "string", "x-allowed": "an https:// URL (http:// on loopback only)"})
def _public_url(value: Any) -> str:
    url = _http_url(value)
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        # The service refuses plain http webhooks: every generate would fail at run time.
        raise vol.Invalid(
            f"must be an https:// URL: the service only calls public https webhooks "
            f"(got {_shown(value)}; http:// is accepted on loopback, for the sandbox)"
        )
    return url


@_exported({"type": "string", "x-allowed": '"host:port", port 1 to 65535'})
def _listen(value: Any) -> tuple[str, int]:
    message = f'must be "host:port" with a port from 1 to 65535 (got {_shown(value)})'
    if not isinstance(value, str):
        raise vol.Invalid(message)
    host, _, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # "[::]:8123"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise vol.Invalid(message)
    return host, int(port)


TOKEN_MIN_LENGTH = 16


@_exported({"type": "string", "minLength": TOKEN_MIN_LENGTH})
def _token(value: Any) -> str:
    text = _text(value)
    if len(text.strip()) < TOKEN_MIN_LENGTH:
        # Short enough to guess, and too short to be found and hidden everywhere.
        raise vol.Invalid(
            f"must be at least {TOKEN_MIN_LENGTH} characters (got {len(text.strip())}); "
            "leave it out and one is generated"
        )
    return text


_KEY_PREFIX = "ft_live_"
_KEY_SHAPE = f"'{_KEY_PREFIX}' followed by 32 hex characters, 40 in all"


def _same_kind(original: str, text: str) -> str:
    """`text` (a stripped key), still a SecretValue when `original` was one."""
    if text == original:
        return original
    return SecretValue(text) if isinstance(original, SecretValue) else text


@_exported(
    {
        "type": "string",
        "pattern": f"^{API_KEY_PATTERN.pattern}$",
        "x-allowed": f"`{_KEY_PREFIX}` followed by 32 hex characters",
    }
)
def _api_key(value: Any) -> str:
    """A Finetuning.ai key of the shape the client accepts; the message never shows it."""
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text {_got(value)}")
    problem = api_key_problem(value)
    if problem is not None:
        raise vol.Invalid(problem)
    return _same_kind(value, value.strip())


def api_key_problem(key: str) -> str | None:
    """What is wrong with a Finetuning.ai API key, in words that never show it; None if fine.

    The client's own check (`check_api_key`) decides, so a key `ftconnect check`
    accepts is one `ftconnect run` can use. The text reads after the key's name
    ("finetuning.api_key: must be ..."); a key from --api-key or the environment
    can be reported with it too.
    """
    if not key.strip():
        return (
            f"is empty: a Finetuning.ai API key is {_KEY_SHAPE} "
            "(leave api_key out to run on the embedded sandbox)"
        )
    try:
        check_api_key(key)
    except InvalidApiKeyError:
        pass
    else:
        return None
    key = key.strip()
    found = []
    if not key.startswith(_KEY_PREFIX):
        found.append(f"does not start with '{_KEY_PREFIX}'")
    if len(key) != len(_KEY_PREFIX) + 32:
        found.append(f"has {len(key)} characters")
    elif key.startswith(_KEY_PREFIX):
        found.append(f"has characters other than 0-9 and a-f after '{_KEY_PREFIX}'")
    return (
        f"must be a Finetuning.ai API key, {_KEY_SHAPE} (this one {' and '.join(found)}); "
        "create one under Profile → API, or leave api_key out to run on the embedded sandbox"
    )


@_exported(
    {
        "type": "string",
        "pattern": r"^\S+$",
        "x-allowed": "one word: no spaces, line breaks or control characters",
    }
)
def _api_token(value: Any) -> str:
    """A useapi.net token the TemPolor client accepts (`check_api_token`), never shown."""
    if not isinstance(value, str):
        raise vol.Invalid(f"must be text {_got(value)}")
    if not value.strip():
        raise vol.Invalid("is empty: copy the API token from useapi.net")
    try:
        return _same_kind(value, check_api_token(value))
    except InvalidApiKeyError:
        pass
    token = value.strip()
    bad = sum(1 for char in token if char.isspace() or ord(char) < 32)
    raise vol.Invalid(
        "must be one word, as useapi.net shows it, without spaces, line breaks or control "
        f"characters (this one has {len(token)} characters, {bad} of them spaces or "
        "control characters)"
    )


@_exported({"type": "integer", "minimum": 16, "maximum": 65536})
def _connection_cap(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 65536:
        raise vol.Invalid(f"must be a whole number from 16 to 65536 (got {_shown(value)})")
    return value


@_exported({"type": "number", "minimum": 1, "maximum": 300})
def _header_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 300:
        raise vol.Invalid(f"must be from 1 to 300 seconds (got {_shown(value)})")
    return float(value)


@_exported({"type": "number", "exclusiveMinimum": 0})
def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid(f"must be a number of seconds (got {_shown(value)})")
    if value <= 0:
        raise vol.Invalid(f"must be more than 0 seconds (got {_shown(value)})")
    return float(value)


@_exported({"type": "boolean"})
def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid(f"must be true or false (got {_shown(value)})")
    return value


@_exported({"type": "integer", "minimum": 1})
def _run_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise vol.Invalid(f"must be a whole number of at least 1 (got {_shown(value)})")
    return value


@_exported({"type": "number", "exclusiveMinimum": 0})
def _days(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise vol.Invalid(f"must be a number of days above 0 (got {_shown(value)})")
    return float(value)


_FINETUNING = vol.Schema(
    {
        vol.Optional(
            "api_key",
            default=None,
            description="Finetuning.ai API key (Profile → API → Create Key; use !env or "
            "!secret); without one everything runs on the embedded sandbox",
        ): _optional(_api_key),
        vol.Optional(
            "base_url", default=None, description=f"API address (default {FT_BASE_URL})"
        ): _optional(_http_url),
        # Lower these to leave room for other programs that share the key.
        vol.Optional(
            "reads_per_window",
            default=60,
            description="the client's budget of reads and bulk calls per window (the "
            "documented limit); lower it to leave room for other programs sharing the key",
        ): vol.All(int, vol.Range(min=1, max=10000, msg="must be between 1 and 10000")),
        vol.Optional(
            "generations_per_window",
            default=10,
            description="the client's budget of submissions per window (the documented limit)",
        ): vol.All(int, vol.Range(min=1, max=10000, msg="must be between 1 and 10000")),
        vol.Optional(
            "rate_window", default=60.0, description="seconds of the window both budgets count"
        ): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=3600, msg="must be 0.1-3600 s")),
        vol.Optional(
            "retry_backoff",
            default=1.0,
            description="seconds before the first retry of a 429 or an unopened connection; "
            "doubles each time, with jitter",
        ): vol.All(vol.Coerce(float), vol.Range(min=0.01, max=60, msg="must be 0.01-60 s")),
    }
)
_TEMPOLOR = vol.Schema(
    {
        vol.Optional(
            "api_token",
            default=None,
            description="useapi.net API token (use !secret); without a Finetuning.ai key both "
            "providers run on the embedded sandbox",
        ): _optional(_api_token),
        vol.Optional(
            "base_url", default=None, description=f"API address (default {TP_BASE_URL})"
        ): _optional(_http_url),
    }
)
_WEBHOOK = vol.Schema(
    {
        vol.Required("listen", description="where the listener accepts connections"): _listen,
        vol.Optional(
            "public_url",
            default=None,
            description="the URL providers are told to call (they only call public https "
            "URLs); unset: they are not told of the listener, and the poller does the work",
        ): _optional(_public_url),
        vol.Optional(
            "token",
            default=None,
            description="shared secret in the hook URL (use !secret); unset: one is "
            "generated and kept in state_dir",
        ): _optional(_token),
        vol.Optional(
            "max_connections",
            default=512,
            description="connections open at once; past it the longest-idle one is closed",
        ): _connection_cap,
        vol.Optional(
            "header_timeout",
            default=10.0,
            description="seconds a client has to send a request's headers (again after each "
            "response)",
        ): _header_timeout,
    }
)
_POLL = vol.Schema(
    {
        vol.Optional(
            "idle_interval",
            default=60.0,
            description="seconds between polls while none of our generations runs",
        ): _seconds,
        vol.Optional(
            "active_interval",
            default=3.0,
            description="seconds between polls while generations we submitted run",
        ): _seconds,
        vol.Optional(
            "backfill",
            default=False,
            description="on the first start, fire for generations that already exist",
        ): _flag,
    }
)
_RUNTIME = vol.Schema(
    {
        vol.Optional(
            "max_concurrent_runs", default=10, description="runs executing at once; more wait"
        ): _run_count,
        vol.Optional(
            "retention_days",
            default=30.0,
            description="days the journal keeps finished runs and events",
        ): _days,
    }
)


@_exported({"type": "object", "x-allowed": "a mapping (below)"})
def _section_doc(value: Any) -> Any:
    return value  # the documentation's stand-in: sections are checked by their own schema


@_exported({"type": "string", "minLength": 1, "x-allowed": "a folder path"})
def _folder_doc(value: Any) -> Any:
    return value  # checked by _Validator.state_dir


@_exported({"type": "array", "x-allowed": "one item, or a list"})
def _items_doc(value: Any) -> Any:
    return value  # checked by _Validator.entries


@_exported({"type": "array", "x-allowed": "a list"})
def _list_doc(value: Any) -> Any:
    return value  # checked by _Validator.automations


# The top level and the automations, for the documentation: `_Validator` walks
# them by hand (to report every problem with its line), and takes its key names
# from here, so the reference cannot miss one.
_DOCUMENT = vol.Schema(
    {
        vol.Optional(
            "finetuning",
            description="Finetuning.ai: the key and the client's budgets; absent: defaults, "
            "on the embedded sandbox",
        ): _section_doc,
        vol.Optional(
            "tempolor",
            description="TemPolor through useapi.net, the second provider; needed for "
            "provider: tempolor with a Finetuning.ai key",
        ): _section_doc,
        vol.Optional(
            "webhook",
            description="the webhook listener, the fast path; absent: the poller alone",
        ): _section_doc,
        vol.Optional("poll", description="the reconciliation poller, the safety net"): _section_doc,
        vol.Optional(
            "state_dir",
            default=DEFAULT_STATE_DIR,
            description="the journal's folder (SQLite, WAL) and the daemon's lock; a "
            "relative path starts at the file's folder",
        ): _folder_doc,
        vol.Optional(
            "runtime", description="runs at once and how long their history is kept"
        ): _section_doc,
        vol.Optional(
            "automations",
            default=[],
            description="the automations: what triggers them, what must hold, what they do",
        ): _list_doc,
    }
)
_AUTOMATION = vol.Schema(
    {
        vol.Optional(
            "id",
            description="unique name, read by templates as automation.id (default: made "
            "from alias, else `automation_<n>`)",
        ): _text,
        vol.Optional("alias", description="a name for people, shown in logs"): _text,
        vol.Optional("description", description="free text"): _text,
        vol.Optional(
            "enabled", default=True, description="false keeps it in the file but never runs it"
        ): _flag,
        vol.Required(
            "triggers",
            description="what starts it: a trigger or a list (`trigger:` also works); the "
            "Triggers table lists them",
        ): _items_doc,
        vol.Optional(
            "conditions",
            description='templates that must all be true, such as "{{ '
            'trigger.generation.duration >= 60 }}", or true/false (`condition:` also works)',
        ): _items_doc,
        vol.Required(
            "actions",
            description="the steps, run in order: an action or a list (`action:` also "
            "works); the Actions table lists them",
        ): _items_doc,
    }
)
_TRIGGER_ENTRY = vol.Schema(
    {
        vol.Required("trigger", description="which trigger; its options sit beside it"): _text,
        vol.Optional("id", description="read by templates as trigger.id"): _text,
        vol.Optional("alias", description="a name for people, shown in logs"): _text,
        vol.Optional(
            "enabled", default=True, description="false keeps it in the file but never fires"
        ): _flag,
    }
)
_ACTION_ENTRY = vol.Schema(
    {
        vol.Required("action", description="which action; its options sit beside it"): _text,
        vol.Optional(
            "id",
            description="letters, digits and _; later steps read this step's output as "
            "`steps.<id>` (default `step_<n>`)",
        ): vol.Match(_STEP_ID.pattern),
        vol.Optional("alias", description="a name for people, shown in logs"): _text,
        vol.Optional(
            "enabled", default=True, description="false keeps it in the file but never runs it"
        ): _flag,
    }
)


@dataclass(frozen=True)
class ConfigSection:
    """One table of the config file reference (README), made from a schema.

    `path` is where its keys sit ("" for the top level, "automations[]" for
    each automation); every key of `schema` carries a description.
    """

    path: str
    title: str
    description: str
    schema: vol.Schema


CONFIG_REFERENCE: tuple[ConfigSection, ...] = (
    ConfigSection("", "Top level", "Every section is optional.", _DOCUMENT),
    ConfigSection(
        "finetuning", "finetuning", "How to reach Finetuning.ai, and how hard.", _FINETUNING
    ),
    ConfigSection("tempolor", "tempolor", "How to reach TemPolor (useapi.net).", _TEMPOLOR),
    ConfigSection(
        "webhook",
        "webhook",
        "The listener for /hooks/finetuning, /hooks/tempolor and /healthz.",
        _WEBHOOK,
    ),
    ConfigSection("poll", "poll", "How often the poller looks.", _POLL),
    ConfigSection("runtime", "runtime", "How the runs are executed and kept.", _RUNTIME),
    ConfigSection("automations[]", "An automation", "Each item of `automations`.", _AUTOMATION),
    ConfigSection(
        "automations[].triggers[]",
        "A trigger",
        "Each item of an automation's `triggers`, with the trigger's own options.",
        _TRIGGER_ENTRY,
    ),
    ConfigSection(
        "automations[].actions[]",
        "An action (a step)",
        "Each item of an automation's `actions`, with the action's own options.",
        _ACTION_ENTRY,
    ),
)
"""The config file reference: every section and key, with defaults and ranges.

The README's reference is generated from it (`connector.automation.jsonschema.config_markdown`).
"""

# Keys whose value is a secret wherever it comes from (literal, !env, !secret).
_SECRET_FIELDS = {"finetuning": ("api_key",), "tempolor": ("api_token",), "webhook": ("token",)}

_SECTIONS = tuple(_schema_keys(_DOCUMENT))
_AUTOMATION_KEYS = (*_schema_keys(_AUTOMATION), "trigger", "condition", "action")

# What Home Assistant called these keys before 2024.10, for a helpful hint.
_OLD_ENTRY_KEYS = {"trigger": "platform", "action": "service"}

_RegistrySource: TypeAlias = Registry | Callable[[], Registry]


# ------------------------------------------------------------------- entry points


def parse_config(
    text: str,
    *,
    filename: str = "automations.yaml",
    base_dir: Path | None = None,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConnectorConfig:
    """Validate the text of an automations file; raises ConfigError listing every problem.

    `base_dir` is where `secrets.yaml` is read and relative `state_dir` points
    (the current folder when None). `registry` defaults to the installed
    triggers and actions; `environ` to `os.environ`.
    """
    folder = base_dir if base_dir is not None else Path.cwd()
    return _parse(text, filename, folder, registry, environ, source=None)


def load_config(
    path: str | Path,
    *,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConnectorConfig:
    """Read and validate an automations file; raises ConfigError listing every problem."""
    file = Path(path).expanduser().resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(
            [ConfigProblem(str(path), None, "", f"cannot be read: {reason}")]
        ) from None
    return _parse(text, file.name, file.parent, registry, environ, source=file)


def _parse(
    text: str,
    filename: str,
    folder: Path,
    registry: Registry | None,
    environ: Mapping[str, str] | None,
    *,
    source: Path | None,
) -> ConnectorConfig:
    problems = _Problems(filename)
    tags = _Tags(os.environ if environ is None else environ, folder, problems)
    try:
        loader = _Loader(text, tags)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        problems.add(_yaml_line(err), "", _yaml_message(err, text))
        raise problems.error() from None
    source_registry: _RegistrySource = registry if registry is not None else default_registry
    config = _Validator(problems, source_registry, folder, source).document(data)
    if config is None or problems.items:
        raise problems.error()
    _register_secrets(config, tags.read_secrets)
    return config


def _register_secrets(config: ConnectorConfig, read_secrets: list[str]) -> None:
    """Tell the process-wide redaction registry every secret the file holds, so nothing
    the connector writes or sends (journal, library, bodies, logs) can carry one.

    Secret fields count whatever their source (literal, `!env`, `!secret`); any value
    read with `!secret` counts too. Other `!env` values (a path, a base URL) do not:
    hiding them everywhere would mangle ordinary data.
    """
    register_secret(config.finetuning.api_key)
    if config.tempolor is not None:
        register_secret(config.tempolor.api_key)
    if config.webhook is not None:
        register_secret(config.webhook.token)
    for automation in config.automations:
        for step in automation.actions:
            for name in SECRET_OPTIONS:
                value = step.options.get(name)
                if isinstance(value, str) and not isinstance(value, Template):
                    register_secret(value)
    for value in read_secrets:
        register_secret(value)


# Step options that hold secrets (notify_webhook's signing secret).
SECRET_OPTIONS = ("secret",)
