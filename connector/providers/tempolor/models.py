"""Typed models of TemPolor through useapi.net (requests and responses).

Wire names are mixed on this API: `job_id`, `status_name`, `user_id` and
`model_song` are snake_case, most others camelCase. Every model takes either
the wire name or the snake_case attribute name. Response models keep unknown
fields and make every documented one optional (the reference types them all as
optional). `TempolorJob.to_generation()` is the one place that turns a job into
the connector's provider-neutral `Generation` (the mapping is in docs/providers.md).
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from connector.errors import FieldProblem, RequestValidationError
from connector.providers.fields import bounded_text, choice, in_range, request_problems
from connector.providers.finetuning.models import (
    ApiModel,
    Bpm,
    Generation,
    GenerationParameters,
    GenerationStatus,
)
from connector.redaction import strip_url_secrets

PROVIDER = "tempolor"

STATUS_GENERATING = 0
STATUS_FAILED = 10
STATUS_COMPLETED = 30
_STATUSES = {
    STATUS_GENERATING: GenerationStatus.PROCESSING,
    STATUS_FAILED: GenerationStatus.FAILED,
    STATUS_COMPLETED: GenerationStatus.COMPLETED,
}
_STATUS_NAMES = {
    "GENERATING": STATUS_GENERATING,
    "FAILED": STATUS_FAILED,
    "COMPLETED": STATUS_COMPLETED,
}

SONG_MODELS: tuple[str, ...] = ("v3", "v3.5")
INSTRUMENTAL_MODELS: tuple[str, ...] = ("i3", "i3.5 beta")
# The 24 spellings the reference lists (and the sandbox accepts): sharps C# and
# F#, flats Ab, Bb and Eb, naturals otherwise.
TONALITY_ROOTS: tuple[str, ...] = ("A", "Ab", "B", "Bb", "C#", "C", "D", "E", "Eb", "F#", "F", "G")
TONALITIES: tuple[str, ...] = tuple(
    f"{root}:{mode}" for root in TONALITY_ROOTS for mode in ("major", "minor")
)
# Other spellings of the same pitch, mapped onto the one the API accepts.
_ENHARMONIC = {"G#": "Ab", "A#": "Bb", "CB": "B", "DB": "C#", "D#": "Eb", "GB": "F#", "E#": "F"}
FILE_FORMATS: tuple[str, ...] = ("mp3", "wav", "stems")
JOB_TYPES: tuple[str, ...] = ("song", "instrumental")

PROMPT_MAX = 2000
LYRICS_MAX = 3000
CHORDS_MAX = 200
REPLY_MAX = 1024
BPM_RANGE = (50, 190)
MAX_JOBS_RANGE = (1, 10)


def epoch_ms_to_datetime(value: Any) -> datetime | None:
    """An epoch-milliseconds number as an aware UTC datetime (None for missing or 0)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value <= 0:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


def tonality_to_keyscale(tonality: str | None) -> str | None:
    """`F:minor` → `F minor`, the connector's `keyscale` form (key, space, scale)."""
    if not tonality or not tonality.strip():
        return None
    root, _, mode = tonality.strip().partition(":")
    return f"{root.strip()} {mode.strip().lower()}".strip() if mode else root.strip()


def normalise_tonality(value: str) -> str:
    """`f minor`, `F:Minor` or `G#:minor` → the API's spelling (`F:minor`, `Ab:minor`).

    Returns the text unchanged when it names no tonality the API accepts.
    """
    text = value.strip().replace(" ", ":")
    root, _, mode = text.partition(":")
    root = root.strip()
    canonical_root = {r.upper(): r for r in TONALITY_ROOTS}.get(root.upper())
    if canonical_root is None:
        canonical_root = _ENHARMONIC.get(root[:1].upper() + root[1:].upper(), "")
    candidate = f"{canonical_root}:{mode.strip().lower()}"
    return candidate if candidate in TONALITIES else value


# -- responses ---------------------------------------------------------------------------


class MusicMaterial(ApiModel):
    """`musicMaterial`: what the track is (style, key, tempo, length, seed)."""

    style: str | None = None
    chord: str | None = None
    mood: str | None = None
    inst: str | None = None
    inst_info: str | None = None
    scene: str | None = None
    other_info: str | None = None
    other_info_cn: str | None = None
    key: str | None = None  # "F:minor"
    bpm: Bpm | None = None
    dur: float | None = None  # seconds; 0 until the job completes
    seed: int | None = None
    waveform_url: str | None = None


class LtmMaterialExtendDto(ApiModel):
    """`ltmMaterialExtendDto`: what the job was asked (prompt, lyrics, model)."""

    lyrics_prompt: str | None = None
    description: str | None = None
    ltm_vocal_model: bool | None = None
    ltm_midi_model: bool | None = None
    gen_item_id: str | None = None
    prompt: str | None = None
    gen_mode: int | None = None
    model: str | None = None  # internal model name
    model_show_name: str | None = None  # public model name: "v3.5", "i3.5 beta"


class TempolorJob(ApiModel):
    """One TemPolor job, as GET music/{job_id} answers it (and the replyUrl callback posts it).

    Every field is optional and unknown fields are kept, as the reference
    types them. `to_generation()` maps it onto the connector's `Generation`.
    """

    job_id: str | None = Field(default=None, alias="job_id")
    item_id: str | None = None
    gen_item_id: str | None = None
    user_id: str | None = None  # the TemPolor account (wire: userId)
    biz_type: str | None = None
    child_type: str | None = None
    mat_child_type: str | None = None
    source_type: str | None = None
    title_en: str | None = None
    cover: str | None = None
    mp3_oss_id: str | None = None
    wav_oss_id: str | None = None
    oss_watermark_mp3: str | None = None
    official_playlist_song: bool | None = None
    status: int | None = None
    status_name: str | None = Field(default=None, alias="status_name")
    status_final: bool | None = Field(default=None, alias="status_final")
    progress: float | None = None  # 0-100
    download_total: int | None = None
    like_total: int | None = None
    collect_total: int | None = None
    music_material: MusicMaterial | None = None
    read_status: bool | None = None
    download_status: bool | None = None
    create_time: int | None = None  # epoch milliseconds
    update_time: int | None = None  # epoch milliseconds
    material_quality_score: float | None = None
    ltm_material_extend_dto: LtmMaterialExtendDto | None = None
    edit_type: str | None = None
    operator_type: str | None = None
    root_item_id: str | None = None
    parent_item_id: str | None = None
    can_extend: bool | None = None
    can_edit_lyrics: bool | None = None
    can_fix_vocals: bool | None = None
    can_replaced: bool | None = None
    reply_url: str | None = None
    reply_ref: str | None = None
    error: str | None = None
    code: int | None = None

    @field_validator("reply_url", mode="before")
    @classmethod
    def _strip_reply_url_secret(cls, value: Any) -> Any:
        # Jobs echo the replyUrl they were created with, our listener's token in it.
        return strip_url_secrets(value)

    @property
    def status_code(self) -> int | None:
        """The numeric status; from `status_name` when `status` is missing."""
        if self.status is not None:
            return self.status
        return _STATUS_NAMES.get((self.status_name or "").upper())

    @property
    def generation_status(self) -> GenerationStatus:
        """0 → processing, 10 → failed, 30 → completed; anything else → processing."""
        code = self.status_code
        if code is None:
            return GenerationStatus.PROCESSING
        return _STATUSES.get(code, GenerationStatus.PROCESSING)

    @property
    def is_final(self) -> bool:
        """Completed or failed: the job never changes again."""
        return self.generation_status.is_terminal

    @property
    def is_completed(self) -> bool:
        """Completed: the files can be downloaded."""
        return self.generation_status is GenerationStatus.COMPLETED

    @property
    def kind(self) -> str | None:
        """ "song" or "instrumental" when the job says which, else None."""
        extend = self.ltm_material_extend_dto
        model = (extend.model_show_name or "") if extend is not None else ""
        if model in SONG_MODELS:
            return "song"
        if model in INSTRUMENTAL_MODELS:
            return "instrumental"
        # lyric_to_material is the song's childType on the reference's example.
        return "song" if self.child_type == "lyric_to_material" else None

    @property
    def prompt(self) -> str | None:
        """The prompt the job was created with (`description` when `prompt` is empty)."""
        extend = self.ltm_material_extend_dto
        if extend is None:
            return None
        return extend.prompt or extend.description or None

    @property
    def created_at(self) -> datetime | None:
        """`createTime` as an aware UTC datetime."""
        return epoch_ms_to_datetime(self.create_time)

    @property
    def updated_at(self) -> datetime | None:
        """`updateTime` as an aware UTC datetime."""
        return epoch_ms_to_datetime(self.update_time)

    def to_generation(self) -> Generation:
        """This job as the provider-neutral `Generation` triggers and actions see.

        `audio_url` stays None: TemPolor's download links expire, so one is
        fetched with `TempolorClient.get_download_url` when it is needed. The
        whole job stays reachable as the extra field `tempolor` (the fields it
        came with, under their wire names).
        """
        if not self.job_id:
            raise ValueError("a TemPolor job without job_id cannot become a Generation")
        material = self.music_material or MusicMaterial()
        status = self.generation_status
        parameters = GenerationParameters(
            bpm=material.bpm,
            keyscale=tonality_to_keyscale(material.key),
            seed=material.seed,
        )
        duration = material.dur if material.dur else None
        return Generation.model_validate(
            {
                "id": self.job_id,
                "status": status,
                "provider": PROVIDER,
                "title": self.title_en or None,
                "prompt": self.prompt,
                "type": self.kind,
                "audio_url": None,
                "duration": float(duration) if duration is not None else None,
                "parameters": parameters,
                "webhook": self.reply_url or None,
                "error_message": self.error or None,
                "created_at": self.created_at,
                "completed_at": self.updated_at if status.is_terminal else None,
                # What came over the wire, nothing added: the raw job for anything unmapped.
                "tempolor": self.model_dump(mode="json", by_alias=True, exclude_unset=True),
            }
        )


class TempolorJobPage(ApiModel):
    """One page of GET music/: `records`, newest first, and the cursor of the next page."""

    records: list[TempolorJob] = Field(default_factory=list)
    has_next: bool = False
    cursor: str | None = None  # "" or missing on the last page


class TempolorDownload(BaseModel):
    """A download link of GET music/download/{job_id}: it expires, so never store it.

    `expires_at` is computed from the client's clock when the request was
    sent plus `remain_seconds`, so it errs on the early side.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    file_format: str
    url: str
    remain_seconds: float
    fetched_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime | None = None) -> bool:
        """True once `expires_at` has passed (by `now`, default the current UTC time)."""
        return (now or datetime.now(UTC)) >= self.expires_at


# -- requests ----------------------------------------------------------------------------


def _identifier(value: Any) -> Any:
    # The reference passes ids as strings; numbers are accepted and sent as text.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty id (got {value!r})")
    return value.strip()


def _whole_in_range(name: str, value: Any, bounds: tuple[int, int]) -> Any:
    if value is None:
        return None
    number = in_range(name, value, bounds)
    if not isinstance(number, int):
        low, high = bounds
        raise ValueError(f"must be a whole number from {low} to {high} (got {value!r})")
    return number


def _reply_url(value: Any) -> Any:
    value = bounded_text(value, REPLY_MAX, required=False)
    if value is None:
        return None
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
        raise ValueError(f"must be an http(s) URL (got {value!r})")
    return value


class TempolorRequest(BaseModel):
    """Fields common to POST music/song and POST music/instrumental, checked before sending."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    prompt: str
    user_id: str | None = Field(default=None, alias="user_id")
    reply_url: str | None = Field(default=None, alias="replyUrl")
    reply_ref: str | None = Field(default=None, alias="replyRef")
    max_jobs: int | None = Field(default=None, alias="maxJobs")

    _what: ClassVar[str] = "TemPolor request"

    def __init__(self, **data: Any) -> None:
        # Unknown names are caught here, wire names and attribute names alike.
        known = self.wire_names()
        unknown = [name for name in data if name not in known]
        problems = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(FieldProblem(name, f"is not a valid option{hint}"))
        try:
            super().__init__(**{k: v for k, v in data.items() if k in known})
        except PydanticValidationError as err:
            problems = request_problems(err, self._what, known).problems + problems
        if problems:
            raise RequestValidationError(problems, what=self._what)

    @classmethod
    def wire_names(cls) -> set[str]:
        """Every name a field may be given by: attribute names and wire names."""
        names = set(cls.model_fields)
        names.update(f.alias for f in cls.model_fields.values() if f.alias)
        return names

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        return bounded_text(value, PROMPT_MAX, required=True)

    @field_validator("user_id", mode="before")
    @classmethod
    def _check_user_id(cls, value: Any) -> Any:
        return _identifier(value)

    @field_validator("reply_url", mode="before")
    @classmethod
    def _check_reply_url(cls, value: Any) -> Any:
        return _reply_url(value)

    @field_validator("reply_ref", mode="before")
    @classmethod
    def _check_reply_ref(cls, value: Any) -> Any:
        return bounded_text(value, REPLY_MAX, required=False)

    @field_validator("max_jobs", mode="before")
    @classmethod
    def _check_max_jobs(cls, value: Any) -> Any:
        return _whole_in_range("maxJobs", value, MAX_JOBS_RANGE)

    def to_payload(self) -> dict[str, Any]:
        """The JSON body with the API's names; unset fields left out (server defaults)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class SongRequest(TempolorRequest):
    """The body of POST music/song (a song with vocals).

    Raises `RequestValidationError` naming every bad field and its allowed
    range, so nothing is sent that the server would refuse.
    """

    lyrics: str | None = None
    model_song: Literal["v3", "v3.5"] | None = Field(default=None, alias="model_song")
    artist_voice_item_id: str | None = Field(default=None, alias="artistVoiceItemId")
    cloned_voice_item_id: str | None = Field(default=None, alias="clonedVoiceItemId")
    midi_item_id: str | None = Field(default=None, alias="midiItemId")

    _what: ClassVar[str] = "TemPolor song request"

    @field_validator("lyrics", mode="before")
    @classmethod
    def _check_lyrics(cls, value: Any) -> Any:
        return bounded_text(value, LYRICS_MAX, required=False)

    @field_validator("model_song", mode="before")
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        return choice(value, SONG_MODELS, str.strip)

    @field_validator("artist_voice_item_id", "cloned_voice_item_id", "midi_item_id", mode="before")
    @classmethod
    def _check_item_ids(cls, value: Any) -> Any:
        return _identifier(value)


class InstrumentalRequest(TempolorRequest):
    """The body of POST music/instrumental.

    Raises `RequestValidationError` naming every bad field and its allowed
    range, so nothing is sent that the server would refuse. `tonality` also
    takes `f minor` or `G#:minor` and sends the API's spelling.
    """

    model_instrumental: Literal["i3", "i3.5 beta"] | None = Field(
        default=None, alias="model_instrumental"
    )
    tonality: str | None = None
    bpm: int | None = None
    chords: str | None = None

    _what: ClassVar[str] = "TemPolor instrumental request"

    @field_validator("model_instrumental", mode="before")
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        return choice(value, INSTRUMENTAL_MODELS, str.strip)

    @field_validator("tonality", mode="before")
    @classmethod
    def _check_tonality(cls, value: Any) -> Any:
        return choice(value, TONALITIES, normalise_tonality)

    @field_validator("bpm", mode="before")
    @classmethod
    def _check_bpm(cls, value: Any) -> Any:
        return _whole_in_range("bpm", value, BPM_RANGE)

    @field_validator("chords", mode="before")
    @classmethod
    def _check_chords(cls, value: Any) -> Any:
        return bounded_text(value, CHORDS_MAX, required=False)
