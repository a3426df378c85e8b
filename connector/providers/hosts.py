"""Whether a host is this machine or a private network: the one answer the connector uses.

Stdlib only. Host names are compared without case and without a trailing dot;
`localhost` and `*.localhost` are loopback by definition (RFC 6761), and IPv4
short forms (`127.1`, `2130706433`, `0x7f.1`) count as the address they name,
as the socket layer reads them.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["ip_literal", "is_local", "is_loopback", "is_loopback_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names literally, including short forms like 127.1 or 2130706433."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a name or an address, as in a URL) is this machine's loopback."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if _is_localhost(host):
        return True
    address = ip_literal(host)
    return address is not None and address.is_loopback


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is this machine's loopback (False for anything unparsable)."""
    try:
        return is_loopback(urlsplit(url).hostname)
    except ValueError:
        return False


def is_local(host: str | None) -> bool:
    """Whether `host` is loopback or any address not on the public internet."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if _is_localhost(host):
        return True
    address = ip_literal(host)
    return address is not None and not address.is_global
