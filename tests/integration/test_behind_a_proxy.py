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
