"""finetuning-connector: an automation connector for AI music generation.

The names people use are here, loaded on first use so `import connector` (and
`ftconnect --help`) stays fast:

    from connector import FinetuningClient, GenerationRequest

    async with FinetuningClient(api_key) as client:
        track = await client.wait_for_generation(
            (await client.create_generation(GenerationRequest(tags="lofi", duration=60))).id
        )

The packages follow an event's path: `providers` (the API clients over one HTTP
core) → `ingress` (webhooks and the poller) → `journal` (the durable record) →
`dispatch` (matching events to automations, running their steps) → `delivery`
(the media library, outgoing webhooks); `automation` holds the declarations and
the config they are wired with, `app` builds a running connector from a config,
`cli` is `ftconnect`. Plugin authors need only `connector.plugin`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # provider clients and their models
    "FinetuningClient": "connector.providers.finetuning.client",
    "TempolorClient": "connector.providers.tempolor.client",
    "GenerationRequest": "connector.providers.finetuning.models",
    "Generation": "connector.providers.finetuning.models",
    "GenerationStatus": "connector.providers.finetuning.models",
    "Account": "connector.providers.finetuning.models",
    "Playlist": "connector.providers.finetuning.models",
    "PlaylistDetail": "connector.providers.finetuning.models",
    "BulkResult": "connector.providers.finetuning.models",
    "SongRequest": "connector.providers.tempolor.models",
    "InstrumentalRequest": "connector.providers.tempolor.models",
    "TempolorJob": "connector.providers.tempolor.models",
    # errors: one root, every class
    "AddFailedError": "connector.errors",
    "AmbiguousPlaylistError": "connector.errors",
    "AuthenticationError": "connector.errors",
    "BulkOperationError": "connector.errors",
    "ConnectorError": "connector.errors",
    "DeliveryError": "connector.errors",
    "GenerationClaimedError": "connector.errors",
    "GenerationFailedError": "connector.errors",
    "GenerationOutcomeUnknownError": "connector.errors",
    "GenerationRateLimitedError": "connector.errors",
    "GenerationTimeoutError": "connector.errors",
    "InternalServerError": "connector.errors",
    "InvalidApiKeyError": "connector.errors",
    "MissingApiKeyError": "connector.errors",
    "MonthlyLimitReachedError": "connector.errors",
    "MoveFailedError": "connector.errors",
    "NotFoundError": "connector.errors",
    "PlaylistNotFoundError": "connector.errors",
    "ProPlanRequiredError": "connector.errors",
    "ProviderConnectionError": "connector.errors",
    "ProviderError": "connector.errors",
    "ProviderTimeoutError": "connector.errors",
    "QueueFullError": "connector.errors",
    "RateLimitError": "connector.errors",
    "RateLimitedError": "connector.errors",
    "RequestValidationError": "connector.errors",
    "ServerError": "connector.errors",
    "UnexpectedResponseError": "connector.errors",
    "ValidationError": "connector.errors",
    # automations: declarations and config
    "ActionSpec": "connector.automation.specs",
    "TriggerSpec": "connector.automation.specs",
    "ActionContext": "connector.automation.specs",
    "TriggerContext": "connector.automation.specs",
    "Registry": "connector.automation.registry",
    "default_registry": "connector.automation.registry",
    "load_config": "connector.automation.loader",
    "ConnectorConfig": "connector.automation.model",
    "ConfigError": "connector.automation.problems",
    # the running connector
    "Event": "connector.events",
    "Runtime": "connector.dispatch.runtime",
    "RunRecord": "connector.dispatch.records",
    "StepRecord": "connector.dispatch.records",
    "Store": "connector.journal.store",
    "JournalError": "connector.journal.connection",
    "Connector": "connector.app",
    "open_connector": "connector.app",
    "__version__": "connector.version",
}

# Written out so tools see it; tests/test_public_api.py keeps it equal to _EXPORTS.
__all__ = [
    "Account",
    "ActionContext",
    "ActionSpec",
    "AddFailedError",
    "AmbiguousPlaylistError",
    "AuthenticationError",
    "BulkOperationError",
    "BulkResult",
    "ConfigError",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "DeliveryError",
    "Event",
    "FinetuningClient",
    "Generation",
    "GenerationClaimedError",
    "GenerationFailedError",
    "GenerationOutcomeUnknownError",
    "GenerationRateLimitedError",
    "GenerationRequest",
    "GenerationStatus",
    "GenerationTimeoutError",
    "InstrumentalRequest",
    "InternalServerError",
    "InvalidApiKeyError",
    "JournalError",
    "MissingApiKeyError",
    "MonthlyLimitReachedError",
    "MoveFailedError",
    "NotFoundError",
    "Playlist",
    "PlaylistDetail",
    "PlaylistNotFoundError",
    "ProPlanRequiredError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QueueFullError",
    "RateLimitError",
    "RateLimitedError",
    "Registry",
    "RequestValidationError",
    "RunRecord",
    "Runtime",
    "ServerError",
    "SongRequest",
    "StepRecord",
    "Store",
    "TempolorClient",
    "TempolorJob",
    "TriggerContext",
    "TriggerSpec",
    "UnexpectedResponseError",
    "ValidationError",
    "__version__",
    "default_registry",
    "load_config",
    "open_connector",
]

if TYPE_CHECKING:
    from connector.app import Connector, open_connector
    from connector.automation.loader import load_config
    from connector.automation.model import ConnectorConfig
    from connector.automation.problems import ConfigError
    from connector.automation.registry import Registry, default_registry
    from connector.automation.specs import ActionContext, ActionSpec, TriggerContext, TriggerSpec
    from connector.dispatch.records import RunRecord, StepRecord
    from connector.dispatch.runtime import Runtime
    from connector.errors import (
        AddFailedError,
        AmbiguousPlaylistError,
        AuthenticationError,
        BulkOperationError,
        ConnectorError,
        DeliveryError,
        GenerationClaimedError,
        GenerationFailedError,
        GenerationOutcomeUnknownError,
        GenerationRateLimitedError,
        GenerationTimeoutError,
        InternalServerError,
        InvalidApiKeyError,
        MissingApiKeyError,
        MonthlyLimitReachedError,
        MoveFailedError,
        NotFoundError,
        PlaylistNotFoundError,
        ProPlanRequiredError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        QueueFullError,
        RateLimitedError,
        RateLimitError,
        RequestValidationError,
        ServerError,
        UnexpectedResponseError,
        ValidationError,
    )
    from connector.events import Event
    from connector.journal.connection import JournalError
    from connector.journal.store import Store
    from connector.providers.finetuning.client import FinetuningClient
    from connector.providers.finetuning.models import (
        Account,
        BulkResult,
        Generation,
        GenerationRequest,
        GenerationStatus,
        Playlist,
        PlaylistDetail,
    )
    from connector.providers.tempolor.client import TempolorClient
    from connector.providers.tempolor.models import InstrumentalRequest, SongRequest, TempolorJob
    from connector.version import __version__


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
