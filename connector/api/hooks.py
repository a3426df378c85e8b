"""REST hooks: subscriptions to triggers, and the deliverer that POSTs their events.

This is the subscription pattern automation platforms (Zapier, n8n, Make) use
for instant triggers: the platform subscribes a target URL to a trigger, with
the trigger's options as a filter, and the connector POSTs each matching event
there. Two halves:

* Matching. `HookDeliverer.targets(event)` says which subscriptions an event is
  for. The runtime journals one outbox row per target in the same transaction
  as the event, so an event recorded is an event that will be delivered, crash
  or not. Matching runs on the event path, so it works from an in-memory copy of
  the subscriptions (`reload()` refreshes it) and never raises.
* Delivery. `HookDeliverer.run()` POSTs due outbox rows, one attempt per row
  per pass, and journals each outcome: 2xx delivered; 410 Gone ends the
  subscription (the platforms' way of saying "unsubscribe me"); anything else
  is retried with exponential backoff until `max_attempts`. Rows survive
  restarts, so a retry scheduled for an hour later happens after a restart too.

Each body is signed as Standard Webhooks asks (see `connector.delivery.webhooks`)
with the subscription's own `whsec_` secret, kept in a file beside the journal.
The `webhook-id` is the outbox row's, the same on every retry, so receivers can
drop duplicates (a crash between a 2xx and its journal write sends one again).
Redirects are never followed: the signed body goes only where it was addressed.
Neither the secret nor the target's path, query or credentials appear in the
journal's `last_error` or in logs: only scheme, host and port name the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import voluptuous as vol
from yarl import URL

from connector.automation.registry import Registry
from connector.automation.specs import Matcher
from connector.delivery.webhooks import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookSecretError,
    generate_secret,
    sign,
)
from connector.events import Event
from connector.journal.events import EventRow
from connector.journal.hooks import OutboxRow
from connector.journal.store import Store
from connector.providers.finetuning.models import iso_utc
from connector.redaction import scrub, scrub_text
from connector.version import USER_AGENT

__all__ = ["HookDeliverer", "hook_payload", "subscribable_triggers", "validate_filter"]

_LOGGER = logging.getLogger(__name__)

# Subscriptions delivered at once; the rows of one subscription go one after another.
CONCURRENCY: Final = 8
# Due rows read per pass; a pass that found work is followed by another at once.
_BATCH: Final = 200
# How long the loop sleeps with nothing due and no wake-up (a safety net, not a schedule).
_IDLE: Final = 300.0
# Enough of an answer to keep the connection reusable; the rest is not read.
_ANSWER_BYTES: Final = 64 * 1024
_ERROR_CHARS: Final = 300
_JITTER: Final = 0.1
PRUNED: Final = "event no longer in the journal"


# -- filters and payloads ----------------------------------------------------------------


def subscribable_triggers(registry: Registry) -> list[str]:
    """The triggers one can subscribe to: those that filter events (not source triggers)."""
    return sorted(key for key, spec in registry.triggers.items() if spec.matches is not None)


def validate_filter(registry: Registry, trigger: str, filter: Mapping[str, Any]) -> dict[str, Any]:
    """`filter` checked by the trigger's options schema, with its defaults filled in.

    Raises ValueError when the trigger is unknown or cannot be subscribed to
    (a schedule fires for its own automation only: it has no events to filter),
    and vol.Invalid / vol.MultipleInvalid when the filter does not fit the schema.
    """
    spec = registry.triggers.get(trigger)
    if spec is None or spec.matches is None:
        known = ", ".join(subscribable_triggers(registry)) or "none"
        why = "is not a known trigger" if spec is None else "fires on its own schedule"
        raise ValueError(
            f"trigger {trigger!r} {why}, so it cannot be subscribed to "
            f"(subscribable triggers: {known})"
        )
    if not isinstance(filter, Mapping):
        raise vol.Invalid(f"the filter must be an object of options (got {type(filter).__name__})")
    validated = spec.schema(dict(filter))
    return dict(validated)


def hook_payload(event: Event | EventRow, trigger: str) -> dict[str, Any]:
    """What a subscription receives for one event, and what a trigger's samples list.

    `data` is the event as `Event.to_dict()` writes it; `id` (the event key) is
    what the platforms deduplicate on.
    """
    if isinstance(event, EventRow):
        # The journal keeps the generation in its wire form already: no round trip.
        data: dict[str, Any] = {
            "key": event.key,
            "kind": event.kind,
            "provider": event.provider,
            "source": event.source,
            "generation": event.generation,
            "data": dict(event.data),
            "submitted_by_connector": event.submitted_by_connector,
            "occurred_at": iso_utc(event.occurred_at),
        }
    else:
        data = event.to_dict()
    return {
        "id": data["key"],
        "trigger": trigger,
        "kind": data["kind"],
        "occurred_at": data["occurred_at"],
        "data": data,
    }


# -- the deliverer -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Hook:
    """Where a subscription's rows go (delivered even once it can no longer match)."""

    hook_id: str
    trigger: str
    target_url: str


@dataclass(frozen=True)
class _Match:
    """A subscription that can match: its trigger's test and its validated filter."""

    hook_id: str
    trigger: str
    matches: Matcher
    options: dict[str, Any]


@dataclass(frozen=True)
class _Outcome:
    sent: bool  # whether a request went out (or the row was settled without one)
    go_on: bool  # whether the subscription's next due row may follow in this pass


class HookDeliverer:
    """Matches events to subscriptions and delivers the journal's outbox; see the module.

    `session` is the connector's HTTP session (used, never closed); `timeout`
    bounds each attempt. After a failed attempt the row waits
    `min(backoff_cap, backoff_base * 2**attempts_before)` seconds, ±10%, or
    what a `Retry-After` asks when that is longer (capped too); after
    `max_attempts` attempts it is given up. `clock` is for tests.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 10.0,
        max_attempts: int = 12,
        backoff_base: float = 5.0,
        backoff_cap: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0 or not backoff_base > 0:
            raise ValueError(
                f"timeout and backoff_base must be > 0 s (got {timeout!r}, {backoff_base!r})"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number >= 1 (got {max_attempts!r})")
        if not backoff_cap >= backoff_base:
            raise ValueError(f"backoff_cap must be >= backoff_base (got {backoff_cap!r})")
        self._store = store
        self._registry = registry
        self._session = session
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._base = backoff_base
        self._cap = backoff_cap
        self._clock = clock
        self._hooks: dict[str, _Hook] = {}
        self._by_kind: dict[str, tuple[_Match, ...]] = {}
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.reload()

    # -- matching ------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the subscriptions again (after one was added or removed)."""
        hooks: dict[str, _Hook] = {}
        by_kind: dict[str, list[_Match]] = {}
        for row in self._store.hooks():
            hooks[row.hook_id] = _Hook(row.hook_id, row.trigger, row.target_url)
            try:
                options = validate_filter(self._registry, row.trigger, row.filter)
            except (ValueError, vol.Invalid) as err:  # its trigger's plugin is gone, or changed
                why = scrub_text(str(err))
                _LOGGER.warning("REST hook %s no longer matches any event: %s", row.hook_id, why)
                continue
            spec = self._registry.triggers[row.trigger]
            if spec.matches is not None:  # always: validate_filter refuses source triggers
                match = _Match(row.hook_id, row.trigger, spec.matches, options)
                for kind in spec.kinds:
                    by_kind.setdefault(kind, []).append(match)
        # Swapped whole: `targets` on the event path sees the old set or the new one.
        self._hooks = hooks
        self._by_kind = {kind: tuple(found) for kind, found in by_kind.items()}

    def targets(self, event: Event) -> list[str]:
        """The subscriptions `event` is for. Never raises: a failing filter is no match."""
        found: list[str] = []
        for hook in self._by_kind.get(event.kind, ()):
            try:
                if hook.matches(event, hook.options):
                    found.append(hook.hook_id)
            except Exception:
                _LOGGER.exception(
                    "REST hook %s: trigger %s failed to match an event", hook.hook_id, hook.trigger
                )
        return found

    # -- the loop ------------------------------------------------------------------------

    def wake(self) -> None:
        """New outbox rows were committed: deliver them now rather than at the next timer."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver due rows for ever, sleeping until the next is due or `wake()` is called.

        A journal that fails (or any other error) is logged and tried again
        after a growing pause: the loop only ends by being cancelled.
        """
        failures = 0
        while True:
            self._wakeup.clear()  # a wake() during the pass skips the sleep after it
            try:
                made = await self.deliver_due()
                next_at = None if made else self._store.next_delivery_at()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                failures += 1
                pause = min(60.0, 2.0 ** min(failures - 1, 6))
                if failures == 1:
                    _LOGGER.warning(
                        "REST hooks: delivery paused, retrying in %.0f s: %s",
                        pause,
                        scrub_text(f"{type(err).__name__}: {err}"),
                    )
                else:
                    _LOGGER.debug("REST hooks: still failing (%d times)", failures)
                await self._sleep(pause)
                continue
            if failures:
                _LOGGER.info("REST hooks: delivering again")
                failures = 0
            if made:
                await asyncio.sleep(0)  # let the rest of the connector breathe between passes
                continue
            delay = _IDLE if next_at is None else next_at - self._clock()
            if delay <= 0:
                delay = 1.0  # due, yet no pass took it (clocks disagree): do not spin on it
            await self._sleep(min(_IDLE, delay))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)

    async def deliver_due(self) -> int:
        """One pass over the due rows; returns how many were attempted (or given up).

        Subscriptions are served side by side (at most `CONCURRENCY` at once),
        each one's rows in order. After a failed attempt a subscription's other
        due rows wait for the next pass, so a dead target takes one timeout per
        pass rather than one per row while the others wait. A journal error is
        raised after every subscription's attempts of this pass are done.
        """
        # The journal keeps times to the microsecond: a row queued this very
        # microsecond is stored rounded, perhaps up, and must still be due.
        rows = self._store.due_deliveries(now=round(self._clock(), 6) + 1e-6, limit=_BATCH)
        if not rows:
            return 0
        grouped: dict[str, list[OutboxRow]] = {}
        for row in rows:
            grouped.setdefault(row.hook_id, []).append(row)
        if any(hook_id not in self._hooks for hook_id in grouped):
            self.reload()  # added by another process since the last reload
        results = await asyncio.gather(
            *(self._deliver_hook(hook_id, due) for hook_id, due in grouped.items()),
            return_exceptions=True,
        )
        made = 0
        error: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                error = error or result
            else:
                made += result
        if error is not None:
            raise error
        return made

    async def _deliver_hook(self, hook_id: str, rows: list[OutboxRow]) -> int:
        hook = self._hooks.get(hook_id)
        if hook is None:
            return 0  # removed: its rows went with it
        made = 0
        async with self._slots:
            for row in sorted(rows, key=lambda r: r.id):
                outcome = await self._attempt(hook, row)
                made += outcome.sent
                if not outcome.go_on:
                    break
        return made

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, hook: _Hook, row: OutboxRow) -> _Outcome:
        target = _target(hook.target_url)
        event = self._store.event_row(row.event_key)
        if event is None:
            self._store.delivery_given_up(row.id, status=None, error=PRUNED)
            what: tuple[object, ...] = (hook.hook_id, row.event_key)
            _LOGGER.warning("REST hook %s: event %s was pruned before its delivery", *what)
            return _Outcome(sent=True, go_on=True)
        try:
            body = _encode(hook_payload(event, hook.trigger))
        except ValueError as err:
            self._store.delivery_given_up(row.id, status=None, error=_short(str(err)))
            return _Outcome(sent=True, go_on=True)
        try:  # registered as a secret by the journal: scrubbed wherever it might be quoted
            secret = self._store.hook_secret(hook.hook_id, generate_secret)
        except ValueError:
            return _Outcome(sent=False, go_on=False)  # removed meanwhile, with its rows
        # Unique beyond this journal (receivers deduplicate on it): the hook's random id
        # with the row's, the same on every retry of this delivery.
        msg_id = f"msg_{row.hook_id}_{row.id}"
        timestamp = int(self._clock())
        try:
            signature = sign(secret, msg_id, timestamp, body)
        except WebhookSecretError as err:  # the file was edited by hand; says how, not what
            self._store.delivery_given_up(row.id, status=None, error=_short(str(err)))
            _LOGGER.error("REST hook %s cannot sign its deliveries: %s", hook.hook_id, err)
            return _Outcome(sent=True, go_on=False)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            HEADER_ID: msg_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: signature,
        }
        status: int | None = None
        retry_after: float | None = None
        final = False
        try:
            async with self._session.post(
                hook.target_url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                status = response.status
                await response.content.read(_ANSWER_BYTES)
                reason = response.reason or ""
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except aiohttp.InvalidURL:
            error, final = "the target URL is not a valid URL", True
        except aiohttp.ClientConnectorCertificateError as err:
            error = f"TLS certificate rejected: {err.certificate_error}"
        except aiohttp.ClientError as err:
            error = _scrub(f"{type(err).__name__}: {err}", hook.target_url, target)
        else:
            if 200 <= status < 300:
                self._store.delivery_done(row.id, status)
                what = (hook.hook_id, row.event_key, target, status)
                _LOGGER.debug("REST hook %s: %s delivered to %s (HTTP %d)", *what)
                return _Outcome(sent=True, go_on=True)
            if status == 410:
                self._store.remove_hook(hook.hook_id)
                self.reload()
                _LOGGER.info(
                    "REST hook %s: %s answered 410 Gone, so the subscription is removed",
                    hook.hook_id,
                    target,
                )
                return _Outcome(sent=True, go_on=False)
            error = f"HTTP {status} {_scrub(reason, hook.target_url, target)}".rstrip()
            if 300 <= status < 400:
                error += " (redirects are not followed: subscribe the final URL)"
        error = _short(error)
        attempts = row.attempts + 1
        if final or attempts >= self._max_attempts:
            self._store.delivery_given_up(row.id, status=status, error=error)
            what = (hook.hook_id, row.event_key, target, attempts, error)
            _LOGGER.warning("REST hook %s: gave up on %s to %s after %d attempt(s): %s", *what)
            return _Outcome(sent=True, go_on=False)
        delay = self._delay(row.attempts, retry_after)
        self._store.delivery_retry(
            row.id, status=status, error=error, next_attempt_at=self._clock() + delay
        )
        what = (hook.hook_id, row.event_key, target, error, attempts, delay)
        _LOGGER.debug("REST hook %s: %s to %s failed (%s) on attempt %d; next in %.0f s", *what)
        return _Outcome(sent=True, go_on=False)

    def _delay(self, attempts_before: int, retry_after: float | None) -> float:
        """Seconds until the next attempt: exponential, jittered, capped."""
        scheduled = self._base * 2.0 ** min(attempts_before, 60)
        delay = min(self._cap, scheduled * random.uniform(1 - _JITTER, 1 + _JITTER))
        if retry_after is not None and retry_after > delay:
            delay = min(self._cap, retry_after)
        return delay


# -- helpers -----------------------------------------------------------------------------


def _encode(payload: Mapping[str, Any]) -> bytes:
    """Compact strict JSON: the bytes signed are the bytes sent."""
    try:
        text = json.dumps(
            scrub(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"the event is not JSON-serialisable: {err}") from err
    return text.encode("utf-8")


def _retry_after(value: str | None) -> float | None:
    """A `Retry-After` given in seconds; an HTTP date or nonsense is ignored."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        return None
    return float(int(text))


def _target(url: str) -> str:
    """A target for messages: scheme, host and port only (paths and queries carry tokens)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "(invalid URL)"
    if not parsed.host:
        return "(invalid URL)"
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _scrub(text: str, url: str, target: str) -> str:
    """`text` with every URL in it cut to scheme, host and port, and no known secret.

    Query strings and credentials only ever reach a message inside a URL; the
    target's path and query are removed too in case a library quoted them alone.
    """
    text = _URL_IN_TEXT.sub(lambda found: _target(found.group(0)), text.replace(url, target))
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return scrub_text(text)
    for part in (parsed.raw_path_qs, parsed.path_qs, parsed.raw_query_string, parsed.query_string):
        if part and part != "/":
            text = text.replace(part, "…")
    return scrub_text(text)


_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"
