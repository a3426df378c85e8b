"""The journal's part of the HTTP API: idempotency keys, REST hooks and their outbox,
paging with cursors, an event's runs, and the migration of a version-1 journal."""

from __future__ import annotations

import secrets
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ft_store_support import FakeClock

from connector.events import SCHEDULE, Event
from connector.journal.hooks import OutboxRow
from connector.journal.idempotency import IDEMPOTENCY_TTL
from connector.journal.store import _MIGRATIONS, SCHEMA_VERSION, Store
from connector.redaction import REDACTED


def event(key: str, kind: str = SCHEDULE) -> Event:
    return Event(kind=kind, key=key, source="schedule", data={"at": key})


def whsec() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def outbox(store: Store) -> list[tuple[str, str, str]]:
    """Every outbox row as (hook id, event key, state), in insertion order."""
    assert store._conn is not None
    rows = store._conn.execute("SELECT hook_id, event_key, state FROM outbox ORDER BY id")
    return [tuple(row) for row in rows]


# -- idempotency keys ----------------------------------------------------------------------


def test_an_idempotency_key_is_claimed_once_and_replaced_once_expired(
    store: Store, clock: FakeClock
) -> None:
    first, new = store.claim_idempotency("n8n:act", "k-1", "hash-a", "api:1", ttl=3600)
    assert new is True
    assert (first.scope, first.key, first.body_hash, first.event_key) == (
        "n8n:act",
        "k-1",
        "hash-a",
        "api:1",
    )
    assert first.created_at == datetime.fromtimestamp(clock.now, UTC)

    clock.advance(3600)  # exactly the time to live: still the first claim
    again, new = store.claim_idempotency("n8n:act", "k-1", "hash-a", "api:2", ttl=3600)
    assert (again, new) == (first, False)

    # Another body: the stored row comes back as it is; comparing is the caller's job.
    other, new = store.claim_idempotency("n8n:act", "k-1", "hash-b", "api:3", ttl=3600)
    assert (other, new) == (first, False)

    # The same key in another scope is another key.
    elsewhere, new = store.claim_idempotency("zapier:act", "k-1", "hash-b", "api:4", ttl=3600)
    assert new is True
    assert elsewhere.event_key == "api:4"

    clock.advance(0.5)  # now expired: the new request takes the key over
    replaced, new = store.claim_idempotency("n8n:act", "k-1", "hash-c", "api:5", ttl=3600)
    assert new is True
    assert (replaced.body_hash, replaced.event_key) == ("hash-c", "api:5")
    assert replaced.created_at == datetime.fromtimestamp(clock.now, UTC)
    assert store.claim_idempotency("n8n:act", "k-1", "x", "y", ttl=3600) == (replaced, False)


def test_bad_idempotency_claims_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="ttl must be 0 or more"):
        store.claim_idempotency("s", "k", "h", "e", ttl=-1)
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        store.claim_idempotency("s", "", "h", "e", ttl=60)
    with pytest.raises(ValueError, match="older_than must be 0 or more"):
        store.prune_idempotency(older_than=-5)


def test_prune_idempotency_forgets_old_keys_only(store: Store, clock: FakeClock) -> None:
    store.claim_idempotency("s", "old", "h", "e1", ttl=60)
    clock.advance(100)
    store.claim_idempotency("s", "new", "h", "e2", ttl=60)
    clock.advance(10)
    assert store.prune_idempotency(older_than=50) == 1
    assert store.prune_idempotency(older_than=50) == 0
    # The kept key still answers as claimed; the pruned one is claimable again.
    assert store.claim_idempotency("s", "new", "h", "e3", ttl=3600)[1] is False
    assert store.claim_idempotency("s", "old", "h", "e4", ttl=3600)[1] is True


# -- hooks -----------------------------------------------------------------------------------


def test_hooks_are_stored_listed_and_refused_when_bad(store: Store, clock: FakeClock) -> None:
    made = store.add_hook("h2", "track_completed", "https://a.example/in", {"tag": "x"}, "n8n")
    assert made.hook_id == "h2"
    assert made.trigger == "track_completed"
    assert made.target_url == "https://a.example/in"
    assert made.filter == {"tag": "x"}
    assert made.token_name == "n8n"
    assert made.created_at == datetime.fromtimestamp(clock.now, UTC)
    assert (made.pending, made.delivered, made.failed) == (0, 0, 0)
    assert (made.last_status, made.last_error, made.last_attempt_at) == (None, None, None)
    clock.advance(1)
    store.add_hook("h1", "run_failed", "https://b.example/in", {}, None)

    assert [hook.hook_id for hook in store.hooks()] == ["h2", "h1"]  # oldest first
    assert store.hook("h2") == made
    assert store.hook("nope") is None

    with pytest.raises(ValueError, match="a hook 'h2' exists already"):
        store.add_hook("h2", "track_completed", "https://c.example", {}, None)
    for bad in ("", "a/b", "../x", "a.b", "x" * 65):
        with pytest.raises(ValueError, match="a hook id is 1 to 64"):
            store.add_hook(bad, "track_completed", "https://c.example", {}, None)
    with pytest.raises(ValueError, match="trigger of hook 'h3' must be a non-empty string"):
        store.add_hook("h3", "", "https://c.example", {}, None)
    with pytest.raises(ValueError, match="filter of hook 'h3' must be an object"):
        store.add_hook("h3", "t", "https://c.example", ["x"], None)  # type: ignore[arg-type]
    assert len(store.hooks()) == 2


def test_a_hook_secret_lives_in_its_own_file_never_in_the_database(
    store: Store, state_dir: Path
) -> None:
    store.add_hook("h1", "track_completed", "https://a.example/in", {}, None)
    made: list[str] = []

    def factory() -> str:
        made.append(whsec())
        return made[-1]

    secret = store.hook_secret("h1", factory)
    assert store.hook_secret("h1", factory) == secret
    assert made == [secret]
    path = state_dir / "hook-h1"
    assert path.read_text(encoding="utf-8").strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # Deliveries whose errors quote the secret: the journal keeps it scrubbed.
    store.record_event(event("e1"), deliveries=["h1"])
    row = store.due_deliveries()[0]
    store.delivery_retry(row.id, status=500, error=f"receiver echoed {secret}", next_attempt_at=0.0)
    assert store.deliveries("h1")[0].last_error == f"receiver echoed {REDACTED}"

    database = state_dir / "state.db"
    wal = state_dir / "state.db-wal"
    assert wal.exists()  # the latest commits are still in the log: search it too
    for file in (database, wal):
        assert secret.encode() not in file.read_bytes()

    with pytest.raises(ValueError, match="no hook 'gone'"):
        store.hook_secret("gone", factory)
    assert not (state_dir / "hook-gone").exists()
    assert made == [secret]


def test_remove_hook_takes_its_outbox_rows_and_secret_file(store: Store, state_dir: Path) -> None:
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    store.add_hook("h2", "schedule", "https://b.example/in", {}, None)
    store.hook_secret("h1", whsec)
    store.hook_secret("h2", whsec)
    store.record_events([(event("e1"), []), (event("e2"), [])], deliveries=[["h1", "h2"], ["h1"]])
    assert len(outbox(store)) == 3

    assert store.remove_hook("h1") is True
    assert outbox(store) == [("h2", "e1", "pending")]
    assert not (state_dir / "hook-h1").exists()
    assert (state_dir / "hook-h2").exists()
    assert store.hook("h1") is None
    assert [hook.hook_id for hook in store.hooks()] == ["h2"]
    assert store.remove_hook("h1") is False
    assert store.remove_hook("not/an id") is False


# -- the outbox ------------------------------------------------------------------------------


def test_deliveries_are_queued_with_new_events_only(store: Store, clock: FakeClock) -> None:
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    store.add_hook("h2", "schedule", "https://b.example/in", {}, None)

    results = store.record_events(
        [(event("e1"), [("r1", "auto")]), (event("e2"), [])],
        deliveries=[["h1", "h2", "h1"], ["gone", "h2"]],
    )
    assert results == [True, True]
    # A hook listed twice is queued once; an unknown hook is skipped.
    assert outbox(store) == [
        ("h1", "e1", "pending"),
        ("h2", "e1", "pending"),
        ("h2", "e2", "pending"),
    ]
    assert all(row.next_attempt_at == clock.now for row in store.due_deliveries())
    assert all(row.attempts == 0 for row in store.due_deliveries())

    # A repeated event queues nothing, not even for a hook it was never queued for.
    clock.advance(5)
    assert store.record_events([(event("e2"), [])], deliveries=[["h1"]]) == [False]
    assert store.record_event(event("e1"), deliveries=["h1", "h2"]) is False
    assert len(outbox(store)) == 3

    assert store.record_event(event("e3"), runs=[("r3", "auto")], deliveries=["h1"]) is True
    assert outbox(store)[-1] == ("h1", "e3", "pending")
    assert store.record_event(event("e4")) is True  # no deliveries: nothing queued
    assert len(outbox(store)) == 4


def test_an_event_and_its_deliveries_commit_or_fail_together(store: Store) -> None:
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    with pytest.raises(ValueError, match="listed twice in runs="):
        store.record_events(
            [(event("e1"), []), (event("e2"), [("r1", "a"), ("r2", "a")])],
            deliveries=[["h1"], ["h1"]],
        )
    assert outbox(store) == []
    assert not store.has_event("e1")
    with pytest.raises(ValueError, match="deliveries lists 1 entries for 2 events"):
        store.record_events([(event("e1"), []), (event("e2"), [])], deliveries=[["h1"]])
    assert not store.has_event("e1")


def test_the_outbox_lifecycle(store: Store, clock: FakeClock) -> None:
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    assert store.next_delivery_at() is None
    assert store.due_deliveries() == []
    start = clock.now
    for key in ("e1", "e2", "e3"):
        store.record_event(event(key), deliveries=["h1"])
        clock.advance(1)
    due = store.due_deliveries()
    assert [row.event_key for row in due] == ["e1", "e2", "e3"]  # oldest first
    assert store.due_deliveries(limit=2) == due[:2]
    assert store.due_deliveries(now=start + 1) == due[:2]
    assert store.next_delivery_at() == start
    first, second, third = due
    assert first.created_at == datetime.fromtimestamp(start, UTC)
    assert (first.state, first.hook_id) == ("pending", "h1")

    # e1 fails once and is due again later; e2 is delivered; e3 is given up.
    store.delivery_retry(
        first.id, status=None, error="connection refused", next_attempt_at=start + 60
    )
    assert [row.event_key for row in store.due_deliveries()] == ["e2", "e3"]
    assert store.next_delivery_at() == start + 1  # e2's
    clock.advance(1)
    store.delivery_done(second.id, 204)
    clock.advance(1)
    store.delivery_given_up(third.id, status=410, error="gone")
    assert store.next_delivery_at() == start + 60
    assert store.due_deliveries() == []
    assert [row.event_key for row in store.due_deliveries(now=start + 60)] == ["e1"]

    rows = {row.event_key: row for row in store.deliveries("h1")}
    assert [row.event_key for row in store.deliveries("h1")] == ["e3", "e2", "e1"]
    assert [row.event_key for row in store.deliveries("h1", limit=1)] == ["e3"]
    assert store.deliveries("nope") == []
    assert rows["e1"] == OutboxRow(
        id=first.id,
        hook_id="h1",
        event_key="e1",
        state="pending",
        attempts=1,
        next_attempt_at=start + 60,
        last_status=None,
        last_error="connection refused",
        created_at=first.created_at,
    )
    assert (rows["e2"].state, rows["e2"].attempts, rows["e2"].last_status) == ("delivered", 1, 204)
    assert rows["e2"].last_error is None
    assert (rows["e3"].state, rows["e3"].last_status, rows["e3"].last_error) == (
        "failed",
        410,
        "gone",
    )

    hook = store.hook("h1")
    assert hook is not None
    assert (hook.pending, hook.delivered, hook.failed) == (1, 1, 1)
    # The latest attempt is the given-up one.
    assert (hook.last_status, hook.last_error) == (410, "gone")
    assert hook.last_attempt_at == datetime.fromtimestamp(clock.now, UTC)

    # The retry succeeds later: it becomes the latest attempt.
    clock.advance(60)
    store.delivery_done(first.id, 200)
    hook = store.hook("h1")
    assert hook is not None
    assert (hook.pending, hook.delivered, hook.failed) == (0, 2, 1)
    assert (hook.last_status, hook.last_error) == (200, None)
    assert store.deliveries("h1")[-1].attempts == 2
    assert store.next_delivery_at() is None

    # A finished row cannot be finished again; a row that is gone is ignored.
    with pytest.raises(ValueError, match=f"outbox row {second.id} is already delivered"):
        store.delivery_retry(second.id, status=500, error="x", next_attempt_at=0.0)
    store.delivery_done(99_999, 200)
    store.delivery_given_up(99_999, status=None, error="hook removed")


def test_a_long_delivery_error_is_cut(store: Store) -> None:
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    store.record_event(event("e1"), deliveries=["h1"])
    row = store.due_deliveries()[0]
    store.delivery_given_up(row.id, status=502, error="<html>" + "x" * 5000)
    error = store.deliveries("h1")[0].last_error
    assert error is not None
    assert error.startswith("<html>xx")
    assert len(error) == 1000


# -- paging ----------------------------------------------------------------------------------


def _walk(fetch: Any, limit: int, cursor_of: Any) -> list[Any]:
    """Every page of `fetch(limit=, before=)` in turn, following the cursor of each last row."""
    seen: list[Any] = []
    before = None
    while True:
        page = fetch(limit=limit, before=before)
        assert len(page) <= limit
        seen.extend(page)
        if len(page) < limit:
            return seen
        before = cursor_of(page[-1])


def test_runs_page_walks_every_run_once_across_ties_in_time(store: Store, clock: FakeClock) -> None:
    # Three instants; two with several runs started at once, ids out of order.
    clock.now = 1_760_000_000.1234567  # finer than the journal keeps
    store.record_event(event("e0"), runs=[("r-m", "a1"), ("r-b", "a2"), ("r-z", "a3")])
    clock.advance(1.5)
    store.record_event(event("e1"), runs=[("r-c", "a1")])
    clock.advance(0.000001)
    store.record_event(event("e2"), runs=[("r-y", "a1"), ("r-a", "a2"), ("r-k", "a3")])
    store.finish_run("r-a", "failed", "boom")
    store.finish_run("r-m", "failed", "boom")

    expected = ["r-y", "r-k", "r-a", "r-c", "r-z", "r-m", "r-b"]
    assert [run.run_id for run in store.runs_page(limit=50)] == expected

    def cursor(run: Any) -> tuple[float, str]:
        return (run.started_at.timestamp(), run.run_id)

    for limit in (1, 2, 3, 7):
        walked = _walk(store.runs_page, limit, cursor)
        assert [run.run_id for run in walked] == expected, limit

    failed = _walk(lambda **kw: store.runs_page(status="failed", **kw), 1, cursor)
    assert [run.run_id for run in failed] == ["r-a", "r-m"]
    of_a1 = _walk(lambda **kw: store.runs_page(automation_id="a1", **kw), 2, cursor)
    assert [run.run_id for run in of_a1] == ["r-y", "r-c", "r-m"]
    assert store.runs_page(limit=0) == []

    # The cursor is exclusive, and a made-up one in between works too.
    first = store.runs_page(limit=50)[0]
    assert store.runs_page(limit=1, before=cursor(first))[0].run_id == "r-k"
    assert [
        run.run_id
        for run in store.runs_page(limit=50, before=(first.started_at.timestamp(), "r-b"))
    ] == ["r-a", "r-c", "r-z", "r-m", "r-b"]
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        store.runs_page(limit=-1)
    for bad in ((float("nan"), "r"), ("soon", "r"), (1.0, 5)):
        with pytest.raises(ValueError, match="a page cursor is"):
            store.runs_page(limit=5, before=bad)  # type: ignore[arg-type]


def test_events_page_walks_every_event_once_newest_first(store: Store, clock: FakeClock) -> None:
    store.record_events(
        [(event("b"), []), (event("d", "account_low"), []), (event("a"), []), (event("c"), [])]
    )
    clock.advance(0.25)
    store.record_event(event("e", "account_low"))
    clock.advance(0.25)
    store.record_events([(event("f"), []), (event("aa"), [])])

    expected = ["f", "aa", "e", "d", "c", "b", "a"]
    assert [row.key for row in store.events_page(limit=50)] == expected

    def cursor(row: Any) -> tuple[float, str]:
        return (row.received_at.timestamp(), row.key)

    for limit in (1, 2, 3, 4):
        assert [row.key for row in _walk(store.events_page, limit, cursor)] == expected

    low = _walk(lambda **kw: store.events_page(kinds={"account_low"}, **kw), 1, cursor)
    assert [row.key for row in low] == ["e", "d"]
    both = store.events_page(limit=50, kinds=["account_low", SCHEDULE])
    assert [row.key for row in both] == expected
    assert [row.key for row in store.events_page(limit=50, kinds=())] == expected
    assert store.events_page(limit=50, kinds=["nothing"]) == []


def test_runs_for_event_lists_replays_too_newest_first(store: Store, clock: FakeClock) -> None:
    store.record_event(event("e1"), runs=[("r1", "a1"), ("r2", "a2")])
    store.record_event(event("e2"), runs=[("r3", "a1")])
    store.step_started("r1", 0, "s1", "notify_webhook", '{"url": "https://x.example"}')
    store.step_finished("r1", 0, "succeeded", {"status": 204})
    store.finish_run("r1", "succeeded")
    clock.advance(1)
    replay = store.reset_run_for_replay("r1")

    runs = store.runs_for_event("e1")
    assert [run.run_id for run in runs] == [replay, "r2", "r1"]
    assert [run.status for run in runs] == ["running", "running", "replayed"]
    assert [step.step_id for step in runs[2].steps] == ["s1"]
    assert store.runs_for_event("nope") == []


def test_step_finished_can_replace_the_options(store: Store) -> None:
    secret = whsec()
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    store.hook_secret("h1", lambda: secret)  # registered: scrubbed wherever written
    store.record_event(event("e1"), runs=[("r1", "a1")])
    store.step_started("r1", 0, "s1", "generate", '{"prompt": "{{ x }}"}')
    store.step_finished("r1", 0, "succeeded", {"id": "g"})
    store.step_started("r1", 1, "s2", "notify_webhook", '{"url": "u"}')
    store.step_finished(
        "r1", 1, "failed", error="no", options={"url": "u", "secret": secret, "n": 3}
    )
    run = store.run("r1")
    assert run is not None
    assert run.steps[0].options == {"prompt": "{{ x }}"}  # kept when not given
    assert run.steps[1].options == {"url": "u", "secret": REDACTED, "n": 3}


# -- retention -------------------------------------------------------------------------------


def test_prune_clears_the_outbox_of_pruned_events_and_old_finished_rows(
    store: Store, clock: FakeClock
) -> None:
    day = 86400.0
    store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
    store.claim_idempotency("s", "k", "h", "old", ttl=day)
    # Old events; a running run keeps the second and third from being pruned.
    store.record_event(event("old-pending"), deliveries=["h1"])
    store.record_event(event("old-failed"), runs=[("r-live", "a1")], deliveries=["h1"])
    store.record_event(event("old-done"), runs=[("r-live2", "a2")], deliveries=["h1"])
    store.record_event(event("old-waiting"), runs=[("r-live3", "a3")], deliveries=["h1"])
    rows = {row.event_key: row for row in store.due_deliveries()}
    clock.advance(10 * day)
    store.delivery_done(rows["old-done"].id, 200)  # finished 10 days before the prune
    clock.advance(8 * day)
    store.record_event(event("new-done"), deliveries=["h1"])
    store.delivery_done(store.due_deliveries()[-1].id, 200)  # finished 2 days before
    store.delivery_given_up(rows["old-failed"].id, status=500, error="x")
    clock.advance(2 * day)

    store.prune(older_than=5 * day)
    # old-pending's event was pruned (no run kept it): its row went, pending or not.
    # old-done's row was delivered 10 days ago; the others are recent or still pending.
    assert outbox(store) == [
        ("h1", "old-failed", "failed"),
        ("h1", "old-waiting", "pending"),
        ("h1", "new-done", "delivered"),
    ]
    assert not store.has_event("old-pending")
    assert store.has_event("old-done")
    assert store.claim_idempotency("s", "k", "h", "new", ttl=100 * day)[0].event_key == "old"
    assert [hook.hook_id for hook in store.hooks()] == ["h1"]


# -- the schema ------------------------------------------------------------------------------


def test_a_version_1_journal_is_migrated_with_its_data(state_dir: Path, clock: FakeClock) -> None:
    state_dir.mkdir(mode=0o700)
    path = state_dir / "state.db"
    old = sqlite3.connect(path, isolation_level=None)
    try:
        old.execute("PRAGMA auto_vacuum = INCREMENTAL")
        old.execute("PRAGMA journal_mode = WAL")
        for statement in _MIGRATIONS[0]:
            old.execute(statement)
        old.execute("PRAGMA user_version = 1")
        old.execute(
            "INSERT INTO events (key, kind, provider, source, data, submitted_by_connector,"
            " occurred_at, received_at) VALUES ('e-old', 'schedule', 'finetuning', 'schedule',"
            " '{}', 0, 1.5, 1759000000.123456789)"
        )
        old.execute(
            "INSERT INTO runs (run_id, event_key, automation_id, status, started_at,"
            " finished_at) VALUES ('r-old', 'e-old', 'a1', 'succeeded', 1759000000.5, 1759000001)"
        )
    finally:
        old.close()
    path.chmod(0o600)

    assert SCHEMA_VERSION == 2
    with Store.open(state_dir, clock=clock) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {
            row[0]
            for row in store._conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
            )
        }
        assert {"idempotency", "hooks", "outbox", "outbox_due", "runs_by_event"} <= names
        assert store.check() == []
        # The old data is all there, and the new parts work on top of it.
        assert [run.run_id for run in store.runs_for_event("e-old")] == ["r-old"]
        assert [row.key for row in store.events_page(limit=5)] == ["e-old"]
        store.add_hook("h1", "schedule", "https://a.example/in", {}, None)
        assert store.record_event(event("e-new"), deliveries=["h1"]) is True
        assert store.record_event(event("e-old"), deliveries=["h1"]) is False
        assert outbox(store) == [("h1", "e-new", "pending")]
        assert store.claim_idempotency("s", "k", "h", "e-new", ttl=60)[1] is True
    # Opening again is a no-op: the version is current.
    with Store.open(state_dir, clock=clock) as store:
        assert [hook.hook_id for hook in store.hooks()] == ["h1"]


def test_an_outbox_row_needs_its_hook(store: Store) -> None:
    assert store._conn is not None
    with pytest.raises(sqlite3.IntegrityError):
        store._conn.execute(
            "INSERT INTO outbox (hook_id, event_key, state, next_attempt_at, created_at)"
            " VALUES ('nope', 'e', 'pending', 0, 0)"
        )


def test_prune_keeps_the_run_and_event_of_a_key_still_alive(tmp_path: Path) -> None:
    """With retention shorter than a key's 24 h, a retry must still find its run."""
    now = [1_000_000.0]
    with Store.open(tmp_path, clock=lambda: now[0]) as store:
        for name in ("kept", "gone"):
            event = Event(kind="action_called", key=f"api:{name}", provider="connector")
            store.record_event(event, runs=[(f"run-{name}", f"api.{name}")])
            store.finish_run(f"run-{name}", "succeeded")
        store.claim_idempotency("n8n", "k", "hash", "api:kept", ttl=IDEMPOTENCY_TTL)
        now[0] += 3600.0  # an hour later, with a retention of a minute
        store.prune(older_than=60.0)
        assert store.run("run-kept") is not None
        assert store.has_event("api:kept")
        assert store.run("run-gone") is None
        assert not store.has_event("api:gone")
        now[0] += IDEMPOTENCY_TTL  # the key has expired: nothing holds them any more
        assert store.prune_idempotency(older_than=IDEMPOTENCY_TTL) == 1
        store.prune(older_than=60.0)
        assert store.run("run-kept") is None
        assert not store.has_event("api:kept")
