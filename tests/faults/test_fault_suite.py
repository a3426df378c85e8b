"""The fault suite: the real `ftconnect run` process against a faulty sandbox, killed.

Two scenarios share the sandbox, the automations and the ground-truth checks.

The first, from the issue ("200 generations with 10% failing, webhook listener
stopped for a third of them, the runtime SIGKILLed twice, the sandbox injecting
10% 5xx and dropped connections and one commit-then-fail create"):

* **What the runtime does.** N "request" tracks (FAULT_SUITE_GENERATIONS, default
  200) appear in the account over the run, as another app would make them (no
  credit, no webhook: only the poller sees them). Automation `make` reacts to
  each one's `track_completed` with a `generate` step (one credit each), tags
  `fault <request prompt>`; every tenth request carries the sandbox's `#fail`
  marker, so 10% of the generations end `failed`. Automation `file` reacts to
  each completed generation of ours with three steps whose effects the sandbox
  and the test can count: `add_to_playlist` (Focus Beats), `download_track`
  (into a library folder) and `notify_webhook` (to a receiver in this test).
  Automation `failed` reacts to each failed generation of ours with
  `notify_webhook`. So the generations intended are exactly N, and the effects
  expected follow from the sandbox's ground truth.
* **Three lives of one journal.** `ftconnect run FILE` runs as a real
  subprocess three times on the same `state_dir`. Life A is configured with a
  `webhook.public_url` on a port where nothing listens: every webhook for the
  generations it submits (about a third) is lost and only the poller can catch
  their completions. A is SIGKILLed mid-flood of completions (a sixth of the
  generations ended, `file` runs in flight). Life B (webhooks to its own
  listener) is SIGKILLed while a `file` run is between its steps, so a chain is
  cut in the middle, preferably while a `generate` submission is in flight too.
  Requests keep coming while a life is down, and completions then are lost as
  webhooks. Life C runs until everything settled, then gets SIGTERM.
* **Faults.** The sandbox answers 5% of the API's reads (GET and the playlist
  bulk POSTs) with a 500/503 and drops another 5% without an answer (10% of
  requests faulted in all); during life B, one `POST /v1/generations` is
  committed (credit spent, generation runs) but answered 500. Creates get no
  other fault: the client rightly never retries a create whose outcome is
  unknown, and a create that surely did not take effect spends no credit, so
  faulting more of them would only make runs fail, not test exactly-once. The
  audio host is not faulted either (a CDN in real life). The receiver loses
  its answer (after recording the message) for about 5% of first deliveries, so
  `notify_webhook` delivers those twice with the same `webhook-id`; it takes
  0.1 s per delivery, like a real receiver, which keeps chains in flight.
* **Promises checked from ground truth.** Every terminal generation the runtime
  created, and every request, fired its trigger exactly once (journal events,
  and the `trigger ...` lines the three lives printed); every event ran each
  matching automation exactly once; every step took effect exactly once (the
  playlist holds each completed generation once, the library one file per
  completed generation and no `.part`, the receiver exactly one message id per
  expected (run, step), repeats of one id counting as one effect, as Standard
  Webhooks receivers dedupe); credits spent equal the generations intended (the
  `make` runs with a journaled intent), the commit-then-fail create not
  resubmitted. The figures are printed at the end.

Test tuning, through the file's own settings: the real service's budgets (10
creates and 60 reads a minute) and a 1 s retry backoff would make N=200 take
over twenty minutes, so the `finetuning:` section raises the client's budgets
(`reads_per_window`, `generations_per_window`) and lowers `retry_backoff` to
0.05 s; the retry policy and everything else are the product's own. The
subprocess is the real `python -m connector.cli run FILE`.

The second, from the issue ("two daemons started on one state_dir (the second
refused), then 20 SIGKILL/restart cycles of the daemon during a flood:
fired/expected 1.000, credits spent/intended 1.000, zero secrets in any byte
written or sent"):

* **Secrets in play.** The Finetuning key, an explicit `webhook.token` (with
  `/+=`, which URLs encode) and a `whsec_` signing secret for the notifications
  come through `!secret` from a `secrets.yaml` beside the file. The listener
  has no public_url: the sandbox is on loopback, so the connector hands it the
  local hook URL, token included, and the sandbox echoes that URL back in every
  generation it returns: the very path by which a token would leak into the
  journal, the sidecars and the notification bodies.
* **One daemon per state_dir.** Daemon 1 runs; a second `ftconnect run` of the
  same file must exit 1 at once, naming the state_dir and daemon 1's pid, and
  daemon 1 carries on (still the lock's holder, still doing its work).
* **20 SIGKILL/restart cycles during a flood.** FAULT_SUITE_CYCLE_GENERATIONS
  requests (default 100) are released a share per cycle, some while the daemon
  is down. Each cycle kills the daemon at a different kind of moment: a `file`
  chain between its steps, a `generate` submission in flight, both, right after
  start (while it resumes what the last kill cut), or after a varied delay;
  each wait for its moment is bounded, the kill happens anyway. Each restart is
  a fresh process on the same state_dir and must start at once (the kernel
  drops the lock of a killed holder). Midway, one create is committed then
  answered 500. A last life runs until everything settled, then gets SIGTERM.
* **Promises.** The same as the first scenario (fired/expected and credits
  spent/intended printed as ratios, both exactly 1.000, zero duplicates) and:
  no secret, in any spelling a URL gives it, in any byte of the state_dir
  (looked at after every kill too, before a restart could tidy the WAL), of
  the library (MP3s and JSON sidecars), of what the receiver got (request
  line, headers, body) or of any life's output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from aiohttp import web
from yarl import URL

from connector.delivery.tags import read_identity
from connector.journal.lock import holder
from connector.journal.runs import RunRow
from connector.journal.store import Store
from connector.sandbox import AccountConfig, FaultRule, SandboxConfig, SandboxHandle, run_sandbox

if TYPE_CHECKING:
    from connector.sandbox import Sandbox

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

GENERATIONS = int(os.environ.get("FAULT_SUITE_GENERATIONS", "200"))
FAIL_EVERY = 10  # request n with n % FAIL_EVERY == FAIL_EVERY - 1 asks for a failing generation
ACCOUNT = "Demo User"
PLAYLIST = "Focus Beats"
WAVE = max(1, GENERATIONS // 40)  # requests released per wave
WAVE_PAUSE = 0.1  # seconds between waves
READ_FAULTS = [
    FaultRule(route="GET /v1/*", error_rate=0.05, drop_rate=0.05),
    FaultRule(route="POST /v1/playlists/*", error_rate=0.05, drop_rate=0.05),
]
RECEIVER_LATENCY = 0.1  # seconds; keeps chains in flight long enough to be cut
SETTLE_TIMEOUT = 90.0  # seconds for life C to finish everything (a pass takes far less)

# The second scenario: requests over all cycles, the kills, how long a cycle waits for its moment.
CYCLE_GENERATIONS = int(os.environ.get("FAULT_SUITE_CYCLE_GENERATIONS", "100"))
CYCLES = 20
MOMENTS = ("chain", "generate", "startup", "both", "anytime")  # where cycles kill, in turn
MOMENT_WAIT = 2.0  # seconds at most a cycle waits for its moment before killing anyway
DOWN_PAUSE = 0.3  # seconds every other cycle stays down: completions then are lost as webhooks
REFUSAL_TIMEOUT = 10.0  # seconds for the second daemon to give up (it takes about one)

# -- helpers ----------------------------------------------------------------------------


async def eventually(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05
) -> bool:
    """Poll `predicate()` (state in another component or process) until it holds or time is up."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        if predicate():
            return True
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    return predicate()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_prompt(n: int) -> str:
    fail = " #fail" if n % FAIL_EVERY == FAIL_EVERY - 1 else ""
    return f"request {n:05d}{fail}"


def ours(truth: Sandbox) -> list[Any]:
    """The generations the connector made (the requests are seeded: another app's)."""
    return [g for g in truth.generations(ACCOUNT) if not g.seeded]


@dataclass
class Flood:
    """The requests another app makes, `wave` at a time; `released` so far, in order."""

    truth: Sandbox
    n: int
    wave: int
    released: int = 0

    async def release(self, upto: int) -> None:
        for _ in range(self.n):
            if self.released >= min(upto, self.n):
                return
            for _ in range(min(self.wave, upto - self.released)):
                self.truth.add_track(ACCOUNT, prompt=request_prompt(self.released), duration=5)
                self.released += 1
            await asyncio.sleep(WAVE_PAUSE)


def in_flight(store: Store) -> set[str]:
    """What the running life is in the middle of, from its journal."""
    found = set()
    for run in store.unfinished_runs():
        found.add(run.automation_id)
        for step in run.steps:
            if step.status == "running":
                found.add(f"{run.automation_id}:{step.step_id}")
                if step.step_index >= 1:
                    found.add(f"{run.automation_id}:chain")
    return found


def settled(store: Store, truth: Sandbox, n: int) -> bool:
    """Every request made its generation, every generation ended and fired, no run open."""
    runs = store.runs(limit=100 * n)
    made = [r for r in runs if r.automation_id == "make" and r.status != "running"]
    generations = ours(truth)
    return (
        len(made) >= n
        and all(not g.in_progress for g in generations)
        and all(store.has_event(f"finetuning:{g.id}:{g.status}") for g in generations)
        and not store.unfinished_runs()
    )


def steps_cut(batch: Iterable[RunRow]) -> Counter[str]:
    """`automation/step` of every step a kill left running."""
    return Counter(
        f"{r.automation_id}/{s.step_id}" for r in batch for s in r.steps if s.status == "running"
    )


@dataclass
class Delivery:
    msg_id: str
    automation: str | None
    generation_id: str | None
    answered: bool


@dataclass
class Receiver:
    """The notify_webhook target: records every delivery; loses ~5% of first answers.

    `raw` keeps each request whole (request line, headers, body) for the secret search.
    """

    deliveries: list[Delivery] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        head = f"{request.method} {request.raw_path}\n" + "".join(
            f"{name}: {value}\n" for name, value in request.headers.items()
        )
        self.raw.append(head.encode() + b"\n" + data)
        body = json.loads(data)
        await asyncio.sleep(RECEIVER_LATENCY)  # a real receiver takes a moment
        msg_id = request.headers.get("webhook-id", "")
        first = all(d.msg_id != msg_id for d in self.deliveries)
        generation = (body.get("trigger") or {}).get("generation") or {}
        lose_answer = first and zlib.crc32(msg_id.encode()) % 20 == 0
        self.deliveries.append(
            Delivery(msg_id, body.get("automation"), generation.get("id"), not lose_answer)
        )
        if lose_answer and request.transport is not None:
            # The message is taken (the effect happened) but the sender never hears so.
            request.transport.close()
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        receiver.port = int(runner.addresses[0][1])
        yield receiver
    finally:
        await runner.cleanup()


def config_document(
    sandbox: SandboxHandle,
    state_dir: Path,
    *,
    library: Path,
    listen_port: int,
    receiver_url: str,
    public_url: str | None,
) -> dict[str, Any]:
    """The automations file of both scenarios, as the mapping `yaml.safe_dump` writes."""
    webhook: dict[str, Any] = {"listen": f"127.0.0.1:{listen_port}"}
    if public_url is not None:
        webhook["public_url"] = public_url

    def notify() -> dict[str, Any]:
        return {"id": "notify", "action": "notify_webhook", "url": receiver_url, "timeout": 5}

    ours = {"only_submitted_by_connector": True, "tags_contain": "fault"}
    return {
        "finetuning": {
            "api_key": sandbox.api_key,
            "base_url": sandbox.url,
            # Budgets raised and backoff shortened so 200 generations fit in seconds.
            "reads_per_window": 10000,
            "generations_per_window": 10000,
            "retry_backoff": 0.05,
        },
        "webhook": webhook,
        "poll": {"idle_interval": 0.2, "active_interval": 0.1},
        "state_dir": str(state_dir),
        "runtime": {"max_concurrent_runs": 20},
        "automations": [
            {
                "id": "make",
                "triggers": [{"trigger": "track_completed", "tags_match": "^request [0-9]+"}],
                "actions": [
                    {
                        "id": "generate",
                        "action": "generate",
                        "tags": "fault {{ trigger.generation.tags }}",
                        "duration": 5,
                    }
                ],
            },
            {
                "id": "file",
                "triggers": [{"trigger": "track_completed", **ours}],
                "actions": [
                    {
                        "id": "playlist",
                        "action": "add_to_playlist",
                        "playlist": PLAYLIST,
                        "tracks": "{{ trigger.generation.id }}",
                    },
                    {"id": "library", "action": "download_track", "library": str(library)},
                    notify(),
                ],
            },
            {
                "id": "failed",
                "triggers": [{"trigger": "generation_failed", **ours}],
                "actions": [notify()],
            },
        ],
    }


def write_config(
    path: Path,
    sandbox: SandboxHandle,
    *,
    library: Path,
    listen_port: int,
    receiver_url: str,
    public_url: str | None,
) -> None:
    document = config_document(
        sandbox,
        path.parent / "state",
        library=library,
        listen_port=listen_port,
        receiver_url=receiver_url,
        public_url=public_url,
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


class Life:
    """One `ftconnect run` process, its output in a log file."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self._handle: IO[bytes] | None = None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    async def spawn(self) -> asyncio.subprocess.Process:
        """Start the process; `start()` also waits until it runs its automations."""
        self._handle = self.log.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector.cli",
            "run",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._handle,
            stderr=asyncio.subprocess.STDOUT,
        )
        return self.process

    async def start(self) -> None:
        process = await self.spawn()
        started = await eventually(
            lambda: "Running 3 automation" in self.output() or process.returncode is not None,
            timeout=30,
        )
        assert started, f"life {self.name} did not start:\n{self.output()[-3000:]}"
        assert process.returncode is None, f"life {self.name} exited:\n{self.output()[-3000:]}"

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self._close()

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 30)
        self._close()
        return code

    async def cleanup(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def trigger_lines(text: str) -> Iterator[tuple[str, str]]:
    """(kind, generation id) of every `trigger <kind>: <id> ...` line a life printed."""
    for line in text.splitlines():
        if line.startswith("trigger "):
            parts = line.split()
            if len(parts) >= 3:
                yield parts[1].rstrip(":"), parts[2]


def spellings(secret: str) -> set[bytes]:
    """A secret as bytes, raw and in every form a URL (yarl's and urllib's) gives it."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        URL.build(query={"token": secret}).raw_query_string.removeprefix("token="),
    }
    return {form.encode() for form in forms}


def secret_hits(blob: bytes, secret_values: dict[str, str]) -> list[str]:
    """The names of the secrets found in `blob`, in any spelling."""
    return [
        name
        for name, value in secret_values.items()
        if any(form in blob for form in spellings(value))
    ]


def files_leaking(root: Path, secret_values: dict[str, str]) -> dict[str, list[str]]:
    """Every file under `root` holding a secret, with the secrets it holds."""
    leaks: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        with contextlib.suppress(FileNotFoundError):  # a -wal or -shm may go while we look
            found = secret_hits(path.read_bytes(), secret_values) if path.is_file() else []
            if found:
                leaks[str(path.relative_to(root.parent))] = found
    return leaks


# -- the ground truth -------------------------------------------------------------------


@dataclass
class Verdict:
    """A scenario's figures and promises, judged from the sandbox's truth and the journal."""

    lines: list[str]
    checks: dict[str, bool]
    details: dict[str, Any]
    fired: int  # events journaled, every firing counted (duplicates and strays included)
    expected: int  # events that should have fired
    spent: int  # credits the account lost
    terminal_by_source: Counter[str]  # terminal events of our generations, by who saw them

    def figures(self) -> str:
        return "\n".join(self.lines)

    def assert_kept(self) -> None:
        """Every promise is checked, and all the broken ones are reported together."""
        broken = [promise for promise, kept in self.checks.items() if not kept]
        assert not broken, f"{self.figures()}\nbroken promises: {broken}\ndetails: {self.details}"


def judge(
    *,
    n: int,
    truth: Sandbox,
    state_dir: Path,
    library: Path,
    receiver: Receiver,
    outputs: Iterable[str],
    title: str,
    lives_note: str,
    elapsed: float,
    dead_port: int | None = None,
) -> Verdict:
    """Count what happened against what should have: events, runs, effects, credits."""
    with Store.open(state_dir) as journal:
        events = [e for e in journal.events(limit=100 * n) if e.source != "seed"]
        runs = journal.runs(limit=100 * n)
        intents = {r.run_id: journal.intent(r.run_id, 0) for r in runs if r.automation_id == "make"}
    generations = ours(truth)
    requests = [g for g in truth.generations(ACCOUNT) if g.seeded and g.prompt.startswith("req")]
    completed = {g.id for g in generations if g.status == "completed"}
    failed = {g.id for g in generations if g.status == "failed"}
    expected_events = {f"finetuning:{g.id}:completed" for g in requests} | {
        f"finetuning:{g.id}:{g.status}" for g in generations
    }
    fired = Counter(e.key for e in events)
    printed = Counter(pair for output in outputs for pair in trigger_lines(output))
    runs_per_slot = Counter((r.event_key, r.automation_id) for r in runs)
    automations_of = {
        **{f"finetuning:{g.id}:completed": "make" for g in requests},
        **{f"finetuning:{i}:completed": "file" for i in completed},
        **{f"finetuning:{i}:failed": "failed" for i in failed},
    }
    wrong_runs = [
        (r.event_key, r.automation_id, r.status)
        for r in runs
        if automations_of.get(r.event_key) != r.automation_id or r.status != "succeeded"
    ]
    missing_runs = sorted(
        key for key, automation in automations_of.items() if (key, automation) not in runs_per_slot
    )

    playlist = next(p for p in truth.playlists(ACCOUNT) if p.name == PLAYLIST)
    in_playlist = Counter(t for t in playlist.track_ids if t in completed | failed)
    files = [p for p in library.rglob("*") if p.is_file()]
    parts = [p for p in files if p.name.endswith(".part")]
    mp3s = [p for p in files if p.suffix == ".mp3"]
    filed = Counter(read_identity(p)[0] for p in mp3s)
    notify_runs = {
        f"msg_{r.run_id}_notify": r
        for r in runs
        if r.automation_id in ("file", "failed") and r.event_key in automations_of
    }
    received = Counter(d.msg_id for d in receiver.deliveries)
    wrong_messages = [
        d.msg_id
        for d in receiver.deliveries
        if d.msg_id not in notify_runs
        or notify_runs[d.msg_id].event_key.split(":")[1] != d.generation_id
        or notify_runs[d.msg_id].automation_id != d.automation
    ]

    intended = sum(1 for intent in intents.values() if intent is not None)
    spent = truth.credits_spent(ACCOUNT)
    prompts = Counter(g.prompt for g in generations)
    commits = truth.failed_commits
    made_ids = Counter(
        str((r.steps[0].output or {}).get("id"))
        for r in runs
        if r.automation_id == "make" and r.steps and r.steps[0].status == "succeeded"
    )

    ours_ids = completed | failed
    attempts = [a for a in truth.webhook_attempts if a.generation_id in ours_ids]
    delivered = [a for a in attempts if a.status == 200]
    terminal_events = [e for e in events if e.key.split(":")[1] in ours_ids]
    by_source = Counter(e.source for e in terminal_events)
    faults = Counter(r.fault for r in truth.requests if r.fault)
    resumed = sum(1 for r in runs for s in r.steps if s.attempt > 1)
    if dead_port is None:
        lost = f"{len(attempts) - len(delivered)} lost (while down)"
    else:
        to_dead = [a for a in attempts if f":{dead_port}/" in a.url]
        lost = (
            f"{len(attempts) - len(delivered)} lost ({len(to_dead)} to the dead URL of life A, "
            f"{len(attempts) - len(delivered) - len(to_dead)} while down)"
        )

    duplicates = {
        "events": sum(c - 1 for c in fired.values() if c > 1),
        "trigger lines": sum(c - 1 for c in printed.values() if c > 1),
        "runs": sum(c - 1 for c in runs_per_slot.values() if c > 1),
        "playlist": sum(c - 1 for c in in_playlist.values() if c > 1),
        "files": sum(c - 1 for c in filed.values() if c > 1),
        "credits": max(0, spent - intended),
        "generations": sum(c - 1 for c in prompts.values() if c > 1),
    }
    effects_expected = 3 * len(completed) + len(failed)
    effects_done = (
        len(set(in_playlist) & completed)
        + len(set(filed) & completed)
        + len(set(received) & set(notify_runs))
    )
    lines = [
        "",
        f"{title}: {n} requests, {len(generations)} generations "
        f"({len(completed)} completed, {len(failed)} failed), {lives_note}, "
        f"{elapsed:.1f} s",
        f"  events fired/expected:    {len(set(fired) & expected_events)}/"
        f"{len(expected_events)} (unexpected {len(set(fired) - expected_events)})",
        f"  runs succeeded/expected:  "
        f"{sum(1 for r in runs if r.status == 'succeeded')}/{len(automations_of)} "
        f"(wrong or failed {len(wrong_runs)}, missing {len(missing_runs)})",
        f"  steps effective/expected: {effects_done}/{effects_expected} "
        f"(playlist {len(set(in_playlist) & completed)}/{len(completed)}, "
        f"library {len(set(filed) & completed)}/{len(completed)}, "
        f"notify {len(set(received) & set(notify_runs))}/{len(notify_runs)}); "
        f".part files left {len(parts)}; "
        f"steps resumed after a kill: {resumed}",
        f"  duplicates:               {duplicates}",
        f"  credits spent/intended:   {spent}/{intended} (commit-then-fail creates "
        f"{len(commits)}, reconciled without a second credit: "
        f"{sum(1 for c in commits if made_ids.get(c.generation_id) == 1)})",
        f"  webhooks (sandbox->us):   {len(attempts)} sent, {len(delivered)} delivered, "
        f"{lost}; terminal events "
        f"via webhook {by_source['webhook']}, caught by the poller {by_source['poll']}",
        f"  faults injected:          {dict(faults)}; notify answers lost "
        f"{sum(1 for d in receiver.deliveries if not d.answered)}, redeliveries "
        f"{len(receiver.deliveries) - len(received)}",
    ]
    checks = {
        "every request was made": len(requests) == n,
        "no event beyond the expected ones": set(fired) <= expected_events,
        "every expected event fired (none lost)": expected_events <= set(fired),
        "no event fired twice (journal, printed trigger lines)": duplicates["events"] == 0
        and duplicates["trigger lines"] == 0,
        "each event ran each matching automation once": duplicates["runs"] == 0,
        "no matching automation missed an event": not missing_runs,
        "every run matched its event and succeeded": not wrong_runs,
        "the playlist holds every completed generation": set(in_playlist) == completed,
        "the playlist holds none twice": duplicates["playlist"] == 0,
        "the library holds every completed generation": set(filed) == completed,
        "the library holds one file per generation": duplicates["files"] == 0
        and len(mp3s) == len(completed),
        "no .part file is left in the library": not parts,
        "every notification is for its run's generation": not wrong_messages,
        "one message id per expected (run, notify step)": set(received) == set(notify_runs)
        and len(notify_runs) == len(completed) + len(failed),
        "every generation intended is journaled": intended == n,
        "credits spent equal generations intended": spent == intended == len(generations),
        "no generation submitted twice": duplicates["generations"] == 0
        and sorted(made_ids.elements()) == sorted(g.id for g in generations),
        "the commit-then-fail create was reconciled, not resubmitted": len(commits) == 1
        and made_ids[commits[0].generation_id] == 1,
        "10% of the generations failed": len(failed) == n // FAIL_EVERY,
    }
    details = {
        "lost events": sorted(expected_events - set(fired))[:10],
        "runs wrong or failed": wrong_runs[:10],
        "runs missing": missing_runs[:10],
        "left .part files": [str(p.relative_to(library)) for p in parts][:10],
        "wrong messages": wrong_messages[:10],
        "duplicate events": [key for key, count in fired.items() if count > 1][:10],
    }
    return Verdict(
        lines,
        checks,
        details,
        fired=sum(fired.values()),
        expected=len(expected_events),
        spent=spent,
        terminal_by_source=by_source,
    )


# -- the scenarios ----------------------------------------------------------------------


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    config = SandboxConfig(
        pending_delay=0.05,
        processing_delay=0.4,
        read_limit=1_000_000,
        generation_limit=1_000_000,
        max_in_progress=100_000,
        webhook_timeout=5.0,
        accounts=[
            AccountConfig(
                name=ACCOUNT,
                email="demo@sandbox.local",
                monthly_generations=max(GENERATIONS, CYCLE_GENERATIONS) * 2 + 100,
            )
        ],
    )
    async with run_sandbox(config) as handle:
        yield handle


async def test_fault_suite_every_event_once_every_effect_once_every_credit_intended(
    sandbox: SandboxHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = sandbox.sandbox
    library = tmp_path / "library"
    library.mkdir()
    config = tmp_path / "automations.yaml"
    listen_port, dead_port = free_port(), free_port()
    lives = [Life(name, config, tmp_path / f"life-{name}.log") for name in "ABC"]
    n = GENERATIONS
    flood = Flood(truth, n, WAVE)

    store: Store | None = None

    def now_in_flight() -> set[str]:
        assert store is not None
        return in_flight(store)

    async with serve(Receiver()) as receiver:
        interrupted: list[list[RunRow]] = []
        background: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            truth.set_faults(READ_FAULTS)
            # Life A: its webhooks go to a dead port; SIGKILL mid-flood of completions.
            write_config(
                config,
                sandbox,
                library=library,
                listen_port=listen_port,
                receiver_url=receiver.url,
                public_url=f"http://127.0.0.1:{dead_port}/hooks/finetuning",
            )
            await lives[0].start()
            store = Store.open(tmp_path / "state")
            flooding_task = asyncio.create_task(flood.release(n // 3))
            background.append(flooding_task)
            flooding = await eventually(
                lambda: (
                    sum(not g.in_progress for g in ours(truth)) >= max(2, n // 6)
                    and "file" in now_in_flight()
                ),
                timeout=30,
                interval=0.01,
            )
            assert flooding, f"life A filed no completions:\n{lives[0].output()[-3000:]}"
            await lives[0].kill()
            interrupted.append(store.unfinished_runs())
            await flooding_task
            await flood.release(n // 3 + max(1, n // 20))  # requests made while it is down
            await asyncio.sleep(0.5)  # completions while down: their webhooks are lost

            # Life B: webhooks to its listener; one create committed then answered 500;
            # SIGKILL while a `file` run is between its steps.
            write_config(
                config,
                sandbox,
                library=library,
                listen_port=listen_port,
                receiver_url=receiver.url,
                public_url=None,
            )
            await lives[1].start()
            truth.set_faults([*READ_FAULTS, FaultRule("POST /v1/generations", commit_then_fail=1)])
            flooding_task = asyncio.create_task(flood.release(2 * n // 3))
            background.append(flooding_task)

            # Best: a chain cut between its steps while a submission is in flight too.
            cut = await eventually(
                lambda: {"file:chain", "make:generate"} <= now_in_flight(),
                timeout=5,
                interval=0.01,
            ) or await eventually(
                lambda: "file:chain" in now_in_flight(), timeout=20, interval=0.01
            )
            await lives[1].kill()
            interrupted.append(store.unfinished_runs())
            assert cut, f"no chain was caught mid-way:\n{lives[1].output()[-3000:]}"
            await flooding_task
            await flood.release(2 * n // 3 + max(1, n // 20))
            await asyncio.sleep(0.5)

            # Life C: everything else, until the journal and the sandbox are settled.
            await lives[2].start()
            await flood.release(n)
            await eventually(lambda: settled(store, truth, n), timeout=SETTLE_TIMEOUT, interval=0.2)
            await asyncio.sleep(0.5)  # anything still on its way (a late duplicate) lands now
            assert await lives[2].terminate() == 0, lives[2].output()[-3000:]
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for life in lives:
                await life.cleanup()
            if store is not None:
                store.close()
        elapsed = time.monotonic() - started

    verdict = judge(
        n=n,
        truth=truth,
        state_dir=tmp_path / "state",
        library=library,
        receiver=receiver,
        outputs=[life.output() for life in lives],
        title="fault suite",
        lives_note="3 lives, 2 SIGKILLs",
        elapsed=elapsed,
        dead_port=dead_port,
    )
    cut_runs = [
        f"#{number}: {len(batch)} run(s) in flight, steps cut {dict(steps_cut(batch))}"
        for number, batch in enumerate(interrupted, 1)
    ]
    verdict.lines.append(f"  SIGKILLs interrupted:     {'; '.join(cut_runs)}")
    with capsys.disabled():
        print(verdict.figures())
    verdict.assert_kept()


async def test_fault_suite_one_daemon_per_state_dir_20_sigkill_cycles_no_secret_anywhere(
    sandbox: SandboxHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second scenario (see the module docstring): a refused second daemon, then
    20 SIGKILL/restart cycles; exactly-once as in the first, and no secret anywhere."""
    truth = sandbox.sandbox
    n = CYCLE_GENERATIONS
    share = math.ceil(n / CYCLES)  # requests released per cycle
    library = tmp_path / "library"
    library.mkdir()
    state_dir = tmp_path / "state"
    config = tmp_path / "automations.yaml"
    secret_values = {
        "finetuning api key": sandbox.api_key,
        "webhook token": secrets.token_urlsafe(24) + "/+=~",  # characters URLs encode
        "signing secret": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    }
    (tmp_path / "secrets.yaml").write_text(
        yaml.safe_dump(
            {
                "ft_key": secret_values["finetuning api key"],
                "hook_token": secret_values["webhook token"],
                "whsec": secret_values["signing secret"],
            }
        ),
        encoding="utf-8",
    )
    lives = [
        Life(f"{number:02d}", config, tmp_path / f"life-{number:02d}.log")
        for number in range(CYCLES + 1)
    ]
    second = Life("second", config, tmp_path / "life-second.log")
    flood = Flood(truth, n, 1)
    store: Store | None = None
    leaks: dict[str, list[str]] = {}  # where secrets were found after the run: which
    kill_leaks: dict[str, set[str]] = {}  # the same in the state_dir as a kill left it
    kills_leaking: list[int] = []

    def now_in_flight() -> set[str]:
        assert store is not None
        return in_flight(store)

    moments_reached: dict[str, Callable[[], bool]] = {
        "chain": lambda: "file:chain" in now_in_flight(),
        "generate": lambda: "make:generate" in now_in_flight(),
        "both": lambda: {"file:chain", "make:generate"} <= now_in_flight(),
    }

    async with serve(Receiver()) as receiver:
        document = config_document(
            sandbox,
            state_dir,
            library=library,
            listen_port=free_port(),
            receiver_url=receiver.url,
            public_url=None,
        )
        document["finetuning"]["api_key"] = "!secret ft_key"
        document["webhook"]["token"] = "!secret hook_token"
        for automation in document["automations"]:
            for step in automation["actions"]:
                if step["action"] == "notify_webhook":
                    step["secret"] = "!secret whsec"
                if step["action"] == "download_track":
                    step["also_write"] = ["json"]
        text = yaml.safe_dump(document, sort_keys=False)
        # `!secret name` written as a quoted string by safe_dump: make them tags again.
        for name in ("ft_key", "hook_token", "whsec"):
            text = text.replace(f"'!secret {name}'", f"!secret {name}")
        config.write_text(text, encoding="utf-8")

        interrupted: list[list[RunRow]] = []
        caught: list[tuple[str, bool]] = []
        background: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            truth.set_faults(READ_FAULTS)
            # Two daemons on one state_dir: the second is refused at once, the first unharmed.
            first = lives[0]
            await first.start()
            assert first.process is not None
            store = journal = Store.open(state_dir)
            refused_at = time.monotonic()
            process = await second.spawn()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), REFUSAL_TIMEOUT)
            refusal = time.monotonic() - refused_at
            said = second.output()
            assert process.returncode == 1, (
                f"second daemon on one state_dir: exit {process.returncode} "
                f"after {refusal:.1f} s\n{said[-3000:]}"
            )
            assert str(state_dir) in said or str(state_dir.resolve()) in said, said
            assert str(first.process.pid) in said, said
            assert "Running 3 automation" not in said, said
            assert first.process.returncode is None, first.output()[-3000:]
            assert holder(state_dir) == first.process.pid
            await second.cleanup()

            # Daemon 1 still does its work: its first requests are filed.
            feeding = asyncio.create_task(flood.release(share))
            background.append(feeding)
            working = await eventually(
                lambda: any(r.automation_id == "file" for r in journal.runs(limit=100 * n)),
                timeout=20,
                interval=0.05,
            )
            assert working, f"daemon 1 filed nothing after the refusal:\n{first.output()[-3000:]}"

            for cycle in range(CYCLES):
                life = lives[cycle]
                if cycle:
                    await feeding
                    if cycle % 2:  # requests, and completions, while the daemon is down
                        await flood.release(min(n, flood.released + share // 2))
                        await asyncio.sleep(DOWN_PAUSE)
                    await life.start()  # on the same state_dir at once: the lock died with it
                    feeding = asyncio.create_task(flood.release(min(n, (cycle + 1) * share)))
                    background.append(feeding)
                if cycle == CYCLES // 2:
                    truth.set_faults(
                        [*READ_FAULTS, FaultRule("POST /v1/generations", commit_then_fail=1)]
                    )
                moment = MOMENTS[cycle % len(MOMENTS)]
                if moment == "startup":
                    reached = True  # killed while it resumes what the last kill cut
                elif moment == "anytime":
                    await asyncio.sleep(0.1 + (cycle * 0.37) % 1.2)
                    reached = True
                else:
                    reached = await eventually(
                        moments_reached[moment], timeout=MOMENT_WAIT, interval=0.01
                    )
                await life.kill()
                interrupted.append(journal.unfinished_runs())
                caught.append((moment, reached))
                # The WAL as the kill left it, before a restart checkpoints it away.
                for path, found in files_leaking(state_dir, secret_values).items():
                    kill_leaks.setdefault(path, set()).update(found)
                    kills_leaking.append(cycle + 1)

            # The last life: everything else, until the journal and the sandbox are settled.
            await feeding
            final = lives[CYCLES]
            await final.start()
            await flood.release(n)
            await eventually(
                lambda: settled(journal, truth, n), timeout=SETTLE_TIMEOUT, interval=0.2
            )
            await asyncio.sleep(0.5)  # anything still on its way (a late duplicate) lands now
            assert await final.terminate() == 0, final.output()[-3000:]
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for life in [*lives, second]:
                await life.cleanup()
            if store is not None:
                store.close()
        elapsed = time.monotonic() - started

    verdict = judge(
        n=n,
        truth=truth,
        state_dir=state_dir,
        library=library,
        receiver=receiver,
        outputs=[life.output() for life in [*lives, second]],
        title="fault suite, SIGKILL cycles",
        lives_note=f"{len(lives)} lives + 1 refused, {CYCLES} SIGKILLs",
        elapsed=elapsed,
    )

    # -- no secret in any byte written or sent -------------------------------------------
    hooks = [g.webhook for g in ours(truth) if g.webhook]
    handed = [hook for hook in hooks if secret_hits(hook.encode(), secret_values)]
    leaks.update(files_leaking(state_dir, secret_values))
    leaks.update(files_leaking(library, secret_values))
    for number, request in enumerate(receiver.raw):
        found = secret_hits(request, secret_values)
        if found:
            leaks[f"request #{number} to the receiver"] = found
    for life in [*lives, second]:
        found = secret_hits(life.log.read_bytes(), secret_values)
        if found:
            leaks[f"output of life {life.name}"] = found
    with Store.open(state_dir) as reader:  # the create answers journaled, token stripped
        echoes = [
            ((r.steps[0].output or {}).get("generation") or {}).get("webhook")
            for r in reader.runs(limit=100 * n)
            if r.automation_id == "make" and r.steps
        ]
    echoed = sum(1 for url in echoes if isinstance(url, str) and "/hooks/finetuning" in url)
    searched = [p for root in (state_dir, library) for p in root.rglob("*") if p.is_file()]

    ratio_fired = verdict.fired / max(1, verdict.expected)
    ratio_credits = verdict.spent / max(1, n)
    kinds = Counter(moment for moment, _ in caught)
    reached_count = Counter(moment for moment, hit in caught if hit)
    cut = Counter[str]()
    for batch in interrupted:
        cut.update(steps_cut(batch))
    in_flight_counts = [len(batch) for batch in interrupted]
    verdict.lines[2:2] = [
        f"  fired/expected {ratio_fired:.3f} ({verdict.fired} events journaled, "
        f"{verdict.expected} expected); credits spent/intended {ratio_credits:.3f} "
        f"({verdict.spent} spent, {n} intended: one per request)",
    ]
    verdict.lines += [
        f"  second daemon:            refused (exit 1) in {refusal:.2f} s; daemon 1 kept the lock",
        f"  SIGKILLs interrupted:     moments reached "
        f"{ {kind: f'{reached_count[kind]}/{count}' for kind, count in kinds.items()} }; "
        f"runs in flight per kill min {min(in_flight_counts)}, "
        f"max {max(in_flight_counts)}, total {sum(in_flight_counts)}; steps cut {dict(cut)}",
        f"  secrets:                  {len(secret_values)} secrets x 4 spellings searched in "
        f"{len(searched)} files, {len(receiver.raw)} requests received, "
        f"{len(lives) + 1} outputs; hits {len(leaks)}, and in the state_dir as "
        f"{len(set(kills_leaking))}/{CYCLES} kills left it; sandbox handed the token "
        f"{len(handed)}/{len(hooks)} times, echoed it back {echoed} times (journaled)",
    ]
    with capsys.disabled():
        print(verdict.figures())

    verdict.checks.update(
        {
            "fired/expected is 1.000": verdict.fired == verdict.expected
            and f"{ratio_fired:.3f}" == "1.000",
            "credits spent/intended is 1.000": verdict.spent == n
            and f"{ratio_credits:.3f}" == "1.000",
            "the listener took webhooks (the token with /+= intact)": verdict.terminal_by_source[
                "webhook"
            ]
            > 0,
            "the sandbox was handed the webhook token (the search is not vacuous)": bool(handed)
            and all(secret_hits(h.encode(), secret_values) == ["webhook token"] for h in handed),
            "the echoed hook URL reached the journal (the leak path was taken)": echoed > 0,
            "no secret in the state_dir, library, requests received or outputs": not leaks,
            "no secret in the state_dir as any SIGKILL left it (WAL included)": not kill_leaks,
        }
    )
    verdict.details["leaks"] = dict(list(leaks.items())[:20])
    verdict.details["leaks after kills"] = {
        path: sorted(found) for path, found in kill_leaks.items()
    }
    verdict.details["kills that left a secret"] = sorted(set(kills_leaking))
    verdict.assert_kept()
