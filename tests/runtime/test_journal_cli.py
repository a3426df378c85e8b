"""`ftconnect events`, `runs` and `replay` read the journal a run left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.events import Event
from connector.journal.store import Store
from connector.providers.finetuning.models import Generation, GenerationStatus


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    failed = Event.for_generation(
        Generation(id="gen-1", status=GenerationStatus.FAILED, prompt="broken ambient"),
        source="webhook",
    )
    with Store.open(state) as store:
        assert store.record_event(failed, runs=[("run-1", "clean_up")])
        store.step_started("run-1", 0, "step_1", "bulk_delete")
        store.step_finished("run-1", 0, "failed", error="step_1 (bulk_delete): no item succeeded")
        store.finish_run("run-1", "failed", "step_1 (bulk_delete): no item succeeded")
    return state


def test_events_lists_what_fired(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--state-dir", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "generation_failed" in out
    assert "finetuning:gen-1:failed" in out
    assert "broken ambient" in out


def test_events_and_runs_as_json(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--state-dir", str(journal), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in events] == ["finetuning:gen-1:failed"]
    assert main(["runs", "--state-dir", str(journal), "--json", "--status", "failed"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs[0]["run_id"] == "run-1"
    assert runs[0]["steps"][0]["error"] == "step_1 (bulk_delete): no item succeeded"


def test_runs_show_each_step_and_why_it_failed(
    journal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--state-dir", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "run-1" in out
    assert "clean_up" in out
    assert "no item succeeded" in out


def test_replay_queues_a_new_run_for_the_next_start(
    journal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "run-1", "--state-dir", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "run run-1 will run again as" in out
    with Store.open(journal) as store:
        unfinished = store.unfinished_runs()
        assert [r.automation_id for r in unfinished] == ["clean_up"]
        assert unfinished[0].replay_of == "run-1"
    assert main(["replay", "no-such-run", "--state-dir", str(journal)]) == 1


def test_a_missing_journal_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--state-dir", str(tmp_path / "nowhere")]) == 1
    assert "no journal in" in capsys.readouterr().err
