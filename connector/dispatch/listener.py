"""Starting the webhook listener of a runtime, with its token kept in the state folder."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from connector.errors import ConnectorError
from connector.redaction import register_secret

if TYPE_CHECKING:
    from connector.dispatch.runtime import Runtime
    from connector.ingress.webhooks import WebhookListener

__all__ = ["WEBHOOK_TOKEN", "ListenerStartError", "start_webhook_listener", "webhook_url"]

WEBHOOK_TOKEN = "webhook_token"


class ListenerStartError(ConnectorError):
    """A listener (webhooks, the HTTP API) cannot listen where the file says."""


async def start_webhook_listener(runtime: Runtime) -> WebhookListener:
    """Start the listener `webhook:` describes, recording into `runtime.submit_event`.

    The token is the file's, else one made once and kept in the state folder.
    Raises ListenerStartError when the address cannot be listened on.
    """
    from connector.ingress.webhooks import WebhookListener

    webhook = runtime.config.webhook
    assert webhook is not None
    token = webhook.token or runtime.store.secret(WEBHOOK_TOKEN, lambda: secrets.token_urlsafe(32))
    register_secret(token)  # whoever holds it can forge events: never written or sent
    listener = WebhookListener(
        token=token,
        record=runtime.submit_event,
        host=webhook.host,
        port=webhook.port,
        health=runtime.health,
        max_connections=webhook.max_connections,
        header_timeout=webhook.header_timeout,
    )
    try:
        await listener.start()
    except OSError as err:  # the port is taken, the host does not resolve, no permission
        reason = err.strerror or str(err) or type(err).__name__
        raise ListenerStartError(
            f"webhook.listen {webhook.host}:{webhook.port}: cannot listen there ({reason})"
        ) from err
    return listener


def webhook_url(runtime: Runtime, provider: str) -> str | None:
    """Where `provider` should post results: a host's own receiver when one is set
    (`runtime.external_webhook_urls`), else the listener's URL; None: polling alone."""
    external = runtime.external_webhook_urls.get(provider)
    if external is not None:
        return external
    if runtime.listener is None or runtime.config.webhook is None:
        return None
    public_url = runtime.config.webhook.public_url
    if public_url is None and not runtime.api_is_local:
        # The real service only calls public https URLs: without public_url the
        # listener's local address would be refused, so rely on polling.
        return None
    return str(runtime.listener.hook_url(provider, public_url))
