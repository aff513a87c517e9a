"""Page mode across real processes (issue 17): two uvicorn processes of tests/apps.py on one
redis-server, page cookies carried by hand as a browser would carry them.

- parallel page requests spread over both processes, all presenting the same refresh cookie with no
  live access cookie: every one answered 200, the store rotated once, and every answer carries the
  same new refresh token (one process shares its rotation; the other gets the grace answer);
- a revocation on one process sends the page session to the login page on the other within a second;
- a Redis outage during an inline refresh is a 503 that sets no cookie, and the same cookies work
  once Redis is back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import redis

from harness.processes import AppServer
from tests.integration.helpers import app_env
from tests.support.fixtures import AppServerFactory, RedisServerFactory
from tests.support.stored import stored_generation

APP = "tests.apps:app_from_env"
PAGE, ACCESS = "sr_session", "sr_session_access"
HTML = {"Accept": "text/html"}


def page_login(app: AppServer) -> dict[str, str]:
    """A cookie login; returns the page cookies it set."""
    answer = httpx2.post(f"{app.url}/login", json={"subject": "42"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {PAGE: answer.cookies[PAGE], ACCESS: answer.cookies[ACCESS]}


def page(app: AppServer, cookies: dict[str, str], client: httpx2.Client | None = None) -> httpx2.Response:
    header = {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()), **HTML}
    if client is not None:
        return client.get(f"{app.url}/me", headers=header)
    return httpx2.get(f"{app.url}/me", headers=header, timeout=10, follow_redirects=False)


def set_cookie_values(answer: httpx2.Response) -> dict[str, str]:
    values: dict[str, str] = {}
    for header in answer.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        values[name] = rest.split(";", 1)[0]
    return values


def test_parallel_page_requests_over_two_processes_make_one_rotation_and_agree_on_the_new_cookie(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory()
    one, two = (app_server_factory(APP, app_env(server, SR_PAGE_MODE="1"), factory=True) for _ in range(2))
    cookies = page_login(one)
    spent = {PAGE: cookies[PAGE]}  # as after the access cookie expired: the browser dropped it

    def request(index: int) -> httpx2.Response:
        return page(one if index % 2 else two, spent)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(request, range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20, [a.text for a in answers]
    assert {answer.json()["sub"] for answer in answers} == {"42"}
    new_refresh = {set_cookie_values(answer)[PAGE] for answer in answers}
    assert len(new_refresh) == 1, "every answer must hand out the same new refresh token"
    assert all(set_cookie_values(answer)["refresh_token"] in new_refresh for answer in answers)
    client = redis.Redis.from_url(server.url)
    assert stored_generation(client, cookies[PAGE]) == 1  # one rotation, whatever the interleaving


def test_a_page_session_revoked_on_one_process_goes_to_the_login_page_on_the_other_within_a_second(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory()
    one, two = (app_server_factory(APP, app_env(server, SR_PAGE_MODE="1"), factory=True) for _ in range(2))
    cookies = page_login(one)
    with httpx2.Client(timeout=10, follow_redirects=False) as client:
        assert page(two, cookies, client).status_code == 200
        ended = httpx2.post(
            f"{one.url}/auth/logout-all", headers={"Authorization": f"Bearer {cookies[ACCESS]}"}, timeout=10
        )
        assert ended.status_code == 204
        started = time.monotonic()
        while time.monotonic() - started < 3:
            answer = page(two, cookies, client)
            if answer.status_code == 303:
                break
            assert answer.status_code == 200
            time.sleep(0.005)
        elapsed = time.monotonic() - started
    assert answer.status_code == 303, "the page session still worked 3 s after logout-all"
    assert answer.headers["location"] == "/login?next=/me"
    assert answer.headers.get_list("set-cookie") == []
    assert elapsed < 1.0, f"revocation took {elapsed:.2f} s to reach the other process"


def test_an_outage_during_an_inline_refresh_keeps_the_cookies_for_when_redis_is_back(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory()
    app = app_server_factory(APP, app_env(server, SR_PAGE_MODE="1", SR_STORE_TIMEOUT="0.5"), factory=True)
    cookies = page_login(app)
    spent = {PAGE: cookies[PAGE]}
    server.stop()
    down = page(app, spent)
    assert down.status_code == 503
    assert down.headers["content-type"].startswith("text/html")
    assert down.headers.get_list("set-cookie") == []
    server.start()
    deadline = time.monotonic() + 10
    answer: Any = None
    while time.monotonic() < deadline:
        answer = page(app, spent)
        if answer.status_code != 503:
            break
        time.sleep(0.1)
    assert answer is not None
    assert answer.status_code == 200, answer.text
    assert set(set_cookie_values(answer)) == {PAGE, ACCESS, "refresh_token"}
