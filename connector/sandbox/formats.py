"""How the Finetuning.ai API writes timestamps, numbers and derived titles."""

from __future__ import annotations

from datetime import UTC, datetime

from . import audio


def iso_seconds(ts: float) -> str:
    """`2025-01-15T10:30:00Z`: the create response's createdAt."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_seconds(ts: float) -> str:
    """`2025-01-15 10:30:00` (UTC, no zone): GET detail and playlist timestamps."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_millis(ts: float) -> str:
    """`2025-01-15T10:30:17.623Z`: completedAt and the webhook timestamps."""
    millis = int(ts * 1000)
    seconds, ms = divmod(millis, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def audio_length(seconds: float) -> float:
    """The exact length of the MP3 the sandbox serves for `seconds` (whole 36 ms frames)."""
    return round(audio.frame_count(seconds) * audio.FRAME_SECONDS, 3)


def number(value: float) -> int | float:
    """A JSON number: integral values as int (as the docs print them), others as float."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def title_from_prompt(prompt: str) -> str:
    """The title the service derives: the first words of the first phrase, capitalized."""
    phrase = prompt.split(",", 1)[0]
    words = phrase.split()[:3]
    title = " ".join(word[:1].upper() + word[1:] for word in words)
    return title or "Untitled"
