"""Restarts, outages, several tabs, revocation and hostile pages, in a real Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx2
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from harness.processes import AppServer, RedisServer
from tests.browser.conftest import BrowserLog, DemoFactory, log_in, refresh_count, wait_for_refresh_count
from tests.browser.pages import serving


def server_refreshes(demo: AppServer) -> dict[str, int]:
    """Refresh outcomes the server logged so far."""
    log = demo.log_text()
    return {
        "requests": log.count("POST /auth/refresh"),
        "rotated": log.count("refresh rotated"),
        "grace": log.count("refresh within grace"),
    }


def test_three_tabs_due_at_once_share_one_refresh(context: BrowserContext, start_demo: DemoFactory) -> None:
    # Real time, no fake clocks: each tab adopts the newest token over the channel, so all three
    # hold the same token and their refresh timers come due at the same moment, every cycle.
    demo = start_demo(ACCESS_TOKEN_TTL="6")  # a refresh every 3 s
    tabs = [context.new_page() for _ in range(3)]
    log_in(tabs[0], demo.url)
    for tab in tabs[1:]:
        tab.goto(f"{demo.url}/app")
        expect(tab.get_by_test_id("status")).to_have_text("logged-in")
    time.sleep(0.5)
    before = server_refreshes(demo)
    counts = [refresh_count(tab) for tab in tabs]
    cycles = 3
    for tab, count in zip(tabs, counts, strict=True):
        wait_for_refresh_count(tab, count + cycles)
    time.sleep(0.5)  # let a straggler reach the server log
    after = server_refreshes(demo)
    done = {k: after[k] - before[k] for k in after}
    print(f"over {cycles} cycles of three tabs: {done}")
    for tab in tabs:
        expect(tab.get_by_test_id("status")).to_have_text("logged-in")
        assert "logged out" not in tab.get_by_test_id("log").inner_text().lower()
    # one rotation per cycle (a tab may start a 4th cycle while the others finish the 3rd) and
    # every request accounted for: a rotation or a grace answer, never a refusal
    assert cycles <= done["rotated"] <= cycles + 1
    assert done["requests"] == done["rotated"] + done["grace"]
    assert done["requests"] <= 3 * (cycles + 1)


def test_api_server_restart_keeps_the_user_logged_in(page: Page, start_demo: DemoFactory) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6")
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    demo.restart()  # a new process, same Redis
    page.clock.run_for(3_500)
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)") == 200


def test_redis_outage_shows_reconnecting_and_recovers(
    page: Page, start_demo: DemoFactory, redis_server: RedisServer
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6")
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    redis_server.kill()
    page.clock.run_for(3_500)  # the proactive refresh meets a 503
    expect(page.get_by_test_id("connection")).to_have_text(re.compile("reconnecting", re.IGNORECASE))
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    for _ in range(3):  # a few retries while Redis stays down, past the 6 s token's end
        page.clock.run_for(5_000)
        time.sleep(0.2)
    # Never a logout: the session lives and the page says so; but the access token has run out, and
    # the status says that instead of "logged-in" (the page holds no live token).
    expect(page.get_by_test_id("status")).to_have_text("expired")
    expect(page.get_by_test_id("signed-out")).to_be_hidden()
    expect(page.get_by_test_id("notice")).to_contain_text("you are still signed in")
    redis_server.restart()
    for _ in range(20):  # let the backoff timers fire until a retry succeeds
        page.clock.run_for(5_000)
        if refresh_count(page) > count:
            break
        time.sleep(0.2)
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("connection")).not_to_have_text(re.compile("reconnecting", re.IGNORECASE))


def test_a_stolen_refresh_token_replayed_after_grace_logs_the_tab_out(
    page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6", REFRESH_GRACE_SECONDS="1")
    page.clock.install()
    log_in(page, demo.url)
    stolen = {c["name"]: c["value"] for c in page.context.cookies()}["refresh_token"]
    count = refresh_count(page)
    page.clock.run_for(3_500)  # the tab rotates: the stolen token is now an old one
    wait_for_refresh_count(page, count + 1)
    time.sleep(1.2)  # past the 1 s grace window on the server's clock
    replay = httpx2.post(f"{demo.url}/auth/refresh", cookies={"refresh_token": stolen}, timeout=10)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    page.clock.run_for(3_500)  # the tab's next refresh finds its session revoked
    expect(page.get_by_test_id("status")).to_have_text("logged-out")
    assert "invalid_grant" in page.get_by_test_id("log").inner_text()


def test_revoking_a_session_from_another_browser_logs_it_out(
    browser: Browser, start_demo: DemoFactory
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6")
    laptop, phone = browser.new_context(), browser.new_context()
    try:
        first, second = laptop.new_page(), phone.new_page()
        first.clock.install()
        log_in(first, demo.url)
        log_in(second, demo.url)
        sessions = second.get_by_test_id("session")
        expect(sessions).to_have_count(2)
        other = sessions.filter(has_not_text=re.compile("this device|current", re.IGNORECASE))
        expect(other).to_have_count(1)
        other.get_by_test_id("revoke").click()
        expect(sessions).to_have_count(1)
        first.clock.run_for(3_500)
        expect(first.get_by_test_id("status")).to_have_text("logged-out")
        expect(second.get_by_test_id("status")).to_have_text("logged-in")
    finally:
        laptop.close()
        phone.close()


def test_log_out_everywhere_reaches_every_browser(browser: Browser, start_demo: DemoFactory) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6")
    contexts = [browser.new_context() for _ in range(3)]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        for p in pages:
            p.clock.install()
            log_in(p, demo.url)
        pages[0].get_by_test_id("logout-all").click()
        expect(pages[0].get_by_test_id("status")).to_have_text("logged-out")
        for p in pages[1:]:
            p.clock.run_for(3_500)
            expect(p.get_by_test_id("status")).to_have_text("logged-out")
    finally:
        for ctx in contexts:
            ctx.close()


EVIL_PAGE = """<!doctype html><title>evil</title><script>
async function attack(target) {
  const results = {};
  for (const path of ["/auth/refresh", "/auth/logout"]) {
    try {
      const r = await fetch(target + path, {method: "POST", credentials: "include"});
      results[path] = r.status;
    } catch (e) { results[path] = "blocked: " + e.message; }
  }
  return results;
}
</script>"""


@pytest.fixture
def evil_origin() -> Iterator[str]:
    """A page on another origin of the same site (127.0.0.1, another port): SameSite lets the
    cookie through, so only the server's Origin check stands between it and the session."""
    with serving(lambda path: EVIL_PAGE) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_page_on_another_origin_cannot_refresh_or_log_out(
    context: BrowserContext, start_demo: DemoFactory, evil_origin: str, browser_log: BrowserLog
) -> None:
    demo = start_demo()
    victim = context.new_page()
    log_in(victim, demo.url)
    before = server_refreshes(demo)
    attacker = context.new_page()
    attacker.goto(evil_origin)
    attacker.evaluate(f"attack({demo.url!r})")  # CORS hides the answers; the server log shows them
    time.sleep(0.3)
    log = demo.log_text()
    assert re.search(r"POST /auth/refresh HTTP/1.1\" 403", log)
    assert re.search(r"POST /auth/logout HTTP/1.1\" 403", log)
    assert server_refreshes(demo)["rotated"] == before["rotated"]
    # the victim's session is untouched: a reload restores it through the same cookie
    victim.reload()
    expect(victim.get_by_test_id("status")).to_have_text("logged-in")


@pytest.mark.parametrize(
    ("when", "status", "body"),
    [
        ("on load", 403, '{"error": "cross_site_request", "error_description": "not from here"}'),
        ("proactively", 404, '{"detail": "Not Found"}'),
    ],
)
def test_a_final_refresh_error_shows_as_an_error_with_its_reason_and_a_way_back(
    page: Page, start_demo: DemoFactory, when: str, status: int, body: str
) -> None:
    """A refresh answered with a final error (a 4xx but 400/401/408/429) is not retried and is not
    a silent logout: the page says error, why, and links to the sign-in page."""
    demo = start_demo(ACCESS_TOKEN_TTL="4")
    refreshes: list[str] = []

    def refuse(route: Route) -> None:
        refreshes.append(route.request.url)
        route.fulfill(status=status, content_type="application/json", body=body)

    if when == "on load":
        log_in(page, demo.url)
        page.route("**/auth/refresh", refuse)
        page.reload()
    else:
        log_in(page, demo.url)
        page.route("**/auth/refresh", refuse)  # the next proactive refresh, within about 2 s

    expect(page.get_by_test_id("status")).to_have_text("error", timeout=10_000)
    expect(page.get_by_test_id("notice")).to_contain_text(f"HTTP {status}")
    expect(page.get_by_test_id("login-link")).to_be_visible()
    expect(page.get_by_test_id("connection")).to_have_text("stopped")
    page.wait_for_timeout(3_000)  # long enough for a retry with backoff, which must not come
    assert len(refreshes) == 1, f"a final error was retried: {len(refreshes)} requests"
    expect(page.get_by_test_id("status")).to_have_text("error")
