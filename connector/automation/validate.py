"""The validator: walks a loaded automations file and turns everything wrong into problems.

The file has the Home Assistant shape: provider sections (`finetuning`,
`tempolor`), `webhook`, `api`, `poll`, `state_dir`, `runtime` and a list of
`automations`, each with `triggers`, `conditions` and `actions`. Every section
is checked against its schema (`connector.automation.schema`), the automations
by `connector.automation.automations`; every problem is collected, not just
the first, and the file becomes a `ConnectorConfig` only when there is none.

The values of `SECRET_FIELDS` are hidden from every problem before anything is
checked, whether they were written in the file or read with `!env`/`!secret`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import voluptuous as vol

from connector.automation.automations import AutomationValidator, text_or_none
from connector.automation.model import (
    ApiConfig,
    ApiToken,
    ConnectorConfig,
    PollConfig,
    ProviderConfig,
    WebhookConfig,
)
from connector.automation.options import check_options, schema_keys
from connector.automation.problems import Problems, got, kind_of, suggest
from connector.automation.registry import Registry
from connector.automation.schema import (
    API_TOKEN_SCHEMA,
    DEFAULT_STATE_DIR,
    DOCUMENT_SCHEMA,
    SECRET_FIELDS,
    SECTION_SCHEMAS,
    host_port,
)
from connector.automation.validators import expand_home, no_home
from connector.automation.yaml_reader import (
    LineMapping,
    LineSequence,
    Unresolved,
    join,
    key_line,
    plain,
)

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
        self.hide_secrets(data)
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
        api = self.api(data) if "api" in data else None
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
            or ("api" in data and api is None)
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
            api=api,
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
        # A missing option is reported at the section's name, not its first option.
        return check_options(
            self.problems, SECTION_SCHEMAS[name], plain(raw), raw, name, f"{name!r}", anchor=line
        )

    def hide_secrets(self, data: LineMapping) -> None:
        """Never show a secret field's value in a problem, whatever reports it.

        A key written in the file itself is as secret as one read with !env (a
        malformed one included).
        """
        for where, keys in SECRET_FIELDS.items():
            for container in _mappings_at(data, where):
                for key in keys:
                    self.problems.hide(container.get(key))

    def api(self, data: LineMapping) -> ApiConfig | None:
        """The `api` section: its options, each of its tokens, and a port of its own."""
        options = self.section(data, "api")
        raw = data.get("api")
        raw_tokens = raw.get("tokens") if isinstance(raw, LineMapping) else None
        tokens = self.api_tokens(raw_tokens) if isinstance(raw_tokens, LineSequence) else None
        # Looked at whatever else is wrong in either section: `run` would trip on it.
        listen, webhook = _listen_of(raw), _listen_of(data.get("webhook"))
        if listen is not None and webhook is not None and _same_socket(listen, webhook):
            hosts = listen[0] if listen[0] == webhook[0] else f"{listen[0]} and {webhook[0]}"
            self.add(
                key_line(raw, "listen"),
                "api.listen",
                f"must differ from webhook.listen (line {key_line(data['webhook'], 'listen')}): "
                f"both claim port {listen[1]} on {hosts}, and a port takes one listener",
            )
            return None
        if options is None or tokens is None:
            return None
        host, port = options["listen"]
        return ApiConfig(
            host=host,
            port=port,
            tokens=tokens,
            max_connections=options["max_connections"],
            header_timeout=options["header_timeout"],
        )

    def api_tokens(self, raw: LineSequence) -> tuple[ApiToken, ...] | None:
        """Each of `api.tokens`, every problem reported; names and tokens are unique.

        Clashes are looked for on the values as written, so one is reported even
        when its item has other problems; a clash of tokens never shows them.
        """
        before = len(self.problems.items)
        tokens: list[ApiToken] = []
        names: dict[str, tuple[str, int | None]] = {}  # name -> (path, line) of its first use
        values: dict[str, tuple[str, int | None]] = {}  # token -> the same
        for index, item in enumerate(raw):
            path = join("api.tokens", index)
            line = raw.item_lines[index]
            if not isinstance(item, LineMapping):
                self.problems.hide(item)  # perhaps a token, pasted without its name
                if not isinstance(item, Unresolved):
                    self.add(line, path, f"must be a mapping with a name and a token {got(item)}")
                continue
            options = check_options(
                self.problems,
                API_TOKEN_SCHEMA,
                plain(item),
                item,
                path,
                "an API token",
                anchor=line,
            )
            name, token = item.get("name"), item.get("token")
            if isinstance(name, str) and name in names:
                first, first_line = names[name]
                self.add(
                    key_line(item, "name"),
                    join(path, "name"),
                    f"{name!r} is already the name of {first} (line {first_line})",
                )
            elif isinstance(name, str):
                names[name] = (path, key_line(item, "name"))
            if isinstance(token, str) and token and token in values:
                first, first_line = values[token]
                self.add(
                    key_line(item, "token"),
                    join(path, "token"),
                    f"is the same as {first}.token (line {first_line}): give each client its own",
                )
            elif isinstance(token, str) and token:
                values[token] = (path, key_line(item, "token"))
            allowed = options.get("actions") if options is not None else None
            if allowed is not None:
                known = sorted(self.automations.registry.actions)
                for index, key in enumerate(allowed):
                    if key not in known:
                        self.add(
                            key_line(item, "actions"),
                            f"{join(path, 'actions')}[{index}]",
                            f"{key!r} is not an action{suggest(key, known) or ''} "
                            f"(actions: {', '.join(known)})",
                        )
            if options is not None:
                tokens.append(
                    ApiToken(
                        options["name"],
                        str(options["token"]),
                        frozenset(options["scopes"]),
                        None if allowed is None else frozenset(allowed),
                    )
                )
        return None if len(self.problems.items) > before else tuple(tokens)

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
        path = expand_home(raw)
        if path is None:
            self.add(data.key_lines.get("state_dir"), "state_dir", no_home(raw))
            return None
        return path if path.is_absolute() else self.base_dir / path


def _mappings_at(data: LineMapping, where: str) -> list[dict[Any, Any]]:
    """The mappings at a path as the reference writes it: `webhook`, `api.tokens[]`."""
    nodes: list[Any] = [data]
    for part in where.split("."):
        name = part.removesuffix("[]")
        found = [node.get(name) for node in nodes if isinstance(node, dict)]
        if part.endswith("[]"):
            found = [item for value in found if isinstance(value, list) for item in value]
        nodes = found
    return [node for node in nodes if isinstance(node, dict)]


def _listen_of(section: Any) -> tuple[str, int] | None:
    """A section's `listen` as (host, port), if it has a valid one."""
    try:
        return host_port(section.get("listen")) if isinstance(section, dict) else None
    except vol.Invalid:
        return None


def _same_socket(first: tuple[str, int], second: tuple[str, int]) -> bool:
    """Whether two listeners would surely claim one port: the same port (0 picks a free
    one), on the same host or on a wildcard that covers the other's host.

    Only sure clashes: a name that may resolve elsewhere is left to the bind itself,
    which reports a taken port clearly too.
    """
    (host_a, port_a), (host_b, port_b) = first, second
    if port_a != port_b or port_a == 0:
        return False
    host_a, host_b = _host(host_a), _host(host_b)
    return host_a == host_b or _covers(host_a, host_b) or _covers(host_b, host_a)


def _host(host: str) -> str:
    host = host.lower().rstrip(".")
    return "127.0.0.1" if host == "localhost" else host  # localhost binds 127.0.0.1 everywhere


def _covers(wildcard: str, host: str) -> bool:
    # A listener binds IPv6 alone on an IPv6 address, so each wildcard covers its family.
    if wildcard == "0.0.0.0":
        return ":" not in host
    return wildcard == "::" and ":" in host


def _section_of(key: object) -> str | None:
    """The section an option belongs to, for a key written at the top level by mistake."""
    for name, schema in SECTION_SCHEMAS.items():
        if key in schema_keys(schema):
            return name
    return None
