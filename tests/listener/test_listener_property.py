"""Property: whatever arrives, the listener never answers 500, never dies, and records
an event only for a valid terminal payload that came with the right token."""

from __future__ import annotations

import json
from typing import Any

from ft_listener_support import (
    TOKEN,
    Answer,
    Recorder,
    ThreadedListener,
    chunks,
    fixture,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.ingress.webhooks import WebhookListener
from connector.providers.finetuning.models import Generation
from connector.providers.tempolor.models import TempolorJob

HOOKS = ("/hooks/finetuning", "/hooks/tempolor")
EXPECTED_STATUSES = {200, 202, 400, 401, 404, 405, 413}

# Text a client library can put in a URL or a header: no surrogates, no control characters.
_text = st.characters(exclude_categories=("Cs", "Cc"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_text, max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(_text, max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)

_FINETUNING = fixture("webhook_completed.json")
_TEMPOLOR = fixture("tempolor_job_completed.json")
# Values that matter to the checks, mixed with arbitrary JSON.
_interesting = st.sampled_from(
    ["completed", "failed", "processing", "pending", "", "gen_1", 0, 10, 30, None, 90.3, "abc"]
)


@st.composite
def near_valid(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A real payload with a few fields dropped or replaced: valid often, broken often."""
    keys = [*base, "provider", "extra"]
    dropped = draw(st.sets(st.sampled_from(list(base)), max_size=2))
    changed = draw(st.dictionaries(st.sampled_from(keys), _interesting | json_values, max_size=3))
    return {**{k: v for k, v in base.items() if k not in dropped}, **changed}


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    near_valid(_FINETUNING).map(lambda value: json.dumps(value).encode()),
    near_valid(_TEMPOLOR).map(lambda value: json.dumps(value).encode()),
)
tokens = st.just([TOKEN]) | st.one_of(
    st.sampled_from([[], [TOKEN, TOKEN], [TOKEN + "x"], [TOKEN[:-1]], [TOKEN.upper()], ["ключ"]]),
    st.lists(st.text(_text, max_size=30), max_size=2),
)
other_params = st.lists(
    st.tuples(
        st.text(_text, min_size=1, max_size=10).filter(lambda name: name != "token"),
        st.text(_text, max_size=20),
    ),
    max_size=3,
)
# Latin-1 and a little beyond: aiohttp sends it as UTF-8, the server's parser decides.
_header_text = st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_categories=["Cc"])
# Header names a sender might play with; hop-by-hop and framing headers stay the client's.
headers = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "User-Agent",
            "Content-Encoding",
            "Accept",
            "Accept-Encoding",
            "Authorization",
            "X-Forwarded-For",
            "X-Anything",
        ]
    ),
    st.sampled_from(["application/json", "gzip", "deflate", "br", "identity", "*/*"])
    | st.text(_header_text, max_size=40),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One request: mostly a delivery to a hook, its body often close to that hook's payload."""
    deliveries = st.sampled_from([("POST", path) for path in HOOKS])
    method, path = draw(
        deliveries
        | deliveries
        | st.tuples(
            # No HEAD: aiohttp's parser-level 400 (say, for `Content-Encoding: br` without
            # Brotli) carries a body even for HEAD, which the client then refuses to parse.
            st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
            st.sampled_from([*HOOKS, "/healthz", "/", "/hooks", "/hooks/x"]),
        )
    )
    base = _TEMPOLOR if path == "/hooks/tempolor" else _FINETUNING
    body = draw(near_valid(base).map(lambda value: json.dumps(value).encode()) | bodies)
    return {
        "method": method,
        "path": path,
        "tokens": draw(tokens),
        "params": draw(other_params),
        "headers": draw(headers),
        "body": body,
        "chunked": draw(st.booleans()),
    }


def is_recordable(path: str, body: bytes) -> bool:
    """What the listener must accept, decided without it: a valid, final payload."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    try:
        if path == "/hooks/finetuning":
            data = {k: v for k, v in data.items() if k != "provider"}
            generation = Generation.model_validate(data)
            return bool(generation.id.strip()) and generation.is_terminal
        job = TempolorJob.model_validate(data)
    except ValidationError:
        return False
    return bool(job.job_id and job.job_id.strip()) and job.is_final


def _encoded(request: dict[str, Any]) -> bool:
    # A Content-Encoding makes aiohttp decode the body first, which fails for plain JSON.
    return "Content-Encoding" in request["headers"]


def send(served: ThreadedListener, request: dict[str, Any]) -> Answer:
    params = [*request["params"], *(("token", token) for token in request["tokens"])]
    body: bytes = request["body"]
    return served.request(
        request["method"],
        request["path"],
        params=params,
        headers=request["headers"],
        # chunks() is consumed on the server's loop, where the request runs.
        data=chunks(body, size=64) if request["chunked"] else body,
    )


def test_no_input_produces_a_500_or_an_unearned_event() -> None:
    recorder = Recorder()
    listener = WebhookListener(token=TOKEN, record=recorder, health=lambda: {"polls": 1})

    # One server for the whole run, on its own loop in a background thread: see
    # ThreadedListener for why the property is driven synchronously.
    with ThreadedListener(listener) as served:

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(request=requests())
        def check(request: dict[str, Any]) -> None:
            before = len(recorder.events)

            answer = send(served, request)

            recorded = len(recorder.events) - before
            assert answer.status in EXPECTED_STATUSES, answer
            assert recorded in (0, 1)
            assert (answer.status == 200 and request["path"] in HOOKS) == (recorded == 1)
            is_hook_post = request["method"] == "POST" and request["path"] in HOOKS
            if is_hook_post and request["tokens"] != [TOKEN]:
                if answer.status == 400:
                    # Only aiohttp's parser answers before the token check: for a
                    # Content-Encoding it cannot decode at all (br without Brotli).
                    assert _encoded(request)
                else:
                    assert answer.status == 401
                    assert json.loads(answer.body) == {"error": "unauthorized"}
            if recorded:
                assert is_hook_post
                assert request["tokens"] == [TOKEN]
                assert is_recordable(request["path"], request["body"])
                assert recorder.events[-1].source == "webhook"
            elif is_hook_post and answer.status == 400 and not _encoded(request):
                assert not is_recordable(request["path"], request["body"])

        check()

        # Alive after everything, and still recording.
        assert served.request("GET", "/healthz").status == 200
        final = served.request(
            "POST",
            "/hooks/finetuning",
            params={"token": TOKEN},
            data=json.dumps({**_FINETUNING, "id": "gen_after_the_storm"}).encode(),
        )
        assert final.status == 200
