"""Reading what a webhook sender posted: strict JSON, then a provider's model, or a 400.

Nothing here trusts the input: numbers must be finite, strings valid Unicode,
and a payload that does not validate is refused with a short reason that never
quotes the input.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from pydantic import ValidationError

from connector.ingress.server import Reject
from connector.providers.finetuning.models import Generation
from connector.providers.tempolor.models import TempolorJob

_NOT_FINITE = "not JSON: numbers must be finite"
# Objects and arrays nested deeper than this are refused: no payload or call needs more.
MAX_DEPTH = 32


def _reject_constant(name: str) -> NoReturn:
    """`NaN`, `Infinity`, `-Infinity`: Python's extensions, not JSON (RFC 8259 §6)."""
    raise Reject(400, _NOT_FINITE)


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent, refused if it overflows a float.

    `1e400` is valid JSON syntax but parses to `inf`, which no field can mean and
    which our own JSON (the journal, outgoing webhooks) cannot write back.
    """
    value = float(text)
    if not math.isfinite(value):
        raise Reject(400, _NOT_FINITE)
    return value


def load_json(body: bytes) -> Any:
    """Strict JSON: finite numbers and valid Unicode strings only, or 400."""
    if not body.strip():
        raise Reject(400, "not JSON: empty body")
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        # Where, never what: the message quotes nothing of the body.
        raise Reject(400, f"not JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and oversized integers too; RecursionError, deep nesting.
        raise Reject(400, "not JSON") from None
    _check_strings(data)
    return data


def _check_strings(data: Any) -> None:
    """400 unless every string in `data`, keys included, can be encoded as UTF-8.

    JSON's `\\ud800` escapes (and, since `json.loads` decodes bytes with
    `surrogatepass`, surrogates encoded as UTF-8 bytes) give strings holding a
    lone surrogate: not text, and the journal fails to store them, which would
    answer 503 "retry later" to input that can never succeed. Iterative, as a
    body nested as deep as the parser allows must not hit the recursion limit;
    and past `MAX_DEPTH` levels it is refused, as everything that walks it later
    (templates, validation, the journal's encoder) is recursive.
    """
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH and isinstance(item, dict | list):
            raise Reject(400, f"not JSON we take: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = [key for key in item if isinstance(key, str)]
            pending.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            pending.extend((value, depth + 1) for value in item)
            continue
        else:
            continue
        for text in strings:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise Reject(400, "not JSON: a string is not valid Unicode") from None


def _problem(err: ValidationError) -> str:
    """The first problem of a validation error, short, without the offending input."""
    errors = err.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_finetuning(data: Any) -> Generation:
    """A Finetuning.ai webhook payload: a terminal `Generation`, fields at the top level."""
    what = "not a generation payload"
    if not isinstance(data, dict):
        raise Reject(400, f"{what}: expected a JSON object")
    # `provider` is ours to set, not the sender's: this route only speaks for Finetuning.
    data = {key: value for key, value in data.items() if key != "provider"}
    try:
        generation = Generation.model_validate(data)
    except ValidationError as err:
        raise Reject(400, f"{what}: {_problem(err)}") from None
    if not generation.id.strip():
        raise Reject(400, f"{what}: id must not be empty")
    if not generation.is_terminal:
        raise Reject(400, f"{what}: status must be completed or failed")
    return generation


def parse_tempolor(data: Any) -> TempolorJob:
    """A TemPolor `replyUrl` callback: the job, as GET music/{job_id} returns it."""
    what = "not a TemPolor job"
    if not isinstance(data, dict):
        raise Reject(400, f"{what}: expected a JSON object")
    try:
        job = TempolorJob.model_validate(data)
    except ValidationError as err:
        raise Reject(400, f"{what}: {_problem(err)}") from None
    if not job.job_id or not job.job_id.strip():
        raise Reject(400, f"{what}: job_id is required")
    return job
