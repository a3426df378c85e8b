"""What a person at a terminal sees while `ftconnect` works: one updating status line.

Everything here writes to stderr-like streams only, and only when the stream is
a terminal: in a pipe, a log file or CI the same calls are silent, so stdout
stays pure data and logs carry no carriage-return noise. Colour follows the
same rule and also honours `--no-color` and the `NO_COLOR` convention.

Only the standard library is imported, so the CLI's start-up stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

_UNICODE_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_SPINNER = "-\\|/"

GREEN = "32"
RED = "31"
YELLOW = "33"
BOLD = "1"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (False for pipes, files, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def color_enabled(stream: TextIO, *, no_color: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color or NO_COLOR set (no-color.org)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    return is_terminal(stream)


def paint(text: str, code: str, enabled: bool) -> str:
    """`text` in the ANSI colour `code` when colour is enabled, else unchanged."""
    return f"\x1b[{code}m{text}\x1b[0m" if enabled else text


def format_bytes(count: float) -> str:
    """A byte count for people: 512 B, 3.4 KB, 12.0 MB (powers of 1024)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class StatusLine:
    """One line on a terminal, rewritten in place; does nothing when the stream is not a TTY.

    Shorter text is padded with spaces over the previous one rather than using
    ANSI erase codes, so the line also behaves with --no-color and dumb terminals.

    `overlay`, when set and returning text, is shown instead of what `show` is
    given: a `WaitProgress` uses it to say why the client waits even while a
    `GenerationProgress` keeps redrawing the same line.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self._shown = 0
        self.overlay: Callable[[], str | None] | None = None
        encoding = (getattr(self.stream, "encoding", None) or "").lower().replace("-", "")
        self.spinner = _UNICODE_SPINNER if encoding.startswith("utf") else _ASCII_SPINNER

    def width(self) -> int:
        """Columns available: one less than the terminal's, so the line never wraps."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
        return max(20, columns - 1)

    def show(self, text: str) -> None:
        """Replace the line's text (cut to the terminal's width: a wrapped line cannot be
        rewritten in place)."""
        if not self.enabled:
            return
        if self.overlay is not None:
            text = self.overlay() or text
        text = text[: self.width()]
        padding = " " * max(0, self._shown - len(text))
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Erase the line and put the cursor back at its start, ready for normal output."""
        if not self.enabled or not self._shown:
            return
        self.stream.write("\r" + " " * self._shown + "\r")
        self.stream.flush()
        self._shown = 0


class GenerationProgress:
    """`⠹ processing  12s  <id>` on stderr while a generation is pending.

    Use as an async context manager around the wait and feed it every poll's
    status with `update`; between polls a ticker keeps the spinner and the
    elapsed seconds moving (polls are 3 to 15 s apart). The line is erased on
    exit so the next message starts clean.
    """

    def __init__(
        self,
        generation_id: str,
        line: StatusLine,
        *,
        status: str = "pending",
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generation_id = generation_id
        self.line = line
        self.status = status
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the wait began."""
        return self._clock() - self._started

    def update(self, status: str) -> None:
        """Record the latest polled status and redraw."""
        self.status = status
        self.draw()

    def draw(self) -> None:
        """Redraw the line with the next spinner frame."""
        frames = self.line.spinner
        spinner = frames[self._frame % len(frames)]
        self._frame += 1
        self.line.show(
            f"{spinner} {self.status:<10} {self.elapsed:4.0f}s  {self.generation_id}"
            "  (Ctrl-C stops waiting, not the generation)"
        )

    async def _tick(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> Self:
        self._started = self._clock()
        if self.line.enabled:
            self.draw()  # at once: the ticker's first turn comes only at the next await
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            # The ticker only ever ends by this cancellation.
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.line.clear()


class DownloadProgress:
    """`downloading 1.2 MB of 3.4 MB (35%)  850.0 KB/s` on stderr while audio downloads.

    Call it with (bytes so far, total or None), as `media.download_track`'s
    `on_progress` does. Redraws at most every `interval` seconds, because
    chunks arrive far faster than a person can read.
    """

    def __init__(
        self,
        line: StatusLine,
        *,
        label: str = "downloading",
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.line = line
        self.label = label
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.line.enabled:
            return
        now = self._clock()
        finished = total is not None and done >= total
        if self._last_draw is not None and now - self._last_draw < self.interval and not finished:
            return
        self._last_draw = now
        self.line.show(self.describe(done, total, now - self._started))

    def describe(self, done: int, total: int | None, elapsed: float) -> str:
        """The line's text for `done` of `total` bytes after `elapsed` seconds."""
        amount = format_bytes(done)
        if total:
            amount += f" of {format_bytes(total)} ({min(100, done * 100 // total)}%)"
        rate = f"{format_bytes(done / elapsed)}/s" if elapsed > 0 else "…"
        return f"{self.label} {amount}  {rate}"

    def finish(self) -> None:
        """Erase the line."""
        self.line.clear()


class WaitProgress:
    """`⠹ waiting 21 s for the reads budget (60 requests per 60 s)` while the client waits.

    Pass it as the API client's `on_wait` (`connector.providers.ratelimit.WaitCallback`):
    the client calls it once when a wait over 2 s starts and calls what it
    returns when the wait ends. Meanwhile the line counts down; when the wait
    ends it is erased. It overlays the `StatusLine` (a `GenerationProgress` on
    the same line shows the wait instead of its own text until then). Nothing
    is drawn when the line is not a terminal: log records carry the wait there.
    """

    def __init__(
        self,
        line: StatusLine,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.line = line
        self.interval = interval
        self._clock = clock
        self._reason: str | None = None
        self._started = 0.0
        self._until = 0.0
        self._serial = 0
        self._ticker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether a wait is being shown."""
        return self._reason is not None

    def __call__(self, reason: str, seconds: float) -> Callable[[], None] | None:
        if not self.line.enabled:
            return None
        self._stop_ticker()
        self._serial += 1
        serial = self._serial
        self._reason = reason
        self._started = self._clock()
        self._until = self._started + seconds
        self.line.overlay = self.describe
        self.draw()
        with contextlib.suppress(RuntimeError):  # no running loop: the line stays as drawn
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

        def done() -> None:
            if serial == self._serial:  # a newer wait has not replaced this one
                self.close()

        return done

    def describe(self) -> str | None:
        """The line's text now, or None when no wait is shown."""
        if self._reason is None:
            return None
        now = self._clock()
        frames = self.line.spinner
        spinner = frames[int((now - self._started) / self.interval) % len(frames)]
        if math.isfinite(self._until):
            left = max(0.0, self._until - now)
            return f"{spinner} waiting {left:.0f} s {self._reason}"
        return f"{spinner} waiting {now - self._started:.0f} s so far {self._reason}"

    def draw(self) -> None:
        """Redraw the line."""
        text = self.describe()
        if text is not None:
            self.line.show(text)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.draw()

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()  # a task that only ever sleeps and draws: nothing to await
            self._ticker = None

    def close(self) -> None:
        """Stop showing the wait and erase the line (safe to call at any time)."""
        self._stop_ticker()
        if self._reason is None:
            return
        self._reason = None
        if self.line.overlay == self.describe:
            self.line.overlay = None
        self.line.clear()
