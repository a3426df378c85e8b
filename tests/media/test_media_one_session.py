"""Downloads and outgoing webhooks ride the connector's one HTTP session, and leak nothing.

The session is the provider client's, which sends its API key on its own
requests. A download or a webhook sent through it must carry no credential,
not to the host addressed and not to another host a redirect points at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import connector.delivery
from connector.delivery.download import download_track
from connector.delivery.webhooks import WebhookDeliveryError, generate_secret, send_webhook
from connector.providers.finetuning.client import FinetuningClient
from connector.sandbox import SandboxHandle
from connector.sandbox.audio import mp3_bytes

pytestmark = pytest.mark.e2e

CREDENTIAL_HEADERS = ("X-API-Key", "Authorization", "Cookie", "Proxy-Authorization")
SAMPLE_MP3 = mp3_bytes(2.0)


class Host:
    """A loopback HTTP server reached by a host name of the test's choice."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.app = web.Application()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def record(self, request: web.Request) -> None:
        self.seen.append((request.method, request.path, dict(request.headers)))

    async def start(self) -> Host:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.name}:{port}"
        return self

    async def close(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def hosts() -> AsyncIterator[tuple[Host, Host]]:
    """Two origins: "127.0.0.1" redirects to "localhost", which serves and accepts."""
    here, elsewhere = Host("127.0.0.1"), Host("localhost")

    async def redirect(request: web.Request) -> web.Response:
        here.record(request)
        raise web.HTTPTemporaryRedirect(elsewhere.url + "/final" + request.path)

    async def serve(request: web.Request) -> web.Response:
        elsewhere.record(request)
        if request.method == "POST":
            return web.Response(status=204)
        return web.Response(body=SAMPLE_MP3, content_type="audio/mpeg")

    here.app.router.add_route("*", "/{tail:.*}", redirect)
    elsewhere.app.router.add_route("*", "/{tail:.*}", serve)
    await here.start()
    await elsewhere.start()
    yield here, elsewhere
    await here.close()
    await elsewhere.close()


def test_delivery_opens_no_session_of_its_own() -> None:
    folder = Path(next(iter(connector.delivery.__path__)))
    makers = [
        path.name
        for path in sorted(folder.glob("*.py"))
        if "ClientSession(" in path.read_text(encoding="utf-8")
    ]
    assert makers == []


async def test_a_download_redirected_to_another_host_carries_no_credential(
    sandbox: SandboxHandle, hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    here, elsewhere = hosts
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
        track = sandbox.sandbox.add_track("Demo User", prompt="lofi piano", duration=5)
        generation = await client.get_generation(track.id)  # the session sent the key here
        moved = generation.model_copy(update={"audio_url": here.url + "/a.mp3?token=signed"})

        result = await download_track(moved, tmp_path, session=client.session)

        assert not client.session.closed  # used, not closed
    assert result.path.is_file()
    assert [(m, p) for m, p, _ in here.seen] == [("GET", "/a.mp3")]
    assert [(m, p) for m, p, _ in elsewhere.seen] == [("GET", "/final/a.mp3")]
    for _, _, headers in here.seen + elsewhere.seen:
        for name in CREDENTIAL_HEADERS:
            assert name not in headers
        assert sandbox.api_key not in str(headers)


async def test_a_webhook_is_never_redirected_and_carries_no_credential(
    sandbox: SandboxHandle, hosts: tuple[Host, Host]
) -> None:
    here, elsewhere = hosts
    async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
        await client.get_generation(sandbox.sandbox.add_track("Demo User", duration=5).id)

        with pytest.raises(WebhookDeliveryError, match="HTTP 307"):
            await send_webhook(
                here.url + "/hook",
                {"type": "test"},
                secret=generate_secret(),
                session=client.session,
            )

        assert not client.session.closed
    assert elsewhere.seen == []  # neither the body nor its signature went there
    [(method, _, headers)] = here.seen
    assert method == "POST"
    for name in CREDENTIAL_HEADERS:
        assert name not in headers
