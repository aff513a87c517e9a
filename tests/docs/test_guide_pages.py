"""docs/guide.md, "Server-rendered pages and htmx": examples/pages_app.py, shown verbatim, keeps a
user of plain HTML forms logged in past the access token's lifetime, sends a visitor without a
session to the login page and back, and logs out with a form."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from harness.processes import REPO_ROOT
from starlette_refresh.testing import ManualClock
from tests.docs.blocks import claim_example, example_module

GUIDE = "docs/guide.md"
PAGES = claim_example(GUIDE, "examples/pages_app.py")
BASE_URL = "https://testserver"
# What a browser adds to a form it posts from this site's page.
FORM = {"Origin": BASE_URL, "Accept": "text/html"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[ModuleType]:
    with example_module(
        "pages_app", monkeypatch, "pages-example-secret-0123456789-0123456789", clock
    ) as module:
        yield module


def test_the_guide_shows_the_pages_example_verbatim() -> None:
    assert PAGES.text == (REPO_ROOT / "examples" / "pages_app.py").read_text()


def test_a_form_user_goes_to_the_login_page_comes_back_and_stays_logged_in(
    example: ModuleType, clock: ManualClock
) -> None:
    with TestClient(example.app, base_url=BASE_URL) as browser:
        first = browser.get("/account", headers={"Accept": "text/html"}, follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=/account"

        form = browser.get(first.headers["location"])
        assert 'name="next" value="/account"' in form.text

        wrong = browser.post("/login", data={"email": "ana@example.com", "password": "nope"}, headers=FORM)
        assert wrong.status_code == 401
        logged_in = browser.post(
            "/login",
            data={"email": "ana@example.com", "password": "correct horse", "next": "/account"},
            headers=FORM,
            follow_redirects=False,
        )
        assert logged_in.status_code == 303
        assert logged_in.headers["location"] == "/account"
        assert "Logged in as Ana" in browser.get("/account").text

        clock.advance(example.auth.settings.access_ttl + example.auth.settings.leeway + 1)
        later = browser.get("/account")  # the access cookie is spent: refreshed inline
        assert "Logged in as Ana" in later.text
        assert "sr_session=" in later.headers["set-cookie"]

        out = browser.post("/auth/logout", headers=FORM, follow_redirects=False)
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (
            browser.get("/account", headers={"Accept": "text/html"}, follow_redirects=False).status_code
            == 303
        )


def test_the_login_page_never_sends_anyone_to_another_site(example: ModuleType) -> None:
    with TestClient(example.app, base_url=BASE_URL) as browser:
        form = browser.get("/login", params={"next": "//evil.example/"})
        assert 'name="next" value="/"' in form.text
        answer = browser.post(
            "/login",
            data={"email": "ana@example.com", "password": "correct horse", "next": "https://evil.example/"},
            headers=FORM,
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/"
