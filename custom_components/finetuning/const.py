"""Names shared by the integration's modules (and by its tests).

The integration is a thin layer over the `connector` library: these are the
Home Assistant side's names only. The default server is the library's own, so
the two can never disagree.
"""

from __future__ import annotations

from typing import Final

from connector.providers.finetuning.credentials import DEFAULT_BASE_URL

__all__ = [
    "ATTR_CONFIG_ENTRY_ID",
    "CONF_ACTIVE_POLL_INTERVAL",
    "CONF_API_KEY",
    "CONF_BASE_URL",
    "CONF_LIBRARY_FOLDER",
    "CONF_POLL_INTERVAL",
    "DEFAULT_ACTIVE_POLL_INTERVAL",
    "DEFAULT_BASE_URL",
    "DEFAULT_POLL_INTERVAL",
    "DOMAIN",
    "EVENT_GENERATION_FAILED",
    "EVENT_TRACK_COMPLETED",
    "MANUFACTURER",
]

DOMAIN: Final = "finetuning"
MANUFACTURER: Final = "Finetuning.ai"
DEVICE_NAME: Final = "Finetuning.ai"

# Config entry data.
CONF_API_KEY: Final = "api_key"
CONF_BASE_URL: Final = "base_url"

# Config entry options.
CONF_POLL_INTERVAL: Final = "poll_interval"
"""Seconds between polls while nothing we submitted runs (the connector's idle interval)."""
CONF_ACTIVE_POLL_INTERVAL: Final = "active_poll_interval"
"""Seconds between polls while generations we submitted run."""
CONF_LIBRARY_FOLDER: Final = "library_folder"
"""Where `finetuning.download_track` files tracks (absent: the config dir's `media/`)."""

DEFAULT_POLL_INTERVAL: Final = 60
DEFAULT_ACTIVE_POLL_INTERVAL: Final = 3
MIN_POLL_INTERVAL: Final = 5
MAX_POLL_INTERVAL: Final = 3600
MIN_ACTIVE_POLL_INTERVAL: Final = 1
MAX_ACTIVE_POLL_INTERVAL: Final = 300

# Bus events (data: see events.py).
EVENT_TRACK_COMPLETED: Final = "finetuning_track_completed"
EVENT_GENERATION_FAILED: Final = "finetuning_generation_failed"

# Device trigger types (device_trigger.py), one per bus event.
TRIGGER_TRACK_COMPLETED: Final = "track_completed"
TRIGGER_GENERATION_FAILED: Final = "generation_failed"

# Service field naming the account when several are configured.
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
