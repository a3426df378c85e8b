"""The durable journal: events once, runs once per automation, steps resumable, retention."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ft_store_support import FakeClock

from connector.events import SCHEDULE, Event
from connector.journal.codec import encode_json
from connector.journal.connection import JournalError
from connector.journal.store import SCHEMA_VERSION, Store
from connector.providers.finetuning.models import Generation, iso_utc


def generation(gen_id: str = "gen_1", status: str = "completed", **extra: Any) -> Generation:
    wire: dict[str, Any] = {
        "id": gen_id,
        "status": status,
        "title": "Morning",
        "prompt": "lofi chill, piano",
        "audioUrl": f"https://media.example/{gen_id}.mp3",
        "duration": 187.35,
        "parameters": {
            "bpm": 80,
            "duration": 190.5,
            "keyscale": "C# minor",
            "timesignature": "4",
            "seed": 1729384756,
        },
        "createdAt": "2026-05-15T08:24:11.623Z",
        "completedAt": "2026-05-15 08:25:47",
        "errorMessage": "out of tune" if status == "failed" else None,
        **extra,
    }
    return Generation.model_validate(wire)


def completed(gen_id: str = "gen_1", **kwargs: Any) -> Event:
    return Event.for_generation(generation(gen_id, **kwargs), source="webhook")


def schedule_event(key: str) -> Event:
    return Event(kind=SCHEDULE, key=key, source="schedule", data={"at": key})


# -- events ---------------------------------------------------------------------------


def test_an_event_is_recorded_once(store: Store) -> None:
    event = completed()
    assert store.record_event(event) is True
    assert store.record_event(event) is False
    assert store.record_event(Event.for_generation(generation(), source="poll")) is False
    assert store.has_event(event.key)
    assert not store.has_event("finetuning:gen_2:completed")


def test_another_terminal_status_of_the_same_generation_is_a_new_event(store: Store) -> None:
    assert store.record_event(completed("gen_1"))
    failed = completed("gen_1", status="failed")
    assert failed.key != completed("gen_1").key
    assert store.record_event(failed) is True
    assert [row.kind for row in store.events()] == ["generation_failed", "track_completed"]


def test_load_event_rebuilds_the_event(store: Store) -> None:
    original = Event.for_generation(
        generation("gen_9", provider="tempolor", bonusField={"kept": [1, 2]}),
        source="poll",
        submitted_by_connector=True,
    )
    store.record_event(original)

    loaded = store.load_event(original.key)

    assert loaded is not None
    assert loaded == original
    assert loaded.generation is not None
    assert loaded.generation.provider == "tempolor"
    assert loaded.generation.duration == 187.35
    assert loaded.generation.parameters is not None
    assert loaded.generation.parameters.duration == 190.5
    assert loaded.generation.parameters.timesignature == 4
    assert loaded.generation.created_at == datetime(2026, 5, 15, 8, 24, 11, 623000, tzinfo=UTC)
    assert loaded.generation.completed_at == datetime(2026, 5, 15, 8, 25, 47, tzinfo=UTC)
    assert loaded.generation.model_extra == {"bonusField": {"kept": [1, 2]}}
    assert loaded.occurred_at == original.occurred_at  # to the microsecond
    assert loaded.variables() == original.variables()


def test_an_event_without_a_generation_round_trips(store: Store) -> None:
    event = Event(
        kind=SCHEDULE,
        key="schedule:morning:2026-05-15T07:30",
        source="schedule",
        data={"scheduled_for": "2026-05-15T07:30:00+02:00", "count": 3},
        occurred_at=datetime(2026, 5, 15, 5, 30, 0, 123456, tzinfo=UTC),
    )
    store.record_event(event)
    assert store.load_event(event.key) == event
    assert store.load_event("nothing") is None


def test_events_lists_newest_first_and_filters(store: Store, clock: FakeClock) -> None:
    store.record_event(completed("gen_1"))
    clock.advance(1)
    store.record_event(schedule_event("s1"))
    clock.advance(1)
    store.record_event(completed("gen_2", status="failed"))

    assert [row.key for row in store.events()] == [
        "finetuning:gen_2:failed",
        "s1",
        "finetuning:gen_1:completed",
    ]
    assert [row.key for row in store.events(limit=1)] == ["finetuning:gen_2:failed"]
    assert [row.key for row in store.events(kind=SCHEDULE)] == ["s1"]
    row = store.events(kind="track_completed")[0]
    assert row.received_at == datetime.fromtimestamp(clock.now - 2, UTC)
    assert row.generation is not None
    assert row.generation["provider"] == "finetuning"
    dumped = json.loads(json.dumps(row.to_dict()))
    assert dumped["generation"]["duration"] == 187.35
    assert dumped["source"] == "webhook"


# -- runs and steps -----------------------------------------------------------------------


def test_a_run_is_unique_per_event_and_automation(store: Store) -> None:
    event = completed()
    store.record_event(event)
    assert store.start_run("r1", event.key, "add_to_playlist") is True
    assert store.start_run("r2", event.key, "add_to_playlist") is False
    assert store.start_run("r3", event.key, "notify") is True
    assert store.run("r2") is None
    with pytest.raises(ValueError, match="already used"):
        store.start_run("r1", event.key, "third")
    with pytest.raises(ValueError, match="record_event it first"):
        store.start_run("r4", "finetuning:unknown:completed", "notify")


def test_record_event_starts_its_runs_in_the_same_transaction(store: Store) -> None:
    event = completed()
    assert store.record_event(event, runs=[("r1", "a"), ("r2", "b")])
    assert store.record_event(event, runs=[("r3", "a"), ("r4", "c")]) is False
    assert sorted(run.run_id for run in store.unfinished_runs()) == ["r1", "r2"]
    with pytest.raises(ValueError, match="listed twice"):
        store.record_event(completed("gen_2"), runs=[("r5", "a"), ("r6", "a")])
    # All or nothing: neither the event nor a run of it was kept.
    assert not store.has_event(completed("gen_2").key)
    assert store.run("r5") is None


def test_steps_resume_after_a_crash(state_dir: Path, clock: FakeClock) -> None:
    event = completed()
    with Store.open(state_dir, clock=clock) as first:
        first.record_event(event, runs=[("r1", "auto")])
        options = encode_json({"tags": "lofi", "at": datetime(2026, 1, 1, tzinfo=UTC)})
        assert first.step_started("r1", 0, "gen", "generate", options) == 1
        first.step_finished("r1", 0, "succeeded", {"id": "gen_2", "when": datetime(2026, 1, 1)})
        assert first.step_started("r1", 1, "add", "add_to_playlist") == 1
        # The process dies here: step 1 never finishes, the run never ends.

    with Store.open(state_dir, clock=clock) as second:
        (run,) = second.unfinished_runs()
        assert run.run_id == "r1"
        assert run.status == "running"
        assert [(s.step_index, s.status, s.attempt) for s in run.steps] == [
            (0, "succeeded", 1),
            (1, "running", 1),
        ]
        # Times are written one way everywhere: ISO 8601 UTC with milliseconds and Z.
        assert run.steps[0].options == {"tags": "lofi", "at": "2026-01-01T00:00:00.000Z"}
        assert run.steps[0].output == {"id": "gen_2", "when": "2026-01-01T00:00:00.000Z"}
        assert run.steps[1].finished_at is None
        with pytest.raises(ValueError, match="already succeeded"):
            second.step_started("r1", 0, "gen", "generate")
        assert second.step_started("r1", 1, "add", "add_to_playlist") == 2
        second.step_finished("r1", 1, "failed", error="playlist gone")
        assert second.step_started("r1", 1, "add", "add_to_playlist") == 3
        second.step_finished("r1", 1, "succeeded", {"added": 1})
        second.finish_run("r1", "succeeded")
        assert second.unfinished_runs() == []
        finished = second.run("r1")
        assert finished is not None
        assert finished.finished_at == datetime.fromtimestamp(clock.now, UTC)
        assert [s.attempt for s in finished.steps] == [1, 3]
        assert json.loads(json.dumps(finished.to_dict()))["steps"][1]["output"] == {"added": 1}


def test_misuse_of_runs_and_steps_is_refused(store: Store) -> None:
    event = completed()
    store.record_event(event, runs=[("r1", "auto")])
    with pytest.raises(ValueError, match="never started"):
        store.step_finished("r1", 0, "succeeded")
    store.step_started("r1", 0, "s", "generate")
    with pytest.raises(ValueError, match="succeeded, failed or skipped"):
        store.step_finished("r1", 0, "done")
    store.step_finished("r1", 0, "succeeded")
    with pytest.raises(ValueError, match="already succeeded"):
        store.step_finished("r1", 0, "failed")
    with pytest.raises(ValueError, match="is not JSON"):
        store.step_started("r1", 1, "s", "generate", "{not json")
    store.finish_run("r1", "failed", "boom")
    with pytest.raises(ValueError, match="already failed"):
        store.finish_run("r1", "succeeded")
    with pytest.raises(ValueError, match="cannot start"):
        store.step_started("r1", 1, "s", "generate")
    with pytest.raises(ValueError, match="no run"):
        store.finish_run("nope", "failed")


def test_replay_makes_a_new_run(store: Store) -> None:
    event = completed()
    store.record_event(event, runs=[("r1", "auto")])
    with pytest.raises(ValueError, match="still running"):
        store.reset_run_for_replay("r1")
    store.step_started("r1", 0, "s", "generate")
    store.step_finished("r1", 0, "failed", error="quota")
    store.finish_run("r1", "failed", "quota")

    new_id = store.reset_run_for_replay("r1")

    assert new_id != "r1"
    old, new = store.run("r1"), store.run(new_id)
    assert old is not None
    assert new is not None
    assert old.status == "replayed"
    assert len(old.steps) == 1  # the record of what happened stays
    assert (new.status, new.event_key, new.automation_id) == ("running", event.key, "auto")
    assert new.replay_of == "r1"
    assert new.steps == []
    assert [run.run_id for run in store.unfinished_runs()] == [new_id]
    # The replay holds the (event, automation) slot now.
    assert store.start_run("r9", event.key, "auto") is False
    with pytest.raises(ValueError, match=f"already replayed as '{new_id}'"):
        store.reset_run_for_replay("r1")
    with pytest.raises(ValueError, match="no run"):
        store.reset_run_for_replay("missing")


def test_runs_lists_newest_first_and_filters(store: Store, clock: FakeClock) -> None:
    for number in range(4):
        event = schedule_event(f"s{number}")
        store.record_event(event, runs=[(f"r{number}", "even" if number % 2 == 0 else "odd")])
        clock.advance(1)
    store.finish_run("r0", "succeeded")
    store.finish_run("r1", "skipped", "conditions[0] is false")

    assert [run.run_id for run in store.runs()] == ["r3", "r2", "r1", "r0"]
    assert [run.run_id for run in store.runs(limit=2)] == ["r3", "r2"]
    assert [run.run_id for run in store.runs(status="running")] == ["r3", "r2"]
    assert [run.run_id for run in store.runs(automation_id="odd")] == ["r3", "r1"]
    assert [run.run_id for run in store.runs(status="skipped", automation_id="odd")] == ["r1"]
    assert [run.run_id for run in store.unfinished_runs()] == ["r2", "r3"]


# -- cursors, submissions, intents -------------------------------------------------------


def test_cursors_round_trip_and_survive_reopen(state_dir: Path, clock: FakeClock) -> None:
    state = {"seeded": True, "in_progress": {"gen_1": "2026-05-15T08:24:11Z"}, "n": 1.5}
    with Store.open(state_dir, clock=clock) as store:
        assert store.get_cursor("poller") is None
        store.set_cursor("poller", {"seeded": False})
        store.set_cursor("poller", state)
        store.set_cursor("when", {"at": datetime(2026, 5, 15, tzinfo=UTC), "ids": {"a"}})
    with Store.open(state_dir, clock=clock) as store:
        assert store.get_cursor("poller") == state
        # Leniently encoded: what JSON does not know comes back as its JSON form.
        assert store.get_cursor("when") == {"at": "2026-05-15T00:00:00.000Z", "ids": ["a"]}


def test_pending_and_submitted(state_dir: Path, clock: FakeClock) -> None:
    created = datetime(2026, 5, 15, 8, 24, 11, 623000, tzinfo=UTC)
    with Store.open(state_dir, clock=clock) as store:
        store.add_pending("finetuning", "gen_2", created, run_id="r1")
        clock.advance(1)
        store.add_pending("finetuning", "gen_1", None)
        store.add_pending("finetuning", "gen_2", None)  # idempotent, keeps what it knew
        store.add_pending("tempolor", "job_1", created)
        assert not store.is_submitted("finetuning", "gen_3")
    with Store.open(state_dir, clock=clock) as store:
        rows = store.pending("finetuning")
        assert [(row.generation_id, row.created_at, row.run_id) for row in rows] == [
            ("gen_2", created, "r1"),
            ("gen_1", None, None),
        ]
        assert len(store.pending()) == 3
        assert json.loads(json.dumps(rows[0].to_dict()))["created_at"] == iso_utc(created)
        store.remove_pending("finetuning", "gen_2")
        assert [row.generation_id for row in store.pending("finetuning")] == ["gen_1"]
        assert store.is_submitted("finetuning", "gen_2")  # kept after it ends
        assert store.is_submitted("tempolor", "job_1")
        assert not store.is_submitted("tempolor", "gen_2")


def test_intents(store: Store) -> None:
    store.record_event(completed(), runs=[("r1", "auto")])
    assert store.intent("r1", 0) is None
    fingerprint = {"tags": "lofi", "parameters": {"bpm": 80}, "seed": 7, "time": 1.5}
    store.record_intent("r1", 0, fingerprint)
    assert store.intent("r1", 0) == fingerprint
    store.record_intent("r1", 0, {**fingerprint, "seed": 8})  # a new attempt replaces it
    assert store.intent("r1", 0) == {**fingerprint, "seed": 8}
    assert store.intent("r1", 1) is None
    with pytest.raises(ValueError, match="no run"):
        store.record_intent("nope", 0, fingerprint)


# -- retention ----------------------------------------------------------------------------


def test_prune_removes_old_rows_but_keeps_unfinished_work(store: Store, clock: FakeClock) -> None:
    day = 86_400.0
    store.record_event(completed("old_done"), runs=[("r_done", "auto")])
    store.step_started("r_done", 0, "s", "generate")
    store.record_intent("r_done", 0, {"tags": "x"})
    store.step_finished("r_done", 0, "succeeded", {"id": "x"})
    store.finish_run("r_done", "succeeded")
    store.record_event(completed("old_running"), runs=[("r_running", "auto")])
    store.step_started("r_running", 0, "s", "generate")
    store.record_event(schedule_event("old_no_runs"))
    store.add_pending("finetuning", "old_submitted", None)
    store.remove_pending("finetuning", "old_submitted")
    store.add_pending("finetuning", "still_pending", None)
    store.set_cursor("poller", {"seeded": True})
    clock.advance(10 * day)
    store.record_event(schedule_event("recent"))

    result = store.prune(older_than=7 * day)

    assert (result.events, result.runs, result.steps, result.submitted) == (2, 1, 1, 1)
    assert result.size_bytes == store.size_bytes()
    assert not store.has_event(completed("old_done").key)
    assert not store.has_event("old_no_runs")
    assert store.run("r_done") is None
    assert store.intent("r_done", 0) is None
    assert store.has_event(completed("old_running").key)
    assert [run.run_id for run in store.unfinished_runs()] == ["r_running"]
    assert store.has_event("recent")
    assert not store.is_submitted("finetuning", "old_submitted")
    assert store.is_submitted("finetuning", "still_pending")
    assert store.get_cursor("poller") == {"seeded": True}
    assert json.loads(json.dumps(result.to_dict()))["events"] == 2

    # Once it finishes and ages, the kept event goes too.
    store.finish_run("r_running", "failed", "gave up")
    assert store.prune(older_than=7 * day).events == 0
    clock.advance(8 * day)
    assert store.prune(older_than=7 * day).events == 2
    with pytest.raises(ValueError, match="0 or more"):
        store.prune(older_than=-1)


def test_the_file_stays_small_after_pruning(store: Store, clock: FakeClock) -> None:
    def fill(batch: int) -> None:
        for number in range(10_000):
            event = schedule_event(f"b{batch}-{number}")
            runs = [(f"r{batch}-{number}", "auto")] if number % 10 == 0 else []
            store.record_event(event, runs=runs)
            if runs:
                store.finish_run(runs[0][0], "succeeded")

    fill(1)
    full = store.size_bytes()
    clock.advance(3600)
    first = store.prune(older_than=60)
    assert first.events == 10_000
    assert first.size_bytes < full

    fill(2)
    clock.advance(3600)
    second = store.prune(older_than=60)
    assert second.events == 10_000
    assert second.size_bytes <= first.size_bytes


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_record_event_says_new_exactly_once_per_key(state_dir: Path) -> None:
    keys = [f"k{number}" for number in range(150)]
    stores = [Store.open(state_dir), Store.open(state_dir)]  # two connections as well
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    results_lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            store = stores[index % 2]
            barrier.wait()
            order = keys if index % 2 == 0 else list(reversed(keys))
            mine = [(key, store.record_event(schedule_event(key))) for key in order]
            with results_lock:
                results.extend(mine)
        except BaseException as err:  # surfaced in the main thread below
            failures.append(err)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()

    assert failures == []
    assert len(results) == 8 * len(keys)
    wins = {key: sum(1 for k, new in results if k == key and new) for key in keys}
    assert set(wins.values()) == {1}


# -- files, errors, schema ------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_processes_opening_a_new_file_at_once_migrate_it_once(state_dir: Path) -> None:
    opened: list[Store] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            opened.append(Store.open(state_dir))
        except BaseException as err:  # surfaced in the main thread below
            failures.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [store.record_event(schedule_event(f"s{i}")) for i, store in enumerate(opened)] == [
        True
    ] * 4
    for store in opened:
        store.close()


def test_files_are_private(state_dir: Path) -> None:
    with Store.open(state_dir) as store:
        store.record_event(schedule_event("s"))
        assert _mode(state_dir) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            assert _mode(state_dir / name) == 0o600


def test_an_existing_database_is_made_private(state_dir: Path) -> None:
    Store.open(state_dir).close()
    os.chmod(state_dir / "state.db", 0o644)
    Store.open(state_dir).close()
    assert _mode(state_dir / "state.db") == 0o600


def test_secret_is_made_once_and_kept_private(state_dir: Path) -> None:
    calls: list[int] = []

    def factory() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    with Store.open(state_dir) as store:
        token = store.secret("webhook_token", factory)
        assert token == "token-1"
        assert store.secret("webhook_token", factory) == token
    with Store.open(state_dir) as store:
        assert store.secret("webhook_token", factory) == token
        assert calls == [1]
        assert _mode(state_dir / "webhook_token") == 0o600
        assert token not in (state_dir / "state.db").read_bytes().decode("latin-1")
        assert sorted(p.name for p in state_dir.iterdir() if p.name.startswith(".")) == []
        for bad in ("../escape", "state.db", "", ".hidden", "a/b"):
            with pytest.raises(ValueError, match="secret file name"):
                store.secret(bad, factory)
        with pytest.raises(ValueError, match="one non-empty line"):
            store.secret("other", lambda: "  ")
        (state_dir / "emptied").write_text("")
        with pytest.raises(JournalError, match="is empty; delete it"):
            store.secret("emptied", factory)


def test_schema_and_pragmas(state_dir: Path) -> None:
    with Store.open(state_dir, durability="full") as store:
        connection = store._conn
        assert connection is not None
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert store.check() == []
    with Store.open(state_dir) as store:
        connection = store._conn
        assert connection is not None
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(ValueError, match="durability"):
        Store.open(state_dir, durability="paranoid")


def test_a_corrupt_database_is_a_clear_error(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    (state_dir / "state.db").write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(JournalError, match="is corrupt") as caught:
        Store.open(state_dir)
    assert str(state_dir / "state.db") in str(caught.value)
    assert "move the file" in str(caught.value)


def test_a_newer_schema_is_refused(state_dir: Path) -> None:
    with Store.open(state_dir) as store:
        assert store._conn is not None
        store._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="newer than this connector understands"):
        Store.open(state_dir)


def test_a_locked_database_is_a_clear_error(state_dir: Path) -> None:
    import sqlite3

    with Store.open(state_dir, busy_timeout=0.05) as store:
        other = sqlite3.connect(state_dir / "state.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(JournalError, match="locked by another process") as caught:
                store.record_event(schedule_event("s"))
            assert str(state_dir / "state.db") in str(caught.value)
            other.execute("ROLLBACK")
        finally:
            other.close()
        # The failed call left nothing half-done: the store carries on.
        assert store.record_event(schedule_event("s")) is True


def test_a_closed_store_says_so(state_dir: Path) -> None:
    store = Store.open(state_dir)
    store.close()
    store.close()  # twice is fine
    assert store.closed
    with pytest.raises(JournalError, match="is closed"):
        store.has_event("x")
