"""What a `generate` step journals before it submits: the one definition of the format.

The action writes a `GenerationIntent` before it sends a create; the store keeps
it per run and step (`Store.record_intent`, `Store.generation_intent`); after a
crash or an unclear answer both readers use it: the step, to look for the
generation it describes among recent ones instead of submitting again, and the
runtime, to count a generation whose `generation_match_key` equals an open
intent's `match_key` as its own even if a webhook or the poller sees it finish
before the step hears back.

The JSON is the one journals have held since the journal began:

    Finetuning.ai  {"tags": ..., "seed": ..., <the other request fields set>, "at": ...}
    TemPolor       {"replyRef": "ftconnect:<run id>:<step index>", "at": ...}

`at` is the epoch seconds the intent was journaled. Anything else (no `at`, a
field this version does not know, a value of the wrong type) raises
`IntentFormatError`: a step that cannot tell what it submitted fails with that
message rather than adopt or resubmit on a guess.

Imports nothing heavier than `connector.errors`: actions use it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.providers.finetuning.models import Generation

__all__ = [
    "GENERATE_ACTION",
    "REQUEST_FIELDS",
    "GenerationIntent",
    "IntentFormatError",
    "MatchKey",
    "generation_match_key",
    "reply_ref_for",
]

# The Finetuning.ai request fields an intent keeps, under their request names, with
# the JSON types each may have (a number may be written as an int or a float).
_FIELD_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "tags": (str,),
    "lyrics": (str,),
    "duration": (int, float),
    "bpm": (int, float),
    "language": (str,),
    "key": (str,),
    "scale": (str,),
    "timesignature": (int, float),
    "seed": (int,),
}
REQUEST_FIELDS: Final = tuple(_FIELD_TYPES)

# The action whose intents are `GenerationIntent`s (other actions journal their own JSON).
GENERATE_ACTION: Final = "generate"

# What the runtime compares: (provider, replyRef or tags, seed or None).
MatchKey = tuple[str, str | None, int | None]


class IntentFormatError(ConnectorError):
    """A journaled intent this connector cannot read; the message says what to do."""


def reply_ref_for(run_id: str, step_index: int) -> str:
    """The TemPolor `replyRef` a step's job carries: unique per run and step."""
    return f"ftconnect:{run_id}:{step_index}"


@dataclass(frozen=True, kw_only=True)
class GenerationIntent:
    """What one `generate` step is about to submit, journaled before it is sent.

    A TemPolor intent has `reply_ref` and nothing else; a Finetuning.ai one has
    the request fields, `tags` and `seed` always (the step picks a seed when
    none is configured, so its generation can be told from others).
    """

    at: float  # epoch seconds it was journaled: a generation adopted later must be newer
    reply_ref: str | None = None
    tags: str | None = None
    lyrics: str | None = None
    duration: float | None = None
    bpm: float | None = None
    language: str | None = None
    key: str | None = None
    scale: str | None = None
    timesignature: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        problem = _shape_problem(self.reply_ref, self.request_fields())
        if problem is not None:
            raise ValueError(f"not a generate intent: {problem}")

    @classmethod
    def finetuning(
        cls, options: Mapping[str, Any], *, default_seed: int, at: float
    ) -> GenerationIntent:
        """The intent for a step's rendered options; `default_seed` when they set none."""
        fields = {name: options[name] for name in REQUEST_FIELDS if options.get(name) is not None}
        fields.setdefault("seed", default_seed)
        return cls(at=at, **fields)

    @classmethod
    def tempolor(cls, reply_ref: str, *, at: float) -> GenerationIntent:
        """The intent for a TemPolor step whose job carries `reply_ref` (`reply_ref_for`)."""
        return cls(at=at, reply_ref=reply_ref)

    @property
    def provider(self) -> str:
        return "tempolor" if self.reply_ref is not None else "finetuning"

    @property
    def match_key(self) -> MatchKey:
        """Equal to `generation_match_key` of the generation this intent submits."""
        if self.reply_ref is not None:
            return ("tempolor", self.reply_ref, None)
        return ("finetuning", self.tags, self.seed)

    def request_fields(self) -> dict[str, Any]:
        """The Finetuning.ai request fields set, by request name (empty for TemPolor)."""
        return {
            name: getattr(self, name) for name in REQUEST_FIELDS if getattr(self, name) is not None
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON object the journal keeps (see the module docstring)."""
        if self.reply_ref is not None:
            return {"replyRef": self.reply_ref, "at": self.at}
        return {**self.request_fields(), "at": self.at}

    @classmethod
    def from_json(cls, value: Any) -> GenerationIntent:
        """The intent a journal row holds; `IntentFormatError` if it is not one."""
        if not isinstance(value, Mapping):
            raise IntentFormatError(_unreadable(f"not a JSON object but {_kind(value)}"))
        unknown = sorted(str(name) for name in value if name not in _KNOWN)
        if unknown:
            raise IntentFormatError(
                _unreadable(f"fields this version does not know: {', '.join(unknown)}")
            )
        at = value.get("at")
        if at is None:
            raise IntentFormatError(_unreadable("no 'at', the time it was journaled"))
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise IntentFormatError(_unreadable(f"'at' is {_kind(at)}, not a number"))
        fields: dict[str, Any] = {}
        for name, types in _FIELD_TYPES.items():
            item = value.get(name)
            if item is None:
                continue
            if isinstance(item, bool) or not isinstance(item, types):
                wanted = "text" if types == (str,) else "a number"
                raise IntentFormatError(_unreadable(f"'{name}' is {_kind(item)}, not {wanted}"))
            fields[name] = item
        reply_ref = value.get("replyRef")
        if reply_ref is not None and (not isinstance(reply_ref, str) or not reply_ref):
            what = "empty" if reply_ref == "" else f"{_kind(reply_ref)}, not text"
            raise IntentFormatError(_unreadable(f"'replyRef' is {what}"))
        problem = _shape_problem(reply_ref, fields)
        if problem is not None:
            raise IntentFormatError(_unreadable(problem))
        return cls(at=float(at), reply_ref=reply_ref, **fields)


def generation_match_key(generation: Generation) -> MatchKey | None:
    """The `match_key` of the intent that submitted `generation` (None: it cannot say)."""
    if generation.provider == "tempolor":
        raw = (generation.model_extra or {}).get("tempolor")
        reference = raw.get("replyRef") if isinstance(raw, dict) else None
        return ("tempolor", reference, None) if isinstance(reference, str) and reference else None
    seed = generation.parameters.seed if generation.parameters else None
    return ("finetuning", generation.prompt, seed)


_KNOWN: Final = frozenset({"at", "replyRef", *REQUEST_FIELDS})


def _shape_problem(reply_ref: str | None, fields: Mapping[str, Any]) -> str | None:
    if reply_ref is not None and fields:
        return "both a TemPolor replyRef and Finetuning.ai request fields"
    if reply_ref is None and ("tags" not in fields or "seed" not in fields):
        return "neither a TemPolor replyRef nor Finetuning.ai tags and seed"
    return None


def _kind(value: Any) -> str:
    # The type only: a value may be long (lyrics) and belongs in the journal, not a message.
    return f"a {type(value).__name__}"


def _unreadable(problem: str) -> str:
    return (
        f"the journaled generate intent cannot be read ({problem}); it was not written by "
        "this version of ftconnect. Nothing was adopted and nothing resubmitted: check the "
        "account for the generation, then `ftconnect replay` the run if it is needed"
    )
