"""The progress display: one updating line on a terminal, silence everywhere else."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from ft_cli_support import Cli, Terminal

from connector.cli.progress import (
    DownloadProgress,
    GenerationProgress,
    StatusLine,
    color_enabled,
    format_bytes,
    paint,
)
from connector.sandbox import SandboxHandle


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_status_line_is_silent_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    line = StatusLine(stream)
    line.show("working")
    line.clear()
    assert line.enabled is False
    assert stream.getvalue() == ""


def test_status_line_rewrites_in_place_and_pads_over_longer_text() -> None:
    stream = Terminal()
    line = StatusLine(stream)
    line.show("abc")
    line.show("a")
    line.clear()
    assert stream.getvalue() == "\rabc" + "\ra  " + "\r \r"


def test_status_line_never_wraps() -> None:
    stream = Terminal()  # no file descriptor: 80 columns assumed
    StatusLine(stream).show("x" * 200)
    assert stream.getvalue() == "\r" + "x" * 79


def test_spinner_is_ascii_unless_the_stream_speaks_utf8() -> None:
    assert StatusLine(io.StringIO()).spinner == "-\\|/"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert StatusLine(utf8).spinner.startswith("⠋")


async def test_generation_progress_ticks_and_clears() -> None:
    stream = Terminal()
    clock = FakeClock()
    async with GenerationProgress(
        "gen-1", StatusLine(stream), interval=0.001, clock=clock
    ) as progress:
        clock.now = 12.0
        progress.update("processing")
        await asyncio.sleep(0.01)
    text = stream.getvalue()
    assert "pending" in text
    assert "processing   12s  gen-1" in text
    assert text.endswith("\r")  # erased for whatever is printed next
    assert text.rsplit("\r", 2)[-2].strip() == ""


async def test_generation_progress_on_a_pipe_writes_nothing() -> None:
    stream = io.StringIO()
    async with GenerationProgress("gen-1", StatusLine(stream), interval=0.001) as progress:
        progress.update("processing")
        await asyncio.sleep(0.005)
    assert stream.getvalue() == ""


def test_download_progress_shows_bytes_and_rate_at_most_every_interval() -> None:
    stream = Terminal()
    clock = FakeClock()
    progress = DownloadProgress(StatusLine(stream), interval=0.1, clock=clock)
    clock.now = 0.5
    progress(100, 1000)
    clock.now = 0.55
    progress(200, 1000)  # too soon: not drawn
    clock.now = 0.56
    progress(1000, 1000)  # the last chunk is always drawn
    progress.finish()
    text = stream.getvalue()
    assert "downloading 100 B of 1000 B (10%)  200 B/s" in text
    assert "200 B of" not in text
    assert "1000 B of 1000 B (100%)" in text


def test_download_progress_without_a_length() -> None:
    progress = DownloadProgress(StatusLine(Terminal()))
    assert progress.describe(3 * 2**20, None, 2.0) == "downloading 3.0 MB  1.5 MB/s"


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KB"), (5 * 2**20, "5.0 MB"), (3 * 2**30, "3.0 GB")],
)
def test_format_bytes(count: int, shown: str) -> None:
    assert format_bytes(count) == shown


def test_colour_only_on_a_terminal_and_never_when_asked_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_enabled(Terminal()) is True
    assert color_enabled(io.StringIO()) is False
    assert color_enabled(Terminal(), no_color=True) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert color_enabled(Terminal()) is False
    assert paint("ok", "32", True) == "\x1b[32mok\x1b[0m"
    assert paint("ok", "32", False) == "ok"


async def test_generate_on_a_terminal_shows_progress_and_download_on_stderr(
    cli: Cli, sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = await cli(
        "--no-color", "generate", "lofi", "--duration", "10", "--download", str(tmp_path)
    )
    assert result.code == 0
    made = sandbox.sandbox.generations("Demo User")[-1]
    shown = terminal.getvalue()
    assert f"pending       0s  {made.id}" in shown
    assert "downloading " in shown
    assert " of " in shown
    assert "/s" in shown
    assert "\x1b[" not in shown  # --no-color
    assert "\r" not in result.out  # stdout stays data
