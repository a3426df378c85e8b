"""The README's Home Assistant automation, as written there, plays each new track.

The automation is read out of README.md (the block after its
`ha-example: play-new-tracks` marker), set up in Home Assistant as is, and run by
a real completion from the sandbox. The speaker is a recorded
`media_player.play_media` service; the address it is given is then resolved the
way a media player resolves it, to the track's audio on the sandbox.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from homeassistant.components import automation, media_source
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.finetuning.const import CONF_ACTIVE_POLL_INTERVAL, DOMAIN

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_automation() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- ha-example: play-new-tracks -->\n```yaml\n(.*?)```", text, re.S)
    assert found, "README.md has no ha-example: play-new-tracks block"
    config = yaml.safe_load(found.group(1))
    assert isinstance(config, dict)
    return config


@pytest.fixture
def config_entry(hass: HomeAssistant, config_entry: MockConfigEntry) -> MockConfigEntry:
    """The main account's entry, polling each second while its generations run."""
    hass.config_entries.async_update_entry(config_entry, options={CONF_ACTIVE_POLL_INTERVAL: 1})
    return config_entry


async def test_the_readme_automation_plays_each_new_track(
    hass: HomeAssistant, setup_entry: MockConfigEntry, sandbox: SandboxHandle
) -> None:
    played: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    @callback
    def play_media(call: ServiceCall) -> None:
        played.append(dict(call.data))
        arrived.set()

    hass.services.async_register("media_player", "play_media", play_media)
    assert await async_setup_component(hass, "media_source", {})
    assert await async_setup_component(hass, automation.DOMAIN, readme_automation())
    await hass.async_block_till_done()

    made = await hass.services.async_call(
        DOMAIN, "generate", {"tags": "lofi piano, rain"}, blocking=True, return_response=True
    )
    assert made is not None
    async with asyncio.timeout(30):
        await arrived.wait()
    await hass.async_block_till_done()
    assert len(played) == 1  # once, however many times the completion was seen
    call = played[0]
    assert call["entity_id"] == ["media_player.living_room"]
    assert call["media_content_type"] == "music"
    address = call["media_content_id"]
    assert address == (f"media-source://finetuning/{setup_entry.entry_id}/track/{made['id']}")
    resolved = await media_source.async_resolve_media(hass, address, None)
    truth = sandbox.sandbox.generation(made["id"])
    assert truth.status == "completed"
    assert resolved.url == f"{sandbox.url}/audio/{truth.id}.mp3"
    assert resolved.mime_type == "audio/mpeg"
