"""A user stays logged in: past expiry, over days of refreshes, through a sleeping laptop, reloads."""

from __future__ import annotations

import re
import time

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import BrowserLog, DemoFactory, log_in, refresh_count, wait_for_refresh_count


def api_me_status(page: Page) -> int:
    status: int = page.evaluate("window.demo.manager.fetch('/api/me').then(r => r.status)")
    return status


def test_waiting_past_expiry_keeps_the_user_logged_in(
    page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="6")  # margin = min(60 s, lifetime / 2) = 3 s
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    for _ in range(6):  # 6 x 3.5 s of page time: three and a half access lifetimes
        page.clock.run_for(3_500)
        count = wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert api_me_status(page) == 200
    log = page.get_by_test_id("log").inner_text()
    assert log.count("refreshing proactively") >= 6
    assert "expired" not in log
    assert browser_log.errors == []


def test_session_lives_for_days_while_refreshes_keep_coming(
    page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    # The server forgets a session after 5 idle seconds; the test runs for far longer in real
    # time and two days in page time, so only sliding refreshes keep it alive.
    demo = start_demo(ACCESS_TOKEN_TTL="2", REFRESH_TOKEN_TTL="5", REFRESH_GRACE_SECONDS="1")
    page.clock.install()
    log_in(page, demo.url)
    started = time.monotonic()
    count = refresh_count(page)
    for _ in range(24):
        page.clock.fast_forward("02:00:00")  # the due refresh timer fires once, like a long sleep
        count = wait_for_refresh_count(page, count + 1)
        time.sleep(0.4)
    assert time.monotonic() - started > 5 * 2  # twice the server's idle lifetime
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert api_me_status(page) == 200
    assert browser_log.errors == []


def test_a_sleeping_laptop_recovers_when_it_wakes(
    page: Page, context: BrowserContext, start_demo: DemoFactory
) -> None:
    demo = start_demo(ACCESS_TOKEN_TTL="3")
    page.clock.install()
    log_in(page, demo.url)
    count = refresh_count(page)
    context.set_offline(True)
    page.clock.fast_forward("00:30:00")  # lid closed for half an hour: the refresh timer fires offline
    time.sleep(3.5)  # and the server's clock passes the access token's expiry for real
    context.set_offline(False)  # lid opened: the 'online' event triggers an immediate re-check
    page.clock.run_for(100)
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert api_me_status(page) == 200
    assert "logged out" not in page.get_by_test_id("log").inner_text().lower()


def test_reload_restores_the_session_with_one_refresh_and_keeps_tokens_out_of_storage(
    page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo()
    log_in(page, demo.url)
    before = demo.log_text().count("POST /auth/refresh")
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("user-email")).to_have_text("test@example.com")
    assert demo.log_text().count("POST /auth/refresh") - before == 1

    token = page.evaluate("window.demo.manager.accessToken")
    assert isinstance(token, str)
    assert token.count(".") == 2
    storage = page.evaluate("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert token not in storage
    assert "eyJ" not in storage  # no JWT of any kind
    assert page.evaluate("document.cookie") == ""  # the refresh cookie is HttpOnly
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["refresh_token"]["httpOnly"] is True
    assert cookies["refresh_token"]["sameSite"] == "Strict"
    assert cookies["refresh_token"]["path"] == "/auth"
    # The one cookie with an access token is page mode's (the demo's login enables both modes), and
    # no script reads it or any other: every cookie is HttpOnly.
    assert [name for name in cookies if "access" in name] == ["sr_session_access"]
    assert all(cookie["httpOnly"] for cookie in cookies.values())


def test_the_session_list_names_the_browser_the_user_logged_in_with(
    page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    """The store keeps a short label, not the User-Agent: Chromium's own agent must come out as
    "Chrome <its major version> on Linux", whatever that version is."""
    demo = start_demo()
    log_in(page, demo.url)
    agent: str = page.evaluate("navigator.userAgent")
    major = re.search(r"Chrome/(\d+)", agent)
    assert major is not None, agent
    listed = page.evaluate("window.demo.manager.fetch('/auth/sessions').then(r => r.json())")
    assert [s["user_agent"] for s in listed["sessions"]] == [f"Chrome {major.group(1)} on Linux"]
    expect(page.get_by_test_id("sessions")).to_contain_text(f"Chrome {major.group(1)} on Linux")
    assert browser_log.errors == []
