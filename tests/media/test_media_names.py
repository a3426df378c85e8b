"""File names made from data, checked against an independent implementation: pathvalidate.

pathvalidate knows each platform's rules (Windows' reserved device names and
forbidden characters, macOS' ":", byte limits): every name `sanitize_component`
makes must pass its `validate_filename`, for Windows, Linux, macOS and all of
them at once ("universal").
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pathvalidate import ValidationError, validate_filename

from connector.delivery.names import COMPONENT_MAX_BYTES, sanitize_component

PLATFORMS = ("windows", "linux", "macos", "universal")

# Names Windows refuses as a file's stem, whatever the case or the extension.
WINDOWS_DEVICES = (
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{stem}{n}" for stem in ("COM", "LPT") for n in "0123456789"]
    + [f"{stem}{n}" for stem in ("COM", "LPT") for n in "¹²³"]
)

_PUNCTUATION = [".", "..", "/", "\\", ":", "*", "?", '"', "<", ">", "|", " ", "\x00", "\t", "\n"]
_UNICODE = ["\u202e", "\u200d", "🇫🇷", "👩‍👩‍👧‍👦", "e\u0301", "é", "日本", "\ud800"]
_hostile_piece = st.sampled_from([*WINDOWS_DEVICES, *_PUNCTUATION, *_UNICODE])
hostile_names = st.lists(_hostile_piece | st.text(max_size=12), max_size=12).map("".join)


def assert_valid_everywhere(name: str) -> None:
    for platform in PLATFORMS:
        try:
            validate_filename(name, platform=platform, max_len=COMPONENT_MAX_BYTES)
        except ValidationError as err:
            pytest.fail(f"{name!r} is not a valid file name on {platform}: {err}")


@pytest.mark.parametrize(
    "device", [*WINDOWS_DEVICES, "clock$", "conin$.mp3", "CONOUT$ .txt", "Clock$.Mp3"]
)
def test_every_windows_device_name_gets_a_prefix(device: str) -> None:
    name = sanitize_component(device)

    assert name == "_" + device
    assert_valid_everywhere(name)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(value=hostile_names | st.text(max_size=300))
def test_every_sanitised_name_is_valid_on_every_platform(value: str) -> None:
    assert_valid_everywhere(sanitize_component(value))
