"""File and folder names made from data (titles, albums): safe on Linux, macOS and Windows.

`sanitize_component` turns any text into ONE path component that every file
system a media server may sit on accepts, SMB shares mounted from Windows
included, and that cannot climb out of its folder.

Decision: ours, not `pathvalidate`. Its `sanitize_filename` keeps "..",
leading dots and bidirectional overrides, misses "CON .txt", and cuts emoji
sequences in half at the length limit; the tests in tests/media require all
of these. It serves as an independent check instead: a property test asserts
that `validate_filename` accepts every name made here, on every platform.
"""

from __future__ import annotations

import unicodedata

COMPONENT_MAX_BYTES = 120
"""Longest path component built from data, in UTF-8 bytes (file systems allow 255)."""

UNTITLED = "Untitled"
"""The name of a component whose text sanitises to nothing."""

# Windows refuses these as a file's name, whatever the extension (CON, con.txt, ...):
# the DOS devices, CONIN$ and CONOUT$ (the console) and CLOCK$ (NT's clock device).
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{stem}{n}" for stem in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")]
)
# Characters Windows (and SMB shares mounted by Jellyfin/Plex hosts) refuse in names.
_FORBIDDEN = frozenset('<>:"/\\|?*')
# Bidirectional overrides let "evil\u202egpj.mp3" display as "evil3pm.jpg": drop them.
_BIDI_CONTROLS = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
)
_ZWJ = "\u200d"


def sanitize_component(value: str, *, max_bytes: int = COMPONENT_MAX_BYTES) -> str:
    """Make `value` safe as ONE path component on Linux, macOS and Windows shares.

    Control characters (NUL included) and bidirectional overrides go, path
    separators and the characters Windows refuses become "_", whitespace runs
    collapse, leading dots (hidden files; ".", "..") and trailing dots and
    spaces (Windows strips them) are removed, reserved device names (CON,
    com1.txt, CLOCK$, ...) get a "_" prefix, and the result is cut to
    `max_bytes` of UTF-8 without splitting a character. Emoji and other
    scripts are kept. An empty result is "Untitled".
    """
    text = unicodedata.normalize("NFC", value)
    chars: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS:
            continue
        if category in ("Cc", "Zl", "Zp"):
            chars.append(" ")
        elif char in _FORBIDDEN or category == "Cs":
            chars.append("_")
        else:
            chars.append(char)
    text = " ".join("".join(chars).split()).strip(". ")
    # One byte is kept free for the "_" that a reserved name gets.
    text = _cut_utf8(text, max_bytes - 1).rstrip(". ")
    if text.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        text = "_" + text
    return text or UNTITLED


def _cut_utf8(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` UTF-8 bytes without splitting a character.

    Python has no grapheme segmentation, so this approximates it: the cut never
    leaves a dangling zero-width joiner, never separates a base character from
    its combining marks, variation selector or skin-tone modifier, and never
    splits a flag's pair of regional indicators.
    """
    if len(text.encode("utf-8")) <= limit:
        return text
    end = 0
    used = 0
    for char in text:
        size = len(char.encode("utf-8", "surrogatepass"))
        if used + size > limit:
            break
        used += size
        end += 1
    while end > 0 and (_extends(text[end]) or text[end - 1] == _ZWJ):
        end -= 1
    # Regional indicators pair up into flags: keep an even run before the cut.
    run = 0
    while run < end and _is_regional_indicator(text[end - 1 - run]):
        run += 1
    if run % 2 and _is_regional_indicator(text[end]):
        end -= 1
    return text[:end]


def _extends(char: str) -> bool:
    """Whether `char` belongs to the cluster of the character before it."""
    code = ord(char)
    return (
        char == _ZWJ
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (subdivision flags)
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
