"""Cookie tossing in Chromium: a sibling subdomain plants a refresh cookie for the parent domain.

Chromium resolves ``*.example.test`` to 127.0.0.1 (``--host-resolver-rules``), so the demo runs as
``http://app.example.test:<port>`` and a hostile page as ``http://evil.example.test:<port>``: two
hosts of one site, as ``app.example.com`` and ``evil.example.com`` would be. The hostile page sets
``refresh_token`` for ``Domain=example.test`` at the refresh endpoint's path, holding a real session
of the attacker's; Chromium then sends it to the demo beside the user's own cookie, first.

Before the fix, the user's login left the planted cookie in place: every refresh carried two cookies
and was refused, and the dashboard lost the session at its first refresh. Now the login answer
deletes it, and a cookie planted after the login is deleted by the one refusal it causes.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, expect

from harness.processes import AppServer
from tests.browser.conftest import (
    PASSWORD,
    USER,
    BrowserLog,
    DemoFactory,
    chromium_resolving,
    log_in,
    wait_for_refresh_count,
)
from tests.browser.pages import serving

COOKIE = "refresh_token"
SITE = "example.test"

PLANT = """<!doctype html><html><body><script>
  const query = new URLSearchParams(location.search);
  document.cookie = `refresh_token=${query.get('token')}; Domain=example.test; Path=${query.get('path')}`;
  document.body.dataset.planted = 'yes';
</script></body></html>"""


@pytest.fixture(scope="module")
def site_browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium resolving every host of ``example.test`` to this machine."""
    with chromium_resolving(playwright, f"*.{SITE}") as instance:
        yield instance


@pytest.fixture
def evil_host() -> Iterator[str]:
    """``http://evil.example.test:<port>``, serving the planting page at ``/plant``."""
    with serving(lambda path: PLANT) as port:
        yield f"http://evil.{SITE}:{port}"


@pytest.fixture
def demo(start_demo: DemoFactory) -> AppServer:
    # plain http on a host that is not localhost: the cookie cannot be Secure here
    return start_demo(ACCESS_TOKEN_TTL="6", COOKIE_SECURE="false")  # a refresh every 3 s


def app_url(demo: AppServer) -> str:
    return f"http://app.{SITE}:{demo.port}"


def attackers_refresh_token(demo: AppServer) -> str:
    """A session of the attacker's own, logged in from outside any browser."""
    answer = httpx2.post(f"{demo.url}/auth/login", json={"email": USER, "password": PASSWORD}, timeout=5)
    assert answer.status_code == 200, answer.text
    return str(answer.cookies[COOKIE])


def refresh_cookies(context: BrowserContext) -> list[tuple[str, str]]:
    """(domain, path) of each refresh cookie the browser holds."""
    return sorted(
        (str(c.get("domain")), str(c.get("path"))) for c in context.cookies() if c.get("name") == COOKIE
    )


def plant(context: BrowserContext, evil: str, token: str, path: str = "/auth/refresh") -> None:
    page = context.new_page()
    page.goto(f"{evil}/plant?token={token}&path={path}")
    expect(page.locator("body")).to_have_attribute("data-planted", "yes")
    page.close()
    assert (f".{SITE}", path) in refresh_cookies(context)


def test_a_login_deletes_the_planted_cookie_and_the_session_keeps_refreshing(
    site_context: BrowserContext, demo: AppServer, evil_host: str, browser_log: BrowserLog
) -> None:
    plant(site_context, evil_host, attackers_refresh_token(demo))
    page = browser_log.watch(site_context.new_page())
    log_in(page, app_url(demo))
    assert refresh_cookies(site_context) == [(f"app.{SITE}", "/auth")]
    wait_for_refresh_count(page, 2)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    assert refresh_cookies(site_context) == [(f"app.{SITE}", "/auth")]


def test_a_cookie_planted_after_login_costs_one_refusal_and_a_reload(
    site_context: BrowserContext, demo: AppServer, evil_host: str
) -> None:
    page = site_context.new_page()
    log_in(page, app_url(demo))
    plant(site_context, evil_host, attackers_refresh_token(demo))
    with page.expect_response(lambda r: r.url.endswith("/auth/refresh")) as refused:
        pass
    assert refused.value.status == 400
    assert "did not set" in refused.value.json()["error_description"]
    assert refresh_cookies(site_context) == [(f"app.{SITE}", "/auth")]  # the planted one is gone
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    count = int(page.get_by_test_id("refresh-count").inner_text())
    wait_for_refresh_count(page, count + 1)
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
