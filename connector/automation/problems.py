"""What is wrong with an automations file, and the words that say it.

Every problem names the file, the line and the path of the offending value:

    automations.yaml, line 12: automations[2].actions[0].durration is not a valid
    option for 'generate' (did you mean 'duration'?)

Every problem is collected, not just the first (`Problems`), and a value read
as a secret never appears in one: the words used for a value say what kind of
thing it is (`kind_of`, `got`), and `shown` prints one only through its repr,
which hides secrets.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connector.errors import ConnectorError

__all__ = ["ConfigError", "ConfigProblem", "Problems", "got", "kind_of", "shown", "suggest"]

# Secrets shorter than this are only hidden by their repr: scrubbing every
# occurrence of a two-letter string would garble messages for nothing.
_MIN_SCRUBBED_SECRET = 4


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file, with where it is.

    `str()` gives `automations.yaml, line 12: <path> <message>`. When the
    message reads as a predicate of the path ("is required for 'generate'")
    path and message are joined with a space, otherwise with a colon
    (`...actions[1].duration: must be between 5 and 210 seconds (got 300)`).
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        if not self.path:
            return f"{where}: {self.message}"
        joiner = " " if self.message.startswith(("is ", "are ", "has ")) else ": "
        return f"{where}: {self.path}{joiner}{self.message}"


class ConfigError(ConnectorError):
    """The file is invalid; `problems` lists everything wrong with it, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class Problems:
    """Collects the problems of one file; hides secrets from every message."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.items: list[ConfigProblem] = []
        self.secrets: set[str] = set()

    def add(self, line: int | None, path: str, message: str, *, file: str | None = None) -> None:
        self.items.append(ConfigProblem(file or self.filename, line, path, message))

    def hide(self, value: Any) -> None:
        """Never show `value` in a problem, whenever the problem was added."""
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= _MIN_SCRUBBED_SECRET:
                self.secrets.add(text)

    def _scrub(self, text: str) -> str:
        # Longest first, so a secret that contains another is hidden whole.
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def error(self) -> ConfigError:
        """Every problem, secrets hidden, the file's own first and in line order."""
        # Scrubbed here, not when added, so a secret read after a problem is hidden too.
        scrubbed = (
            ConfigProblem(p.file, p.line, self._scrub(p.path), self._scrub(p.message))
            for p in self.items
        )
        ordered = sorted(
            dict.fromkeys(scrubbed),  # one problem reached twice is said once
            key=lambda p: (p.file != self.filename, p.line or 0),
        )
        return ConfigError(ordered)


# ------------------------------------------------------------------ the words


def kind_of(value: Any) -> str:
    """What a value is, in the user's words (never the value itself)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def got(value: Any) -> str:
    """'(got a number)'; for true/false, why a word may have become one."""
    if isinstance(value, bool):
        return f"(got {str(value).lower()}: YAML reads yes/no/on/off as true/false; quote it)"
    return f"(got {kind_of(value)})"


def shown(value: Any) -> str:
    """A short repr for messages; secrets show as '***'."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(word: object, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    matches = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
