"""The demo's server-rendered pages (page mode): ``/pages/account``, its htmx fragments, and htmx itself.

In process, through Starlette's TestClient against a real redis-server; the browser suite
(``tests/browser/test_pages.py``) drives the same pages in Chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from demo_app.app import create_app
from demo_app.settings import DEMO_EMAIL, DEMO_PASSWORD, load_settings
from harness.processes import REPO_ROOT, RedisServer

CREDENTIALS = {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
ORIGIN = "http://testserver"  # the TestClient's base URL
NAVIGATION = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
HTMX = {"HX-Request": "true", "HX-Current-URL": f"{ORIGIN}/pages/account"}
STATIC = REPO_ROOT / "static"
VENDORED = STATIC / "demo" / "vendor" / "htmx.min.js"


@pytest.fixture
def client(redis_server: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings({"REDIS_URL": redis_server.url, "DEMO_DATA_DIR": str(tmp_path / "data")})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def log_in(client: TestClient) -> None:
    response = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.text
    names = {cookie.split("=", 1)[0] for cookie in response.headers.get_list("set-cookie")}
    assert names == {"refresh_token", "sr_session", "sr_session_access"}  # both modes at once


def test_without_a_session_the_account_page_sends_to_the_login_page(client: TestClient) -> None:
    for path in ("/pages/account", "/pages/clock"):
        page = client.get(path, headers=NAVIGATION, follow_redirects=False)
        assert page.status_code == 303, path
        assert page.headers["location"] == f"/?next={path}"
    fragment = client.get("/pages/clock", headers=HTMX)
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"] == "/?next=/pages/account"  # back to the page, not the fragment
    assert client.get("/pages/account").status_code == 401  # not a navigation: an API answer
    assert client.post("/pages/greeting", headers={"Origin": ORIGIN}).status_code == 401


def test_the_account_page_shows_the_user_and_loads_htmx_from_this_site(client: TestClient) -> None:
    log_in(client)
    page = client.get("/pages/account", headers=NAVIGATION)
    assert page.status_code == 200
    assert re.search(r'data-testid="page-user-email">' + re.escape(DEMO_EMAIL) + "<", page.text)
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # same-origin, not no-referrer: the page's own form posts keep their Origin (tests/browser/test_pages.py
    # shows that a no-referrer page's "Origin: null" form passes too, by Sec-Fetch-Site)
    assert page.headers["referrer-policy"] == "same-origin"
    assert '<script src="/static/demo/vendor/htmx.min.js" defer></script>' in page.text
    assert "<style" not in page.text
    assert "hx-on" not in page.text
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", page.text)
    assert config is not None
    assert json.loads(config[1]) == {"includeIndicatorStyles": False}
    assert 'hx-get="/pages/clock"' in page.text
    assert 'href="/app"' in page.text
    assert 'href="/pages/account"' in client.get("/app").text  # linked from the dashboard

    clock = client.get("/pages/clock", headers=HTMX)
    assert clock.status_code == 200
    assert f'data-testid="clock-email">{DEMO_EMAIL}<' in clock.text
    assert "<html" not in clock.text  # a fragment
    assert client.get("/static/demo/vendor/htmx.min.js").status_code == 200


def test_a_greeting_needs_this_sites_origin(client: TestClient) -> None:
    log_in(client)
    posted = client.post(
        "/pages/greeting", content=b"text=Hi+%3Cb%3Ethere", headers={**HTMX, "Origin": ORIGIN}
    )
    assert posted.status_code == 200, posted.text
    assert '<li data-testid="greeting">Hi &lt;b&gt;there</li>' in posted.text  # escaped
    assert 'data-testid="greeting-count">1<' in posted.text

    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {}):
        refused = client.post("/pages/greeting", content=b"text=forged", headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"] == "cross_site_request"

    form = client.post(
        "/pages/greeting", content=b"text=from+a+form", headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert form.status_code == 303  # a plain form post (no htmx) goes back to the page
    assert form.headers["location"] == "/pages/account"
    page = client.get("/pages/account").text
    assert re.findall(r'data-testid="greeting">([^<]*)<', page) == ["from a form", "Hi &lt;b&gt;there"]
    assert "forged" not in page

    too_long = client.post("/pages/greeting", content=b"text=" + b"x" * 4096, headers={"Origin": ORIGIN})
    assert too_long.status_code == 413


def test_the_vendored_htmx_is_the_pinned_version() -> None:
    manifest = json.loads((STATIC / "package.json").read_text(encoding="utf-8"))
    version = manifest["devDependencies"]["htmx.org"]
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version), "pin htmx.org to an exact version"
    lock = json.loads((STATIC / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/htmx.org"]["version"] == version
    readme = (VENDORED.parent / "README.md").read_text(encoding="utf-8")
    assert f"htmx **{version}**" in readme
    vendored = VENDORED.read_bytes()
    assert f'version:"{version}"'.encode() in vendored
    installed = STATIC / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
    if installed.is_file():  # tests/run installs static/'s devDependencies; --quick does not
        assert vendored == installed.read_bytes(), "copy node_modules/htmx.org/dist/htmx.min.js again"
