"""`DownloadError`: what every step of delivering a track into the library raises.

The GET (`fetch`), the folders and files (`files`) and the audio check and
tagging (`download`) all fail with it, so its callers (the `download_track`
action, `ftconnect download`) catch one class. It lives apart because `files`
and `fetch` raise it and `download` imports both. Outgoing webhooks fail with
`WebhookDeliveryError`, beside `send_webhook`.
"""

from __future__ import annotations

from pathlib import Path

from connector.errors import DeliveryError


class DownloadError(DeliveryError):
    """A track could not be delivered into the library; nothing was left behind.

    `url` is the audio URL without its query string (signed links carry
    tokens there) and `path` the folder or file concerned, when known.
    `status` is the last HTTP status answered, `attempts` how many GETs were
    made, and `retryable` whether the cause was transient (trying again later
    may work); `retry_after` is the server's Retry-After in seconds, if any.
    """

    default_code = "DOWNLOAD_FAILED"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        path: Path | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.url = url
        self.path = path
        self.retryable = retryable
        self.attempts = attempts
