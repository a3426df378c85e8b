"""The two music providers the connector talks to, and what their clients share.

- `http`: the one HTTP core both clients stand on (session ownership, the attempt
  loop with retries, backoff and Retry-After, transport-error mapping, wait
  announcements, redaction), plus `backoff_delay`.
- `ratelimit`: client-side rate budgets and the wait announcements.
- `hosts`: `is_loopback` and `is_local`, the one answer to "is this host local".
- `fields`: the request-field checks both providers' models share.
- `finetuning/`: Finetuning.ai public API v1.2 (`credentials`, `models`, `client`).
- `tempolor/`: TemPolor through useapi.net (`credentials`, `models`, `client`).

This module and the `credentials` modules import neither aiohttp nor pydantic,
so configuration code can check keys without loading the clients. What the code
relies on from each provider's contract is written down in docs/providers.md.
"""

from __future__ import annotations

PROVIDERS: tuple[str, ...] = ("finetuning", "tempolor")
"""The providers the connector knows, by the name used in config, specs and webhook paths."""

__all__ = ["PROVIDERS"]
