"""Page mode (issue 17) at the HTTP level, in-process: the page cookies, the inline refresh, parallel
requests sharing one rotation, where visitors without a session are sent, unsafe methods from other
sites, outages, logout, and the cache headers of cookie-authenticated answers.

An app of server-rendered pages (tests below build it) on fakeredis and the manual clock. Cookies
always travel explicitly (the client's jar is cleared), so each test says which credentials a
request carries. The browser half is tests/browser/test_pages.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import fakeredis
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from starlette_refresh import ConfigurationError, Settings, TokenAuth, safe_next
from starlette_refresh.observe import NullObserver, RefreshOutcome
from starlette_refresh.page_cookies import _cookie, set_page_cookies
from starlette_refresh.sessions import IssuedSession
from starlette_refresh.testing import ManualClock
from tests.unit.test_contract import (
    BASE_URL,
    FOREIGN_ORIGIN,
    OWN_ORIGIN,
    Cookie,
    bearer,
    set_cookies,
)

ACCESS_TTL = 300
LEEWAY = 10
PAGE = "sr_session"
ACCESS = "sr_session_access"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
EXPIRED = ACCESS_TTL + LEEWAY + 1

MakeAuth = Callable[..., TokenAuth]


class CountingObserver(NullObserver):
    """Counts refresh outcomes: how many rotations the store made, how many grace answers."""

    def __init__(self) -> None:
        self.refreshes: Counter[str] = Counter()

    def refresh(self, outcome: RefreshOutcome) -> None:
        self.refreshes[outcome] += 1


def pages_app(auth: TokenAuth) -> Starlette:
    """``POST /login`` (cookie login), ``GET /account`` (a page), ``GET /clock`` (a fragment),
    ``POST /note`` (an unsafe action), ``GET /boom`` (fails), ``GET /public`` (excluded, says who)."""

    async def login(request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        return await auth.login(request, subject="42", claims=body.get("claims", {"email": "a@example.com"}))

    async def account(request: Request) -> Response:
        return HTMLResponse(f"<p data-testid=page-user-email>{request.user.claims['email']}</p>")

    async def clock(request: Request) -> Response:
        return HTMLResponse(f"<span>{request.user.identity}</span>")

    async def note(request: Request) -> Response:
        return JSONResponse({"saved_for": request.user.identity})

    async def boom(request: Request) -> Response:
        raise RuntimeError("the app failed")

    async def public(request: Request) -> Response:
        user = request.user
        return JSONResponse({"who": user.identity if user.is_authenticated else None})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/account", account),
            Route("/clock", clock),
            Route("/note", note, methods=["POST"]),
            Route("/boom", boom),
            Route("/public", public),
        ],
        middleware=[auth.middleware()],
    )


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
def page_auth(make_auth: MakeAuth, observer: CountingObserver) -> TokenAuth:
    return make_auth(
        page_mode=True, login_url="/login", exclude=["/login", "/public"], leeway=LEEWAY, observer=observer
    )


@pytest.fixture
def client(page_auth: TokenAuth) -> Iterator[TestClient]:
    with TestClient(pages_app(page_auth), base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def inspect_redis(fake_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fake_server)


def cookies_of(response: Any) -> dict[str, Cookie]:
    found = {cookie.name: cookie for cookie in set_cookies(response)}
    assert len(found) == len(set_cookies(response)), "a cookie is set twice in one answer"
    return found


def log_in(client: TestClient, claims: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Logs in; returns the page cookies the answer set, as a Cookie header's pairs."""
    client.cookies.clear()
    response = client.post(
        "/login", json={"claims": dict(claims)} if claims else {}, headers={"Origin": OWN_ORIGIN}
    )
    assert response.status_code == 200, response.text
    cookies = cookies_of(response)
    client.cookies.clear()
    return {PAGE: cookies[PAGE].value, ACCESS: cookies[ACCESS].value}


def cookie(pairs: Mapping[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in pairs.items())}


def get(client: TestClient, path: str, pairs: Mapping[str, str], **headers: str) -> Any:
    client.cookies.clear()
    response = client.get(path, headers={**cookie(pairs), **headers}, follow_redirects=False)
    client.cookies.clear()
    return response


def new_pairs(response: Any) -> dict[str, str]:
    """The page cookies a rotation set; it sets the endpoints' refresh cookie to the same token."""
    cookies = cookies_of(response)
    assert set(cookies) == {PAGE, ACCESS, "refresh_token"}
    assert cookies["refresh_token"].value == cookies[PAGE].value
    return {PAGE: cookies[PAGE].value, ACCESS: cookies[ACCESS].value}


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page_mode": True}, "page_mode needs login_url"),
        ({"page_mode": True, "login_url": "/signin"}, "list it in exclude"),
        ({"login_url": "//evil.example/login"}, "login_url must be a path of this app"),
        ({"login_url": "https://evil.example/login"}, "login_url must be a path of this app"),
        ({"page_cookie_name": "refresh_token"}, "must differ from cookie_name"),
        ({"page_cookie_name": "__Host-s", "cookie_secure": False}, "unless cookie_secure=True"),
        ({"page_cookie_name": "__Host-s", "cookie_domain": "example.com"}, "leave cookie_domain unset"),
        (
            {"page_mode": "yes", "login_url": "/login", "exclude": ["/login"]},
            "page_mode must be True or False",
        ),
    ],
)
def test_page_settings_that_cannot_work_are_refused_with_what_to_do(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(**options)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/account?tab=2", "/account?tab=2"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("account", "/"),
    ],
)
def test_safe_next_keeps_only_paths_of_this_site(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


# ---------------------------------------------------------------------------------------------
# login and the cookies
# ---------------------------------------------------------------------------------------------


def test_a_page_mode_login_sets_both_page_cookies_lax_httponly_on_the_whole_site(client: TestClient) -> None:
    client.cookies.clear()
    response = client.post("/login", json={}, headers={"Origin": OWN_ORIGIN})
    assert response.status_code == 200
    cookies = cookies_of(response)
    assert set(cookies) == {PAGE, ACCESS, "refresh_token"}
    for name in (PAGE, ACCESS):
        assert cookies[name].attr("httponly") is True
        assert cookies[name].attr("secure") is True
        assert str(cookies[name].attr("samesite")).lower() == "lax"
        assert cookies[name].attr("path") == "/"
    assert cookies[PAGE].attr("max-age") == "3600"  # the session's idle lifetime
    assert cookies[ACCESS].attr("max-age") == str(ACCESS_TTL)  # the access token's
    assert cookies[ACCESS].value == response.json()["access_token"]
    assert cookies[PAGE].value.startswith("srt1.")
    # The auth endpoints' refresh cookie, as without page mode, holds the same refresh token.
    assert cookies["refresh_token"].value == cookies[PAGE].value
    assert cookies["refresh_token"].attr("path") == "/auth"
    assert str(cookies["refresh_token"].attr("samesite")).lower() == "strict"


def test_page_mode_off_leaves_the_login_as_it_was(make_auth: MakeAuth) -> None:
    with TestClient(pages_app(make_auth()), base_url=BASE_URL) as plain:
        response = plain.post("/login", json={}, headers={"Origin": OWN_ORIGIN})
        assert [c.name for c in set_cookies(response)] == ["refresh_token"]
        plain.cookies.clear()
        page = plain.get("/account", headers={"Accept": HTML}, follow_redirects=False)
        assert page.status_code == 401  # no redirects, no page cookies: the API behaviour


def test_claims_too_large_for_a_cookie_are_refused_at_login_not_dropped_by_the_browser(
    client: TestClient, page_auth: TokenAuth
) -> None:
    response = client.post("/login", json={"claims": {"blob": "x" * 3500}}, headers={"Origin": OWN_ORIGIN})
    assert response.status_code == 500  # the app's error handler: ValueError, with what to change
    assert set_cookies(response) == []
    with pytest.raises(ValueError, match="more than the 4096 browsers keep"):
        set_page_cookies(Response(), page_auth.settings, issued_with_claims(page_auth, 3500))


def issued_with_claims(auth: TokenAuth, size: int) -> IssuedSession:
    access = auth.access.issue("42", "s" * 22, {"blob": "x" * size})
    return IssuedSession(access.token, access.expires_in, "srt1.x", 3600, "s" * 22, "42")


# ---------------------------------------------------------------------------------------------
# authenticated pages, the inline refresh
# ---------------------------------------------------------------------------------------------


def test_a_page_with_a_live_access_cookie_is_served_without_a_refresh(
    client: TestClient, observer: CountingObserver
) -> None:
    pairs = log_in(client)
    response = get(client, "/account", pairs, Accept=HTML)
    assert response.status_code == 200
    assert "a@example.com" in response.text
    assert set_cookies(response) == []
    assert response.headers["vary"] == "Cookie"
    assert response.headers["cache-control"] == "private"
    assert observer.refreshes == Counter()


def test_an_expired_access_cookie_is_refreshed_inline_and_the_page_carries_the_new_cookies(
    client: TestClient, clock: ManualClock, observer: CountingObserver
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    response = get(client, "/account", pairs, Accept=HTML)
    assert response.status_code == 200, response.text
    assert "a@example.com" in response.text
    fresh = new_pairs(response)
    assert fresh[PAGE] != pairs[PAGE]
    assert fresh[ACCESS] != pairs[ACCESS]
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["vary"] == "Cookie"
    assert observer.refreshes == Counter({"rotated": 1})
    # The new cookies work on their own, with no further rotation.
    again = get(client, "/account", fresh, Accept=HTML)
    assert again.status_code == 200
    assert set_cookies(again) == []
    assert observer.refreshes == Counter({"rotated": 1})


def test_a_browser_that_dropped_the_access_cookie_is_refreshed_from_the_refresh_cookie(
    client: TestClient, observer: CountingObserver
) -> None:
    pairs = log_in(client)
    response = get(client, "/clock", {PAGE: pairs[PAGE]})
    assert response.status_code == 200
    assert new_pairs(response)[PAGE] != pairs[PAGE]
    assert observer.refreshes == Counter({"rotated": 1})


def test_the_old_refresh_cookie_after_the_grace_window_is_a_reuse_that_ends_the_session(
    client: TestClient, clock: ManualClock, observer: CountingObserver
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    fresh = new_pairs(get(client, "/account", pairs, Accept=HTML))
    clock.advance(11)  # past the 10 s grace
    stolen = get(client, "/account", pairs, Accept=HTML)
    assert stolen.status_code == 303
    assert observer.refreshes["reused"] == 1
    # The family is revoked: the holder of the newest cookies is logged out too.
    clock.advance(EXPIRED)
    assert get(client, "/account", fresh, Accept=HTML).status_code == 303


def test_parallel_requests_with_the_same_expired_cookies_share_one_rotation_and_get_the_same_cookies(
    client: TestClient,
    clock: ManualClock,
    observer: CountingObserver,
    page_auth: TokenAuth,
    inspect_redis: Any,
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    answers: list[tuple[int, list[bytes]]] = []

    async def one(path: str) -> None:
        status, cookies, _ = await asgi_get(client.app, path, pairs)
        answers.append((status, cookies))

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(one, "/account")
            for _ in range(10):
                group.start_soon(one, "/clock")

    assert client.portal is not None
    client.portal.call(burst)
    assert [status for status, _ in answers] == [200] * 11
    cookie_sets = {tuple(sorted(headers)) for _, headers in answers}
    assert len(cookie_sets) == 1, "every response must carry the same new cookies"
    assert len(next(iter(cookie_sets))) == 3  # the two page cookies and the endpoints' refresh cookie
    assert observer.refreshes == Counter({"rotated": 1})


def test_two_processes_racing_one_rotation_both_answer_and_hand_out_the_same_refresh_cookie(
    make_auth: MakeAuth, observer: CountingObserver, fake_server: fakeredis.FakeServer
) -> None:
    options = {
        "page_mode": True,
        "login_url": "/login",
        "exclude": ["/login", "/public"],
        "observer": observer,
    }
    # Each TestClient runs its own event loop, so each process gets its own client of the one server.
    other_redis = fakeredis.aioredis.FakeRedis(server=fake_server)
    with (
        TestClient(pages_app(make_auth(**options)), base_url=BASE_URL) as first,
        TestClient(pages_app(make_auth(**options, redis=other_redis)), base_url=BASE_URL) as second,
    ):
        pairs = log_in(first)
        only_refresh = {PAGE: pairs[PAGE]}
        a, b = get(first, "/account", only_refresh), get(second, "/account", only_refresh)
        assert a.status_code == b.status_code == 200
        assert cookies_of(a)[PAGE].value == cookies_of(b)[PAGE].value
        assert observer.refreshes == Counter({"rotated": 1, "grace": 1})


async def asgi_get(
    app: Any, path: str, pairs: Mapping[str, str], extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, list[bytes], dict[bytes, bytes]]:
    """One GET straight through the ASGI app (so that requests can overlap, and the path is exactly
    the one given): status, Set-Cookies and the other headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie(pairs)["Cookie"].encode()), *(extra or [])],
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 5000),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = messages[0]
    headers = start["headers"]
    return start["status"], [value for name, value in headers if name == b"set-cookie"], dict(headers)


def test_an_app_that_fails_after_the_rotation_still_hands_out_the_new_cookies(
    client: TestClient, clock: ManualClock
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    response = get(client, "/boom", pairs)
    assert response.status_code == 500
    assert get(client, "/account", new_pairs(response)).status_code == 200


def test_a_bearer_token_still_decides_when_a_request_has_one(client: TestClient) -> None:
    pairs = log_in(client)
    response = get(client, "/clock", pairs, Authorization="Bearer not-a-token")
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]
    assert get(client, "/clock", {}, **bearer(pairs[ACCESS])).status_code == 200


def test_a_public_page_sees_the_user_of_a_live_access_cookie_and_never_refreshes(
    client: TestClient, clock: ManualClock, observer: CountingObserver
) -> None:
    pairs = log_in(client)
    assert get(client, "/public", pairs).json() == {"who": "42"}
    clock.advance(EXPIRED)
    response = get(client, "/public", pairs)
    assert response.json() == {"who": None}
    assert set_cookies(response) == []
    assert observer.refreshes == Counter()


# ---------------------------------------------------------------------------------------------
# no session: where visitors are sent
# ---------------------------------------------------------------------------------------------


def test_a_navigation_without_a_session_is_sent_to_the_login_page_with_a_way_back(client: TestClient) -> None:
    response = get(client, "/account", {}, Accept=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/account"
    with_query = client.get("/account?tab=2&x=%2F", headers={"Accept": HTML}, follow_redirects=False)
    assert with_query.headers["location"] == "/login?next=/account%3Ftab%3D2%26x%3D%252F"
    navigate = get(client, "/account", {}, **{"Sec-Fetch-Mode": "navigate", "Accept": "*/*"})
    assert navigate.status_code == 303


def test_an_htmx_request_without_a_session_is_told_to_take_its_page_to_the_login_page(
    client: TestClient,
) -> None:
    response = get(
        client, "/clock", {}, **{"HX-Request": "true", "HX-Current-URL": f"{OWN_ORIGIN}/account?tab=2"}
    )
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login?next=/account%3Ftab%3D2"
    foreign = get(client, "/clock", {}, **{"HX-Request": "true", "HX-Current-URL": f"{FOREIGN_ORIGIN}/x"})
    assert foreign.headers["hx-redirect"] == "/login?next=/clock"


def test_an_api_call_without_a_session_gets_the_usual_401(client: TestClient) -> None:
    response = get(client, "/clock", {}, Accept="application/json")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert "location" not in response.headers


def test_a_path_that_would_leave_the_site_is_never_the_way_back(client: TestClient) -> None:
    assert client.portal is not None
    status, _, headers = client.portal.call(
        asgi_get, client.app, "//evil.example/x", {}, [(b"accept", HTML.encode())]
    )
    assert status == 303
    assert headers[b"location"] == b"/login"


def test_a_revoked_session_is_sent_to_the_login_page_and_its_cookies_are_left_alone(
    client: TestClient, clock: ManualClock
) -> None:
    pairs = log_in(client)
    assert client.post("/auth/logout-all", headers=bearer(pairs[ACCESS])).status_code == 204
    response = get(client, "/account", pairs, Accept=HTML)
    assert response.status_code == 303
    # A refusal may answer a request sent before a newer login: it never deletes cookies.
    assert set_cookies(response) == []


def test_more_than_one_page_cookie_is_refused_not_guessed_and_the_planted_ones_are_deleted(
    client: TestClient,
) -> None:
    pairs = log_in(client)
    client.cookies.clear()
    header = f"{PAGE}=planted; {PAGE}={pairs[PAGE]}; {ACCESS}={pairs[ACCESS]}"
    headers = {"Cookie": header, "Accept": HTML, "Host": "app.example.test"}
    response = client.get("/account/settings", headers=headers, follow_redirects=False)
    assert response.status_code == 303
    deleted = {
        (c.name, c.attr("domain"), c.attr("path")) for c in set_cookies(response) if c.attr("max-age") == "0"
    }
    # A sibling host can set cookies for the parent domain only, at any path the browser sent here.
    assert deleted == {
        (name, "example.test", path)
        for name in (PAGE, ACCESS)
        for path in ("/", "/account", "/account/", "/account/settings")
    }
    # The app's own cookies are host-only: no deletion names them.
    assert all(c.attr("domain") for c in set_cookies(response))


# ---------------------------------------------------------------------------------------------
# unsafe methods: from this site only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": FOREIGN_ORIGIN}, id="foreign-origin"),
        pytest.param({"Origin": "https://sub.testserver"}, id="sibling-subdomain"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site-without-origin"),
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, id="sandboxed-page"),
        pytest.param({}, id="no-provenance"),
    ],
)
def test_an_unsafe_cookie_request_not_proven_to_come_from_this_site_is_refused_before_any_rotation(
    client: TestClient, clock: ManualClock, observer: CountingObserver, headers: dict[str, str]
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    client.cookies.clear()
    response = client.post("/note", headers={**cookie(pairs), **headers})
    assert response.status_code == 403
    assert response.json()["error"] == "cross_site_request"
    assert set_cookies(response) == []
    assert observer.refreshes == Counter()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": OWN_ORIGIN, "HX-Request": "true"}, id="htmx-with-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="sec-fetch-site"),
        # Chromium's own form POST from a page with Referrer-Policy: no-referrer
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, id="no-referrer-form"),
    ],
)
def test_an_unsafe_request_from_this_site_passes_and_is_refreshed_if_needed(
    client: TestClient, clock: ManualClock, headers: dict[str, str]
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    client.cookies.clear()
    response = client.post("/note", headers={**cookie(pairs), **headers})
    assert response.status_code == 200
    assert response.json() == {"saved_for": "42"}
    assert new_pairs(response)[PAGE] != pairs[PAGE]


def test_a_trusted_origin_may_send_unsafe_requests(make_auth: MakeAuth) -> None:
    auth = make_auth(
        page_mode=True, login_url="/login", exclude=["/login"], trusted_origins=["https://admin.example"]
    )
    with TestClient(pages_app(auth), base_url=BASE_URL) as trusted:
        pairs = log_in(trusted)
        response = trusted.post("/note", headers={**cookie(pairs), "Origin": "https://admin.example"})
        assert response.status_code == 200


# ---------------------------------------------------------------------------------------------
# outages, the endpoints, logout
# ---------------------------------------------------------------------------------------------


def test_an_outage_during_an_inline_refresh_is_a_503_page_that_keeps_the_cookies(
    client: TestClient, clock: ManualClock, fake_server: fakeredis.FakeServer
) -> None:
    pairs = log_in(client)
    clock.advance(EXPIRED)
    fake_server.connected = False
    page = get(client, "/account", pairs, Accept=HTML)
    fragment = get(client, "/clock", pairs, Accept="application/json")
    fake_server.connected = True
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "2"
    assert 'http-equiv="refresh"' in page.text
    assert fragment.status_code == 503
    assert fragment.json()["error"] == "temporarily_unavailable"
    assert set_cookies(page) == set_cookies(fragment) == []
    # Redis back: the same cookies still log in.
    assert get(client, "/account", pairs, Accept=HTML).status_code == 200


def test_the_refresh_endpoint_takes_the_page_cookie_and_answers_with_page_cookies(client: TestClient) -> None:
    pairs = log_in(client)
    client.cookies.clear()
    response = client.post("/auth/refresh", headers={**cookie({PAGE: pairs[PAGE]}), "Origin": OWN_ORIGIN})
    assert response.status_code == 200, response.text
    assert new_pairs(response)[ACCESS] == response.json()["access_token"]


def test_logout_clears_the_page_cookies_and_sends_a_form_to_the_login_page(client: TestClient) -> None:
    pairs = log_in(client)
    client.cookies.clear()
    response = client.post(
        "/auth/logout",
        headers={**cookie(pairs), "Origin": OWN_ORIGIN, "Accept": HTML},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    cleared = cookies_of(response)
    assert cleared[PAGE].attr("max-age") == "0"
    assert cleared[ACCESS].attr("max-age") == "0"
    assert get(client, "/account", pairs, Accept=HTML).status_code == 303  # the session is over


def test_logout_all_by_an_htmx_request_with_the_access_cookie(client: TestClient) -> None:
    pairs = log_in(client)
    client.cookies.clear()
    response = client.post(
        "/auth/logout-all", headers={**cookie(pairs), "Origin": OWN_ORIGIN, "HX-Request": "true"}
    )
    assert response.status_code == 204
    assert response.headers["hx-redirect"] == "/login"
    assert set(cookies_of(response)) == {PAGE, ACCESS, "refresh_token"}
    refused = client.post("/auth/logout-all", headers={**cookie(pairs)})  # no Origin: not proven ours
    assert refused.status_code == 403


@pytest.mark.parametrize("secure", [True, False])
@pytest.mark.parametrize("domain", [None, "example.com"])
@pytest.mark.parametrize(
    ("samesite", "max_age", "path"), [("strict", 3600, "/auth"), ("lax", 0, "/"), ("none", 7, "/a")]
)
def test_the_cookies_of_an_inline_rotation_are_written_as_starlette_writes_them(
    secure: bool, domain: str | None, samesite: Any, max_age: int, path: str
) -> None:
    settings = Settings(cookie_secure=secure or samesite == "none", cookie_domain=domain)
    value = "srt1.0123abcd.Zz_-09.7.mac-_"
    ours = _cookie(settings, "sr_session", value, max_age, path, samesite)
    theirs = Response()
    theirs.set_cookie(
        "sr_session",
        value,
        max_age=max_age,
        path=path,
        domain=domain,
        secure=settings.cookie_secure,
        httponly=True,
        samesite=samesite,
    )
    assert ours == dict(theirs.raw_headers)[b"set-cookie"]


@pytest.mark.parametrize("value", ['a"b', "a;b", "a b", "a,b", "é"])
def test_a_cookie_value_that_would_need_quoting_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        _cookie(Settings(), "sr_session", value, 1, "/", "lax")


def test_behind_a_path_prefix_the_login_page_and_the_way_back_carry_it(page_auth: TokenAuth) -> None:
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/app", pages_app(page_auth))])
    with TestClient(outer, base_url=BASE_URL) as mounted:
        response = mounted.get("/app/account?x=1", headers={"Accept": HTML}, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/app/login?next=/app/account%3Fx%3D1"
        login = mounted.post("/app/login", json={}, headers={"Origin": OWN_ORIGIN})
        cookies = cookies_of(login)
        assert cookies[PAGE].attr("path") == "/"
        assert cookies["refresh_token"].attr("path") == "/app/auth"
        mounted.cookies.clear()
        page = mounted.get("/app/account", headers=cookie({PAGE: cookies[PAGE].value}))
        assert page.status_code == 200
        assert cookies_of(page)["refresh_token"].attr("path") == "/app/auth"


def test_a_logout_form_of_a_no_referrer_page_is_its_own_and_a_sandboxed_one_is_not(
    client: TestClient,
) -> None:
    pairs = log_in(client)
    client.cookies.clear()
    sandboxed = {**cookie(pairs), "Origin": "null", "Sec-Fetch-Site": "cross-site"}
    assert client.post("/auth/logout", headers=sandboxed).status_code == 403
    own = {**cookie(pairs), "Origin": "null", "Sec-Fetch-Site": "same-origin", "Accept": HTML}
    assert client.post("/auth/logout", headers=own, follow_redirects=False).status_code == 303
