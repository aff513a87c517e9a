"""Cookie tossing: refresh cookies planted for the parent domain are deleted at login and on refusal.

The app runs as ``app.example.com``. A sibling host (``evil.example.com``) can set ``refresh_token``
for ``Domain=example.com`` at a path of its choosing; httpx's cookie jar, like a browser's, then
sends it to the app beside the app's own cookie. Here a route of the test app itself answers the
planting ``Set-Cookie`` (a jar cannot tell who sent it; a browser would take it from the sibling, as
tests/browser/test_cookie_tossing.py shows in Chromium).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.planted_cookies import parent_domains
from tests.apps import build_app

APP = "https://app.example.com"


def planting_app(auth: TokenAuth) -> Starlette:
    """The tests' app plus ``POST /plant?path=...`` (JSON ``{"token": ...}``): answers a
    ``refresh_token`` cookie for ``Domain=example.com``, as a sibling host's page could set it."""
    app = build_app(auth)

    async def plant(request: Request) -> Response:
        response = Response(status_code=204)
        token = (await request.json())["token"]
        path = request.query_params.get("path", "/auth/refresh")
        response.set_cookie("refresh_token", token, path=path, domain="example.com", secure=True)
        return response

    app.router.routes.append(Route("/plant", plant, methods=["POST"]))
    return app


@pytest.fixture
def app_client(make_auth: Callable[..., TokenAuth]) -> Iterator[TestClient]:
    auth = make_auth(exclude=["/login", "/public", "/plant"])
    with TestClient(planting_app(auth), base_url=APP) as client:
        yield client


def attackers_refresh_token(client: TestClient) -> str:
    """A real session of the attacker's: what a fixation attack plants."""
    token: str = client.post("/login", json={"subject": "attacker", "transport": "body"}).json()[
        "refresh_token"
    ]
    return token


def refreshed_subject(client: TestClient) -> str:
    refreshed = client.post("/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    me = client.get("/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    subject: str = me.json()["sub"]
    return subject


def deletions(response: object) -> set[tuple[str, str]]:
    """The (domain, path) of each refresh cookie an answer deletes ("" for host-only)."""
    found = set()
    for header in response.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        cookie = SimpleCookie()
        cookie.load(header)
        morsel = cookie["refresh_token"]
        if morsel["max-age"] == "0":
            found.add((morsel["domain"], morsel["path"]))
    return found


@pytest.mark.parametrize(
    ("host", "domains"),
    [
        ("app.example.com", ["example.com"]),
        ("App.Example.com.:8443", ["example.com"]),
        ("a.b.example.co.uk", ["b.example.co.uk", "example.co.uk", "co.uk"]),
        ("example.com", []),
        ("localhost:8000", []),
        ("testserver", []),
        ("127.0.0.1:8000", []),
        ("[::1]:8000", []),
        ("", []),
    ],
)
def test_the_domains_a_sibling_host_may_set_cookies_for(host: str, domains: list[str]) -> None:
    assert parent_domains(host) == domains


@pytest.mark.parametrize("planted_at", ["/auth/refresh", "/auth", "/auth/", "/"])
def test_a_login_deletes_a_planted_session_so_refreshes_use_the_users_own(
    app_client: TestClient, planted_at: str
) -> None:
    app_client.post(f"/plant?path={planted_at}", json={"token": attackers_refresh_token(app_client)})
    # Before the login, the planted session is all there is: the residual risk SECURITY.md states.
    assert refreshed_subject(app_client) == "attacker"
    assert app_client.post("/login", json={"subject": "42"}).status_code == 200
    assert refreshed_subject(app_client) == "42"
    assert refreshed_subject(app_client) == "42"


def test_a_cookie_planted_after_login_is_refused_once_and_deleted_with_the_refusal(
    app_client: TestClient,
) -> None:
    app_client.post("/login", json={"subject": "42"})
    app_client.post("/plant", json={"token": attackers_refresh_token(app_client)})
    refused = app_client.post("/auth/refresh")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert "deletes those this site did not set" in refused.json()["error_description"]
    assert ("example.com", "/auth/refresh") in deletions(refused)
    assert refreshed_subject(app_client) == "42"  # the retry sends only the user's own cookie


def test_a_login_deletes_the_parent_domains_cookies_and_sets_its_own_last(app_client: TestClient) -> None:
    login = app_client.post("/login", json={"subject": "42"})
    paths = {"/", "/auth", "/auth/", "/auth/refresh", "/auth/logout"}
    assert deletions(login) == {("example.com", path) for path in paths}
    last = SimpleCookie()
    last.load(login.headers.get_list("set-cookie")[-1])
    assert last["refresh_token"].value
    assert (last["refresh_token"]["domain"], last["refresh_token"]["path"]) == ("", "/auth")


def test_body_logins_hosts_without_siblings_and_host_prefixed_cookies_delete_nothing(
    make_auth: Callable[..., TokenAuth],
) -> None:
    with TestClient(build_app(make_auth()), base_url=APP) as client:
        body_login = client.post("/login", json={"subject": "42", "transport": "body"})
        assert body_login.headers.get_list("set-cookie") == []
    for alone in ("https://localhost:8000", "https://127.0.0.1", "https://example.com"):
        with TestClient(build_app(make_auth()), base_url=alone) as client:
            assert len(client.post("/login", json={"subject": "42"}).headers.get_list("set-cookie")) == 1
    host_prefixed = make_auth(cookie_name="__Host-refresh", cookie_path="/")
    with TestClient(build_app(host_prefixed), base_url=APP) as client:
        login = client.post("/login", json={"subject": "42"})
        assert len(login.headers.get_list("set-cookie")) == 1  # browsers refuse planted __Host- cookies
