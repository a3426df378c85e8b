"""Values fixed by their arguments: how the sandbox stays deterministic for a seed.

Ids, seeds, outcomes and durations are hashes of `SandboxConfig.seed` and a
counter or id, never draws from a global random source. The Finetuning side
uses `unit_float` and `stable_uuid`, the TemPolor side `unit_interval` and
`digest_number` (different hashes: each keeps the values it always produced).
"""

from __future__ import annotations

import hashlib
import uuid


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()


def unit_float(*parts: object) -> float:
    """A float in [0, 1) fixed by its arguments."""
    return int.from_bytes(_digest(*parts)[:7], "big") / float(1 << 56)


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID string fixed by its arguments."""
    return str(uuid.UUID(bytes=_digest(*parts)[:16], version=4))


def digest_number(text: str, digits: int) -> str:
    """A stable decimal number of exactly `digits` digits derived from `text`."""
    value = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    low = 10 ** (digits - 1)
    return str(low + value % (9 * low))


def unit_interval(text: str) -> float:
    """A stable number in [0, 1) derived from `text`."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16) / float(1 << 52)
