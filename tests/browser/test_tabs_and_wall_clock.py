"""Two tabs racing a logout, and a wall clock that jumps, in a real Chromium (issue 13, items 4 and 7).

Item 4: a tab that finishes a refresh just before it hears of another tab's logout used to hand its
new token over the channel to the tab that had just logged out, which adopted it and said logged-in
again. The race is made deterministic without touching the manager: the second tab's refresh is held
at the network (`page.route`) and the second tab hears the channel late (an init script in that tab
alone delays delivery of BroadcastChannel messages, as a busy main thread would).

Item 7: `page.clock.set_system_time` moves `Date.now()` and leaves `performance.now()` and the timers
alone, which is what a user or NTP setting the clock does, and what a suspended Linux or macOS
machine looks like on waking (the wall clock moved; the monotonic clock and the timers did not).
"""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.browser.conftest import DemoFactory, log_in, refresh_count, wait_for_refresh_count
from tests.browser.test_network_faults import WATCH_THE_TRUTH, page_now, untruths

HOUR_MS = 3_600_000

# Delays every BroadcastChannel message this page receives by `window.__channelDelayMs` (0: none).
# The manager, the channel and the other tab are the real ones; only the delivery is late.
LATE_CHANNEL = """
(() => {
  const Native = window.BroadcastChannel;
  const wrapped = new WeakMap();
  window.__channelDelayMs = 0;
  window.BroadcastChannel = class LateChannel extends Native {
    addEventListener(type, listener, options) {
      if (type !== 'message' || typeof listener !== 'function') {
        return super.addEventListener(type, listener, options);
      }
      const late = (event) => {
        const ms = window.__channelDelayMs;
        if (ms > 0) setTimeout(() => listener.call(this, event), ms);
        else listener.call(this, event);
      };
      wrapped.set(listener, late);
      return super.addEventListener(type, late, options);
    }
    removeEventListener(type, listener, options) {
      return super.removeEventListener(type, wrapped.get(listener) ?? listener, options);
    }
  };
})();
"""


# Records the manager's every `state`, `refreshed` and `logged-out` event from now on.
RECORD_EVENTS = """() => {
  window.__seen = [];
  for (const type of ['state', 'refreshed', 'logged-out']) {
    window.demo.manager.addEventListener(type, (event) => {
      const detail = event.detail;
      window.__seen.push(`${type} ${detail.state ?? detail.source ?? detail.reason}`);
    });
  }
}"""


def token_of(page: Page) -> str | None:
    token: str | None = page.evaluate("window.demo.manager.accessToken")
    return token


def test_a_tab_that_logged_out_stays_out_when_another_tabs_refresh_lands_after(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="60")
    log_in(page, demo.url)
    second = context.new_page()
    second.add_init_script(LATE_CHANNEL)
    second.goto(f"{demo.url}/app")
    expect(second.get_by_test_id("status")).to_have_text("logged-in")

    held: list[Route] = []
    # the second tab's next refresh is held; any later one goes through
    second.route("**/auth/refresh", lambda route: route.continue_() if held else held.append(route))
    second.evaluate("void window.demo.manager.refresh()")
    second.wait_for_function("() => window.demo.manager.state === 'refreshing'")
    for _ in range(250):  # the route handler runs as the test's own sync calls pump events
        if held:
            break
        second.wait_for_timeout(20)
    assert len(held) == 1
    # The refresh reaches the server before the logout does: it rotates and answers a live token,
    # which the second tab will receive only once the first tab has logged out.
    answer = held[0].fetch()
    assert answer.status == 200
    second.evaluate("window.__channelDelayMs = 1500")  # the second tab hears the logout late

    page.evaluate(RECORD_EVENTS)
    with page.expect_response("**/auth/logout") as logout:
        page.get_by_test_id("logout").click()
    assert logout.value.status == 204
    expect(page.get_by_test_id("status")).to_have_text("logged-out")

    # The second tab gets its answer now, keeps the token and hands it to the first tab at once.
    held[0].fulfill(response=answer)
    second.wait_for_function("() => window.demo.manager.state !== 'refreshing'")
    # ...then, 1.5 s later, hears of the logout and ends its session too.
    expect(second.get_by_test_id("status")).to_have_text("logged-out", timeout=5_000)
    assert token_of(second) is None

    # The first tab heard the second tab's token after its own logout: that message is stale.
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("status")).to_have_text("logged-out")
    assert token_of(page) is None
    assert page.evaluate("window.demo.manager.state") == "logged-out"
    # never logged-in again, not even for a moment (before the fix it adopted the token, showed
    # logged-in, and logged out again only when that token's refresh met the ended session)
    assert page.evaluate("window.__seen") == ["state logged-out", "logged-out logout"]
    after_logout = page.get_by_test_id("log").inner_text().split("Logged out")[-1]
    assert "Another tab refreshed the token" not in after_logout
    # and it stays out until someone logs in again
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("logged-out")


def test_a_wall_clock_set_back_an_hour_does_not_postpone_the_refresh(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    # 30 s tokens, refreshed 15 s early: the proactive refresh is due 15 s after the login.
    demo = start_demo(ACCESS_TOKEN_TTL="30")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    page.clock.run_for(5_000)
    page.clock.set_system_time((page_now(page) - HOUR_MS) / 1000)  # set back (Python takes seconds)
    page.evaluate("dispatchEvent(new Event('focus'))")  # a wake event re-derives the deadline
    page.clock.run_for(1_000)
    # the countdown follows the token, not the wall clock: 24 s left, not an hour and 24 s
    assert int(page.get_by_test_id("expires-in").inner_text()) <= 30
    with page.expect_request("**/auth/refresh", timeout=5_000):
        page.clock.run_for(9_500)  # 15.5 s after the login, by the monotonic clock
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert 25 <= int(page.get_by_test_id("expires-in").inner_text()) <= 30
    assert page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)") == 200
    assert untruths(page) == []


def test_a_tab_that_wakes_from_a_sleep_without_any_event_refreshes_within_seconds(
    context: BrowserContext, page: Page, start_demo: DemoFactory
) -> None:
    # 15-minute tokens: the proactive timer is 13.5 minutes away when the machine goes to sleep.
    demo = start_demo(ACCESS_TOKEN_TTL="900", REFRESH_TOKEN_TTL="86400")
    context.add_init_script(WATCH_THE_TRUTH)
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    page.clock.run_for(10_000)
    # Two hours of sleep: the wall clock moved, the monotonic clock and the timers did not, and the
    # page gets no focus, online or visibilitychange event (a tab left in front when the lid closed).
    page.clock.set_system_time((page_now(page) + 2 * HOUR_MS) / 1000)
    with page.expect_request("**/auth/refresh", timeout=5_000):
        page.clock.run_for(5_500)  # the periodic check (checkIntervalMs, 5 s) sees the token is dead
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert int(page.get_by_test_id("expires-in").inner_text()) > 890
    assert page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)") == 200
    assert untruths(page) == []
