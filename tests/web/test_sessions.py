"""Sessions and the sign-in throttle, on a fake clock."""

from __future__ import annotations

from connector.automation.model import ApiToken
from connector.web.sessions import SessionStore, SignInThrottle

READ = ApiToken(name="reader", token="r" * 32, scopes=frozenset({"read"}))
ACT = ApiToken(
    name="actor", token="a" * 32, scopes=frozenset({"read", "act"}), actions=frozenset({"generate"})
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_and_at_its_lifetime() -> None:
    clock = Clock()
    store = SessionStore([READ], clock=clock, idle=100, lifetime=250)
    cookie = store.sign_in(READ)
    assert READ.token not in cookie
    assert store.get(cookie) is not None
    clock.now += 99
    assert store.get(cookie) is not None  # used: the idle time starts again
    clock.now += 99
    assert store.get(cookie) is not None
    clock.now += 60  # 258 s old: past its lifetime, though used 60 s ago
    assert store.get(cookie) is None
    assert len(store) == 0
    idle = store.sign_in(READ)
    clock.now += 101
    assert store.get(idle) is None


def test_a_session_ends_when_its_token_is_no_longer_configured() -> None:
    store = SessionStore([READ])
    cookie = store.sign_in(READ)
    changed = ApiToken(name="reader", token="x" * 32, scopes=frozenset({"read"}))
    assert SessionStore([changed]).get(cookie) is None  # another store knows nothing
    store._tokens = {"reader": changed}  # the same name with another secret: signed out
    assert store.get(cookie) is None


def test_sessions_are_bounded_and_the_oldest_goes() -> None:
    store = SessionStore([READ], limit=3)
    cookies = [store.sign_in(READ) for _ in range(4)]
    assert len(store) == 3
    assert store.get(cookies[0]) is None
    assert all(store.get(cookie) is not None for cookie in cookies[1:])


def test_unknown_and_absurd_cookies_are_no_session() -> None:
    store = SessionStore([READ])
    store.sign_in(READ)
    for cookie in (None, "", "x", "y" * 10_000, READ.token):
        assert store.get(cookie) is None


def test_what_a_session_may_do() -> None:
    store = SessionStore([READ, ACT])
    reader = store.get(store.sign_in(READ))
    actor = store.get(store.sign_in(ACT))
    assert reader is not None
    assert actor is not None
    assert not reader.may("act")
    assert actor.may("act")
    assert actor.csrf_ok(actor.csrf)
    assert not actor.csrf_ok(reader.csrf)
    assert not actor.csrf_ok(None)
    assert actor.csrf not in repr(actor)
    assert READ.token not in repr(store)


def test_the_throttle_counts_failures_per_client_in_a_window() -> None:
    clock = Clock()
    throttle = SignInThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.wait("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 60
    assert throttle.wait("10.0.0.2") == 0  # another client is not slowed
    clock.now += 30
    assert throttle.wait("10.0.0.1") == 30
    clock.now += 31
    assert throttle.wait("10.0.0.1") == 0


def test_the_throttle_forgets_the_oldest_client_past_its_bound() -> None:
    throttle = SignInThrottle(limit=1, max_clients=2)
    for client in ("a", "b", "c"):
        throttle.failed(client)
    assert throttle.wait("a") == 0
    assert throttle.wait("b") > 0
    assert throttle.wait("c") > 0
