"""Playable audio for the sandbox, built by hand: no encoder, no ffmpeg.

`mp3_bytes` writes an MPEG-1 Layer III stream (32 kHz, mono, 32 kbit/s, so every
frame is 144 bytes and lasts 36 ms) behind an optional ID3v2.3 tag carrying the
title and an "Info" (Xing) frame carrying the frame and byte counts, so players
and mutagen report the length without scanning.

The frames are not silent. Each granule (576 frequency lines) holds exactly one
non-zero line, Huffman-coded with table 1, so a decoder hears a soft tone
(about -12 dBFS) whose pitch follows a short pentatonic phrase chosen by `seed`.
There are no scale factors (scalefac_compress 0), no bit reservoir
(main_data_begin 0) and no count1 region, which keeps every frame
self-contained and valid. The trade-off: the timbre is a plain, slightly buzzy
tone, not music; a line's pitch is only near the named note, because the
lines sit (k + 1/2) * 27.8 Hz apart.

`wav_bytes` and `stems_zip` give the same phrase as 8 kHz, 8-bit mono PCM (the
download formats "wav" and "stems"): small, valid, and exact to the sample.
"""

from __future__ import annotations

import io
import math
import random
import struct
import zipfile
from collections.abc import Sequence

SAMPLE_RATE = 32_000
"""Sample rate of the MP3 stream (Hz)."""
BITRATE = 32_000
"""Bit rate of the MP3 stream (bit/s)."""
SAMPLES_PER_FRAME = 1152
"""PCM samples per MPEG-1 Layer III frame."""
FRAME_BYTES = 144 * BITRATE // SAMPLE_RATE
"""Bytes per frame: 144 * bitrate / sample rate, never padded at 32 kHz."""
FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE
"""Playing time of one frame (36 ms)."""
MAX_DURATION = 600.0
"""Longest audio the sandbox builds (seconds)."""

WAV_SAMPLE_RATE = 8_000
"""Sample rate of the WAV files (Hz, 8-bit unsigned mono)."""

# 0xFFF sync, MPEG-1, Layer III, no CRC | bitrate index 1 (32k), 32 kHz, no padding | mono.
_HEADER = bytes((0xFF, 0xFB, 0x18, 0xC0))
_SIDE_INFO_BYTES = 17  # MPEG-1 mono
_XING_OFFSET = len(_HEADER) + _SIDE_INFO_BYTES

# Frequency lines (spacing SAMPLE_RATE / 1152 Hz) nearest to C4 D4 F4 G4 A4 C5 D5.
_NOTE_LINES = (9, 10, 12, 14, 15, 18, 21)
_FRAMES_PER_NOTE = 8  # 288 ms; even, so the two alternating frame variants line up
_PHRASE_NOTES = 16
# Quantised value 1 is scaled by 2 ** ((global_gain - 210) / 4): 202 gives 0.25 full scale.
_GLOBAL_GAIN = 202
_WAV_AMPLITUDE = 0.25


class _BitWriter:
    """MSB-first bit packer, enough for side info and Huffman codes."""

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def write(self, value: int, width: int) -> None:
        self._value = (self._value << width) | (value & ((1 << width) - 1))
        self._bits += width

    def to_bytes(self, size: int) -> bytes:
        """The bits so far, zero-padded on the right to `size` bytes."""
        if self._bits > size * 8:
            raise ValueError("bit stream longer than its frame")
        return (self._value << (size * 8 - self._bits)).to_bytes(size, "big")


def _granule_bits(line: int, negative: bool) -> tuple[int, int]:
    """Huffman data (table 1) for one granule whose only non-zero line is `line`.

    Returns (bits, length). Pairs before the line are (0, 0) = "1"; the pair holding
    it is (1, 0) = "01" or (0, 1) = "001", followed by its sign bit.
    """
    pairs_before = line // 2
    bits, length = (1 << pairs_before) - 1, pairs_before
    code, code_length = (0b01, 2) if line % 2 == 0 else (0b001, 3)
    bits = (bits << code_length) | code
    length += code_length
    return (bits << 1) | int(negative), length + 1


def _audio_frame(line: int, signs: tuple[bool, bool]) -> bytes:
    """One 144-byte frame: two granules, each carrying `line` with the given sign."""
    granules = [_granule_bits(line, negative) for negative in signs]
    side = _BitWriter()
    side.write(0, 9)  # main_data_begin: no bit reservoir
    side.write(0, 5)  # private bits
    side.write(0, 4)  # scfsi
    for _bits, length in granules:
        side.write(length, 12)  # part2_3_length: no scale factors, Huffman bits only
        side.write(line // 2 + 1, 9)  # big_values: pairs up to and including the line
        side.write(_GLOBAL_GAIN, 8)
        side.write(0, 4)  # scalefac_compress 0: slen1 = slen2 = 0
        side.write(0, 1)  # window_switching_flag: long blocks
        for _region in range(3):
            side.write(1, 5)  # table_select: table 1 in every region
        side.write(0, 4)  # region0_count
        side.write(0, 3)  # region1_count
        side.write(0, 1)  # preflag
        side.write(0, 1)  # scalefac_scale
        side.write(0, 1)  # count1table_select
    main = _BitWriter()
    for bits, length in granules:
        main.write(bits, length)
    main_size = FRAME_BYTES - len(_HEADER) - _SIDE_INFO_BYTES
    return _HEADER + side.to_bytes(_SIDE_INFO_BYTES) + main.to_bytes(main_size)


def _note_block(line: int) -> bytes:
    """`_FRAMES_PER_NOTE` frames of one note.

    The same coefficient in every granule would put the energy beside the pitch
    (the MDCT blocks overlap by half), so its sign runs + - - + over four granules,
    the quarter-turn a sinusoid at the line's centre advances per granule.
    """
    first = _audio_frame(line, (False, True))
    second = _audio_frame(line, (True, False))
    return (first + second) * (_FRAMES_PER_NOTE // 2)


_NOTE_BLOCKS = tuple(_note_block(line) for line in _NOTE_LINES)


def _phrase(seed: int) -> list[int]:
    """A short melody as indexes into `_NOTE_LINES`: a random walk that starts on C."""
    rng = random.Random(seed)
    notes = [0]
    for _ in range(_PHRASE_NOTES - 1):
        step = rng.choice((-2, -1, -1, 1, 1, 2))
        notes.append(min(len(_NOTE_LINES) - 1, max(0, notes[-1] + step)))
    return notes


def _check_duration(duration: float) -> None:
    if not (math.isfinite(duration) and 0 < duration <= MAX_DURATION):
        raise ValueError(f"duration must be in (0, {MAX_DURATION:g}] seconds, got {duration!r}")


def frame_count(duration: float) -> int:
    """Audio frames (not counting the Info frame) for `duration` seconds, at least 1."""
    _check_duration(duration)
    return max(1, round(duration / FRAME_SECONDS))


def _id3_title(title: str) -> bytes:
    """An ID3v2.3 tag with one TIT2 frame (Latin-1 when it fits, else UTF-16)."""
    try:
        text = b"\x00" + title.encode("latin-1")
    except UnicodeEncodeError:
        text = b"\x01" + title.encode("utf-16")  # with BOM, as v2.3 requires
    frame = b"TIT2" + struct.pack(">IH", len(text), 0) + text
    size = len(frame)
    # The tag size is "syncsafe": four 7-bit groups.
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + frame


def _info_frame(frames: int) -> bytes:
    """A silent frame carrying an "Info" header: CBR, frame count and byte count."""
    total_bytes = (frames + 1) * FRAME_BYTES  # the Info frame counts in the bytes
    body = b"Info" + struct.pack(">III", 0x3, frames, total_bytes)  # flags: FRAMES | BYTES
    padding = FRAME_BYTES - _XING_OFFSET - len(body)
    return _HEADER + bytes(_SIDE_INFO_BYTES) + body + bytes(padding)


def mp3_bytes(duration: float, *, title: str | None = None, seed: int = 0) -> bytes:
    """A playable MP3 of `duration` seconds (0 < duration <= 600).

    The length is a whole number of 36 ms frames, the nearest to `duration`.
    `title` goes into an ID3v2.3 TIT2 frame; `seed` picks the melody, so the same
    arguments always give the same bytes.
    """
    frames = frame_count(duration)
    phrase = b"".join(_NOTE_BLOCKS[note] for note in _phrase(seed))
    # Repeat the phrase (a multiple of whole frames) and cut at a frame boundary.
    repeats = -(-frames * FRAME_BYTES // len(phrase))
    audio = (phrase * repeats)[: frames * FRAME_BYTES]
    tag = _id3_title(title) if title else b""
    return tag + _info_frame(frames) + audio


def _wav_container(pcm: bytes) -> bytes:
    """RIFF/WAVE around 8-bit unsigned mono PCM at `WAV_SAMPLE_RATE`."""
    fmt = struct.pack("<HHIIHH", 1, 1, WAV_SAMPLE_RATE, WAV_SAMPLE_RATE, 1, 8)
    pad = b"\x00" if len(pcm) % 2 else b""  # RIFF chunks are word-aligned
    riff_size = 4 + (8 + len(fmt)) + (8 + len(pcm) + len(pad))
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(pcm))
        + pcm
        + pad
    )


def _wav_note(line: int, samples: int) -> bytes:
    """One note as 8-bit PCM at the MP3 line's centre frequency, with short fades."""
    frequency = (line + 0.5) * SAMPLE_RATE / (2 * 576)
    fade = min(64, samples // 2)
    out = bytearray(samples)
    for i in range(samples):
        envelope = min(1.0, i / fade, (samples - 1 - i) / fade) if fade else 1.0
        value = _WAV_AMPLITUDE * envelope * math.sin(2 * math.pi * frequency * i / WAV_SAMPLE_RATE)
        out[i] = 128 + round(127 * value)
    return bytes(out)


def wav_bytes(duration: float, *, seed: int = 0) -> bytes:
    """A WAV file (8 kHz, 8-bit, mono) of exactly `duration` seconds, same melody as the MP3."""
    _check_duration(duration)
    total = max(1, round(duration * WAV_SAMPLE_RATE))
    note_samples = round(_FRAMES_PER_NOTE * FRAME_SECONDS * WAV_SAMPLE_RATE)
    notes = {note: _wav_note(_NOTE_LINES[note], note_samples) for note in set(_phrase(seed))}
    phrase = b"".join(notes[note] for note in _phrase(seed))
    pcm = (phrase * -(-total // len(phrase)))[:total]
    return _wav_container(pcm)


def stems_zip(duration: float, *, stems: Sequence[str], seed: int = 0) -> bytes:
    """A ZIP archive with one WAV per stem name (`<name>.wav`), each its own melody."""
    if not stems:
        raise ValueError("stems must name at least one stem")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index, name in enumerate(stems):
            archive.writestr(f"{name}.wav", wav_bytes(duration, seed=seed * 31 + index))
    return buffer.getvalue()
