"""The JSON sidecar is strict JSON and carries no callback token.

Providers echo the webhook URL a generation was created with, token and all:
Finetuning.ai as `webhook` (`https://host/hooks/finetuning?token=SECRET`),
TemPolor as `replyUrl` in the job kept under the extra field `tempolor`. The
models strip that token as they parse; the sidecar writer drops those fields
itself too, so a generation built any other way (here: `model_copy`, which
skips validation) still publishes nothing. A media library is often shared
wider than the connector's configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector import redaction
from connector.delivery.download import download_track
from connector.providers.finetuning.models import Generation
from connector.sandbox import SandboxHandle

pytestmark = pytest.mark.e2e

ACCOUNT = "Demo User"
TOKEN = "hooktoken-9f8e7d6c5b4a39281706"
HOOK = f"https://connector.example.net/hooks/finetuning?token={TOKEN}"
REPLY = f"https://connector.example.net/hooks/tempolor?token={TOKEN}"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


async def seeded(sandbox: SandboxHandle, **track: Any) -> Generation:
    added = sandbox.sandbox.add_track(ACCOUNT, **track)
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.url}/v1/generations/{added.id}"
        async with http.get(url, headers={"X-API-Key": sandbox.api_key}) as response:
            assert response.status == 200
            return Generation.model_validate((await response.json())["data"])


def strict_json(path: Path) -> Any:
    """Parse as a strict parser would: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def keys_at_any_depth(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_at_any_depth(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_at_any_depth(item)}
    return set()


async def test_the_webhook_token_never_reaches_the_sidecar(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    real = await seeded(sandbox, prompt="hooked")
    generation = real.model_copy(update={"webhook": HOOK})
    assert generation.to_wire()["webhook"] == HOOK  # what the writer is handed

    result = await download_track(generation, library, also_write=("json",), session=http)

    raw = result.sidecars[0].read_bytes()
    assert TOKEN.encode() not in raw
    document = strict_json(result.sidecars[0])
    assert "webhook" not in document
    assert document["id"] == generation.id
    assert document["audioUrl"] == generation.audio_url
    assert document["file"] == result.path.name


async def test_tempolor_reply_urls_are_dropped_at_any_depth(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    real = await seeded(sandbox, prompt="replied")
    generation = real.model_copy(
        update={
            "provider": "tempolor",
            "webhook": REPLY,
            "tempolor": {
                "job_id": real.id,
                "replyUrl": REPLY,
                "replyRef": "ref-1",
                "params": {"reply_url": REPLY, "webhook_url": HOOK, "prompt": "replied"},
                "history": [{"Reply-URL": REPLY}],
            },
        }
    )

    result = await download_track(generation, library, also_write=("json",), session=http)

    raw = result.sidecars[0].read_bytes()
    assert TOKEN.encode() not in raw
    document = strict_json(result.sidecars[0])
    assert document["provider"] == "tempolor"
    assert document["tempolor"]["replyRef"] == "ref-1"  # the rest is kept
    assert document["tempolor"]["params"] == {"prompt": "replied"}
    assert not {"webhook", "replyUrl", "reply_url", "webhook_url", "Reply-URL"} & (
        keys_at_any_depth(document)
    )


async def test_the_sidecar_is_strict_json_without_nan_or_infinity(
    http: aiohttp.ClientSession, sandbox: SandboxHandle, library: Path
) -> None:
    real = await seeded(sandbox, prompt="not a number")
    generation = real.model_copy(
        update={
            "duration": float("nan"),
            "generation_time": float("inf"),
            "stats": {"loudness": float("-inf"), "peaks": [1.5, float("nan")]},
        }
    )

    result = await download_track(generation, library, also_write=("json",), session=http)

    document = strict_json(result.sidecars[0])
    assert document["duration"] is None
    assert document["generationTime"] is None
    assert document["stats"] == {"loudness": None, "peaks": [1.5, None]}


async def test_registered_secrets_are_scrubbed_wherever_they_were_echoed(
    http: aiohttp.ClientSession,
    sandbox: SandboxHandle,
    library: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret the process knows (API key, tokens) never lands in the library."""
    monkeypatch.setattr(redaction, "SECRETS", redaction.SecretSet())
    api_key = "ft_live_0123456789abcdef0123456789abcdef"
    redaction.register_secret(api_key)
    real = await seeded(sandbox, prompt="echo")
    generation = real.model_copy(
        update={"error_message": f"echoed {api_key}", "debug": {"request": f"key={api_key}"}}
    )

    result = await download_track(generation, library, also_write=("json",), session=http)

    assert api_key.encode() not in result.sidecars[0].read_bytes()
    document = strict_json(result.sidecars[0])
    assert document["errorMessage"] == f"echoed {redaction.REDACTED}"
    assert document["debug"] == {"request": f"key={redaction.REDACTED}"}
