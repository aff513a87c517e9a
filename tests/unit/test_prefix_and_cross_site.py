"""Issue 14, findings 1, 3 and 4 at the HTTP level, in-process.

1. A cross-site page may send nothing under the prefix: every library endpoint answers a request a
   browser marks cross-site (untrusted ``Origin``, or ``Sec-Fetch-Site: cross-site``) with 403 and no
   ``Set-Cookie``, cookie or not; so may an unsafe request to the app's own routes there (its login).
3. Behind a path prefix (a Starlette ``Mount``; uvicorn's ``--root-path`` in
   tests/integration/test_root_path.py) the endpoints and exclusions match the route path, and the
   cookie's ``Path`` carries the ``root_path``.
4. ``invalid_grant`` sends no ``Set-Cookie`` (see also tests/unit/test_contract.py).

The browser half of 1 and 4 is tests/browser/test_cross_site_and_late_answers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.web import route_path
from tests.apps import build_app
from tests.unit.test_contract import (
    BASE_URL,
    FOREIGN_ORIGIN,
    OWN_ORIGIN,
    assert_cookie_set,
    assert_cross_site,
    assert_no_cookie,
    assert_tokens,
    bearer,
    cookie_header,
    login,
    post,
    refresh_cookie,
)

MakeAuth = Callable[..., TokenAuth]

CROSS_SITE_MARKS = [
    pytest.param({"Origin": FOREIGN_ORIGIN}, id="foreign-origin"),
    pytest.param({"Origin": "null"}, id="opaque-origin"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
]

# Every endpoint of the library, by method and path, as a cross-site form or fetch would call it.
ENDPOINTS = [
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-all"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions/abc"),
]


@pytest.fixture
def client(make_auth: MakeAuth) -> Iterator[TestClient]:
    with TestClient(build_app(make_auth()), base_url=BASE_URL) as test_client:
        yield test_client


@pytest.mark.parametrize("marks", CROSS_SITE_MARKS)
def test_a_cross_site_form_cannot_log_anyone_out(client: TestClient, marks: dict[str, str]) -> None:
    """SameSite keeps the cookie off a cross-site form's POST, so the old code ran no origin check
    and answered 204 with a Set-Cookie that deleted the victim's cookie on the top-level navigation."""
    session = login(client)
    response = post(client, "/auth/logout", headers=marks)
    assert_cross_site(response)  # 403 cross_site_request, no Set-Cookie
    assert_tokens(post(client, "/auth/refresh", headers=cookie_header(session.refresh_token)))


@pytest.mark.parametrize("marks", CROSS_SITE_MARKS)
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_refuses_a_cross_site_request_cookie_or_not(
    client: TestClient, method: str, path: str, marks: dict[str, str]
) -> None:
    session = login(client)
    for credentials in ({}, cookie_header(session.refresh_token), bearer(session.access_token)):
        client.cookies.clear()
        response = client.request(method, path, headers={**credentials, **marks})
        assert_cross_site(response)
    # the session is untouched: its refresh token still works
    assert_tokens(post(client, "/auth/refresh", headers=cookie_header(session.refresh_token)))


def test_the_apps_own_routes_under_the_prefix_refuse_cross_site_posts_not_links(client: TestClient) -> None:
    """A cross-site page may link to a page under the prefix (an identity provider redirecting back
    to /auth/callback is a cross-site GET); it may not post to one, as a login form would."""
    session = login(client)
    posted = post(client, "/auth/custom", headers={**bearer(session.access_token), "Origin": FOREIGN_ORIGIN})
    assert_cross_site(posted)
    linked = client.get(
        "/auth/custom", headers={**bearer(session.access_token), "Sec-Fetch-Site": "cross-site"}
    )
    assert linked.status_code == 200
    assert linked.text == "app route under the prefix (GET)"
    same_origin = post(client, "/auth/custom", headers={**bearer(session.access_token), "Origin": OWN_ORIGIN})
    assert same_origin.status_code == 200
    assert same_origin.text == "app route under the prefix (POST)"


def test_same_site_pages_and_non_browser_clients_still_pass(client: TestClient) -> None:
    session = login(client)
    own = post(
        client, "/auth/refresh", headers={**cookie_header(session.refresh_token), "Origin": OWN_ORIGIN}
    )
    assert_tokens(own)
    newest = assert_cookie_set(own, 3600)
    same_origin_fetch = {**cookie_header(newest), "Sec-Fetch-Site": "same-origin"}
    fetched = post(client, "/auth/refresh", headers=same_origin_fetch)
    assert_tokens(fetched)
    newest = assert_cookie_set(fetched, 3600)
    cli = post(client, "/auth/refresh", headers=cookie_header(newest))  # no Origin, no Sec-Fetch-*
    assert_tokens(cli)
    assert post(client, "/auth/logout", headers={"Origin": OWN_ORIGIN}).status_code == 204


def test_invalid_grant_leaves_the_cookie_alone(client: TestClient) -> None:
    """A refresh sent with an old session's cookie may be answered after a newer login (another tab)
    set a new cookie: clearing it then would log the new session out."""
    response = post(client, "/auth/refresh", headers=cookie_header("an-old-sessions-refresh-token"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert_no_cookie(response)


# ---------------------------------------------------------------------------------------------------
# 3. behind a path prefix
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def mounted(make_auth: MakeAuth) -> Iterator[TestClient]:
    """The test app mounted at /api, as a larger app (or a proxy's root_path) would put it."""
    outer = Starlette(routes=[Mount("/api", app=build_app(make_auth()))])
    with TestClient(outer, base_url=BASE_URL) as test_client:
        yield test_client


def test_behind_a_mount_the_endpoints_answer_on_their_route_path(mounted: TestClient) -> None:
    answer = mounted.post("/api/login", json={})
    assert answer.status_code == 200, answer.text  # /login is excluded: it matched /login, not /api/login
    cookie = refresh_cookie(answer)
    assert cookie.attr("path") == "/api/auth", "the browser sends the cookie to /api/auth/..."
    mounted.cookies.clear()
    refreshed = mounted.post("/api/auth/refresh", headers=cookie_header(cookie.value))
    assert_tokens(refreshed)
    assert refresh_cookie(refreshed).attr("path") == "/api/auth"
    access = refreshed.json()["access_token"]
    assert mounted.get("/api/me", headers=bearer(access)).json()["sub"] == "42"
    assert mounted.get("/api/me").status_code == 401
    assert mounted.get("/api/public").json() == {"authenticated": False}  # excluded as /public
    sessions = mounted.get("/api/auth/sessions", headers=bearer(access))
    assert sessions.status_code == 200
    [current] = [s for s in sessions.json()["sessions"] if s["current"]]
    assert mounted.delete(f"/api/auth/sessions/{current['id']}", headers=bearer(access)).status_code == 204
    logout = mounted.post("/api/auth/logout", headers=cookie_header(cookie.value))
    assert logout.status_code == 204
    assert refresh_cookie(logout).attr("path") == "/api/auth"


def test_an_explicit_cookie_path_is_the_whole_path(make_auth: MakeAuth) -> None:
    outer = Starlette(routes=[Mount("/api", app=build_app(make_auth(cookie_path="/")))])
    with TestClient(outer, base_url=BASE_URL) as mounted:
        assert refresh_cookie(mounted.post("/api/login", json={})).attr("path") == "/"


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/auth/refresh", "", "/auth/refresh"),
        ("/api/auth/refresh", "/api", "/auth/refresh"),
        ("/api", "/api", "/"),
        ("/apix/auth/refresh", "/api", "/apix/auth/refresh"),  # whole segments only
        ("/auth/refresh", "/api", "/auth/refresh"),  # a server that does not put root_path in path
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    scope: dict[str, Any] = {"type": "http", "path": path, "root_path": root_path}
    assert route_path(scope) == expected
