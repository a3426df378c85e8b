"""The sandbox's hand-built audio: valid MPEG frames, the right length, not silent."""

from __future__ import annotations

import io
import math
import time
import wave
import zipfile
from dataclasses import dataclass

import pytest
from mutagen.mp3 import MP3

from connector.sandbox import audio

# MPEG-1 Layer III bitrates (kbit/s) by index, and sample rates by index.
_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_SAMPLE_RATES = (44_100, 48_000, 32_000)


def _id3_size(data: bytes) -> int:
    """Bytes taken by a leading ID3v2 tag (0 when there is none)."""
    if data[:3] != b"ID3":
        return 0
    size = 0
    for byte in data[6:10]:
        assert byte < 0x80, "ID3 size must be syncsafe"
        size = (size << 7) | byte
    return 10 + size


@dataclass
class Frame:
    offset: int
    length: int
    bitrate: int
    sample_rate: int
    mono: bool


def _walk_frames(data: bytes) -> list[Frame]:
    """Every MPEG-1 Layer III frame after the tag, checking sync words on the way."""
    frames = []
    offset = _id3_size(data)
    while offset < len(data):
        header = int.from_bytes(data[offset : offset + 4], "big")
        assert header >> 21 == 0x7FF, f"no sync word at {offset}"
        assert (header >> 19) & 0b11 == 0b11, "not MPEG-1"
        assert (header >> 17) & 0b11 == 0b01, "not Layer III"
        bitrate = _BITRATES[(header >> 12) & 0xF] * 1000
        sample_rate = _SAMPLE_RATES[(header >> 10) & 0b11]
        padding = (header >> 9) & 1
        length = 144 * bitrate // sample_rate + padding
        frames.append(Frame(offset, length, bitrate, sample_rate, (header >> 6) & 0b11 == 0b11))
        offset += length
    assert offset == len(data), "frame lengths must add up to the file size"
    return frames


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.size = len(data) * 8
        self.position = 0

    def read(self, width: int) -> int:
        self.position += width
        return (self.value >> (self.size - self.position)) & ((1 << width) - 1)


@dataclass
class Granule:
    part2_3_length: int
    big_values: int
    global_gain: int
    scalefac_compress: int
    window_switching: int
    table_select: tuple[int, int, int]


def _side_info(frame: bytes) -> tuple[int, list[Granule]]:
    """main_data_begin and both granules of an MPEG-1 mono frame's side info."""
    bits = _Bits(frame[4:21])
    main_data_begin = bits.read(9)
    bits.read(5 + 4)  # private bits, scfsi
    granules = []
    for _ in range(2):
        part2_3_length, big_values = bits.read(12), bits.read(9)
        global_gain, scalefac_compress = bits.read(8), bits.read(4)
        window_switching = bits.read(1)
        tables = (bits.read(5), bits.read(5), bits.read(5))
        bits.read(4 + 3 + 3)  # region counts, preflag, scalefac_scale, count1table_select
        granules.append(
            Granule(
                part2_3_length,
                big_values,
                global_gain,
                scalefac_compress,
                window_switching,
                tables,
            )
        )
    return main_data_begin, granules


# ISO 11172-3 Huffman table 1: code -> (x, y).
_TABLE_1 = {"1": (0, 0), "01": (1, 0), "001": (0, 1), "000": (1, 1)}


def _decode_table_1(bits: str, pairs: int) -> list[int]:
    """Big-value lines of one granule coded with table 1 (no linbits), signs applied."""
    lines, position = [], 0
    for _ in range(pairs):
        for length in (1, 2, 3):
            code = bits[position : position + length]
            if code in _TABLE_1:
                position += length
                break
        else:
            raise AssertionError(f"no table 1 code at bit {position}")
        for magnitude in _TABLE_1[code]:
            if magnitude:
                negative = bits[position] == "1"
                position += 1
                lines.append(-magnitude if negative else magnitude)
            else:
                lines.append(0)
    assert position == len(bits), "part2_3_length must cover exactly the Huffman data"
    return lines


@pytest.mark.parametrize("duration", [5, 90.3, 210])
def test_mutagen_reports_the_requested_length_rate_and_title(duration: float) -> None:
    data = audio.mp3_bytes(duration, title="Epic Orchestral", seed=1)

    mp3 = MP3(io.BytesIO(data))

    assert abs(mp3.info.length - duration) < 0.05
    assert mp3.info.sample_rate == audio.SAMPLE_RATE == 32_000
    assert mp3.info.bitrate == audio.BITRATE == 32_000
    assert mp3.info.channels == 1
    assert str(mp3.tags["TIT2"]) == "Epic Orchestral"


@pytest.mark.parametrize("duration", [0.001, 5, 90.3, 210, 600])
def test_frames_parse_and_add_up_to_the_file_size(duration: float) -> None:
    data = audio.mp3_bytes(duration, title="T", seed=2)

    frames = _walk_frames(data)

    assert len(frames) == audio.frame_count(duration) + 1  # the Info frame comes first
    assert abs(len(frames[1:]) * audio.FRAME_SECONDS - duration) <= audio.FRAME_SECONDS
    assert {(f.bitrate, f.sample_rate, f.mono, f.length) for f in frames} == {
        (32_000, 32_000, True, 144)
    }


def test_info_frame_counts_audio_frames_and_bytes() -> None:
    data = audio.mp3_bytes(12.5)
    first = _walk_frames(data)[0]
    body = data[first.offset + 21 : first.offset + 37]

    assert body[:4] == b"Info"
    flags, frames, size = (int.from_bytes(body[i : i + 4], "big") for i in (4, 8, 12))
    assert flags == 0x3
    assert frames == audio.frame_count(12.5)
    assert size == len(data)


def test_every_audio_frame_carries_one_valid_non_zero_line_per_granule() -> None:
    data = audio.mp3_bytes(20, seed=5)
    frames = _walk_frames(data)
    info = data[frames[0].offset : frames[0].offset + frames[0].length]
    assert _side_info(info)[1][0].part2_3_length == 0  # the Info frame decodes to silence
    pitches = set()

    for frame in frames[1:]:
        raw = data[frame.offset : frame.offset + frame.length]
        main_data_begin, granules = _side_info(raw)
        assert main_data_begin == 0  # self-contained: no bit reservoir
        bits = "".join(f"{byte:08b}" for byte in raw[21:])
        position = 0
        for granule in granules:
            assert granule.window_switching == 0
            assert granule.scalefac_compress == 0  # no scale factor bits
            assert granule.table_select == (1, 1, 1)
            assert 0 < granule.big_values <= 288
            assert 150 <= granule.global_gain <= 210
            chunk = bits[position : position + granule.part2_3_length]
            position += granule.part2_3_length
            lines = _decode_table_1(chunk, granule.big_values)
            non_zero = [(index, value) for index, value in enumerate(lines) if value]
            assert len(non_zero) == 1
            pitches.add(non_zero[0][0])
        assert set(bits[position:]) <= {"0"}  # the rest is zero padding

    assert len(pitches) > 1  # a melody, not one held note


def test_same_arguments_give_the_same_bytes_and_seed_changes_the_melody() -> None:
    first = audio.mp3_bytes(30, title="x", seed=9)

    assert audio.mp3_bytes(30, title="x", seed=9) == first
    other = audio.mp3_bytes(30, title="x", seed=10)
    assert len(other) == len(first)
    assert other != first


def test_without_title_the_file_starts_with_a_frame() -> None:
    data = audio.mp3_bytes(3)

    assert data[:2] == b"\xff\xfb"
    assert MP3(io.BytesIO(data)).tags is None


def test_a_title_outside_latin_1_is_stored_as_utf_16() -> None:
    data = audio.mp3_bytes(3, title="Снег ☃ 雪")

    assert str(MP3(io.BytesIO(data)).tags["TIT2"]) == "Снег ☃ 雪"


def test_a_long_file_builds_in_a_few_milliseconds() -> None:
    start = time.perf_counter()
    data = audio.mp3_bytes(210, title="Long", seed=3)
    elapsed = time.perf_counter() - start

    assert elapsed < 0.05
    assert len(data) < 900_000  # about 4 kB per second


@pytest.mark.parametrize("duration", [0, -1, 600.5, math.nan, math.inf])
def test_durations_out_of_range_are_refused(duration: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        audio.mp3_bytes(duration)
    with pytest.raises(ValueError, match="duration"):
        audio.wav_bytes(duration)


@pytest.mark.parametrize("duration", [0.5, 7.25, 210])
def test_wav_is_exact_and_not_silent(duration: float) -> None:
    with wave.open(io.BytesIO(audio.wav_bytes(duration, seed=4))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 1)
        assert wav.getframerate() == audio.WAV_SAMPLE_RATE
        assert wav.getnframes() == round(duration * audio.WAV_SAMPLE_RATE)
        samples = wav.readframes(wav.getnframes())
    assert max(samples) - min(samples) > 48  # about a quarter of full scale


def test_stems_zip_holds_one_wav_per_stem() -> None:
    data = audio.stems_zip(4, stems=("vocals", "instrumental"), seed=1)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["vocals.wav", "instrumental.wav"]
        contents = [archive.read(name) for name in archive.namelist()]
    for content in contents:
        with wave.open(io.BytesIO(content)) as wav:
            assert wav.getnframes() == 4 * audio.WAV_SAMPLE_RATE
    assert contents[0] != contents[1]
