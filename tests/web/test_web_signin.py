"""Signing in to the web page, and what a page without a session, or a form from
elsewhere, gets: over real loopback sockets against a started connector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from ft_web_support import ACTOR, BUTTON, FULL, PAGES, READER, TOKENS, Site

pytestmark = pytest.mark.e2e


async def test_every_page_redirects_to_sign_in_and_back(site: Site) -> None:
    browser = site.browser()
    run_id = "0123456789abcdef"
    for path in (*PAGES, f"/runs/{run_id}", "/runs?status=failed&automation=file_in_focus"):
        page = await browser.get(path)
        assert page.status == 303, path
        assert page.location is not None, path
        assert page.location.startswith("/signin?next="), path
        assert "<html" not in page.text  # nothing of the page itself
    # The sign-in page is the one page served without a session.
    form = await browser.get("/signin?next=/runs%3Fstatus%3Dfailed")
    assert form.status == 200
    assert '<label for="token">API token</label>' in form.text
    assert 'value="/runs?status=failed"' in form.text
    landed = await browser.sign_in(FULL, "/runs?status=failed")
    assert landed.status == 303
    assert landed.location == "/runs?status=failed"
    page = await browser.get("/runs?status=failed")
    assert page.status == 200
    assert "<h1>Runs</h1>" in page.text


async def test_session_cookie_is_http_only_and_strict(site: Site) -> None:
    browser = site.browser()
    answer = await browser.sign_in(FULL)
    assert answer.status == 303
    assert answer.location == "/"
    header = answer.headers["Set-Cookie"]
    assert header.startswith("ftc_session=")
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Secure" not in header  # plain http on loopback: a Secure cookie would be dropped
    cookie = browser.cookie()
    assert cookie is not None
    assert FULL not in cookie
    assert len(cookie) >= 40
    page = await browser.get("/")
    assert page.status == 200
    assert "Signed in as <strong>full</strong>" in page.text


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        ("not-a-token-of-this-connector-000000", 401, "is not one of this connector"),
        ("", 401, "Enter an API token"),
        (ACTOR, 403, "lacks the read scope"),
    ],
)
async def test_refused_sign_ins_say_why(site: Site, token: str, status: int, says: str) -> None:
    browser = site.browser()
    page = await browser.sign_in(token)
    assert page.status == status
    assert 'role="alert"' in page.text
    assert says in page.text
    assert browser.cookie() is None
    assert token not in page.text or not token


@pytest.mark.parametrize(
    "target", ["//evil.example/", "http://evil.example/", "/\\evil.example", "runs", "/\x01x"]
)
async def test_sign_in_goes_only_to_a_path_of_this_site(site: Site, target: str) -> None:
    browser = site.browser()
    page = await browser.sign_in(FULL, target)
    assert page.status == 303
    assert page.location == "/"


async def test_failed_sign_ins_are_throttled_per_client(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    browser = site.browser()
    for _ in range(10):
        assert (await browser.sign_in("wrong-token-000000000000000000")).status == 401
    page = await browser.sign_in("wrong-token-000000000000000000")
    assert page.status == 429
    assert "Too many failed sign-ins" in page.text
    refusals = caplog.text.count("refused: not a token")
    for _ in range(20):  # a guesser past the limit no longer fills the log
        assert (await browser.sign_in("wrong-token-000000000000000001")).status == 429
    assert caplog.text.count("refused: not a token") == refusals
    # The right token is never slowed down: anyone sharing the address could lock it out.
    page = await browser.sign_in(FULL)
    assert page.status == 303
    assert browser.cookie() is not None


async def test_sign_out_ends_the_session(site: Site) -> None:
    browser = await site.signed_in()
    before = browser.cookie()
    page = await browser.get("/")
    answer = await browser.post("/signout", {"csrf": page.csrf()})
    assert answer.status == 303
    assert answer.location == "/signin"
    assert browser.cookie() is None
    # The old cookie is dead on the server too, not only forgotten by this browser.
    other = site.browser()
    other.session.cookie_jar.update_cookies({"ftc_session": before or ""})
    assert (await other.get("/")).status == 303


async def test_a_forged_cookie_is_no_session(site: Site) -> None:
    browser = site.browser()
    browser.session.cookie_jar.update_cookies({"ftc_session": FULL})
    assert (await browser.get("/")).status == 303


async def test_forms_from_elsewhere_are_refused(site: Site) -> None:
    await site.generate()
    browser = await site.signed_in()
    failed = (await browser.get("/runs?status=failed")).rows("data-run-id")[0]
    trace = await browser.get(f"/runs/{failed}")
    csrf = trace.csrf()
    path = f"/runs/{failed}/replay"
    # Without the page's CSRF token, with another's, from another site: all refused.
    assert (await browser.post(path, {})).status == 403
    assert (await browser.post(path, {"csrf": "x" * 43})).status == 403
    cross = await browser.post(path, {"csrf": csrf}, origin="http://evil.example", site=None)
    assert cross.status == 403
    assert "only from this page" in cross.text
    assert (await browser.post(path, {"csrf": csrf}, site="cross-site")).status == 403
    assert (await browser.post(path, {"csrf": csrf}, site="same-site")).status == 403
    # Without Sec-Fetch-Site (an old browser), Origin decides: another one is refused.
    elsewhere = await browser.post(path, {"csrf": csrf}, origin="null", site=None)
    assert elsewhere.status == 403
    # Not signed in at all: refused, not redirected (a form must not be replayed later).
    assert (await site.browser().post(path, {"csrf": csrf})).status == 403
    store = site.connector.runtime.store
    row = store.run(failed)
    assert row is not None
    assert row.status == "failed"
    # The same form from the page itself replays.
    done = await browser.post(path, {"csrf": csrf})
    assert done.status == 303
    assert done.location is not None
    assert done.location.startswith("/runs/")
    assert done.location != f"/runs/{failed}"


async def test_who_sees_replay(site: Site) -> None:
    await site.generate()
    reader = await site.signed_in(READER)
    failed = (await reader.get("/runs?status=failed")).rows("data-run-id")[0]
    page = await reader.get(f"/runs/{failed}")
    assert page.status == 200
    assert "Replay</button>" not in page.text
    assert 'name="csrf"' in page.text  # the sign-out form only
    refused = await reader.post(f"/runs/{failed}/replay", {"csrf": page.csrf()})
    assert refused.status == 403
    assert "may not replay" in refused.text
    # A token limited to `generate` may not replay a run that adds to a playlist.
    button = await site.signed_in(BUTTON)
    page = await button.get(f"/runs/{failed}")
    assert "Replay</button>" not in page.text
    refused = await button.post(f"/runs/{failed}/replay", {"csrf": page.csrf()})
    assert refused.status == 403
    # But it may replay a call of `generate`.
    called = (await button.get("/runs?automation=api.generate")).rows("data-run-id")[0]
    assert "Replay</button>" in (await button.get(f"/runs/{called}")).text
    full = await site.signed_in(FULL)
    assert "Replay</button>" in (await full.get(f"/runs/{failed}")).text


async def test_pages_carry_a_strict_content_security_policy(site: Site) -> None:
    browser = await site.signed_in()
    signin = await site.browser().get("/signin")
    for path in ("/signin", "/", "/runs", "/events", "/hooks", "/nowhere"):
        page = signin if path == "/signin" else await browser.get(path)
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy, path
        assert "script-src 'self'" in policy, path
        assert "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in page.text
        assert "http://" not in page.text.split("<main")[0].replace(site.base, "")
    script = await browser.get("/ui/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")


async def test_unknown_pages_are_html_and_api_paths_stay_json(site: Site) -> None:
    browser = await site.signed_in()
    page = await browser.get("/nowhere")
    assert page.status == 404
    assert "<h1>Not found</h1>" in page.text
    missing = await browser.get("/runs/ffffffffffffffff")
    assert missing.status == 404
    assert "No run has this id" in missing.text
    bad = await browser.get("/runs?status=weird")
    assert bad.status == 400
    assert "Status must be one of" in bad.text
    cursor = await browser.get("/runs?cursor=%%%")
    assert cursor.status == 400
    assert "start from the newest" in cursor.text
    api = await browser.get("/api/v1/nowhere")
    assert api.status == 404
    assert api.headers["Content-Type"].startswith("application/json")


async def test_no_token_in_any_page_or_log(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    await site.generate()
    browser = site.browser()
    await browser.sign_in("wrong-token-but-long-enough-000000")
    for token in TOKENS:
        other = site.browser()
        await other.sign_in(token)
        for path in (*PAGES, "/runs?status=failed"):
            await other.get(path)
    everything = "\n".join(site.seen) + caplog.text
    for token in TOKENS:
        assert token not in everything
    assert "wrong-token-but-long-enough-000000" not in everything
    assert "signed in to the web page" in caplog.text  # the log was captured


async def test_a_form_of_the_page_with_origin_null_is_accepted(site: Site) -> None:
    """Chromium sends `Origin: null` with `Sec-Fetch-Site: same-origin` for the page's own
    form under some referrer policies: found by the browser tests, sign-in was refused."""
    browser = site.browser()
    page = await browser.post("/signin", {"token": FULL}, origin="null", site="same-origin")
    assert page.status == 303
    assert browser.cookie() is not None
    shown = await browser.get("/")
    assert shown.headers["Referrer-Policy"] == "same-origin"


async def test_behind_a_tls_proxy_forms_pass_and_the_cookie_is_secure(site: Site) -> None:
    """A TLS proxy in front (as the README advises beyond loopback): the browser's Origin
    is https and names the proxy's host; found by the hostile review, sign-in was refused."""
    host = "ftc.example.net"
    async with site.api_session.post(
        f"{site.base}/signin",
        data={"token": FULL},
        headers={"Host": host, "Origin": f"https://{host}", "X-Forwarded-Proto": "https"},
        allow_redirects=False,
    ) as answer:
        assert answer.status == 303
        cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie  # the proxy, on this machine, says the browser used https
    async with site.api_session.post(
        f"{site.base}/signin",
        data={"token": FULL},
        headers={"Origin": f"https://{host}", "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    ) as answer:
        assert answer.status == 303  # Sec-Fetch-Site decides, whatever Host the proxy sets
        assert "Secure" not in answer.headers["Set-Cookie"]


async def test_a_form_without_a_session_is_refused_before_its_body(site: Site) -> None:
    """Found by the hostile review: the body was read (10 s) before the session was
    checked, so trickling clients could hold the listener's connections."""
    port = int(site.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /runs/0123456789abcdef/replay HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
    )
    await writer.drain()
    status = await reader.readline()  # answered without the 4000 bytes ever coming
    assert status.startswith(b"HTTP/1.1 403")
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    assert b"connection: close" in head  # the body is not awaited on this connection
    writer.close()


async def test_a_sign_in_form_must_say_its_length(site: Site) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"token="
        yield FULL.encode()

    async with site.api_session.post(
        f"{site.base}/signin",
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    ) as answer:
        assert answer.status == 411


async def test_odd_next_targets_and_pasted_bearer(site: Site) -> None:
    browser = site.browser()
    page = await browser.sign_in(f"Bearer {FULL}", "/\x7f")
    assert page.status == 303
    assert page.location == "/"
    again = await browser.get("/signin?next=/%7F")  # signed in: straight on
    assert again.status == 303
    assert again.location == "/"


async def test_sign_out_after_the_session_ended_is_no_error(site: Site) -> None:
    browser = site.browser()
    browser.session.cookie_jar.update_cookies({"ftc_session": "ended-by-a-restart"})
    page = await browser.post("/signout", {"csrf": "whatever"})
    assert page.status == 303
    assert page.location == "/signin"
    cleared = page.headers.get("Set-Cookie", "")
    assert cleared.startswith('ftc_session="";')
    assert "Max-Age=0" in cleared


async def test_head_on_pages(site: Site) -> None:
    browser = await site.signed_in()
    async with browser.session.head(f"{site.base}/runs", allow_redirects=False) as answer:
        assert answer.status == 200
    async with site.browser().session.head(f"{site.base}/", allow_redirects=False) as answer:
        assert answer.status == 303
