"""The demo is usable by everyone: axe-core finds no serious or critical violation on its pages.

axe-core is a development dependency of ``static/package.json``; ``tests/run`` installs it into
``static/node_modules`` (``ensure_js_dev_dependencies`` in ``scripts/bootstrap.sh``). Each page is
checked at a desktop and at a phone-sized viewport, on the login page and on the dashboard of a
logged-in user once it has settled (session restored, sessions listed, live socket open).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import BrowserLog, DemoFactory, log_in

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE = REPO_ROOT / "static" / "node_modules" / "axe-core" / "axe.min.js"

#: Impacts that fail the test; axe's others are "moderate" and "minor".
BLOCKING = ("serious", "critical")
#: Rules that fail the test whatever their impact: every page has a level-one heading ("moderate").
REQUIRED = ("page-has-heading-one",)

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    # An iPhone 12-15 sized screen, as a phone renders it: touch, mobile layout, 3x pixels.
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },
}


def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(
            f"axe-core is not installed ({AXE.relative_to(REPO_ROOT)} is missing): run tests/run, "
            "which installs static/package.json's devDependencies with npm",
            pytrace=False,
        )
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Injects axe-core into the page, runs it on the whole document, and returns its violations.

    Evaluated through the DevTools protocol rather than as a <script>, which the demo's
    Content-Security-Policy (script-src 'self') rightly refuses; the page keeps its real CSP.
    """
    page.evaluate(axe_source())
    results: dict[str, Any] = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    violations: list[dict[str, Any]] = results["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        nodes = len(violation["nodes"])
        lines.append(f"{violation['impact']}: {violation['id']} ({violation['help']}), {nodes} node(s):")
        for node in violation["nodes"]:
            summary = node.get("failureSummary", "").replace("\n", " ")
            lines.append(f"    {json.dumps(node['target'])}  {summary}")
    return "\n".join(lines)


def is_blocking(violation: dict[str, Any]) -> bool:
    return violation["impact"] in BLOCKING or violation["id"] in REQUIRED


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def sized_page(request: pytest.FixtureRequest, browser: Browser, browser_log: BrowserLog) -> Iterator[Page]:
    ctx: BrowserContext = browser.new_context(**VIEWPORTS[request.param])
    yield browser_log.watch(ctx.new_page())
    ctx.close()


def assert_no_blocking_violation(page: Page, name: str) -> None:
    violations = axe_violations(page)
    blocking = [v for v in violations if is_blocking(v)]
    count = sum(len(v["nodes"]) for v in violations if v["impact"] in BLOCKING)
    print(f"axe on {name}: {count} serious/critical node(s)\n{describe(violations)}")
    assert not blocking, f"axe-core finds violations on {name}:\n{describe(blocking)}"


def test_the_login_page_has_no_serious_accessibility_violation(
    sized_page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    demo = start_demo()
    sized_page.goto(f"{demo.url}/")
    expect(sized_page.locator("input[name=email]")).to_be_visible()
    assert_no_blocking_violation(sized_page, "the login page")
    assert browser_log.errors == []


def test_the_login_page_with_an_error_has_no_serious_accessibility_violation(
    sized_page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo()
    sized_page.goto(f"{demo.url}/")
    sized_page.fill("input[name=email]", "test@example.com")
    sized_page.fill("input[name=password]", "wrong password")
    sized_page.click("button[type=submit]")
    expect(sized_page.get_by_test_id("login-error")).to_be_visible()
    assert_no_blocking_violation(sized_page, "the login page showing an error")


def test_the_dashboard_has_no_serious_accessibility_violation(
    sized_page: Page, start_demo: DemoFactory, browser_log: BrowserLog
) -> None:
    demo = start_demo()
    log_in(sized_page, demo.url)
    expect(sized_page.get_by_test_id("sessions").locator("li")).to_have_count(1)
    expect(sized_page.get_by_test_id("live-state")).to_have_text("open")
    expect(sized_page.get_by_test_id("log").locator("li").first).to_be_visible()
    assert_no_blocking_violation(sized_page, "the dashboard")
    assert browser_log.errors == []


def test_the_signed_out_dashboard_has_no_serious_accessibility_violation(
    sized_page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo()
    log_in(sized_page, demo.url)
    sized_page.get_by_test_id("logout").click()
    expect(sized_page.get_by_test_id("signed-out")).to_be_visible()
    assert_no_blocking_violation(sized_page, "the signed-out dashboard")


def test_the_dashboard_showing_an_error_has_no_serious_accessibility_violation(
    sized_page: Page, start_demo: DemoFactory
) -> None:
    demo = start_demo()
    log_in(sized_page, demo.url)
    sized_page.route("**/auth/sessions", lambda route: route.fulfill(status=500, body="down"))
    sized_page.get_by_test_id("reload-sessions").click()
    expect(sized_page.get_by_test_id("notice")).to_contain_text("HTTP 500")
    assert_no_blocking_violation(sized_page, "the dashboard showing an error")
