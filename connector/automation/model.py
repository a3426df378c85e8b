"""The validated automations file, as the runtime reads it.

`load_config` (in `connector.automation.loader`) makes a `ConnectorConfig`
only from a file without problems, so every value here has been checked:
templates are compiled, defaults filled in, relative paths made absolute.

Values read with `!env` or `!secret` are `SecretValue`s; the API key, the
TemPolor token, the webhook token and the HTTP API's tokens are secrets
however they are written: no repr shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.automation.templates import Template

__all__ = [
    "ApiConfig",
    "ApiToken",
    "AutomationConfig",
    "ConnectorConfig",
    "PollConfig",
    "ProviderConfig",
    "SecretValue",
    "StepConfig",
    "TriggerConfig",
    "WebhookConfig",
]

HIDDEN = "'***'"


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
class ApiToken:
    """One client of the HTTP API: its name (kept in the journal), bearer token and scopes.

    `read` allows every GET; `act` the calls that do something (actions, replays,
    hooks). Neither implies the other, so a dashboard can be given `read` alone and
    a button `act` alone.
    """

    name: str
    token: str
    scopes: frozenset[str]
    # The actions it may call (`act`); None: every action.
    actions: frozenset[str] | None = None

    def __repr__(self) -> str:
        limited = "" if self.actions is None else f", actions={sorted(self.actions)!r}"
        return (
            f"ApiToken(name={self.name!r}, token={_hidden(self.token)}, "
            f"scopes={sorted(self.scopes)!r}{limited})"
        )


@dataclass(frozen=True)
class ApiConfig:
    """Where the HTTP API listens and the tokens it accepts (its repr shows each token's,
    which hides the token)."""

    host: str
    port: int
    tokens: tuple[ApiToken, ...]
    max_connections: int = 512  # as the webhook listener's
    header_timeout: float = 10.0


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
    api: ApiConfig | None = None
