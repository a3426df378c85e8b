"""The redaction registry and scrubbers: what is hidden, in which spellings, and what is kept."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from connector.journal.codec import encode_json
from connector.providers.finetuning.models import Generation
from connector.providers.tempolor.models import TempolorJob
from connector.redaction import (
    REDACTED,
    SECRETS,
    ScrubFilter,
    SecretSet,
    finite,
    register_secret,
    strip_url_secrets,
)

TOKEN = "tok/en+with=odd~chars_0123456789"


@pytest.fixture
def registry() -> Iterator[SecretSet]:
    before = SECRETS.values()
    yield SECRETS
    SECRETS.discard_all()
    SECRETS.update(before)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/hooks/finetuning?token=abc", "https://h.example/hooks/finetuning"),
        ("https://user:pw@h.example:8443/p?a=1#frag", "https://h.example:8443/p"),
        ("https://h.example/plain", "https://h.example/plain"),
        (None, None),
        ("", ""),
    ],
)
def test_strip_url_secrets_keeps_where_and_drops_what_may_be_a_credential(
    url: str | None, expected: str | None
) -> None:
    assert strip_url_secrets(url) == expected


def test_echoed_webhook_urls_are_stripped_as_models_parse_them() -> None:
    generation = Generation.model_validate(
        {"id": "g1", "status": "completed", "webhook": f"https://h/hooks?token={TOKEN}"}
    )
    assert generation.webhook == "https://h/hooks"
    job = TempolorJob.model_validate(
        {"job_id": "j1", "status": 30, "replyUrl": f"https://h/hooks/tempolor?token={TOKEN}"}
    )
    assert job.reply_url == "https://h/hooks/tempolor"
    assert TOKEN not in job.to_generation().model_dump_json()


def test_every_spelling_of_a_registered_secret_is_scrubbed(registry: SecretSet) -> None:
    register_secret(TOKEN)
    for spelling in (TOKEN, quote(TOKEN, safe=""), quote_plus(TOKEN, safe="")):
        assert registry.scrub_text(f"before {spelling} after") == f"before {REDACTED} after"
    nested = {"a": [f"x{TOKEN}y", {"k": TOKEN}], TOKEN: 1.5, "n": math.nan, "i": 3}
    assert registry.scrub(nested) == {
        "a": [f"x{REDACTED}y", {"k": REDACTED}],
        REDACTED: 1.5,
        "n": None,
        "i": 3,
    }


def test_short_and_non_text_values_are_not_registered(registry: SecretSet) -> None:
    size = len(registry)
    for value in ("abc", "", "       ", None, 12345678):
        register_secret(value)
    assert len(registry) == size
    assert registry.scrub_text("abc stays") == "abc stays"


def test_the_journal_encoding_is_strict_json_without_secrets(registry: SecretSet) -> None:
    register_secret(TOKEN)
    text = encode_json({"url": f"http://x/?token={TOKEN}", "bad": [math.inf, -math.inf]})
    assert TOKEN not in text
    assert "Infinity" not in text
    assert text == '{"url":"http://x/?token=<redacted>","bad":[null,null]}'


def test_finite_turns_non_finite_floats_into_null_at_any_depth() -> None:
    assert finite({"a": [math.nan, (1.0, math.inf)], "b": "x"}) == {
        "a": [None, [1.0, None]],
        "b": "x",
    }


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks(registry: SecretSet) -> None:
    register_secret(TOKEN)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling %s", f"https://h/?token={quote(TOKEN, safe='')}")
        try:
            raise ValueError(f"bad url https://h/?token={TOKEN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records
    assert all(TOKEN not in r and quote(TOKEN, safe="") not in r for r in records)
    assert "ValueError" in records[1]


def test_printed_json_is_strict_and_secret_free(registry: SecretSet) -> None:
    register_secret(TOKEN)
    from datetime import UTC, datetime

    from connector.redaction import dumps

    when = datetime(2026, 1, 2, tzinfo=UTC)
    text = dumps({"duration": math.nan, "at": when, "hook": f"https://h/?token={TOKEN}"})
    assert text == (
        '{"duration": null, "at": "2026-01-02 00:00:00+00:00", '
        '"hook": "https://h/?token=<redacted>"}'
    )


def test_lower_case_hex_and_an_encoded_tilde_are_caught_too(registry: SecretSet) -> None:
    import re

    register_secret(TOKEN)

    def lower_hex(text: str) -> str:
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)

    java = quote_plus(TOKEN, safe="").replace("~", "%7E")  # as Java's URLEncoder writes it
    for spelling in (lower_hex(quote(TOKEN, safe="")), java, lower_hex(java)):
        assert spelling != TOKEN
        assert registry.scrub_text(f"x {spelling} y") == f"x {REDACTED} y"


def test_what_a_template_renders_is_scrubbed_but_literal_options_are_kept(
    registry: SecretSet,
) -> None:
    from connector.automation.templates import Template, render

    register_secret(TOKEN)
    options = {
        "artist": Template("{{ trigger.error }}"),  # event data quoting the token
        "secret": TOKEN,  # a literal option (notify_webhook's own secret) stays usable
    }
    rendered = render(options, {"trigger": {"error": f"hook ?token={TOKEN} unreachable"}})
    assert rendered == {"artist": f"hook ?token={REDACTED} unreachable", "secret": TOKEN}


def test_the_lines_run_prints_as_things_happen_are_scrubbed(registry: SecretSet) -> None:
    import io
    from types import SimpleNamespace

    from connector.cli.watch import watch
    from connector.events import Event

    register_secret(TOKEN)
    runtime = SimpleNamespace(event_listeners=[], step_listeners=[], run_listeners=[])
    out = io.StringIO()
    watch(runtime, out)  # type: ignore[arg-type]
    generation = Generation.model_validate(
        {"id": "g1", "status": "failed", "errorMessage": f"cannot reach ?token={TOKEN}"}
    )
    for listener in runtime.event_listeners:
        listener(Event.for_generation(generation, source="poll"))
    assert "g1" in out.getvalue()
    assert TOKEN not in out.getvalue()
    assert REDACTED in out.getvalue()
