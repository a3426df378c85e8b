"""Everything a trigger or an action module needs, in one import.

A trigger or an action is one module that defines `TRIGGER = TriggerSpec(...)` or
`ACTION = ActionSpec(...)`: a key, a title and a description, a voluptuous schema
for its options, an example, and one async function (an action's returns a JSON-ready
mapping, which later steps read as `steps.<id>`). It gets a context (the
Protocols `TriggerContext` / `ActionContext`: the API clients, the event, the
connector's HTTP session, a journal for what it is about to do) and raises a
`ConnectorError` (or `vol.Invalid` for a bad option) when it cannot do its job.
Built-in ones live in the repo's `triggers/` and `actions/` folders; other
packages add theirs through the entry-point groups `ftconnect.triggers` and
`ftconnect.actions` (in pyproject.toml: `[project.entry-points."ftconnect.actions"]`,
`shout = "my_package.shout"`, naming the module or its `ACTION`). `context.log` lines are
INFO on the `connector.dispatch.runtime` logger: `ftconnect -v run` shows them.

    from collections.abc import Mapping
    from typing import Any

    import voluptuous as vol
    from connector.plugin import ActionContext, ActionSpec, templatable

    async def shout(context: ActionContext, options: Mapping[str, Any]) -> dict[str, Any]:
        context.log(options["text"].upper())
        return {"said": options["text"]}

    ACTION = ActionSpec(
        key="shout", title="Shout", description="Log a line in capitals.",
        schema=vol.Schema({vol.Required("text"): templatable(str)}),
        example={"text": "{{ trigger.generation.title }}"}, run=shout,
    )
"""

from __future__ import annotations

from connector.automation.specs import (
    ActionContext,
    ActionSpec,
    RegistryError,
    TriggerContext,
    TriggerSpec,
)
from connector.automation.templates import Template, TemplateError
from connector.automation.validators import (
    PLAYLIST,
    PROVIDER,
    exported,
    id_list,
    number_range,
    one_of,
    positive_seconds,
    templatable,
)
from connector.errors import (
    ConnectorError,
    DeliveryError,
    NotFoundError,
    ProviderError,
    RequestValidationError,
)
from connector.events import (
    CREDITS_LOW,
    GENERATION_FAILED,
    RUN_FAILED,
    SCHEDULE,
    TRACK_COMPLETED,
    Event,
)
from connector.providers.finetuning.models import (
    BulkResult,
    Generation,
    GenerationRequest,
    GenerationStatus,
)

__all__ = [
    "CREDITS_LOW",
    "GENERATION_FAILED",
    "PLAYLIST",
    "PROVIDER",
    "RUN_FAILED",
    "SCHEDULE",
    "TRACK_COMPLETED",
    "ActionContext",
    "ActionSpec",
    "BulkResult",
    "ConnectorError",
    "DeliveryError",
    "Event",
    "Generation",
    "GenerationRequest",
    "GenerationStatus",
    "NotFoundError",
    "ProviderError",
    "RegistryError",
    "RequestValidationError",
    "Template",
    "TemplateError",
    "TriggerContext",
    "TriggerSpec",
    "exported",
    "id_list",
    "number_range",
    "one_of",
    "positive_seconds",
    "templatable",
]
