"""Load an automations file: read it, resolve `!env` / `!secret`, validate everything.

`load_config` (a path) and `parse_config` (a text) return a `ConnectorConfig`
or raise `ConfigError` listing every problem, each with the file, the line and
the path of the offending value:

    automations.yaml, line 12: automations[2].actions[0].durration is not a valid
    option for 'generate' (did you mean 'duration'?)

Values read with `!env` or `!secret` are secrets: they never appear in an
error message or a repr; so are the API key, the TemPolor token, the
webhook token and the HTTP API's tokens however they are written. Once the
file is valid, every secret it holds is registered for redaction, so nothing
the connector writes or sends can carry one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from connector.automation.model import ConnectorConfig
from connector.automation.problems import ConfigError, ConfigProblem, Problems
from connector.automation.registry import Registry, default_registry
from connector.automation.templates import Template
from connector.automation.validate import Validator
from connector.automation.yaml_reader import Tags, read_yaml
from connector.redaction import register_secret

__all__ = ["SECRET_OPTIONS", "load_config", "parse_config"]

# Step options that hold secrets (notify_webhook's signing secret).
SECRET_OPTIONS = ("secret",)


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
    problems = Problems(filename)
    tags = Tags(os.environ if environ is None else environ, folder, problems)
    data = read_yaml(text, tags)
    # The registry is discovered only when an automation needs it.
    source_registry: Registry | Callable[[], Registry] = (
        registry if registry is not None else default_registry
    )
    config = Validator(problems, source_registry, folder, source).document(data)
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
    if config.api is not None:
        for client in config.api.tokens:
            register_secret(client.token)
    for automation in config.automations:
        for step in automation.actions:
            for name in SECRET_OPTIONS:
                value = step.options.get(name)
                if isinstance(value, str) and not isinstance(value, Template):
                    register_secret(value)
    for value in read_secrets:
        register_secret(value)
