"""Behind a TLS-terminating proxy: the cross-site check must see the origin the browser sees.

The browser sends ``Origin: https://app.example.com``; the app receives plain http from the proxy.
With uvicorn trusting the proxy's ``X-Forwarded-Proto`` (its default for a proxy on 127.0.0.1, or
``--forwarded-allow-ips`` for one elsewhere), the cookie refresh works. Without it every cookie
refresh is refused as cross-site, and the answer says how to fix it: the deployment guide's advice,
proven against a real uvicorn.
"""

from __future__ import annotations

import httpx2
import pytest

from harness.processes import AppServer, RedisServer
from tests.integration.helpers import app_env, login
from tests.support.fixtures import AppServerFactory

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"
PUBLIC = "app.example.com"


def refresh_as_proxied_browser(app: AppServer, cookie: str) -> httpx2.Response:
    headers = {
        "Host": PUBLIC,
        "Origin": f"https://{PUBLIC}",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
    }
    return httpx2.post(
        f"{app.url}/auth/refresh", headers=headers, cookies={"refresh_token": cookie}, timeout=10
    )


def test_a_trusted_proxy_forwarding_https_keeps_cookie_refreshes_working(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(
        APP, app_env(redis_server), factory=True, extra_args=["--forwarded-allow-ips", "127.0.0.1"]
    )
    issued = login(app, transport="cookie")

    answer = refresh_as_proxied_browser(app, issued["cookie"])

    assert answer.status_code == 200, answer.text
    assert "refresh_token=" in answer.headers["set-cookie"]


def test_an_untrusted_proxy_makes_cookie_refreshes_cross_site_and_says_why(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(APP, app_env(redis_server), factory=True, extra_args=["--no-proxy-headers"])
    issued = login(app, transport="cookie")

    answer = refresh_as_proxied_browser(app, issued["cookie"])

    assert answer.status_code == 403
    assert "https://app.example.com" in answer.json()["error_description"]
    assert "trusted_origins" in answer.json()["error_description"]


def test_behind_a_proxy_that_strips_a_path_prefix_everything_matches_the_route_path(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    """A proxy serves the app at /api and forwards /api/x as /x; uvicorn runs with --root-path /api
    and so puts /api in front of every path it hands the app (ASGI paths include root_path). Before
    issue 14 the middleware matched those full paths: /login, though excluded, answered 401, and
    /auth/refresh went to the access-token check instead of the endpoint."""
    app = app_server_factory(APP, app_env(redis_server), factory=True, extra_args=["--root-path", "/api"])
    logged_in = httpx2.post(f"{app.url}/login", json={"transport": "cookie"}, timeout=10)
    assert logged_in.status_code == 200, logged_in.text  # excluded as /login
    assert "Path=/api/auth" in logged_in.headers["set-cookie"], "the path the browser sees"
    cookie = logged_in.cookies["refresh_token"]

    refreshed = httpx2.post(f"{app.url}/auth/refresh", cookies={"refresh_token": cookie}, timeout=10)

    assert refreshed.status_code == 200, refreshed.text
    assert "Path=/api/auth" in refreshed.headers["set-cookie"]
    access = refreshed.json()["access_token"]
    assert (
        httpx2.get(f"{app.url}/me", headers={"Authorization": f"Bearer {access}"}, timeout=10).status_code
        == 200
    )
    assert httpx2.get(f"{app.url}/me", timeout=10).status_code == 401
    assert httpx2.get(f"{app.url}/public", timeout=10).json() == {"authenticated": False}
    sessions = httpx2.get(
        f"{app.url}/auth/sessions", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )
    assert sessions.status_code == 200
    assert len(sessions.json()["sessions"]) == 1
