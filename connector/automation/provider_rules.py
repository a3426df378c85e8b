"""Which provider each trigger and action may use, checked when the file is loaded.

Every spec lists its `providers` (TemPolor has no playlists, so
`add_to_playlist` is Finetuning.ai's only). An entry naming a provider its
spec lacks, an action without `provider:` whose spec lacks the default one,
and an automation whose triggers all fire for a provider one of its actions
lacks are refused now, not at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.automation.model import StepConfig, TriggerConfig
from connector.automation.problems import Problems
from connector.automation.specs import ActionSpec, TriggerSpec
from connector.automation.templates import is_template
from connector.automation.yaml_reader import LineMapping, join
from connector.providers import PROVIDERS

__all__ = ["DEFAULT_PROVIDER", "provider_after", "provider_before", "providers_agree"]

DEFAULT_PROVIDER = "finetuning"


def provider_before(
    problems: Problems,
    spec: TriggerSpec | ActionSpec,
    options: dict[str, Any],
    raw: LineMapping,
    path: str,
) -> bool:
    """Report a known provider the spec does not support, before the schema does.

    An unknown name (a typo) is left to the schema, whose message lists the choices.
    """
    provider = options.get("provider")
    if not isinstance(provider, str) or is_template(provider):
        return False
    name = provider.lower()  # provider names are matched like one_of() does
    if name in PROVIDERS and name not in spec.providers:
        _provider_problem(problems, spec, name, raw.key_lines.get("provider"), path)
        return True
    return False


def provider_after(
    problems: Problems,
    spec: TriggerSpec | ActionSpec,
    options: dict[str, Any],
    raw: LineMapping,
    path: str,
    line: int | None,
) -> None:
    """Report the provider of validated options (or the default one) the spec lacks."""
    # Actions run on the default provider when none is named; triggers
    # without one listen to every provider they support.
    default = DEFAULT_PROVIDER if isinstance(spec, ActionSpec) else None
    provider = options.get("provider", default)
    if isinstance(provider, str) and provider not in spec.providers:
        _provider_problem(problems, spec, provider, raw.key_lines.get("provider", line), path)


def providers_agree(
    problems: Problems,
    actions: Mapping[str, ActionSpec],
    triggers: list[TriggerConfig],
    steps: list[StepConfig],
) -> None:
    """An automation whose triggers fire only for one provider cannot use actions that
    provider lacks (TemPolor has no playlists): refuse it now, not at run time."""
    providers = {t.options.get("provider") for t in triggers}
    if len(providers) != 1 or None in providers:
        return
    (provider,) = providers
    for step in steps:
        spec = actions.get(step.action)
        if spec is None or "provider" in step.options or provider in spec.providers:
            continue
        problems.add(
            step.line,
            step.path,
            f"{step.action!r} is not available for provider {provider!r} "
            f"(only {', '.join(sorted(spec.providers))}), and every trigger of this "
            f"automation fires only for {provider!r} generations",
        )


def _provider_problem(
    problems: Problems,
    spec: TriggerSpec | ActionSpec,
    provider: str,
    line: int | None,
    path: str,
) -> None:
    problems.add(
        line,
        join(path, "provider"),
        f"{spec.key!r} is not available for provider {provider!r} "
        f"(only {', '.join(sorted(spec.providers))})",
    )
