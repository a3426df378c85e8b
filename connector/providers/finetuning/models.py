"""Typed models of the Finetuning.ai v1.2 API (requests and responses).

They follow the decisions in docs/providers.md: `timesignature` arrives as a
string or a number and is normalised to `int`; durations are floats; the three
timestamp formats parse to aware UTC datetimes; a missing `errors` list is
empty; unknown fields are kept, documented optional ones default to None.
Wire names are camelCase; attributes are snake_case (both are accepted).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

from connector.providers.fields import bounded_text, choice, in_range, request_problems
from connector.providers.hosts import is_local, is_loopback
from connector.redaction import strip_url_secrets


def parse_timestamp(value: Any) -> Any:
    """Parse any of the API's timestamp formats into an aware UTC datetime.

    Seen on the wire: "2025-01-15T10:30:00Z", "2025-01-15 10:30:00" (no zone:
    UTC) and "2025-01-15T10:30:17.623Z".
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as err:
            raise ValueError(f"not a timestamp: {value!r}") from err
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_timesignature(value: Any) -> Any:
    """Normalise "4", 4, 4.0 and "4/4" to the integer 4 (requests send "4", GET answers 4)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if "/" in text:
            text = text.split("/", 1)[0]
        try:
            return int(text)
        except ValueError as err:
            raise ValueError(f"not a time signature: {value!r}") from err
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _round_number(value: Any) -> Any:
    # bpm is documented as "number"; keep integers whole, round stray floats.
    if isinstance(value, float):
        return round(value)
    return value


def iso_utc(value: datetime) -> str:
    """The one way the connector writes a time: ISO 8601, UTC, milliseconds, `Z`.

    `2026-12-02T04:34:46.000Z`, in `--json` output, events, runs, outgoing
    bodies, sidecars and the journal alike (a naive datetime is taken as UTC).
    """
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = aware.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
]
TimeSignature = Annotated[int, BeforeValidator(parse_timesignature)]
Bpm = Annotated[int, BeforeValidator(_round_number)]


class ApiModel(BaseModel):
    """Base of the response models: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the API's camelCase names."""
        return self.model_dump(mode="json", by_alias=True)


class GenerationStatus(StrEnum):
    """Where a generation is in its life."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Completed and failed never change again."""
        return self in (GenerationStatus.COMPLETED, GenerationStatus.FAILED)


class GenerationParameters(ApiModel):
    """The parameters a generation ran with (as echoed by the server)."""

    bpm: Bpm | None = None
    duration: float | None = None  # requested seconds
    keyscale: str | None = None  # key and scale merged: "C minor"
    timesignature: TimeSignature | None = None
    language: str | None = None  # only in the create response
    seed: int | None = None

    @property
    def key(self) -> str | None:
        """The key part of `keyscale` ("C#" of "C# minor")."""
        return self.keyscale.split()[0] if self.keyscale else None

    @property
    def scale(self) -> str | None:
        """The scale part of `keyscale` ("minor" of "C# minor")."""
        parts = self.keyscale.split() if self.keyscale else []
        return parts[1].lower() if len(parts) > 1 else None


class Generation(ApiModel):
    """One music generation (a track once completed).

    Parses the create response, the list and detail responses, and the
    (unwrapped) webhook payload alike.
    """

    id: str
    status: GenerationStatus
    provider: str = Field(default="finetuning", exclude=True)
    title: str | None = None
    prompt: str | None = None
    type: str | None = None
    audio_url: str | None = None
    duration: float | None = None  # actual length in seconds once completed
    file_size: int | None = None
    is_public: bool | None = None
    play_count: int | None = None
    download_count: int | None = None
    like_count: int | None = None
    parameters: GenerationParameters | None = None
    webhook: str | None = None
    credits_remaining: int | None = None  # only in the create response
    error_message: str | None = None
    generation_time: float | None = None
    created_at: Timestamp | None = None
    completed_at: Timestamp | None = None

    @field_validator("webhook", mode="before")
    @classmethod
    def _strip_webhook_secret(cls, value: Any) -> Any:
        # The service echoes the webhook URL it was given, `?token=...` and all;
        # whoever holds that token can forge events, so it is never kept.
        return strip_url_secrets(value)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


class GenerationPage(ApiModel):
    """One page of GET /v1/generations."""

    generations: list[Generation] = Field(default_factory=list)
    has_more: bool = False
    next_offset: int | None = None


class AccountLimits(ApiModel):
    """Credit balance and queue of an account."""

    monthly_generations: int = 0
    generations_used: int = 0
    monthly_remaining: int = 0
    pack_credits: int = 0
    total_remaining: int = 0
    queue_depth: int = 0


class Account(ApiModel):
    """GET /v1/me."""

    id: str
    email: str | None = None
    name: str | None = None
    tier: str | None = None
    limits: AccountLimits = Field(default_factory=AccountLimits)


class PlaylistTrack(ApiModel):
    """A track as listed inside a playlist."""

    id: str
    title: str | None = None
    prompt: str | None = None
    status: str | None = None
    audio_url: str | None = None
    duration: float | None = None
    is_public: bool | None = None
    created_at: Timestamp | None = None


class Playlist(ApiModel):
    """A playlist as listed by GET /v1/playlists."""

    id: str
    name: str
    description: str | None = None
    track_count: int = 0
    total_duration: float = 0
    is_public: bool = False
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class PlaylistDetail(Playlist):
    """GET /v1/playlists/:id: the playlist with all its tracks."""

    is_owner: bool | None = None
    tracks: list[PlaylistTrack] = Field(default_factory=list)

    @property
    def track_ids(self) -> list[str]:
        return [t.id for t in self.tracks]


class ItemError(ApiModel):
    """Why one id of a bulk request did not succeed."""

    # bulk-delete says `id`, the playlist endpoints say `trackId` (section 14.13).
    id: str = Field(validation_alias=AliasChoices("id", "trackId"))
    reason: str = Field(validation_alias=AliasChoices("reason", "error", "message"))


class BulkResult(ApiModel):
    """The merged outcome of a bulk call, whatever the number of chunks it took."""

    succeeded: list[str] = Field(default_factory=list)
    errors: list[ItemError] = Field(default_factory=list)
    requests: int = 0  # HTTP requests it took (one per chunk of 100)

    @property
    def ok(self) -> bool:
        """At least one item succeeded (the `ft` CLI's rule for exit code 0)."""
        return bool(self.succeeded)

    @property
    def failed_ids(self) -> list[str]:
        return [e.id for e in self.errors]

    def merge(self, other: BulkResult) -> BulkResult:
        return BulkResult(
            succeeded=[*self.succeeded, *other.succeeded],
            errors=[*self.errors, *other.errors],
            requests=self.requests + other.requests,
        )

    @classmethod
    def from_wire(cls, data: Any, succeeded_key: str) -> BulkResult:
        """Read `{<succeeded_key>: [...], errors?: [...]}`; a missing `errors` is empty."""
        if not isinstance(data, dict):
            raise ValueError(f"bulk answer is not an object: {data!r}")
        succeeded = data.get(succeeded_key) or []
        errors = data.get("errors") or []
        return cls(
            succeeded=[str(s) for s in succeeded],
            errors=[ItemError.model_validate(e) for e in errors],
            requests=1,
        )

    @classmethod
    def all_failed(cls, ids: Iterable[str], details: Any, fallback_reason: str) -> BulkResult:
        """An ADD_FAILED / MOVE_FAILED answer, as per-item errors rather than an exception."""
        errors: list[ItemError] = []
        seen: set[str] = set()
        if isinstance(details, list):
            for item in details:
                try:
                    error = ItemError.model_validate(item)
                except PydanticValidationError:
                    continue
                errors.append(error)
                seen.add(error.id)
        # Ids the server did not itemise still failed, for the reason it gave.
        errors.extend(ItemError(id=i, reason=fallback_reason) for i in ids if i not in seen)
        return cls(errors=errors, requests=1)


# -- the request ------------------------------------------------------------------------

Language = Literal["en", "ja", "de", "fr", "es", "zh", "ko", "pt", "it", "ru"]
Key = Literal["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
Scale = Literal["major", "minor"]

LANGUAGES: tuple[str, ...] = ("en", "ja", "de", "fr", "es", "zh", "ko", "pt", "it", "ru")
KEYS: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES: tuple[str, ...] = ("major", "minor")
_FLATS = {"DB": "C#", "EB": "D#", "GB": "F#", "AB": "G#", "BB": "A#"}

TAGS_MAX = 700
LYRICS_MAX = 2000
DURATION_RANGE = (5, 210)
BPM_RANGE = (60, 200)
TIMESIGNATURE_RANGE = (2, 7)
WEBHOOK_MAX = 2048

# Set only by GenerationRequest.build(allow_local_webhook=True), for the sandbox.
_ALLOW_LOCAL_WEBHOOK: ContextVar[bool] = ContextVar("allow_local_webhook", default=False)


class GenerationRequest(BaseModel):
    """The body of POST /v1/generations, checked against the v1.2 ranges before sending.

    Building one with a bad value raises `RequestValidationError` naming every
    bad field and its allowed range, so no credit is spent on a request the
    server would reject. `webhook` must be public https, as the service demands;
    `GenerationRequest.build(..., allow_local_webhook=True)` also accepts http(s)
    on loopback, which only the sandbox delivers to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: str
    lyrics: str | None = None
    duration: float | None = None
    bpm: float | None = None
    language: Language | None = None
    key: Key | None = None
    scale: Scale | None = None
    timesignature: int | None = None
    seed: int | None = None
    webhook: str | None = None

    _what: ClassVar[str] = "generation request"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except PydanticValidationError as err:
            raise request_problems(err, self._what, GenerationRequest.model_fields) from None

    @classmethod
    def build(cls, *, allow_local_webhook: bool = False, **data: Any) -> GenerationRequest:
        """Validate `data`; with `allow_local_webhook`, loopback http(s) webhooks pass too."""
        token = _ALLOW_LOCAL_WEBHOOK.set(allow_local_webhook)
        try:
            return cls(**data)
        finally:
            _ALLOW_LOCAL_WEBHOOK.reset(token)

    @field_validator("tags", mode="before")
    @classmethod
    def _check_tags(cls, value: Any) -> Any:
        return bounded_text(value, TAGS_MAX, required=True)

    @field_validator("lyrics", mode="before")
    @classmethod
    def _check_lyrics(cls, value: Any) -> Any:
        return bounded_text(value, LYRICS_MAX, required=False)

    @field_validator("duration", mode="before")
    @classmethod
    def _check_duration(cls, value: Any) -> Any:
        return None if value is None else in_range("duration", value, DURATION_RANGE, " seconds")

    @field_validator("bpm", mode="before")
    @classmethod
    def _check_bpm(cls, value: Any) -> Any:
        return None if value is None else in_range("bpm", value, BPM_RANGE)

    @field_validator("timesignature", mode="before")
    @classmethod
    def _check_timesignature(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            number = parse_timesignature(value)
        except ValueError:
            number = value
        low, high = TIMESIGNATURE_RANGE
        if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high} (got {value!r})")
        return number

    @field_validator("seed", mode="before")
    @classmethod
    def _check_seed(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"must be a whole number (got {value!r})")
        return value

    @field_validator("language", mode="before")
    @classmethod
    def _check_language(cls, value: Any) -> Any:
        return choice(value, LANGUAGES, str.lower)

    @field_validator("key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        def normalise(text: str) -> str:
            upper = text.strip().upper()
            return _FLATS.get(upper, upper)

        return choice(value, KEYS, normalise)

    @field_validator("scale", mode="before")
    @classmethod
    def _check_scale(cls, value: Any) -> Any:
        return choice(value, SCALES, str.lower)

    @field_validator("webhook", mode="before")
    @classmethod
    def _check_webhook(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be a URL (got {type(value).__name__})")
        if len(value) > WEBHOOK_MAX:
            raise ValueError(f"must be at most {WEBHOOK_MAX} characters (got {len(value)})")
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"must be an https:// URL (got {value!r})")
        if _ALLOW_LOCAL_WEBHOOK.get() and is_loopback(host):
            return value
        if parts.scheme != "https":
            raise ValueError("must use https (the service refuses plain http)")
        if is_local(host):
            raise ValueError(
                f"must be publicly reachable; {host!r} is local or private "
                "(the service refuses localhost and private addresses)"
            )
        return value

    def to_payload(self) -> dict[str, Any]:
        """The JSON body: unset fields left out, `timesignature` in its string form."""
        body = self.model_dump(exclude_none=True)
        if "timesignature" in body:
            body["timesignature"] = str(body["timesignature"])
        for name in ("duration", "bpm"):
            value = body.get(name)
            if isinstance(value, float) and value.is_integer():
                body[name] = int(value)
        return body
