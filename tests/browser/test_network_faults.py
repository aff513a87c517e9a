"""A refresh that hangs, or a 503 asking to come back tomorrow, in a real Chromium (issue 13, items 1, 3).

The demo builds its manager with the defaults (static/demo/dashboard.js passes only `log`):
refreshTimeoutMs 10 s, lockTimeoutMs 10 s, backoff {baseMs: 1 s, maxMs: 30 s}, and a proactive
refresh half a lifetime early for a token of two minutes or less. `page.clock` moves the page's time
past those timers; the server's time runs for real, so its tokens stay valid meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, Request, Route, expect

from tests.browser.conftest import DemoFactory, log_in, refresh_count, wait_for_refresh_count

REFRESH_TIMEOUT_MS = 10_000  # the manager's default refreshTimeoutMs, which the demo keeps
BACKOFF_MAX_MS = 30_000  # the manager's default backoff.maxMs, which the demo keeps

# Records every moment the dashboard says `logged-in` while the manager's token has run out (or the
# countdown reads 0): the dashboard re-renders its countdown every second, so a mutation observer
# sees each second of page time, fake or real.
WATCH_THE_TRUTH = """
(() => {
  window.__untruths = [];
  const check = () => {
    const status = document.querySelector('[data-testid=status]');
    const left = document.querySelector('[data-testid=expires-in]');
    const manager = window.demo && window.demo.manager;
    if (!status || !left || !manager || status.textContent !== 'logged-in') return;
    const dead = manager.expiresAt == null || manager.expiresAt <= Date.now();
    if (dead || left.textContent.trim() === '0') {
      window.__untruths.push({left: left.textContent, state: manager.state,
                              msLeft: manager.expiresAt == null ? null : manager.expiresAt - Date.now()});
    }
  };
  addEventListener('DOMContentLoaded', () => new MutationObserver(check)
    .observe(document.body, {subtree: true, childList: true, characterData: true}));
})();
"""


def untruths(page: Page) -> list[dict[str, object]]:
    found: list[dict[str, object]] = page.evaluate("window.__untruths")
    return found


class HangFirst:
    """A route that holds the first refresh request unanswered for good and lets later ones through."""

    def __init__(self) -> None:
        self.held: list[Route] = []
        self.passed = 0

    def __call__(self, route: Route) -> None:
        if not self.held:
            self.held.append(route)  # never fulfilled: a captive portal, a dead mobile link
            return
        self.passed += 1
        route.continue_()


def unavailable_for_a_day(route: Route) -> None:
    route.fulfill(
        status=503,
        headers={"Retry-After": "86400"},
        content_type="application/json",
        body='{"error": "temporarily_unavailable"}',
    )


def page_now(page: Page) -> int:
    now: int = page.evaluate("Date.now()")
    return now


def test_a_hung_refresh_is_abandoned_after_its_timeout_and_retried(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    # 30 s tokens: the proactive refresh comes 15 s early, longer than the timeout plus a first
    # backoff, so the tab gets its new token while the old one still works.
    demo = start_demo(ACCESS_TOKEN_TTL="30")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    hang = HangFirst()
    page.route("**/auth/refresh", hang)
    with page.expect_request("**/auth/refresh"):
        page.clock.run_for(15_500)  # the proactive refresh goes out, and hangs
    hung_at = page_now(page)
    page.clock.run_for(REFRESH_TIMEOUT_MS - 1_500)  # short of the timeout: still waiting, still logged in
    assert hang.passed == 0
    assert refresh_count(page) == count
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    with page.expect_request("**/auth/refresh", timeout=5_000):
        # past the timeout plus the longest first backoff (1 s): abandoned, and retried
        page.clock.run_for(REFRESH_TIMEOUT_MS + 1_000 - (page_now(page) - hung_at) + 100)
    wait_for_refresh_count(page, count + 1)
    assert hang.passed == 1
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("connection")).to_have_text("online")
    log = page.get_by_test_id("log").inner_text()
    # Chromium's fetch rejects at once when aborted: the log must still name the timeout, not a
    # network error (it did, until the timeout rejected before aborting)
    assert "Refresh failed (timed out after 10s)" in log
    assert "network error" not in log
    assert "expired" not in log
    # and the tab keeps refreshing by itself afterwards: the hung request holds nothing
    page.clock.run_for(15_500)
    wait_for_refresh_count(page, count + 2)
    assert hang.passed == 2
    assert page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)") == 200
    assert untruths(page) == []


def test_a_hung_refresh_releases_the_cross_tab_lock_at_its_timeout(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="30")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()  # the context's clock: both tabs' timers move together
    log_in(page, demo.url)
    hang = HangFirst()
    page.route("**/auth/refresh", hang)  # the first tab's only
    with page.expect_request("**/auth/refresh"):
        page.clock.run_for(15_500)
    hung_at = page_now(page)
    # A second tab opens while the first one's refresh hangs holding the Web Lock: its page-load
    # refresh waits for the lock. It starts waiting well after the hung request went out, so its own
    # lock timeout (10 s) falls well after the hung request's (10 s too).
    time.sleep(1.5)
    second = context.new_page()
    second.goto(f"{demo.url}/app")
    expect(second.get_by_test_id("log")).to_contain_text("Waiting for another tab's refresh")
    second_waits_from = page_now(second)
    assert second_waits_from - hung_at > 1_000
    # Up to the first tab's refresh timeout, and a little past it, but short of the second tab's
    # lock timeout: the second tab gets the lock as the hung request is abandoned.
    page.clock.run_for(REFRESH_TIMEOUT_MS - (page_now(page) - hung_at) + 200)
    expect(second.get_by_test_id("status")).to_have_text("logged-in")
    waited = page_now(second) - second_waits_from
    second_log = second.get_by_test_id("log").inner_text()
    assert "Gave up waiting for another tab" not in second_log, f"blocked {waited} ms: the lock was held"
    assert waited < REFRESH_TIMEOUT_MS
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    # The next refresh finds the lock free: no tab waits out its lock timeout again.
    counts = refresh_count(page), refresh_count(second)
    page.clock.run_for(15_500)
    wait_for_refresh_count(page, counts[0] + 1)
    wait_for_refresh_count(second, counts[1] + 1)
    assert "Gave up waiting for another tab" not in second.get_by_test_id("log").inner_text()
    assert "Gave up waiting for another tab" not in page.get_by_test_id("log").inner_text()
    assert untruths(page) == []
    assert untruths(second) == []


def test_retry_after_a_day_is_capped_at_the_backoff_maximum(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    # 70 s tokens: refreshed 35 s early, so a retry 30 s after a 503 still finds the token alive.
    demo = start_demo(ACCESS_TOKEN_TTL="70")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    requests: list[Request] = []

    def unavailable_once(route: Route) -> None:
        requests.append(route.request)
        if len(requests) == 1:
            unavailable_for_a_day(route)
        else:
            route.continue_()

    page.route("**/auth/refresh", unavailable_once)
    with page.expect_request("**/auth/refresh"):
        page.clock.run_for(35_500)  # the proactive refresh meets a 503 asking for a day's wait
    expect(page.get_by_test_id("connection")).to_have_text("reconnecting")
    expect(page.get_by_test_id("notice")).to_contain_text(f"Retrying in {BACKOFF_MAX_MS / 1000:.1f}s")
    failed_at = page_now(page)
    page.clock.run_for(BACKOFF_MAX_MS - 5_000)  # Retry-After is honoured up to the cap: no retry yet
    assert len(requests) == 1
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    with page.expect_request("**/auth/refresh", timeout=5_000):
        page.clock.run_for(BACKOFF_MAX_MS - (page_now(page) - failed_at) + 500)
    wait_for_refresh_count(page, count + 1)
    assert len(requests) == 2
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("connection")).to_have_text("online")
    assert page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)") == 200
    assert untruths(page) == []


def hang_for_good(route: Route) -> None:
    del route  # never answered


@pytest.mark.parametrize("fault", [hang_for_good, unavailable_for_a_day], ids=["hung", "retry-after"])
def test_the_page_never_says_logged_in_with_a_token_that_has_run_out(
    context: BrowserContext, page: Page, start_demo: DemoFactory, fault: Callable[[Route], None]
) -> None:
    """What the issue saw: with short tokens a hung refresh (10 s timeout) or a capped Retry-After
    (30 s) outlasts the token, and the page said logged-in with 0 s left. It now says expired, and
    never logged-in on a dead token at any moment (the watcher sees every change of the page)."""
    # 6 s tokens, refreshed 3 s early: the fault outlasts the token.
    demo = start_demo(ACCESS_TOKEN_TTL="6")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()
    log_in(page, demo.url)
    page.route("**/auth/refresh", fault)
    with page.expect_request("**/auth/refresh"):
        page.clock.run_for(3_500)
    page.clock.run_for(4_000)  # 7.5 s into a 6 s token; the fault still holds
    status = page.get_by_test_id("status").inner_text()
    left = page.get_by_test_id("expires-in").inner_text()
    alive = page.evaluate("window.demo.manager.expiresAt > Date.now()")
    assert alive or status != "logged-in", f"the page says {status} with {left} s left on a dead token"
    assert not alive
    assert status == "expired"
    assert untruths(page) == []
