"""The dashboard's live WebSocket in Chromium: renewed in band, one connection outlives its access
tokens (and without renewal it reconnects at each expiry); it ends with the session, comes back
after a server restart, and the server refuses a socket without a valid token."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import BrowserLog, DemoFactory, log_in

#: Records every close event of the page's live socket in window.closes, for the assertions.
RECORD_CLOSES = """() => {
  window.closes = [];
  window.demo.live().addEventListener("close", (event) => window.closes.push(event.detail));
}"""

RAW_HANDSHAKE = """async (protocols) => {
  const url = location.origin.replace(/^http/, "ws") + "/api/live";
  return await new Promise((resolve) => {
    const socket = new WebSocket(url, protocols);
    let opened = false;
    socket.onopen = () => { opened = true; };
    socket.onclose = (event) => resolve({ opened, code: event.code });
  });
}"""


def live_connections(page: Page) -> int:
    return int(page.get_by_test_id("live-connections").inner_text())


def wait_for_live_connections(page: Page, at_least: int, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=live-connections]').textContent) >= n",
        arg=at_least,
        timeout=timeout,
    )


def live_renewals(page: Page) -> int:
    return int(page.get_by_test_id("live-renewals").inner_text())


def test_the_live_socket_is_renewed_in_band_and_stays_one_connection(
    page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    # Tokens live 4 s and the server allows no leeway: unrenewed, the socket would be closed every
    # 4 s. The manager refreshes 2 s before expiry and hands each new token to the open socket.
    demo = start_demo(ACCESS_TOKEN_TTL="4", LEEWAY_SECONDS="0")
    log_in(page, demo.url)
    expect(page.get_by_test_id("live-state")).to_have_text("open")
    page.evaluate(RECORD_CLOSES)
    first_exp = page.get_by_test_id("live-token-exp").get_attribute("datetime")
    ticks_before = int(page.get_by_test_id("live-ticks").inner_text())

    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=live-renewals]').textContent) >= 3",
        timeout=20_000,
    )  # three renewals: the socket is now past its first token's end, and its second's

    expect(page.get_by_test_id("live-state")).to_have_text("open")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert live_connections(page) == 1
    assert page.evaluate("window.closes") == []
    assert page.get_by_test_id("live-token-exp").get_attribute("datetime") != first_exp
    assert "websocket closed" not in demo.log_text()
    expect(page.get_by_test_id("live-ticks")).not_to_have_text(str(ticks_before))
    assert browser_log.errors == []


def test_without_renewal_the_live_socket_reconnects_at_each_expiry(
    page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    # The same 4-second tokens with ?renew=0: the server closes the socket as each token ends, and
    # the manager refreshed 2 s before, so each reconnect already holds a fresh token.
    demo = start_demo(ACCESS_TOKEN_TTL="4", LEEWAY_SECONDS="0")
    log_in(page, demo.url)
    page.goto(f"{demo.url}/app?renew=0")
    expect(page.get_by_test_id("live-state")).to_have_text("open")
    page.evaluate(RECORD_CLOSES)
    ticks_before = int(page.get_by_test_id("live-ticks").inner_text())

    wait_for_live_connections(page, 3)  # two token expiries later

    expect(page.get_by_test_id("live-state")).to_have_text("open")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert live_renewals(page) == 0
    closes: list[dict[str, Any]] = page.evaluate("window.closes")
    assert len(closes) >= 2
    for close in closes:
        assert (close["code"], close["reason"], close["wasOpen"]) == (4401, "token expired", True)
        assert close["reconnectInMs"] == 0  # the manager already had the next token: no wait, no refresh
    assert demo.log_text().count("websocket closed (token expired)") >= 2
    expect(page.get_by_test_id("live-ticks")).not_to_have_text(str(ticks_before))
    assert browser_log.errors == []


def test_log_out_everywhere_closes_the_live_socket_in_every_other_browser(
    browser: Browser, start_demo: DemoFactory
) -> None:
    # Access tokens live 60 s, so only the socket's 4401 can tell the phone this soon.
    demo = start_demo()
    laptop, phone = browser.new_context(), browser.new_context()
    try:
        first, second = laptop.new_page(), phone.new_page()
        log_in(first, demo.url)
        log_in(second, demo.url)
        expect(second.get_by_test_id("live-state")).to_have_text("open")
        second.evaluate(RECORD_CLOSES)

        first.get_by_test_id("logout-all").click()

        expect(first.get_by_test_id("status")).to_have_text("logged-out")
        expect(first.get_by_test_id("live-state")).to_have_text("closed")  # its own logout ends it too
        expect(second.get_by_test_id("status")).to_have_text("logged-out")
        expect(second.get_by_test_id("live-state")).to_have_text("closed")
        closes: list[dict[str, Any]] = second.evaluate("window.closes")
        assert (closes[0]["code"], closes[0]["reason"]) == (4401, "session revoked")
        assert closes[-1]["reconnectInMs"] is None  # closed for good, no reconnect loop
        assert "websocket closed (session revoked)" in demo.log_text()
        second.wait_for_timeout(1_500)
        assert live_connections(second) == 1  # it never reconnected
    finally:
        laptop.close()
        phone.close()


def test_the_live_socket_comes_back_after_a_server_restart(page: Page, start_demo: DemoFactory) -> None:
    demo = start_demo()
    log_in(page, demo.url)
    expect(page.get_by_test_id("live-state")).to_have_text("open")
    demo.restart()  # a new process on the same port and Redis
    wait_for_live_connections(page, 2, timeout=40_000)
    expect(page.get_by_test_id("live-state")).to_have_text("open")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")


def test_the_server_refuses_a_socket_without_a_valid_token(page: Page, start_demo: DemoFactory) -> None:
    demo = start_demo()
    page.goto(f"{demo.url}/")
    refused = {"opened": False, "code": 1006}  # a browser sees a refused handshake only as 1006
    assert page.evaluate(RAW_HANDSHAKE, []) == refused
    assert page.evaluate(RAW_HANDSHAKE, ["starlette-refresh", "starlette-refresh.bearer.a.b.c"]) == refused
    log_in(page, demo.url)
    token = page.evaluate("window.demo.manager.accessToken")
    accepted = page.evaluate(
        """async (token) => {
          const url = location.origin.replace(/^http/, "ws") + "/api/live";
          const socket = new WebSocket(url, ["starlette-refresh", "starlette-refresh.bearer." + token]);
          const hello = await new Promise((resolve) => {
            socket.onmessage = (event) => resolve(JSON.parse(event.data));
          });
          socket.close();
          return { protocol: socket.protocol, type: hello.type };
        }""",
        token,
    )
    assert accepted == {"protocol": "starlette-refresh", "type": "hello"}
