"""Which webhook URLs the sandbox accepts, and which it will actually contact (loopback only)."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from yarl import URL

NOT_LOOPBACK_ERROR = "not delivered: the sandbox only delivers to loopback"
"""What a webhook attempt to a non-loopback URL records instead of a delivery (both providers)."""


def _host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a URL host denotes, including legacy IPv4 forms such as `127.1` or `0x7f.1`."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Resolvers treat an all-numeric last label as an IPv4 literal, so must we.
    last = host.rsplit(".", 1)[-1]
    if re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last, re.IGNORECASE):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _normalized_host(url: str) -> str | None:
    # Backslashes and control characters are where URL parsers disagree: refuse them,
    # so the host checked here is the host aiohttp would connect to.
    if "\\" in url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return None
    try:
        host = urlsplit(url).hostname
        yarl_host = URL(url).host
    except ValueError:
        return None
    if not host or not yarl_host:
        return None
    host = host.rstrip(".").lower()
    if host != yarl_host.strip("[]").rstrip(".").lower():
        return None
    return host


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this machine's loopback (127.0.0.0/8, ::1 or localhost)."""
    host = _normalized_host(url)
    if host is None:
        return False
    if host == "localhost":
        return True
    ip = _host_ip(host)
    return ip is not None and ip.is_loopback


def _is_public_host(host: str) -> bool:
    ip = _host_ip(host)
    if ip is not None:
        return ip.is_global and not ip.is_multicast
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    labels = host.split(".")
    # A single label (an intranet name) is not publicly resolvable.
    if len(labels) < 2:
        return False
    return all(re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?", label) for label in labels)


def webhook_problem(url: str, *, strict: bool) -> str | None:
    """Why `url` is not an acceptable webhook, or None when it is.

    Strict (the real service): HTTPS on a public host. Otherwise loopback http(s)
    URLs are accepted as well, so local receivers can be used.
    """
    if len(url) > 2048:
        return "webhook must be at most 2048 characters"
    if strict:
        problem = "webhook must be a valid HTTPS URL on a public host (no localhost or private IPs)"
    else:
        problem = (
            "webhook must be a valid HTTPS URL on a public host, "
            "or an http(s) URL on loopback (127.0.0.0/8, ::1, localhost)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return problem
    scheme = parts.scheme.lower()
    host = _normalized_host(url)
    if host is None or scheme not in ("http", "https"):
        return problem
    if scheme == "https" and _is_public_host(host):
        return None
    if not strict and is_loopback_url(url):
        return None
    return problem
