"""Browser fixtures: Debian's Chromium driven by Playwright, against the demo app in a real process.

Each test gets its own redis-server and demo process (short lifetimes configured per test) and a
fresh browser context; console errors and page errors are collected so tests can assert on them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from harness.processes import AppServer, RedisServer
from tests.apps import SECRET
from tests.support.fixtures import AppServerFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEMO_APP = "demo_app.app:create_app"
USER = "test@example.com"
PASSWORD = "password"  # the demo's documented test user

expect.set_options(timeout=10_000)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield instance
    instance.close()


@contextmanager
def chromium_resolving(playwright: Playwright, hosts: str) -> Iterator[Browser]:
    """A Chromium of its own that resolves ``hosts`` (a ``--host-resolver-rules`` pattern, such as
    ``*.example.test``) to this machine, for pages on other sites."""
    args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {hosts} 127.0.0.1"]
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def site_context(site_browser: Browser) -> Iterator[BrowserContext]:
    """A context of ``site_browser``, which each module that uses it defines (which hosts it maps)."""
    context = site_browser.new_context()
    yield context
    context.close()


DemoFactory = Callable[..., AppServer]


@pytest.fixture
def start_demo(redis_server: RedisServer, app_server_factory: AppServerFactory) -> DemoFactory:
    """Starts the demo app on the test's redis-server; keyword arguments become environment variables."""

    def start(**settings: str) -> AppServer:
        env = {
            "REDIS_URL": redis_server.url,
            "JWT_SECRET": SECRET,
            "ACCESS_TOKEN_TTL": "60",
            "REFRESH_TOKEN_TTL": "600",
            "REFRESH_GRACE_SECONDS": "10",
            **settings,
        }
        return app_server_factory(DEMO_APP, env, factory=True)

    return start


@dataclass
class BrowserLog:
    """What the page said: console errors and uncaught page errors."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, browser_log: BrowserLog) -> Page:
    return browser_log.watch(context.new_page())


def log_in(page: Page, base_url: str) -> None:
    """Logs in through the login form and waits for the dashboard to show the user."""
    page.goto(f"{base_url}/")
    page.fill("input[name=email]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/app")
    expect(page.get_by_test_id("status")).to_have_text("logged-in")
    expect(page.get_by_test_id("user-email")).to_have_text(USER)


def refresh_count(page: Page) -> int:
    return int(page.get_by_test_id("refresh-count").inner_text())


def wait_for_refresh_count(page: Page, at_least: int) -> int:
    """Waits until the dashboard counts at least ``at_least`` refreshes; returns the count."""
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=refresh-count]').textContent) >= n", arg=at_least
    )
    return refresh_count(page)
