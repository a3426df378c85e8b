"""Helpers for the config tests: a small hand-made registry and a problem lister.

The registry mirrors the shape of the real declarations (templatable fields,
a provider option, a destructive action with a load-time check) without
depending on the modules in `triggers/` and `actions/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import voluptuous as vol

from connector.automation.loader import parse_config
from connector.automation.model import ConnectorConfig
from connector.automation.problems import ConfigError
from connector.automation.registry import Registry
from connector.automation.specs import ActionSpec, TriggerSpec
from connector.automation.validators import PROVIDER, id_list, number_range, one_of, templatable


async def _run(context: Any, options: Mapping[str, Any]) -> Mapping[str, Any]:
    return {}


def _matches(event: Any, options: Mapping[str, Any]) -> bool:
    return True


def _confirm_required(options: Mapping[str, Any]) -> None:
    if options.get("confirm") is not True:
        raise vol.Invalid("deleting cannot be undone; add 'confirm: true'", path=["confirm"])


def _no_private_with_many(options: Mapping[str, Any]) -> None:
    if options.get("playlist") == "forbidden":
        raise ValueError("the playlist 'forbidden' cannot be used")


TRACK_COMPLETED = TriggerSpec(
    key="track_completed",
    title="Track completed",
    description="A generation finished.",
    schema=vol.Schema(
        {
            vol.Optional("provider", description="only this provider"): PROVIDER,
            vol.Optional("tags_contain", description="words the tags contain"): templatable(str),
            vol.Optional("min_duration", description="seconds at least"): number_range(0, 600),
        }
    ),
    example={"trigger": "track_completed", "tags_contain": "lofi"},
    kinds=frozenset({"track_completed"}),
    matches=_matches,
)

GENERATION_FAILED = TriggerSpec(
    key="generation_failed",
    title="Generation failed",
    description="A generation failed.",
    schema=vol.Schema({}),
    example={},
    kinds=frozenset({"generation_failed"}),
    matches=_matches,
    providers=frozenset({"finetuning"}),
)

GENERATE = ActionSpec(
    key="generate",
    title="Generate a track",
    description="Starts a generation.",
    schema=vol.Schema(
        {
            vol.Optional("provider", default="finetuning"): PROVIDER,
            vol.Required("tags", description="music description"): templatable(str),
            vol.Optional("duration", default=60, description="seconds"): templatable(
                number_range(5, 210, " seconds")
            ),
            vol.Optional("scale"): templatable(one_of("major", "minor")),
            vol.Optional("wait", default=False): bool,
            vol.Optional("parameters"): {vol.Optional("bpm"): int, vol.Optional("seed"): int},
        }
    ),
    example={"action": "generate", "tags": "lofi chill piano", "duration": 90},
    run=_run,
    providers=frozenset({"finetuning", "tempolor"}),
    output_example={"id": "gen_1", "status": "completed"},
)

ADD_TO_PLAYLIST = ActionSpec(
    key="add_to_playlist",
    title="Add to playlist",
    description="Adds tracks to a playlist.",
    schema=vol.Schema(
        {
            vol.Optional("provider", default="finetuning"): PROVIDER,
            vol.Required("playlist", description="name or id"): templatable(str),
            vol.Required("tracks", description="track ids"): templatable(id_list),
        }
    ),
    example={"playlist": "Focus Beats", "tracks": "{{ trigger.generation.id }}"},
    run=_run,
    check=_no_private_with_many,
)

BULK_DELETE = ActionSpec(
    key="bulk_delete",
    title="Delete tracks",
    description="Deletes tracks for good.",
    schema=vol.Schema(
        {
            vol.Required("tracks"): templatable(id_list),
            vol.Optional("confirm", default=False): bool,
        }
    ),
    example={"action": "bulk_delete", "tracks": "gen_1", "confirm": True},
    run=_run,
    destructive=True,
    check=_confirm_required,
)


def make_registry() -> Registry:
    """A registry of two triggers and three actions, declared above."""
    registry = Registry()
    for trigger in (TRACK_COMPLETED, GENERATION_FAILED):
        registry.add_trigger(trigger, "tests")
    for action in (GENERATE, ADD_TO_PLAYLIST, BULK_DELETE):
        registry.add_action(action, "tests")
    return registry


def parse(
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    filename: str = "automations.yaml",
) -> ConnectorConfig:
    """Parse dedented YAML with the test registry and an empty environment by default."""
    return parse_config(
        dedent(text),
        filename=filename,
        base_dir=base_dir,
        registry=make_registry(),
        environ={} if environ is None else environ,
    )


def problems(text: str, **kwargs: Any) -> list[str]:
    """Every problem line for an invalid file (fails the test if the file is valid)."""
    try:
        parse(text, **kwargs)
    except ConfigError as err:
        return str(err).splitlines()
    raise AssertionError("the file was expected to be invalid")
