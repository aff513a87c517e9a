"""Issue 14, findings 1 and 4, in a real Chromium against the demo.

1. A page on another site (``localhost`` while the demo is on ``127.0.0.1``: another registrable
   domain, so truly cross-site) auto-submits a logout form. ``SameSite=Strict`` keeps the cookie off
   that request; the old server still answered 204 with a ``Set-Cookie`` that deleted the cookie,
   which Chromium applies on a top-level navigation, logging the victim out.
4. A refresh sent with an old session's cookie is answered ``invalid_grant`` after a login in another
   tab set a new cookie. The old answer's ``Set-Cookie`` deleted the new one. The request here is a
   plain ``fetch`` (another client, an app's own code, an older manager): the refresh manager itself
   also drops such a request when the login supersedes it, but the server must not rely on that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx2
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from harness.processes import AppServer
from tests.browser.conftest import DemoFactory, log_in
from tests.browser.pages import serving

COOKIE = "refresh_token"

# Submitted on load, as a hostile page would; the target comes in the query string.
LOGOUT_FORM = """<!doctype html><html><body>
<form id="f" method="POST"></form>
<script>
  const form = document.getElementById('f');
  form.action = new URLSearchParams(location.search).get('target');
  form.submit();
</script></body></html>"""

ServePage = Callable[[str], str]


@pytest.fixture
def other_site() -> Iterator[ServePage]:
    """Serves one HTML page from http://localhost:<port>, another site than the demo's 127.0.0.1."""
    pages: dict[str, str] = {}
    with serving(pages.__getitem__) as port:

        def serve(html: str) -> str:
            path = f"/page{len(pages)}.html"
            pages[path] = html
            return f"http://localhost:{port}{path}"

        yield serve


def refresh_cookies(context: BrowserContext) -> list[str]:
    return [str(cookie.get("value")) for cookie in context.cookies() if cookie.get("name") == COOKIE]


def test_a_logout_form_on_another_site_cannot_delete_the_cookie(
    context: BrowserContext, page: Page, start_demo: DemoFactory, other_site: ServePage
) -> None:
    demo = start_demo()
    log_in(page, demo.url)
    cookie = refresh_cookies(context)
    assert len(cookie) == 1
    attacker = context.new_page()
    form_page = other_site(LOGOUT_FORM)
    with attacker.expect_response(f"{demo.url}/auth/logout") as answer:
        attacker.goto(f"{form_page}?target={demo.url}/auth/logout", wait_until="commit")
    assert answer.value.request.headers.get("origin") == form_page.rsplit("/", 1)[0]
    assert "cookie" not in answer.value.request.headers, "SameSite=Strict kept the cookie off"
    for _ in range(20):  # the answer's Set-Cookie, if any, applies as its headers arrive
        if refresh_cookies(context) != cookie:
            break
        attacker.wait_for_timeout(50)
    assert refresh_cookies(context) == cookie, "the cross-site form deleted the refresh cookie"
    assert answer.value.status == 403
    assert answer.value.headers.get("set-cookie") is None
    # the victim stays logged in: a reload restores the session through the same cookie
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("logged-in")


def server_answer(demo: AppServer, path: str, cookie: str) -> httpx2.Response:
    """What the demo answers a request carrying ``cookie``, sent from outside any browser."""
    return httpx2.post(f"{demo.url}{path}", headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=5)


def test_a_late_invalid_grant_does_not_delete_a_newer_logins_cookie(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo()
    log_in(page, demo.url)
    [old_cookie] = refresh_cookies(context)
    # A refresh goes out with the old session's cookie, and its answer is slow to come back.
    held: list[Route] = []
    # only this request is held: the page's own manager refreshes too once the session ends (its
    # live socket is closed), and holding that one would hold its cross-tab lock
    page.route("**/auth/refresh", lambda route: route.continue_() if held else held.append(route))
    page.evaluate(
        "() => { window.lateRefresh = fetch('/auth/refresh', {method: 'POST'}).then(r => r.status); }"
    )
    for _ in range(250):
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    # Meanwhile the old session ends, and the user logs in again in another tab: a new cookie.
    assert server_answer(demo, "/auth/logout", old_cookie).status_code == 204
    second = context.new_page()
    log_in(second, demo.url)
    [new_cookie] = refresh_cookies(context)
    assert new_cookie != old_cookie
    # The slow request's answer, as the server gives it for the old cookie, arrives last.
    late = server_answer(demo, "/auth/refresh", old_cookie)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    held[0].fulfill(status=late.status_code, headers=dict(late.headers.multi_items()), body=late.content)
    assert page.evaluate("window.lateRefresh") == 400
    assert refresh_cookies(context) == [new_cookie], "the late invalid_grant deleted the new login's cookie"
    second.reload()
    expect(second.get_by_test_id("status")).to_have_text("logged-in")
