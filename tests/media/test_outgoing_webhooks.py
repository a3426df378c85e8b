"""Signed outgoing webhooks (Standard Webhooks) against a real loopback receiver.

Signatures are checked with an implementation written here from the spec
(hmac + base64, nothing from connector.delivery.webhooks), against the test vector
of the spec's reference Python library, and by that library itself
(`standardwebhooks`, a test dependency): it signs like us and verifies what we send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from connector.delivery.webhooks import (
    WebhookDelivery,
    WebhookDeliveryError,
    WebhookSecretError,
    generate_secret,
    send_webhook,
    sign,
    verify,
)
from connector.errors import DeliveryError
from connector.version import USER_AGENT

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
HOOK_PATH = "/api/webhook/private-hook-id-1234"

# The test vector of the Standard Webhooks reference library's own tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def independent_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The spec's scheme, written out: HMAC-SHA256 keyed with the base64 after whsec_."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, "sha256")
    return "v1," + base64.b64encode(digest.digest()).decode()


# -- signatures ------------------------------------------------------------------------


def test_sign_matches_the_spec_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE
    expected = independent_signature(SPEC_SECRET, SPEC_MSG_ID, str(SPEC_TIMESTAMP), SPEC_PAYLOAD)
    assert expected == SPEC_SIGNATURE


def test_sign_matches_an_independent_implementation() -> None:
    body = json.dumps({"id": "é", "n": 1}, ensure_ascii=False).encode()
    assert sign(SECRET, "msg_abc", 1_700_000_000, body) == independent_signature(
        SECRET, "msg_abc", "1700000000", body
    )


def test_verify_accepts_the_spec_vector_within_tolerance() -> None:
    headers = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, headers, SPEC_PAYLOAD, now=SPEC_TIMESTAMP + 299)
    assert not verify(SPEC_SECRET, headers, SPEC_PAYLOAD, now=SPEC_TIMESTAMP + 301)
    assert not verify(SPEC_SECRET, headers, SPEC_PAYLOAD, now=SPEC_TIMESTAMP - 301)
    assert verify(SPEC_SECRET, headers, SPEC_PAYLOAD, now=SPEC_TIMESTAMP + 1000, tolerance=1000)


def signed_headers(secret: str, body: bytes, *, msg_id: str = "msg_1", ts: int = 1000) -> dict:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": independent_signature(secret, msg_id, str(ts), body),
    }


def test_verify_rejects_tampering_and_wrong_secrets() -> None:
    body = b'{"ok":true}'
    headers = signed_headers(SECRET, body)
    assert verify(SECRET, headers, body, now=1000)
    assert not verify(SECRET, headers, b'{"ok":false}', now=1000)
    assert not verify(generate_secret(), headers, body, now=1000)
    assert not verify(SECRET, {**headers, "webhook-id": "msg_2"}, body, now=1000)
    assert not verify(SECRET, {**headers, "webhook-timestamp": "1001"}, body, now=1000)
    assert not verify(SECRET, {**headers, "webhook-timestamp": "soon"}, body, now=1000)
    for missing in headers:
        partial = {k: v for k, v in headers.items() if k != missing}
        assert not verify(SECRET, partial, body, now=1000)


def test_verify_takes_any_of_several_signatures_and_skips_other_schemes() -> None:
    body = b"{}"
    good = signed_headers(SECRET, body)["webhook-signature"]
    other = independent_signature(generate_secret(), "msg_1", "1000", body)
    headers = signed_headers(SECRET, body)
    headers["webhook-signature"] = f"v1a,{good[3:]} {other} v1,not-base64!! {good}"
    assert verify(SECRET, headers, body, now=1000)
    headers["webhook-signature"] = f"v1a,{good[3:]} {other}"
    assert not verify(SECRET, headers, body, now=1000)


def test_verify_reads_header_names_in_any_case() -> None:
    body = b"{}"
    headers = {k.title(): v for k, v in signed_headers(SECRET, body).items()}
    assert verify(SECRET, headers, body, now=1000)


def test_generated_secrets_follow_the_spec() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert len(base64.b64decode(generate_secret(24).removeprefix("whsec_"))) == 24
    with pytest.raises(ValueError, match="between 24 and 64"):
        generate_secret(8)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not*base64*at*all!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("whsec_", "decodes to 0 bytes"),
    ],
)
def test_bad_secrets_are_explained_without_being_shown(secret: str, problem: str) -> None:
    with pytest.raises(WebhookSecretError, match=problem) as caught:
        sign(secret, "msg_1", 1, b"{}")
    assert isinstance(caught.value, ValueError)
    shown = str(caught.value)
    body = secret.removeprefix("whsec_")
    if body:
        assert body not in shown


def test_msg_ids_with_dots_are_refused() -> None:
    with pytest.raises(ValueError, match="msg_id"):
        sign(SECRET, "msg.1", 1, b"{}")


# -- delivery --------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint on a free loopback port, answering from a script."""

    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    base: str = ""
    runner: web.AppRunner | None = None

    def answer(self, status: int, headers: dict[str, str] | None = None, delay: float = 0) -> None:
        """Queue one answer; the last one repeats."""
        self.script.append((status, headers or {}, delay))

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        index = min(len(self.received), len(self.script)) - 1
        status, headers, delay = self.script[index] if self.script else (200, {}, 0.0)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post(HOOK_PATH, self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = self.base + HOOK_PATH
        return self

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = await Receiver().start()
    yield hook
    await hook.close()


class FakeTime:
    """A clock that moves only when the fake sleep is awaited; records every delay."""

    def __init__(self, start: float = 1_736_937_000.0) -> None:
        self.now = start
        self.delays: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def fast(fake: FakeTime) -> dict[str, Any]:
    return {"clock": fake.clock, "sleep": fake.sleep}


PAYLOAD = {"type": "track.completed", "data": {"id": "g-1", "title": "Café"}}


async def test_one_signed_delivery(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    delivery = await send_webhook(receiver.url, PAYLOAD, secret=SECRET, **fast(fake), session=http)

    assert delivery == WebhookDelivery(True, 200, 1, delivery.msg_id, None)
    assert delivery.msg_id.startswith("msg_")
    [hit] = receiver.received
    assert hit.body == json.dumps(PAYLOAD, ensure_ascii=False, separators=(",", ":")).encode()
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == USER_AGENT
    assert hit.headers["webhook-id"] == delivery.msg_id
    assert hit.headers["webhook-timestamp"] == str(int(fake.now))
    assert hit.headers["webhook-signature"] == independent_signature(
        SECRET, delivery.msg_id, hit.headers["webhook-timestamp"], hit.body
    )
    assert verify(SECRET, hit.headers, hit.body, now=fake.now)
    assert fake.delays == []


async def test_bytes_are_sent_as_given_and_no_secret_means_no_signature(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    body = b'{"already": "encoded"}'

    await send_webhook(
        receiver.url, body, secret=None, msg_id="msg_fixed", **fast(fake), session=http
    )

    [hit] = receiver.received
    assert hit.body == body
    assert hit.headers["webhook-id"] == "msg_fixed"
    assert "webhook-signature" not in hit.headers


async def test_a_500_is_retried_with_the_same_id_and_a_fresh_signature(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(500)
    receiver.answer(502)
    receiver.answer(204)

    delivery = await send_webhook(
        receiver.url, PAYLOAD, secret=SECRET, backoff_base=2.0, **fast(fake), session=http
    )

    assert delivery.ok
    assert delivery.status == 204
    assert delivery.attempts == 3
    assert len(receiver.received) == 3
    assert {hit.headers["webhook-id"] for hit in receiver.received} == {delivery.msg_id}
    stamps = [int(hit.headers["webhook-timestamp"]) for hit in receiver.received]
    assert stamps == sorted(set(stamps))  # recomputed, so they advance with the clock
    signatures = {hit.headers["webhook-signature"] for hit in receiver.received}
    assert len(signatures) == 3
    for hit in receiver.received:
        expected = independent_signature(
            SECRET, hit.headers["webhook-id"], hit.headers["webhook-timestamp"], hit.body
        )
        assert hit.headers["webhook-signature"] == expected
    # Exponential with jitter: within [half, all] of 2 s, then of 4 s.
    assert len(fake.delays) == 2
    assert 1.0 <= fake.delays[0] <= 2.0
    assert 2.0 <= fake.delays[1] <= 4.0


async def test_backoff_is_capped(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(503)

    with pytest.raises(WebhookDeliveryError):
        await send_webhook(
            receiver.url,
            PAYLOAD,
            secret=SECRET,
            max_attempts=6,
            backoff_base=10.0,
            backoff_max=15.0,
            **fast(fake),
            session=http,
        )

    assert len(fake.delays) == 5
    assert all(delay <= 15.0 for delay in fake.delays)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_is_honoured(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime, status: int
) -> None:
    receiver.answer(status, {"Retry-After": "7"})
    receiver.answer(200)

    delivery = await send_webhook(receiver.url, PAYLOAD, secret=SECRET, **fast(fake), session=http)

    assert delivery.attempts == 2
    assert fake.delays == [7.0]


async def test_retry_after_as_an_http_date_is_honoured(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(429, {"Retry-After": formatdate(fake.now + 30, usegmt=True)})
    receiver.answer(200)

    await send_webhook(receiver.url, PAYLOAD, secret=SECRET, **fast(fake), session=http)

    assert fake.delays == [pytest.approx(30.0, abs=1.0)]


async def test_retry_after_is_capped(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(429, {"Retry-After": "3600"})
    receiver.answer(200)

    await send_webhook(
        receiver.url, PAYLOAD, secret=SECRET, backoff_max=60.0, **fast(fake), session=http
    )

    assert fake.delays == [60.0]


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
async def test_final_answers_are_not_retried(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime, status: int
) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {}
    receiver.answer(status, headers)

    with pytest.raises(WebhookDeliveryError, match=f"HTTP {status}") as caught:
        await send_webhook(receiver.url, PAYLOAD, secret=SECRET, **fast(fake), session=http)

    assert len(receiver.received) == 1
    assert fake.delays == []
    delivery = caught.value.delivery
    assert delivery.ok is False
    assert delivery.status == status
    assert delivery.attempts == 1
    assert caught.value.code == "WEBHOOK_FAILED"
    assert caught.value.status == status
    assert isinstance(caught.value, DeliveryError)


async def test_a_timeout_is_retried(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(200, delay=2.0)
    receiver.answer(200)

    delivery = await send_webhook(
        receiver.url, PAYLOAD, secret=SECRET, timeout=0.2, **fast(fake), session=http
    )

    assert delivery.ok
    assert delivery.attempts == 2
    assert len(fake.delays) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_exhausted_retries_raise_with_the_delivery(
    http: aiohttp.ClientSession, fake: FakeTime
) -> None:
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens: connection refused

    with pytest.raises(WebhookDeliveryError) as caught:
        await send_webhook(url, PAYLOAD, secret=SECRET, max_attempts=3, **fast(fake), session=http)

    delivery = caught.value.delivery
    assert delivery.ok is False
    assert delivery.status is None
    assert delivery.attempts == 3
    assert delivery.error
    assert len(fake.delays) == 2
    assert "after 3 attempts" in str(caught.value)


async def test_exhausted_retries_on_5xx_keep_the_last_status(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(503)

    with pytest.raises(WebhookDeliveryError) as caught:
        await send_webhook(
            receiver.url, PAYLOAD, secret=SECRET, max_attempts=4, **fast(fake), session=http
        )

    assert caught.value.delivery.status == 503
    assert caught.value.delivery.attempts == 4
    assert len(receiver.received) == 4
    assert len({hit.headers["webhook-id"] for hit in receiver.received}) == 1


async def test_a_bad_secret_fails_before_anything_is_sent(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    with pytest.raises(WebhookSecretError):
        await send_webhook(receiver.url, PAYLOAD, secret="whsec_!!", **fast(fake), session=http)

    assert receiver.received == []


async def test_the_secret_signature_and_hook_path_never_reach_logs_or_reprs(
    http: aiohttp.ClientSession,
    receiver: Receiver,
    fake: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answer(500)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(WebhookDeliveryError) as caught:
        await send_webhook(
            receiver.url, PAYLOAD, secret=SECRET, max_attempts=3, **fast(fake), session=http
        )

    signatures = [hit.headers["webhook-signature"] for hit in receiver.received]
    assert len(signatures) == 3
    secret_body = SECRET.removeprefix("whsec_")
    shown = [
        caplog.text,
        str(caught.value),
        repr(caught.value),
        repr(caught.value.delivery),
        str(caught.value.delivery.error),
    ]
    assert "retrying" in caplog.text  # the retries were logged, just without secrets
    for text in shown:
        assert secret_body not in text
        assert "private-hook-id" not in text
        for signature in signatures:
            assert signature.removeprefix("v1,") not in text


async def test_a_hmac_from_hashlib_agrees(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    # One more independent angle: hashlib's HMAC construction by hand (RFC 2104).
    delivery = await send_webhook(receiver.url, {"a": 1}, secret=SECRET, **fast(fake), session=http)
    [hit] = receiver.received
    key = base64.b64decode(SECRET.removeprefix("whsec_")).ljust(64, b"\0")
    signed = f"{delivery.msg_id}.{hit.headers['webhook-timestamp']}.".encode() + hit.body
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + signed).digest()
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()
    assert hit.headers["webhook-signature"] == "v1," + base64.b64encode(outer).decode()


# -- the reference library ---------------------------------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(
    msg_id=st.from_regex(r"msg_[A-Za-z0-9_-]{1,40}", fullmatch=True),
    timestamp=st.integers(min_value=0, max_value=2**33),
    body=st.text(),
)
def test_sign_agrees_with_the_reference_library(msg_id: str, timestamp: int, body: str) -> None:
    moment = datetime.fromtimestamp(timestamp, UTC)
    expected = Webhook(SECRET).sign(msg_id, moment, body)

    assert sign(SECRET, msg_id, timestamp, body.encode()) == expected


async def test_the_reference_library_verifies_every_attempt_we_send(
    http: aiohttp.ClientSession, receiver: Receiver, fake: FakeTime
) -> None:
    receiver.answer(503)
    receiver.answer(200)

    # The real clock: the reference checks the timestamp against its own now.
    await send_webhook(receiver.url, PAYLOAD, secret=SECRET, sleep=fake.sleep, session=http)

    assert len(receiver.received) == 2
    for hit in receiver.received:
        assert Webhook(SECRET).verify(hit.body, hit.headers) == PAYLOAD
        with pytest.raises(WebhookVerificationError):
            Webhook(generate_secret()).verify(hit.body, hit.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(hit.body.replace(b"Caf", b"caf"), hit.headers)
