"""What every command shares for what it prints: exit codes, errors, JSON, durations.

Conventions (as the official `ft` CLI): data on stdout, everything else on stderr,
errors as `ftconnect: error: ...`. Only the standard library is imported here.
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def print_error(message: object, *, no_color: bool) -> None:
    """`ftconnect: error: ...` on stderr."""
    from connector.cli.progress import RED, color_enabled, paint

    label = paint("error", RED, color_enabled(sys.stderr, no_color=no_color))
    print(f"ftconnect: {label}: {message}", file=sys.stderr)


def generation_json(generation: Any) -> dict[str, Any]:
    """A generation as every --json shows it: the wire form plus `provider`."""
    from connector.events import generation_dict

    return generation_dict(generation)


def print_json(value: Any) -> None:
    """VALUE as indented JSON on stdout, secrets scrubbed."""
    from connector.redaction import dumps

    print(dumps(value, indent=2, ensure_ascii=False))


def format_seconds(value: float | None) -> str:
    """A duration as `12.3s`, or `-`."""
    return f"{value:.1f}s" if value is not None else "-"
