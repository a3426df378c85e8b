"""Who may see and do what on the web page, in real headless Chromium.

Signed out, every page sends to the sign-in page (and back after it); a token
without `read` cannot sign in, a wrong one is told so; a token without `act`
sees no Replay; a POST needs the session and its CSRF field; signing out ends
the session; the cookie is HttpOnly and SameSite=Strict; no request of the
page leaves the machine; events and hooks are listed, a hook's credential not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from ft_browser_support import (
    BUTTON,
    FAILING,
    HOOK_PATH_SECRET,
    OPERATOR,
    VIEWER,
    Site,
    Visit,
    session_cookies,
    sign_in,
)
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

WRONG = "not-a-token-of-this-connector-3e8a1f"
REFUSED = "That token is not one of this connector's"
FORM = {"from": "a form"}  # a form's body, as a browser sends one (urlencoded)


def pages(site: Site) -> list[str]:
    failed = site.failed_run()["id"]
    return ["/", "/runs", "/runs?status=failed", f"/runs/{failed}", "/events", "/hooks"]


def signin_target(site: Site, location: str) -> str:
    """The `next` of a redirect to the sign-in page; AssertionError for anything else."""
    parts = urlsplit(location)
    assert parts.path == "/signin", location
    assert parts.netloc in ("", urlsplit(site.url).netloc), location
    nexts = parse_qs(parts.query).get("next")
    assert nexts is not None, location
    assert len(nexts) == 1, location
    return nexts[0]


@pytest.mark.parametrize(
    "path",
    ["/", "/runs", "/runs?status=failed", "/runs/{run}", "/events", "/hooks", "/ui/app.js"],
)
def test_signed_out_every_page_sends_to_the_sign_in_page_and_back(
    site: Site, visit: Callable[..., Visit], path: str
) -> None:
    path = path.format(run=site.failed_run()["id"])
    browsing = visit()
    answer = browsing.context.request.get(site.page(path), max_redirects=0)
    assert answer.status == 303, f"GET {path}: {answer.status}"
    assert signin_target(site, answer.headers["location"]) == path
    assert FAILING not in answer.text(), f"GET {path} signed out shows the page"

    page = browsing.page()
    page.goto(site.page(path))
    assert signin_target(site, page.url) == path
    expect(page.get_by_label("API token")).to_have_attribute("type", "password")
    with page.expect_response(
        lambda r: r.request.is_navigation_request() and urlsplit(r.url).path == urlsplit(path).path
    ) as landed:
        assert sign_in(page, page.url, OPERATOR[1]) == 303
    expect(page).to_have_url(site.page(path))
    assert landed.value.status == 200
    if path.endswith(".js"):
        assert "javascript" in landed.value.headers["content-type"]
    else:
        expect(page.get_by_text(f"Signed in as {OPERATOR[0]}")).to_be_visible()
    browsing.assert_local()


def test_signed_out_posts_are_refused(site: Site, visit: Callable[..., Visit]) -> None:
    run = site.run_of("file_finished_tracks")
    request = visit().context.request
    replay = request.post(site.page(f"/runs/{run['id']}/replay"), form=FORM, max_redirects=0)
    assert replay.status == 403
    # Signing out with no session is no error: to sign-in, the cookie cleared.
    signout = request.post(site.page("/signout"), form=FORM, max_redirects=0)
    assert signout.status == 303
    assert signout.headers["location"] == "/signin"
    assert site.api.run(run["id"])["status"] == "succeeded", "replayed while signed out"


def test_a_token_without_read_or_a_wrong_one_cannot_sign_in(
    site: Site, visit: Callable[..., Visit]
) -> None:
    page = visit().page()
    assert sign_in(page, site.page("/signin"), BUTTON[1]) == 403
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("read")
    expect(page.get_by_label("API token")).to_be_visible()
    assert BUTTON[1] not in page.content()
    assert session_cookies(page) == []

    assert sign_in(page, site.page("/signin"), WRONG) == 401
    expect(alert).to_contain_text(REFUSED)
    assert WRONG not in page.content()
    assert session_cookies(page) == []
    page.goto(site.page("/runs"))
    assert signin_target(site, page.url) == "/runs"


def replay_buttons(page: Page) -> int:
    return (
        page.get_by_role("button", name="Replay").count()
        + page.locator("form[action$='/replay']").count()
    )


def test_a_token_without_act_sees_no_replay(site: Site, visit: Callable[..., Visit]) -> None:
    failed = site.failed_run()
    trace = f"/runs/{failed['id']}"
    operator = visit().page()
    assert sign_in(operator, site.page(f"/signin?next={trace}"), OPERATOR[1]) == 303
    expect(operator.get_by_role("button", name="Replay")).to_have_count(1)

    viewer = visit().page()
    assert sign_in(viewer, site.page(f"/signin?next={trace}"), VIEWER[1]) == 303
    expect(viewer).to_have_url(site.page(trace))
    expect(viewer.get_by_text(f"Signed in as {VIEWER[0]}")).to_be_visible()
    expect(viewer.get_by_test_id("run-status")).to_have_text("failed")
    expect(viewer.get_by_test_id("run-error")).to_have_text(failed["error"])
    assert replay_buttons(viewer) == 0
    # Nor may it replay by hand, with its session.
    answer = viewer.context.request.post(site.page(f"{trace}/replay"), form=FORM, max_redirects=0)
    assert answer.status == 403
    assert site.api.run(failed["id"])["status"] == "failed", "replayed with a read-only session"


def test_a_replay_needs_the_pages_csrf_field(site: Site, visit: Callable[..., Visit]) -> None:
    run = site.run_of("file_finished_tracks")
    trace = f"/runs/{run['id']}"
    page = visit().page()
    assert sign_in(page, site.page(f"/signin?next={trace}"), OPERATOR[1]) == 303
    form = page.locator("form[action$='/replay']")
    expect(form).to_have_count(1)
    hidden = form.locator("input[type=hidden]")
    expect(hidden).not_to_have_count(0)
    fields = {str(h.get_attribute("name")): str(h.get_attribute("value")) for h in hidden.all()}
    request = page.context.request
    url = site.page(f"{trace}/replay")
    assert request.post(url, form=FORM, max_redirects=0).status == 403
    forged = dict.fromkeys(fields, "forged-0000000000000000")
    assert request.post(url, form=forged, max_redirects=0).status == 403
    assert site.api.run(run["id"])["status"] == "succeeded", "replayed without the CSRF field"


def test_the_session_cookie_and_signing_out(site: Site, visit: Callable[..., Visit]) -> None:
    page = visit().page()
    assert sign_in(page, site.page("/signin"), OPERATOR[1]) == 303
    cookies = session_cookies(page)
    assert len(cookies) == 1, page.context.cookies()
    cookie = cookies[0]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert OPERATOR[1] not in cookie["value"]
    assert "ftc_session" not in page.evaluate("document.cookie")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert urlsplit(page.url).path == "/signin", page.url
    assert session_cookies(page) == []
    for path in ("/", "/runs"):
        page.goto(site.page(path))
        assert signin_target(site, page.url) == path

    # The old cookie, kept by someone, lets nobody in: the session is over.
    page.context.add_cookies([cookie])
    page.goto(site.page("/runs"))
    assert signin_target(site, page.url) == "/runs"


def test_no_request_of_the_page_leaves_the_machine(site: Site, visit: Callable[..., Visit]) -> None:
    browsing = visit()
    page = browsing.page()
    assert sign_in(page, site.page("/signin"), OPERATOR[1]) == 303
    for path in pages(site):
        page.goto(site.page(path))
        expect(page.get_by_role("heading", level=1)).to_be_visible()
    # A trace with a player; then a live update's fetch of the runs list it is on (a
    # finished run's trace no longer changes, so it polls nothing).
    page.goto(site.page(f"/runs/{site.run_of('file_finished_tracks')['id']}"))
    expect(page.locator("audio[controls]")).to_have_count(1)
    page.goto(site.page("/runs"))
    with page.expect_request(
        lambda r: r.url == page.url and r.resource_type in ("fetch", "xhr"), timeout=10_000
    ):
        pass
    assert any(urlsplit(url).path == "/ui/app.js" for url in browsing.requests)
    browsing.assert_local()


def test_an_unknown_page_is_a_404_page(site: Site, visit: Callable[..., Visit]) -> None:
    page = visit().page()
    assert sign_in(page, site.page("/signin"), OPERATOR[1]) == 303
    answer = page.goto(site.page("/no-such-page"))
    assert answer is not None
    assert answer.status == 404
    assert "text/html" in answer.headers["content-type"]
    answer = page.goto(site.page("/runs/no-such-run"))
    assert answer is not None
    assert answer.status == 404


def test_events_say_what_fired_and_what_was_seeded(site: Site, visit: Callable[..., Visit]) -> None:
    page = visit().page()
    assert sign_in(page, site.page("/signin?next=/events"), OPERATOR[1]) == 303
    expect(page.get_by_role("heading", level=1)).to_have_text("Events")
    events = site.api.events()
    seeded = [e for e in events if e["source"] == "seed"]
    polled = [e for e in events if e["source"] == "poll"]
    assert seeded
    assert polled
    for event in seeded + polled:
        row = page.locator(f"tr[data-event-key='{event['id']}']")
        expect(row).to_contain_text(event["kind"])
        expect(row).to_contain_text(event["source"])
        expect(row).to_contain_text(event["generation"]["title"])
        if event["source"] == "seed":
            expect(row).to_contain_text("seeded")
        else:
            expect(row).not_to_contain_text("seeded")

    page.goto(site.page("/events?kind=generation_failed"))
    failures = [e["id"] for e in events if e["kind"] == "generation_failed"]
    assert failures
    rows = page.locator("tr[data-event-key]")
    expect(rows).to_have_count(len(failures))
    assert [row.get_attribute("data-event-key") for row in rows.all()] == failures


def test_hooks_show_their_state_but_not_their_credential(
    site: Site, visit: Callable[..., Visit]
) -> None:
    page = visit().page()
    assert sign_in(page, site.page("/signin?next=/hooks"), OPERATOR[1]) == 303
    expect(page.get_by_role("heading", level=1)).to_have_text("Hooks")
    row = page.locator(f"tr[data-hook-id='{site.hook_id}']")
    expect(row).to_contain_text("track_completed")
    expect(row).to_contain_text(f"127.0.0.1:{site.hook_port}")
    expect(page.locator("body")).to_contain_text(re.compile("pending", re.IGNORECASE))
    # Its deliveries fail (nobody listens there): the row says why.
    expect(row).to_contain_text("ClientConnectorError")
    assert HOOK_PATH_SECRET not in page.content()


def test_no_token_reaches_the_daemons_log(site: Site, visit: Callable[..., Visit]) -> None:
    # Last in the module: every sign-in above, good and bad, has been logged by now.
    page = visit().page()
    assert sign_in(page, site.page("/signin"), WRONG) == 401
    log = site.daemon.output()
    assert "Running 4 automation(s)" in log
    # `ftconnect run` says where the page is and which tokens may sign in to it.
    assert f"Web page on {site.url}/ (sign in with a token that has read: " in log
    for secret in (OPERATOR[1], VIEWER[1], BUTTON[1], WRONG, HOOK_PATH_SECRET):
        assert secret not in log
