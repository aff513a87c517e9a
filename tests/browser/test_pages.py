"""Page mode in Chromium: the demo's server-rendered page and its htmx fragments stay logged in.

The demo runs with access tokens of 3 s and ``LEEWAY_SECONDS=0``, so the server really sees them run
out: a navigation or a fragment after that carries only the refresh cookie (the browser dropped the
access cookie with its token), and the middleware rotates it inline. The count of rotations is read
from Redis (the session's generation), where no client can fake it.

Another origin's pages come from ``tests/browser/pages.py``: ``http://127.0.0.1:<other port>`` is
another origin of the same site (``SameSite=Lax`` cookies go along with its form posts, so the
middleware's ``Origin`` check is what refuses them), and ``http://evil.example.test:<port>`` (resolved
to this machine by ``--host-resolver-rules``) is another site (its form posts carry no ``Lax`` cookie).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, Route, expect

from harness.processes import AppServer, RedisServer
from tests.browser.conftest import PASSWORD, USER, BrowserLog, DemoFactory, chromium_resolving, log_in
from tests.browser.pages import serving
from tests.support.stored import stored_generation, stored_session

ACCESS_TTL = 3
#: Past the access token's expiry: whole seconds (exp = iat + ttl), and a margin.
PAST_EXPIRY = ACCESS_TTL + 0.3
ACCOUNT = "/pages/account"
LOGIN_WITH_NEXT = "/?next=/pages/account"
PAGE_COOKIE = "sr_session"
ACCESS_COOKIE = "sr_session_access"
AUTH_COOKIE = "refresh_token"
HOSTILE_SITE = "evil.example.test"
PARALLEL = 10


@pytest.fixture
def demo(start_demo: DemoFactory) -> AppServer:
    return start_demo(ACCESS_TOKEN_TTL=str(ACCESS_TTL), LEEWAY_SECONDS="0")


def sign_in(page: Page, base_url: str) -> None:
    """Opens the account page without a session, is sent to the login page, logs in there and is
    sent back to the account page (the login page follows ``next``)."""
    page.goto(f"{base_url}{ACCOUNT}")
    expect(page).to_have_url(f"{base_url}{LOGIN_WITH_NEXT}")
    page.fill("input[name=email]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{ACCOUNT}")
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)


def cookies(context: BrowserContext) -> dict[str, str]:
    """The session cookies the browser holds, by name (each name once, or the test fails)."""
    held = [(str(c.get("name")), str(c.get("value"))) for c in context.cookies()]
    names = [name for name, _ in held]
    assert len(names) == len(set(names)), names
    return dict(held)


def generation(redis_server: RedisServer, context: BrowserContext) -> int:
    """The generation Redis holds for the browser's session: one more per rotation."""
    return stored_generation(redis_server.client(), cookies(context)[PAGE_COOKIE])


def set_cookies(response: Response) -> list[str]:
    return [h["value"] for h in response.headers_array() if h["name"].lower() == "set-cookie"]


def request_cookies(response: Response) -> dict[str, str]:
    """The cookies the response's request carried, by name."""
    sent = response.request.all_headers().get("cookie", "")
    return dict(cookie_value(part) for part in sent.split("; ") if part)


def cookie_value(header: str) -> tuple[str, str]:
    name, _, rest = header.partition("=")
    return name, rest.split(";", 1)[0]


def stop_polling(page: Page) -> None:
    """Takes the polling element out of the page (htmx stops polling an element that left it)."""
    page.evaluate("document.querySelector('[data-testid=clock]').remove()")


def csp_violations(log: BrowserLog) -> list[str]:
    return [error for error in log.errors if "Content Security Policy" in error]


def test_a_navigation_after_expiry_stays_logged_in_with_one_rotation(
    page: Page, context: BrowserContext, demo: AppServer, redis_server: RedisServer, browser_log: BrowserLog
) -> None:
    sign_in(page, demo.url)
    held = cookies(context)
    assert held[PAGE_COOKIE] == held[AUTH_COOKIE]  # one session for the pages and the JS manager
    assert ACCESS_COOKIE in held
    before = generation(redis_server, context)
    page.goto("about:blank")  # nothing polls while the token runs out

    time.sleep(PAST_EXPIRY)
    assert ACCESS_COOKIE not in cookies(context)  # the browser dropped it with its token
    # Sent anyway, as by a browser whose cookie outlives its token by a moment: the server itself
    # must find the token expired (LEEWAY_SECONDS=0) and rotate.
    context.add_cookies([{"name": ACCESS_COOKIE, "value": held[ACCESS_COOKIE], "url": demo.url}])
    response = page.goto(f"{demo.url}{ACCOUNT}")
    assert response is not None
    assert response.status == 200
    assert response.request.redirected_from is None
    assert request_cookies(response)[ACCESS_COOKIE] == held[ACCESS_COOKIE]
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
    assert generation(redis_server, context) == before + 1
    assert demo.log_text().count("refresh rotated") == 1
    names = sorted(cookie_value(header)[0] for header in set_cookies(response))
    assert names == sorted([AUTH_COOKIE, PAGE_COOKIE, ACCESS_COOKIE])
    after = cookies(context)
    assert after[PAGE_COOKIE] == after[AUTH_COOKIE] != held[PAGE_COOKIE]

    again = page.reload()  # the new access token is good: no Redis, no rotation
    assert again is not None
    assert again.status == 200
    assert set_cookies(again) == []
    assert generation(redis_server, context) == before + 1
    # the polled fragment renders with the same cookies
    expect(page.get_by_test_id("clock-email")).to_have_text(USER)
    assert browser_log.errors == []


@pytest.mark.parametrize("urls", ["one-url", "ten-urls"])
def test_ten_fragments_at_once_after_expiry_share_one_rotation(
    page: Page,
    context: BrowserContext,
    demo: AppServer,
    redis_server: RedisServer,
    browser_log: BrowserLog,
    urls: str,
) -> None:
    """Ten htmx requests at once, from ten elements of the page, with an expired access token.

    Each request carries the cookies the browser held when it went out: the old refresh token (then
    its answer sets the three new cookies) or, when it went out after the first answer came back,
    the new ones (then it needs no rotation and sets nothing). ``one-url``: all ask for
    ``/pages/clock``, and Chromium sends requests for one URL one at a time (its HTTP cache's lock),
    so those with the old token reach the server after the rotation has ended and get the store's
    grace answer (the same refresh token, a new access token each). ``ten-urls``:
    ``/pages/clock?n=<i>`` go out together over several connections, and those that meet the
    rotation under way share it (identical cookies). How many do what varies from run to run;
    every time: all answers 200, one rotation, one new refresh token, no reuse detected.
    """
    sign_in(page, demo.url)
    stop_polling(page)
    before = generation(redis_server, context)
    old_refresh = cookies(context)[PAGE_COOKIE]
    time.sleep(PAST_EXPIRY)
    assert ACCESS_COOKIE not in cookies(context)

    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r) if "/pages/clock" in r.url else None)
    statuses: list[int] = page.evaluate(
        """async ([count, distinct]) => {
            const statuses = [];
            const targets = Array.from({ length: count }, () => {
                const element = document.createElement("div");
                element.dataset.testid = "fragment";
                element.addEventListener("htmx:afterRequest", (e) => statuses.push(e.detail.xhr.status));
                document.querySelector("main").append(element);
                return element;
            });
            await Promise.all(targets.map((element, i) => htmx.ajax(
                "GET", distinct ? `/pages/clock?n=${i}` : "/pages/clock",
                { source: element, target: element, swap: "innerHTML" })));
            return statuses;
        }""",
        [PARALLEL, urls == "ten-urls"],
    )
    assert statuses == [200] * PARALLEL
    expect(page.get_by_test_id("fragment").get_by_test_id("clock-email")).to_have_count(PARALLEL)
    expect(page.get_by_test_id("fragment").get_by_test_id("clock-email").first).to_have_text(USER)
    deadline = time.monotonic() + 5  # the last response events may trail the swaps
    while len(responses) < PARALLEL and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(responses) == PARALLEL

    rotations = generation(redis_server, context) - before
    held = cookies(context)
    headers = [header for response in responses for header in set_cookies(response)]
    values: dict[str, set[str]] = {}
    for header in headers:
        name, value = cookie_value(header)
        values.setdefault(name, set()).add(value)
    # What each request carried: the old refresh token (sent before any answer came back) or the new one.
    sent = [request_cookies(response)[PAGE_COOKIE] for response in responses]
    log = demo.log_text()
    measured: dict[str, Any] = {
        "rotations (generation)": rotations,
        "refresh rotated (log)": log.count("refresh rotated"),
        "refresh within grace (log)": log.count("refresh within grace"),
        "requests with the old refresh token": sent.count(old_refresh),
        "responses with Set-Cookie": sum(1 for response in responses if set_cookies(response)),
        "Set-Cookie headers": len(headers),
        "distinct values": {name: len(found) for name, found in sorted(values.items())},
    }
    print(f"\nten fragments at once after expiry ({urls}): {measured}")

    assert rotations == 1, measured
    assert log.count("refresh rotated") == 1, measured
    assert set(sent) <= {old_refresh, held[PAGE_COOKIE]}, measured
    for response, token in zip(responses, sent, strict=True):
        # a request sent with the old token is answered with all three new cookies, one sent after
        # the browser got them with none
        names = sorted(cookie_value(header)[0] for header in set_cookies(response))
        assert names == (sorted([AUTH_COOKIE, PAGE_COOKIE, ACCESS_COOKIE]) if token == old_refresh else [])
    # every answer hands out the one new refresh token, in both of its cookies
    assert values[PAGE_COOKIE] == values[AUTH_COOKIE] == {held[PAGE_COOKIE]}, measured
    assert held[PAGE_COOKIE] != old_refresh
    assert held[ACCESS_COOKIE] in values[ACCESS_COOKIE]

    # the cookies the browser kept are the session's: the next page needs no rotation, the next
    # rotation is an ordinary one (no reuse detected)
    response = page.goto(f"{demo.url}{ACCOUNT}")
    assert response is not None
    assert response.status == 200
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
    assert generation(redis_server, context) == before + 1
    assert "reuse" not in demo.log_text()
    assert browser_log.errors == []


@pytest.fixture(scope="module")
def site_browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium resolving ``evil.example.test`` to this machine."""
    with chromium_resolving(playwright, HOSTILE_SITE) as instance:
        yield instance


def hostile_page(demo: AppServer) -> str:
    """A link to the account page, and the account page's greeting form, on another origin's page."""
    return f"""<!doctype html><html><body>
<a id="link" href="{demo.url}{ACCOUNT}">your account</a>
<form method="post" action="{demo.url}/pages/greeting"><input name="text" value="forged">
<button id="post" type="submit">post</button></form>
</body></html>"""


def greeting_count(page: Page) -> int:
    return int(page.get_by_test_id("greeting-count").inner_text())


def test_links_from_other_origins_land_logged_in_and_their_forms_are_refused(
    site_context: BrowserContext, demo: AppServer, redis_server: RedisServer, browser_log: BrowserLog
) -> None:
    page = browser_log.watch(site_context.new_page())
    sign_in(page, demo.url)
    # The app's own htmx POST passes: the browser adds this site's Origin to it.
    page.fill("input[name=text]", "Hello from the page")
    with page.expect_response(lambda r: r.url.endswith("/pages/greeting")) as posted:
        page.click("[data-testid=greet]")
    assert posted.value.status == 200
    assert posted.value.request.header_value("origin") == demo.url
    expect(page.get_by_test_id("greeting-count")).to_have_text("1")
    expect(page.get_by_test_id("greeting")).to_have_text(["Hello from the page"])

    with serving(lambda path: hostile_page(demo)) as port:
        # (origin, what a forged form post gets): same site, cookies sent, Origin refused; another
        # site, no Lax cookie sent, so no session
        for origin, refused in ((f"http://127.0.0.1:{port}", 403), (f"http://{HOSTILE_SITE}:{port}", 401)):
            page.goto(f"{origin}/")
            with page.expect_navigation(url=f"{demo.url}{ACCOUNT}") as followed:
                page.click("#link")
            assert followed.value is not None
            assert followed.value.status == 200, origin
            assert followed.value.request.redirected_from is None
            expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
            assert page.evaluate("document.referrer") == f"{origin}/"  # it came from there

            page.goto(f"{origin}/")
            before = generation(redis_server, site_context)
            with page.expect_response(lambda r: r.url.endswith("/pages/greeting")) as forged:
                page.click("#post")
            assert forged.value.status == refused, origin
            assert forged.value.request.header_value("origin") == origin
            sent = forged.value.request.header_value("cookie") or ""
            assert (PAGE_COOKIE in sent) == (refused == 403), (origin, sent)
            if refused == 403:
                assert forged.value.json()["error"] == "cross_site_request"
            assert set_cookies(forged.value) == []  # a refusal mints no cookies
            assert generation(redis_server, site_context) == before  # and rotates nothing

            page.goto(f"{demo.url}{ACCOUNT}")  # the forged greeting did not take
            expect(page.get_by_test_id("greeting-count")).to_have_text("1")
            expect(page.get_by_test_id("greeting")).to_have_text(["Hello from the page"])
    assert "greeting 2 recorded" not in demo.log_text()
    assert csp_violations(browser_log) == []


def test_a_revoked_session_sends_the_next_navigation_to_the_login_page(
    context: BrowserContext, browser: Browser, demo: AppServer, browser_log: BrowserLog
) -> None:
    page = browser_log.watch(context.new_page())
    sign_in(page, demo.url)
    polling = browser_log.watch(context.new_page())  # a second tab of the account page, left open
    polling.goto(f"{demo.url}{ACCOUNT}")
    expect(polling.get_by_test_id("page-user-email")).to_have_text(USER)
    session_id = page.get_by_test_id("page-session-id").inner_text()
    page.goto("about:blank")

    other = browser.new_context()  # another device of the same user revokes this browser's session
    try:
        admin = other.new_page()
        log_in(admin, demo.url)
        row = admin.locator(f"[data-testid=session][data-session-id='{session_id}']")
        expect(row).to_have_attribute("data-current", "false")
        row.get_by_test_id("revoke").click()
        expect(row).to_have_count(0)
        expect(admin.get_by_test_id("status")).to_have_text("logged-in")  # its own session lives on
    finally:
        other.close()

    # the open tab's next fragment gets HX-Redirect, and htmx follows it
    expect(polling).to_have_url(f"{demo.url}{LOGIN_WITH_NEXT}")
    response = page.goto(f"{demo.url}{ACCOUNT}")
    assert response is not None
    expect(page).to_have_url(f"{demo.url}{LOGIN_WITH_NEXT}")
    redirect = response.request.redirected_from
    assert redirect is not None
    redirect_response = redirect.response()
    assert redirect_response is not None
    assert redirect_response.status == 303
    expect(page.get_by_test_id("page-user-email")).to_have_count(0)

    page.fill("input[name=email]", USER)  # logging in again leads back to the page
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo.url}{ACCOUNT}")
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
    assert page.get_by_test_id("page-session-id").inner_text() != session_id
    assert csp_violations(browser_log) == []


def test_back_and_forward_keep_the_session_and_a_logout_is_not_undone_by_back(
    page: Page, demo: AppServer, browser_log: BrowserLog
) -> None:
    sign_in(page, demo.url)
    time.sleep(PAST_EXPIRY)  # the page's fragments rotate as the token runs out; the page stays
    expect(page.get_by_test_id("clock-email")).to_have_text(USER)
    page.get_by_test_id("dashboard-link").click()
    page.wait_for_url(f"{demo.url}/app")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("user-email")).to_have_text(USER)

    page.go_back()
    expect(page).to_have_url(f"{demo.url}{ACCOUNT}")
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
    page.go_forward()
    expect(page).to_have_url(f"{demo.url}/app")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    page.get_by_test_id("account-link").click()
    page.wait_for_url(f"{demo.url}{ACCOUNT}")
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)

    with page.expect_navigation(url=f"{demo.url}/") as left:
        page.get_by_test_id("page-logout").click()  # a form post: 303 to the login page
    assert left.value is not None
    assert left.value.request.redirected_from is not None
    page.go_back()  # the account page is asked for again, without a session
    expect(page).to_have_url(f"{demo.url}{LOGIN_WITH_NEXT}")
    expect(page.get_by_test_id("page-user-email")).to_have_count(0)
    page.go_forward()
    expect(page).to_have_url(re.compile(re.escape(demo.url) + r"/(\?.*)?$"))
    expect(page.get_by_test_id("page-user-email")).to_have_count(0)
    assert csp_violations(browser_log) == []


def test_a_form_on_a_no_referrer_page_of_the_app_is_its_own(
    page: Page, context: BrowserContext, demo: AppServer, redis_server: RedisServer
) -> None:
    """Chromium sends ``Origin: null`` (and ``Sec-Fetch-Site: same-origin``) with the app's own form
    on a page served with ``Referrer-Policy: no-referrer``, the policy many apps choose. The logout
    form of such a page logs out; it is not refused as cross-site."""
    sign_in(page, demo.url)

    def no_referrer(route: Route) -> None:
        served = route.fetch()
        headers = {**served.headers, "referrer-policy": "no-referrer"}
        route.fulfill(response=served, headers=headers)

    page.route(f"{demo.url}{ACCOUNT}", no_referrer)
    page.reload()
    expect(page.get_by_test_id("page-user-email")).to_have_text(USER)
    refresh_token = cookies(context)[PAGE_COOKIE]

    with page.expect_response(f"{demo.url}/auth/logout") as answered:
        page.get_by_test_id("page-logout").click()
    response = answered.value
    # Chromium hides the page's origin; the Sec-Fetch-* headers its network stack adds are not in
    # what Playwright reports, but only Sec-Fetch-Site: same-origin lets "null" through (else 403).
    assert response.request.header_value("origin") == "null"
    assert response.status == 303, response.text()  # logged out, not 403 cross_site_request
    page.wait_for_url(f"{demo.url}/")
    assert PAGE_COOKIE not in cookies(context)
    # the session is gone from Redis, not only from the browser
    assert stored_session(redis_server.client(), refresh_token) is None
    page.unroute(f"{demo.url}{ACCOUNT}")
    page.goto(f"{demo.url}{ACCOUNT}")
    expect(page).to_have_url(f"{demo.url}{LOGIN_WITH_NEXT}")
