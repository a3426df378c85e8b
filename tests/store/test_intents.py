"""The intent a `generate` step journals before it submits: one format, read by everyone.

`actions/generate.py` writes it, the store keeps it, the runtime matches
generations against it. A row of any other shape fails the step with a clear
message instead of a silent mismatch (which could adopt another run's track
or spend a second credit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from yarl import URL

from connector.automation.loader import parse_config
from connector.dispatch.runtime import Runtime
from connector.errors import GenerationOutcomeUnknownError
from connector.events import SCHEDULE, Event
from connector.journal.intents import (
    GenerationIntent,
    IntentFormatError,
    generation_match_key,
    reply_ref_for,
)
from connector.journal.store import Store
from connector.providers.finetuning.client import FinetuningClient
from connector.providers.finetuning.models import Generation, GenerationRequest

if TYPE_CHECKING:
    from connector.sandbox import SandboxHandle

CONFIG = """
poll: {idle_interval: 60, active_interval: 60}
automations:
  - id: make
    triggers: [{trigger: schedule, interval: 3600}]
    actions:
      - action: generate
        tags: "rainy piano"
        duration: 30
        bpm: 80
"""

# Rows as journals written before `GenerationIntent` existed hold them.
FINETUNING_ROW = {"tags": "lofi", "duration": 90, "bpm": 80, "seed": 7, "at": 1_760_000_000.25}
TEMPOLOR_ROW = {"replyRef": "ftconnect:abc:0", "at": 1_760_000_000}


def _generation(gen_id: str, tags: str, seed: int, **extra: Any) -> Generation:
    return Generation.model_validate(
        {
            "id": gen_id,
            "status": "completed",
            "prompt": tags,
            "createdAt": datetime.now(UTC).isoformat(),
            "parameters": {"seed": seed, "duration": 30, "bpm": 80},
            **extra,
        }
    )


class LostAnswer:
    """A Finetuning.ai client whose create reaches the server but whose answer is lost.

    While the create is in flight, the finished generation's webhook reaches the
    runtime (before the step hears anything), as it can with a fast server.
    """

    base_url = URL("http://127.0.0.1:1")

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.requests: list[GenerationRequest] = []
        self.created: list[Generation] = []
        self.webhook_was_ours: list[bool] = []

    async def create_generation(self, request: GenerationRequest) -> Generation:
        assert self.runtime is not None
        self.requests.append(request)
        made = _generation("gen_made", str(request.tags), int(cast(int, request.seed)))
        self.created.append(made)
        await self.runtime.submit_event(Event.for_generation(made, source="webhook"))
        row = self.runtime.store.event_row(Event.for_generation(made, source="webhook").key)
        assert row is not None
        self.webhook_was_ours.append(row.submitted_by_connector)
        raise GenerationOutcomeUnknownError("the answer was lost")

    async def iter_generations(self) -> AsyncIterator[Generation]:
        for generation in reversed(self.created):
            yield generation


# -- the format ----------------------------------------------------------------------------


def test_rows_existing_journals_hold_read_back_unchanged() -> None:
    finetuning = GenerationIntent.from_json(FINETUNING_ROW)
    assert (finetuning.tags, finetuning.seed, finetuning.duration) == ("lofi", 7, 90)
    assert finetuning.at == 1_760_000_000.25
    assert finetuning.provider == "finetuning"
    assert finetuning.to_json() == FINETUNING_ROW
    tempolor = GenerationIntent.from_json(TEMPOLOR_ROW)
    assert tempolor.reply_ref == "ftconnect:abc:0"
    assert tempolor.provider == "tempolor"
    assert tempolor.to_json() == TEMPOLOR_ROW
    assert tempolor.request_fields() == {}


def test_the_match_key_is_what_the_submitted_generation_carries() -> None:
    intent = GenerationIntent.from_json(FINETUNING_ROW)
    assert generation_match_key(_generation("g1", "lofi", 7)) == intent.match_key
    assert generation_match_key(_generation("g2", "lofi", 8)) != intent.match_key
    assert generation_match_key(_generation("g3", "lofi jazz", 7)) != intent.match_key
    reference = reply_ref_for("abc", 0)
    job = _generation("job", "x", 1, provider="tempolor", tempolor={"replyRef": reference})
    assert generation_match_key(job) == GenerationIntent.tempolor(reference, at=1.0).match_key
    unmarked = _generation("job2", "x", 1, provider="tempolor")
    assert generation_match_key(unmarked) is None


@pytest.mark.parametrize(
    ("row", "says"),
    [
        pytest.param(
            {"tags": "lofi", "parameters": {"bpm": 80}, "seed": 7, "time": 1.5},
            "fields this version does not know: parameters, time",
            id="an-older-shape",
        ),
        pytest.param({"tags": "lofi", "seed": 7}, "no 'at'", id="no-time"),
        pytest.param({"tags": "lofi", "seed": "7", "at": 1.0}, "'seed' is a str", id="seed-text"),
        pytest.param({"seed": 7, "at": 1.0}, "neither a TemPolor replyRef", id="no-tags"),
        pytest.param({"replyRef": "", "at": 1.0}, "'replyRef' is empty", id="empty-ref"),
        pytest.param(
            {"replyRef": "r", "tags": "lofi", "seed": 7, "at": 1.0}, "both", id="both-providers"
        ),
        pytest.param({"in_target_before": ["t1"]}, "in_target_before", id="another-action"),
        pytest.param(["lofi", 7], "not a JSON object but a list", id="a-list"),
    ],
)
def test_any_other_row_is_a_clear_error(row: Any, says: str) -> None:
    with pytest.raises(IntentFormatError, match="cannot be read") as caught:
        GenerationIntent.from_json(row)
    assert says in str(caught.value)
    assert "ftconnect replay" in str(caught.value)


def test_a_malformed_intent_cannot_even_be_made() -> None:
    with pytest.raises(ValueError, match="tags and seed"):
        GenerationIntent(tags="lofi", at=1.0)
    with pytest.raises(ValueError, match="both"):
        GenerationIntent(reply_ref="r", seed=3, at=1.0)


# -- the store keeps it --------------------------------------------------------------------


def test_the_store_keeps_an_intent_and_names_the_step_of_an_unreadable_one(
    tmp_path: Path,
) -> None:
    intent = GenerationIntent.finetuning(
        {"tags": "lofi", "bpm": 80, "lyrics": None, "wait": True}, default_seed=11, at=5.0
    )
    assert intent.request_fields() == {"tags": "lofi", "bpm": 80, "seed": 11}
    with Store.open(tmp_path / "state") as store:
        store.record_event(Event(kind=SCHEDULE, key="s1"), runs=[("r1", "make")])
        assert store.generation_intent("r1", 0) is None
        store.record_intent("r1", 0, intent)
        assert store.intent("r1", 0) == {"tags": "lofi", "bpm": 80, "seed": 11, "at": 5.0}
        assert store.generation_intent("r1", 0) == intent
        store.record_intent("r1", 1, {"tags": "lofi", "seed": 7, "time": 1.5})
        with pytest.raises(IntentFormatError, match=r"^step 1 of run 'r1': .*time"):
            store.generation_intent("r1", 1)


# -- written by the action, kept by the store, recognised by the runtime -------------------


async def test_the_actions_intent_round_trips_and_the_runtime_knows_its_generation(
    tmp_path: Path,
) -> None:
    fake = LostAnswer()
    with Store.open(tmp_path / "state") as store:
        runtime = Runtime(
            parse_config(CONFIG, filename="make.yaml"), cast(FinetuningClient, fake), store=store
        )
        fake.runtime = runtime
        await runtime.submit_event(
            Event(kind=SCHEDULE, key="manual:1", source="test"), only_automation="make"
        )
        await runtime.idle()
        run = store.runs(limit=1)[0]
        journaled = store.generation_intent(run.run_id, 0)
    # What the action journaled is what it sent: the request's tags, parameters and seed.
    assert journaled is not None
    (request,) = fake.requests
    assert journaled.request_fields() == {
        "tags": "rainy piano",
        "duration": 30,
        "bpm": 80,
        "seed": request.seed,
    }
    assert (request.tags, request.duration, request.bpm) == ("rainy piano", 30, 80)
    # The webhook that beat the lost answer was known as this connector's ...
    assert fake.webhook_was_ours == [True]
    assert journaled.match_key == generation_match_key(fake.created[0])
    # ... and the step adopted that generation instead of submitting again.
    assert run.status == "succeeded", run.error
    assert run.steps[0].output is not None
    assert run.steps[0].output["id"] == "gen_made"


@pytest.mark.e2e
async def test_a_resumed_step_with_an_unreadable_intent_fails_clearly_and_submits_nothing(
    sandbox: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(tmp_path / "state") as store:
        # A crash cut the step short after it journaled an intent of an older shape.
        store.record_event(Event(kind=SCHEDULE, key="manual:1"), runs=[("crashed", "make")])
        store.step_started("crashed", 0, "step_1", "generate")
        store.record_intent("crashed", 0, {"tags": "rainy piano", "seed": 7, "time": 1.5})
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            runtime = Runtime(parse_config(CONFIG, filename="make.yaml"), client, store=store)
            await runtime.start()
            try:
                await runtime.idle()
            finally:
                await runtime.stop()
        run = store.run("crashed")
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert "intent cannot be read" in run.error
    assert "fields this version does not know: time" in run.error
    # No second credit on a guess.
    assert [g for g in sandbox.sandbox.generations() if g.prompt == "rainy piano"] == []
    # Said at start too, naming the step, before anything could be matched against it.
    assert "step 0 of run 'crashed'" in caplog.text
