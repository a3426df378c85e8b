"""What the web page shows, against the journal's and the sandbox's ground truth."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from ft_web_support import FULL, Site, eventually

from connector.events import Event

pytestmark = pytest.mark.e2e


async def test_overview_shows_health_credits_events_and_failures(site: Site) -> None:
    account = await site.connector.finetuning.get_account()
    browser = await site.signed_in()
    page = await browser.get("/")
    assert page.status == 200
    # The balance is read in the background: the first answer says so, a later one has it.
    assert "Reading the balance" in page.text
    for _ in range(200):
        page = await browser.get("/")
        if "credits-remaining" in page.text:
            break
        await asyncio.sleep(0.05)
    for heading in (
        "Health",
        "Credits",
        "Runs in flight",
        "Latest events",
        "Failures in the last 24 hours",
    ):
        assert f">{heading}</h2>" in page.text
    shown = re.search(r'data-testid="credits-remaining">(\d+)<', page.text)
    assert shown is not None
    assert int(shown.group(1)) == account.limits.total_remaining
    assert "<strong>Journal</strong>: writing" in page.text
    assert "<strong>Poller</strong>" in page.text
    assert "No failures." in page.text
    await site.generate()
    page = await browser.get("/")
    assert "1 failed run" in page.text
    failed = [r for r in site.connector.runtime.store.runs(limit=50) if r.status == "failed"]
    assert len(failed) == 1
    assert f'data-run-id="{failed[0].run_id}"' in page.text
    # The latest events: the completion that started the runs is among them.
    newest = site.connector.runtime.store.events(limit=1)[0]
    assert f'data-event-key="{newest.key}"' in page.text


async def test_runs_filter_by_status_and_automation_newest_first(site: Site) -> None:
    await site.generate()
    await site.generate(tags="ambient dawn")
    store = site.connector.runtime.store
    browser = await site.signed_in()
    every = (await browser.get("/runs")).rows("data-run-id")
    assert every == [row.run_id for row in store.runs_page(limit=50)]  # newest first
    failed = await browser.get("/runs?status=failed")
    assert failed.rows("data-run-id") == [
        row.run_id for row in store.runs_page(limit=50, status="failed")
    ]
    assert len(failed.rows("data-run-id")) == 2
    assert failed.text.count('class="failed"') == 2  # a failed run stands out
    assert '<span class="badge failed">failed</span>' in failed.text
    only = await browser.get("/runs?automation=file_in_focus")
    assert only.rows("data-run-id") == [
        row.run_id for row in store.runs_page(limit=50, automation_id="file_in_focus")
    ]
    assert '<option value="file_in_focus" selected>' in only.text
    assert '<option value="api.generate">' in only.text


async def test_runs_are_paged_fifty_at_a_time(site: Site) -> None:
    store = site.connector.runtime.store
    for number in range(120):  # recorded and finished with no await between: never run
        run_id = f"paged{number:011d}"
        event = Event(kind="track_completed", key=f"paged:{number}", source="poll")
        assert store.record_event(event, runs=[(run_id, "file_in_focus")])
        store.finish_run(run_id, "succeeded")
    browser = await site.signed_in()
    seen: list[str] = []
    path: str | None = "/runs?automation=file_in_focus"
    pages = 0
    while path is not None:
        page = await browser.get(path)
        assert page.status == 200
        seen += page.rows("data-run-id")
        older = re.search(r'<a href="([^"]+)">Older runs</a>', page.text)
        path = html.unescape(older.group(1)) if older else None
        if path is not None:
            assert "automation=file_in_focus" in path  # the filter is kept
        pages += 1
    assert pages == 3
    assert len(seen) == 120
    assert seen == [row.run_id for row in store.runs_page(limit=200, automation_id="file_in_focus")]


async def test_a_trace_shows_trigger_steps_and_error(site: Site) -> None:
    generation_id = await site.generate(tags="lofi <script>alert(1)</script>")
    store = site.connector.runtime.store
    runs = store.runs_for_event(f"finetuning:{generation_id}:completed")
    failed = next(run for run in runs if run.status == "failed")
    succeeded = next(run for run in runs if run.status == "succeeded")
    generation = await site.connector.finetuning.get_generation(generation_id)
    browser = await site.signed_in()
    page = await browser.get(f"/runs/{failed.run_id}")
    assert page.status == 200
    assert f"<code>{failed.run_id}</code>" in page.text
    assert 'data-testid="run-status" class="badge failed">failed<' in page.text
    error = re.search(r'data-testid="run-error">([^<]+)<', page.text)
    assert error is not None
    assert html.unescape(error.group(1)) == failed.error
    step_error = re.search(r'data-testid="step-error">([^<]+)<', page.text)
    assert step_error is not None
    assert html.unescape(step_error.group(1)) == failed.steps[0].error
    # The trigger: the generation with its audio, the tags escaped, never run.
    assert f"<code>{generation_id}</code>" in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "lofi &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert generation.audio_url is not None
    assert f'<audio controls preload="none" src="{generation.audio_url}"' in page.text
    # The step with its options after templating (the track id, not the template).
    assert "<h3>add_to_playlist" in page.text
    assert f"&#34;{generation_id}&#34;" in page.text
    assert "trigger.generation.id" not in page.text
    ok = await browser.get(f"/runs/{succeeded.run_id}")
    output = re.search(r"<summary>Output</summary><pre>(.*?)</pre>", ok.text, re.S)
    assert output is not None
    assert generation_id in html.unescape(output.group(1))


async def test_replay_from_the_page_runs_again_and_links_back(site: Site) -> None:
    await site.generate()
    store = site.connector.runtime.store
    failed = store.runs(limit=10, status="failed")[0]
    browser = await site.signed_in()
    trace = await browser.get(f"/runs/{failed.run_id}")
    answer = await browser.post(f"/runs/{failed.run_id}/replay", {"csrf": trace.csrf()})
    assert answer.status == 303
    assert answer.location is not None
    new_id = answer.location.removeprefix("/runs/")
    assert await eventually(lambda: (row := store.run(new_id)) is not None and row.finished_at)
    page = await browser.get(answer.location)
    assert f'<a href="/runs/{failed.run_id}">replay of {failed.run_id}</a>' in page.text
    assert 'data-testid="run-status" class="badge failed">failed<' in page.text
    old = await browser.get(f"/runs/{failed.run_id}")
    assert "Replay</button>" not in old.text  # replayed once: its replay is the one to use
    assert "was replayed" in old.text
    # A second press (a double click) shows the replay the first one made.
    again = await browser.post(f"/runs/{failed.run_id}/replay", {"csrf": trace.csrf()})
    assert again.status == 303
    assert again.location == f"/runs/{new_id}"


async def test_events_show_fired_and_seeded_with_their_source(site: Site) -> None:
    await site.generate()
    browser = await site.signed_in()
    page = await browser.get("/events")
    store = site.connector.runtime.store
    rows = store.events_page(limit=50)
    assert page.rows("data-event-key") == [row.key for row in rows]
    seeded = [row for row in rows if row.source == "seed"]
    fired = [row for row in rows if row.source != "seed"]
    assert seeded  # the sandbox's tracks that existed at the first start
    assert fired
    assert page.text.count('<span class="badge seeded">seeded</span>') == len(seeded)
    assert page.text.count('<span class="badge fired">fired</span>') == len(fired)
    assert "<td>poll</td>" in page.text
    only = await browser.get("/events?kind=run_failed")
    assert only.rows("data-event-key") == [
        row.key for row in store.events_page(limit=50, kinds=["run_failed"])
    ]
    assert (await browser.get("/events?kind=nope")).status == 400


async def test_hooks_show_delivery_state_without_the_target_path(site: Site) -> None:
    secret_path = "/catch/s3cr3t-path-credential"
    created = await site.api(
        "POST",
        "/api/v1/hooks",
        json={"trigger": "track_completed", "target_url": f"http://127.0.0.1:9{secret_path}"},
    )
    browser = await site.signed_in()
    page = await browser.get("/hooks")
    assert page.rows("data-hook-id") == [created["id"]]
    assert "<code>http://127.0.0.1:9/…</code>" in page.text
    assert "s3cr3t" not in page.text
    assert created["secret"] not in page.text
    assert "by full" in page.text


async def test_live_regions_and_script(site: Site) -> None:
    await site.generate()
    browser = await site.signed_in(FULL)
    run_id = site.connector.runtime.store.runs(limit=1)[0].run_id
    for path, regions in (
        ("/", ("health", "credits", "in-flight", "latest-events", "failures")),
        ("/runs", ("runs",)),
        ("/events", ("events",)),
        ("/hooks", ("hooks",)),
    ):
        page = await browser.get(path)
        for region in regions:
            assert f'data-live="{region}"' in page.text, (path, region)
        assert '<script src="/ui/app.js" defer></script>' in page.text
    script = await browser.get("/ui/app.js")
    assert "data-live" in script.text
    assert "setInterval" in script.text
    # A finished run's trace no longer changes: its regions are settled (not polled).
    trace = await browser.get(f"/runs/{run_id}")
    assert trace.text.count("data-settled") == 2
    # The sign-in page loads no script at all.
    assert "<script" not in (await site.browser().get("/signin")).text
