"""The sections of the automations file, as schemas, and the config reference made from them.

Each section (`finetuning`, `tempolor`, `webhook`, `api`, `poll`, `runtime`)
is one voluptuous schema whose keys carry their defaults and descriptions; the
validator checks the sections with them, and each of `api.tokens` with
`API_TOKEN_SCHEMA` (one by one: every bad token is reported). The top level
and the shape of an automation are schemas too, for the documentation: the
validator walks those by hand (to report every problem with its line) and takes
its key names from here, so the reference cannot miss one.

`CONFIG_REFERENCE` lists every section and key (defaults, ranges,
descriptions); the README's config reference is made from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from connector.automation.api_keys import api_key, api_token
from connector.automation.api_tokens import (
    API_SCOPES,
    API_TOKEN_MIN_LENGTH,
    MAKE_TOKEN,
    action_keys,
    bearer_token,
    client_name,
    scopes,
    token_list,
)
from connector.automation.problems import got, shown
from connector.automation.validators import exported, optional
from connector.providers.finetuning.credentials import DEFAULT_BASE_URL as FT_BASE_URL
from connector.providers.hosts import is_loopback
from connector.providers.tempolor.credentials import DEFAULT_BASE_URL as TP_BASE_URL

__all__ = [
    "API_SCOPES",
    "API_TOKEN_MIN_LENGTH",
    "API_TOKEN_SCHEMA",
    "AUTOMATION_SCHEMA",
    "CONFIG_REFERENCE",
    "DEFAULT_STATE_DIR",
    "DOCUMENT_SCHEMA",
    "ENTRY_KEYS",
    "SECRET_FIELDS",
    "SECTION_SCHEMAS",
    "STEP_ID",
    "TOKEN_MIN_LENGTH",
    "ConfigSection",
    "host_port",
]

DEFAULT_STATE_DIR = ".ftconnect"

# Keys of a trigger or action entry that belong to the automation, not to the
# trigger's or action's own options.
ENTRY_KEYS = ("id", "alias", "enabled")

# A step id is read in templates as `steps.<id>`, so it must be a name.
STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------ the values


@exported({"type": "string", "minLength": 1})
def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"must be text {got(value)}")
    return value


@exported({"type": "string", "format": "uri", "x-allowed": "an http:// or https:// URL"})
def _http_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    raise vol.Invalid(f"must be an http:// or https:// URL (got {shown(value)})")


@exported({"type": "string", "x-allowed": "an https:// URL (http:// on loopback only)"})
def _public_url(value: Any) -> str:
    url = _http_url(value)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        # The service refuses plain http webhooks: every generate would fail at run time.
        raise vol.Invalid(
            f"must be an https:// URL: the service only calls public https webhooks "
            f"(got {shown(value)}; http:// is accepted on loopback, for the sandbox)"
        )
    return url


@exported({"type": "string", "x-allowed": '"host:port", port 1 to 65535'})
def host_port(value: Any) -> tuple[str, int]:
    message = f'must be "host:port" with a port from 1 to 65535 (got {shown(value)})'
    if not isinstance(value, str):
        raise vol.Invalid(message)
    text = value.strip()
    if "://" in text or "/" in text:
        # A URL where an address is wanted: the listener would fail to resolve its "host".
        raise vol.Invalid(
            f'must be "host:port", not a URL (got {shown(value)}; write e.g. 127.0.0.1:8124)'
        )
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # "[::]:8123"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise vol.Invalid(message)
    return host, int(port)


TOKEN_MIN_LENGTH = 16


@exported({"type": "string", "minLength": TOKEN_MIN_LENGTH})
def _token(value: Any) -> str:
    text = _text(value)
    if len(text.strip()) < TOKEN_MIN_LENGTH:
        # Short enough to guess, and too short to be found and hidden everywhere.
        raise vol.Invalid(
            f"must be at least {TOKEN_MIN_LENGTH} characters (got {len(text.strip())}); "
            "leave it out and one is generated"
        )
    return text


@exported({"type": "integer", "minimum": 16, "maximum": 65536})
def _connection_cap(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 65536:
        raise vol.Invalid(f"must be a whole number from 16 to 65536 (got {shown(value)})")
    return value


@exported({"type": "number", "minimum": 1, "maximum": 300})
def _header_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 300:
        raise vol.Invalid(f"must be from 1 to 300 seconds (got {shown(value)})")
    return float(value)


@exported({"type": "number", "exclusiveMinimum": 0})
def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid(f"must be a number of seconds (got {shown(value)})")
    if value <= 0:
        raise vol.Invalid(f"must be more than 0 seconds (got {shown(value)})")
    return float(value)


@exported({"type": "boolean"})
def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid(f"must be true or false (got {shown(value)})")
    return value


@exported({"type": "integer", "minimum": 1})
def _run_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise vol.Invalid(f"must be a whole number of at least 1 (got {shown(value)})")
    return value


@exported({"type": "number", "exclusiveMinimum": 0})
def _days(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise vol.Invalid(f"must be a number of days above 0 (got {shown(value)})")
    return float(value)


_FINETUNING = vol.Schema(
    {
        vol.Optional(
            "api_key",
            default=None,
            description="Finetuning.ai API key (Profile → API → Create Key; use !env or "
            "!secret); without one everything runs on the embedded sandbox",
        ): optional(api_key),
        vol.Optional(
            "base_url", default=None, description=f"API address (default {FT_BASE_URL})"
        ): optional(_http_url),
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
        ): optional(api_token),
        vol.Optional(
            "base_url", default=None, description=f"API address (default {TP_BASE_URL})"
        ): optional(_http_url),
    }
)
# The guard of both listeners (webhook and api): the same keys, the same defaults.
_LISTENER_LIMITS: dict[Any, Any] = {
    vol.Optional(
        "max_connections",
        default=512,
        description="connections open at once; past it the longest-idle one is closed",
    ): _connection_cap,
    vol.Optional(
        "header_timeout",
        default=10.0,
        description="seconds a client has to send a request's headers (again after each response)",
    ): _header_timeout,
}
_WEBHOOK = vol.Schema(
    {
        vol.Required("listen", description="where the listener accepts connections"): host_port,
        vol.Optional(
            "public_url",
            default=None,
            description="the URL providers are told to call (they only call public https "
            "URLs); unset: they are not told of the listener, and the poller does the work",
        ): optional(_public_url),
        vol.Optional(
            "token",
            default=None,
            description="shared secret in the hook URL (use !secret); unset: one is "
            "generated and kept in state_dir",
        ): optional(_token),
        **_LISTENER_LIMITS,
    }
)
_API = vol.Schema(
    {
        vol.Required("listen", description="where the API accepts connections"): host_port,
        vol.Required("tokens", description="the clients let in, one item each"): token_list,
        **_LISTENER_LIMITS,
    }
)
# One item of `api.tokens`; the validator checks each with it.
API_TOKEN_SCHEMA = vol.Schema(
    {
        vol.Required(
            "name",
            description="the client's name, unique; recorded with the runs and hooks it asks for",
        ): client_name,
        vol.Required(
            "token",
            description="its bearer token (Authorization: Bearer ...), unique; use !secret. "
            f"Make one with `{MAKE_TOKEN}`",
        ): bearer_token,
        vol.Optional(
            "scopes",
            default=["read"],
            description="read: every GET; act: call actions, replay runs, add and remove "
            "hooks (act does not include read)",
        ): scopes,
        vol.Optional(
            "actions",
            description="with act: only these actions may be called with it, e.g. [generate] "
            "for a button (default: every action)",
        ): action_keys,
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


@exported({"type": "object", "x-allowed": "a mapping (below)"})
def _section_doc(value: Any) -> Any:
    return value  # the documentation's stand-in: sections are checked by their own schema


@exported({"type": "string", "minLength": 1, "x-allowed": "a folder path"})
def _folder_doc(value: Any) -> Any:
    return value  # checked by Validator.state_dir


@exported({"type": "array", "x-allowed": "one item, or a list"})
def _items_doc(value: Any) -> Any:
    return value  # checked by Validator.entries


@exported({"type": "array", "x-allowed": "a list"})
def _list_doc(value: Any) -> Any:
    return value  # checked by Validator.automations


# The top level and the automations, for the documentation: the validator walks
# them by hand (to report every problem with its line), and takes its key names
# from here, so the reference cannot miss one.
DOCUMENT_SCHEMA = vol.Schema(
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
        vol.Optional(
            "api",
            description="the HTTP API for n8n, Node-RED, Home Assistant and scripts; absent: "
            "no API",
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
AUTOMATION_SCHEMA = vol.Schema(
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
        ): vol.Match(STEP_ID.pattern),
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
    ConfigSection("", "Top level", "Every section is optional.", DOCUMENT_SCHEMA),
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
    ConfigSection(
        "api", "api", "The HTTP API listener: /api/v1/..., bearer tokens with scopes.", _API
    ),
    ConfigSection(
        "api.tokens[]",
        "A token",
        "Each item of `api.tokens`: one client, its token and what it may do.",
        API_TOKEN_SCHEMA,
    ),
    ConfigSection("poll", "poll", "How often the poller looks.", _POLL),
    ConfigSection("runtime", "runtime", "How the runs are executed and kept.", _RUNTIME),
    ConfigSection(
        "automations[]", "An automation", "Each item of `automations`.", AUTOMATION_SCHEMA
    ),
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

The README's reference is generated from it (`connector.automation.reference.config_markdown`).
"""

# Keys whose value is a secret wherever it comes from (literal, !env, !secret), by
# where they sit, as the reference writes it ("api.tokens[]": in each item of the list).
SECRET_FIELDS = {
    "finetuning": ("api_key",),
    "tempolor": ("api_token",),
    "webhook": ("token",),
    "api.tokens[]": ("token",),
}

# The sections' own schemas, by name, in the order the validator reads them.
SECTION_SCHEMAS: dict[str, vol.Schema] = {
    "finetuning": _FINETUNING,
    "tempolor": _TEMPOLOR,
    "webhook": _WEBHOOK,
    "api": _API,
    "poll": _POLL,
    "runtime": _RUNTIME,
}
