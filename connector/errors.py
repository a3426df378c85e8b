"""Every error the connector raises on purpose, under one root: `ConnectorError`.

    ConnectorError                          code, message, details
    ├── ProviderError                       a provider API (Finetuning.ai or TemPolor) failed
    │   ├── ProviderConnectionError         transport failures (DNS, refused, reset)
    │   │   └── ProviderTimeoutError        no answer within request_timeout
    │   ├── GenerationOutcomeUnknownError   a create may have reached the server
    │   ├── AuthenticationError
    │   │   ├── MissingApiKeyError          MISSING_API_KEY       401
    │   │   ├── InvalidApiKeyError          INVALID_API_KEY       401
    │   │   └── ProPlanRequiredError        PRO_PLAN_REQUIRED     403
    │   ├── ValidationError                 VALIDATION_ERROR      400
    │   │   └── RequestValidationError      refused before sending (no credit spent)
    │   ├── MonthlyLimitReachedError        MONTHLY_LIMIT_REACHED 402
    │   ├── RateLimitError
    │   │   ├── RateLimitedError            RATE_LIMITED          429
    │   │   ├── GenerationRateLimitedError  GENERATION_RATE_LIMITED 429
    │   │   └── QueueFullError              QUEUE_FULL            429
    │   ├── BulkOperationError
    │   │   ├── AddFailedError              ADD_FAILED            400
    │   │   └── MoveFailedError             MOVE_FAILED           400
    │   ├── NotFoundError                   NOT_FOUND             404
    │   │   └── PlaylistNotFoundError       no playlist has that name
    │   ├── AmbiguousPlaylistError          several playlists have that name
    │   ├── GenerationTimeoutError          wait_for_generation gave up
    │   ├── ServerError
    │   │   ├── GenerationFailedError       GENERATION_FAILED     500
    │   │   └── InternalServerError         INTERNAL_ERROR        500
    │   └── UnexpectedResponseError         an answer that breaks the contract
    ├── DeliveryError                       a download or an outgoing webhook failed
    ├── GenerationClaimedError              a generation another run already holds
    └── (defined beside their subject)      ConfigError, TemplateError, RegistryError,
                                            CronError, JournalError, IntentFormatError,
                                            StateDirLocked, ListenerStartError,
                                            WebhookSecretError

Provider and delivery errors carry `code`, `status` (None when nothing was
answered), `message`, `details` and `retry_after`. Messages never contain a secret.
Code that runs an automation step catches `ConnectorError` and nothing wider.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""

    default_code: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.details = details
        self.retry_after = retry_after


class _AnsweredError(ConnectorError):
    """An error about a remote answer: shown as `HTTP 404 NOT_FOUND: message`."""

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"message={self.message!r})"
        )


class ProviderError(_AnsweredError):
    """Base of every error raised by the connector's API clients, for either provider."""

    # Set by bulk calls that fail midway: what the chunks before the failure did.
    partial_result: Any = None


class ProviderConnectionError(ProviderError):
    """The server could not be reached, or the connection broke mid-answer."""

    default_code = "CONNECTION_ERROR"


class ProviderTimeoutError(ProviderConnectionError):
    """No complete answer arrived within the request timeout."""

    default_code = "TIMEOUT"


class GenerationOutcomeUnknownError(ProviderError):
    """A generation request may have reached the server, but no clear answer came back.

    A credit may have been spent and the generation may exist. The client never
    resubmits on its own: look the generation up (by tags, parameters, seed and
    time) before trying again. The original error is in `__cause__`.
    """

    default_code = "GENERATION_OUTCOME_UNKNOWN"


class DeliveryError(_AnsweredError):
    """Delivering a track or an event failed: a download, or an outgoing webhook."""


class GenerationClaimedError(ConnectorError, ValueError):
    """A generation another run of the connector already holds: never shared, never adopted."""

    def __init__(self, generation_id: str, owner: str) -> None:
        super().__init__(
            f"generation {generation_id} already belongs to run {owner}; "
            "a generation is never shared between runs",
            code="GENERATION_CLAIMED",
        )
        self.generation_id = generation_id
        self.owner = owner


class AuthenticationError(ProviderError):
    """The API key is missing, malformed, revoked, or lacks API access."""


class MissingApiKeyError(AuthenticationError):
    default_code = "MISSING_API_KEY"


class InvalidApiKeyError(AuthenticationError):
    default_code = "INVALID_API_KEY"


class ProPlanRequiredError(AuthenticationError):
    default_code = "PRO_PLAN_REQUIRED"


class ValidationError(ProviderError, ValueError):
    """The request was refused because a field is missing or out of range."""

    default_code = "VALIDATION_ERROR"


class FieldProblem:
    """One invalid field of a request: where it is and what is wrong with it."""

    __slots__ = ("field", "problem")

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem

    def __repr__(self) -> str:
        return f"FieldProblem({self.field!r}, {self.problem!r})"

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldProblem) and (self.field, self.problem) == (
            other.field,
            other.problem,
        )

    def __hash__(self) -> int:
        return hash((self.field, self.problem))


class RequestValidationError(ValidationError):
    """Refused on our side before anything was sent: no request, no credit spent."""

    def __init__(self, problems: list[FieldProblem], *, what: str = "request") -> None:
        self.problems = problems
        listing = "; ".join(str(p) for p in problems)
        super().__init__(f"invalid {what}: {listing}", details=[str(p) for p in problems])

    @property
    def fields(self) -> list[str]:
        """The names of the invalid fields, in order."""
        return [p.field for p in self.problems]


class MonthlyLimitReachedError(ProviderError):
    default_code = "MONTHLY_LIMIT_REACHED"


class RateLimitError(ProviderError):
    """Too many requests; `retry_after` says how long to wait when the server said."""


class RateLimitedError(RateLimitError):
    default_code = "RATE_LIMITED"


class GenerationRateLimitedError(RateLimitError):
    default_code = "GENERATION_RATE_LIMITED"


class QueueFullError(RateLimitError):
    default_code = "QUEUE_FULL"


class BulkOperationError(ProviderError):
    """No item of a bulk request succeeded; `details` lists each item's reason."""


class AddFailedError(BulkOperationError):
    default_code = "ADD_FAILED"


class MoveFailedError(BulkOperationError):
    default_code = "MOVE_FAILED"


class NotFoundError(ProviderError):
    default_code = "NOT_FOUND"


class PlaylistNotFoundError(NotFoundError):
    """No playlist matches the name given; `candidates` lists the names there are."""

    def __init__(self, reference: str, candidates: list[str]) -> None:
        self.reference = reference
        self.candidates = candidates
        names = ", ".join(repr(c) for c in candidates) if candidates else "none"
        super().__init__(
            f"no playlist is named {reference!r} (your playlists: {names})",
            code="PLAYLIST_NOT_FOUND",
            details=candidates,
        )


class AmbiguousPlaylistError(ProviderError, ValueError):
    """Several playlists share the name given; `candidates` holds (id, name) pairs."""

    def __init__(self, reference: str, candidates: list[tuple[str, str]]) -> None:
        self.reference = reference
        self.candidates = candidates
        listing = ", ".join(f"{pid} ({name!r})" for pid, name in candidates)
        super().__init__(
            f"{len(candidates)} playlists are named {reference!r}; use an id instead: {listing}",
            code="PLAYLIST_AMBIGUOUS",
            details=[pid for pid, _ in candidates],
        )


class GenerationTimeoutError(ProviderError):
    """wait_for_generation gave up; the generation keeps running on the server."""

    default_code = "GENERATION_TIMEOUT"

    def __init__(self, generation_id: str, timeout: float, last_status: str | None) -> None:
        self.generation_id = generation_id
        self.last_status = last_status
        super().__init__(
            f"generation {generation_id} still {last_status or 'unknown'} after {timeout:g} s; "
            f"it keeps running on the server: check it later with `ftconnect get {generation_id}`"
        )


class ServerError(ProviderError):
    """The server failed (5xx)."""

    default_code = "SERVER_ERROR"


class GenerationFailedError(ServerError):
    default_code = "GENERATION_FAILED"


class InternalServerError(ServerError):
    default_code = "INTERNAL_ERROR"


class UnexpectedResponseError(ProviderError):
    """The server answered something the documented contract does not allow."""

    default_code = "UNEXPECTED_RESPONSE"


ERRORS_BY_CODE: dict[str, type[ProviderError]] = {
    "MISSING_API_KEY": MissingApiKeyError,
    "INVALID_API_KEY": InvalidApiKeyError,
    "PRO_PLAN_REQUIRED": ProPlanRequiredError,
    "VALIDATION_ERROR": ValidationError,
    "MONTHLY_LIMIT_REACHED": MonthlyLimitReachedError,
    "RATE_LIMITED": RateLimitedError,
    "GENERATION_RATE_LIMITED": GenerationRateLimitedError,
    "QUEUE_FULL": QueueFullError,
    "ADD_FAILED": AddFailedError,
    "MOVE_FAILED": MoveFailedError,
    "NOT_FOUND": NotFoundError,
    "GENERATION_FAILED": GenerationFailedError,
    "INTERNAL_ERROR": InternalServerError,
}

_ERRORS_BY_STATUS: dict[int, type[ProviderError]] = {
    400: ValidationError,
    401: InvalidApiKeyError,
    402: MonthlyLimitReachedError,
    403: ProPlanRequiredError,
    404: NotFoundError,
    429: RateLimitedError,
}


def error_for(
    status: int,
    code: str | None,
    message: str,
    *,
    details: Any = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Build the exception for an error answer: by documented code, else by HTTP status."""
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is None:
        if status >= 500:
            cls = ServerError
        else:
            cls = _ERRORS_BY_STATUS.get(status, UnexpectedResponseError)
    return cls(
        message,
        code=code or f"HTTP_{status}",
        status=status,
        details=details,
        retry_after=retry_after,
    )
