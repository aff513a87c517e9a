"""docs/guide.md: the app it shows is examples/existing_app.py verbatim, and that app works as described;
its recipes for ending sessions from server code (password change, account ban) run on that app and
do what the guide says; its install lines name real extras, and its sequence diagram names real
endpoints and scripts."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Route
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.lua import SCRIPTS
from tests.docs.blocks import (
    REPO_ROOT,
    claim,
    claim_example,
    example_module,
    node_value,
    pip_install,
    python_blocks,
    run_python,
    search,
    shell_lines,
)

GUIDE = "docs/guide.md"
EXAMPLE = REPO_ROOT / "examples" / "existing_app.py"
INSTALL = claim(GUIDE, "sh", "pip install starlette-refresh")
APP = claim_example(GUIDE, "examples/existing_app.py")
# Run as real processes by tests/integration/test_examples_frameworks.py.
FRAMEWORK_EXAMPLES = [
    claim_example(GUIDE, f"examples/{name}_app.py") for name in ("django", "litestar", "quart")
]
PAGES = claim_example(GUIDE, "examples/pages_app.py")  # run by tests/docs/test_guide_pages.py
FLOW = claim(GUIDE, "mermaid", "sequenceDiagram")
PASSWORD_CHANGE = claim(GUIDE, "python", "async def change_password(")
ACCOUNT_BAN = claim(GUIDE, "python", "async def ban(")


def test_the_guide_shows_the_example_verbatim() -> None:
    assert APP.text == EXAMPLE.read_text()


def test_every_python_block_in_the_guide_is_the_tested_example_or_a_tested_recipe() -> None:
    assert python_blocks((REPO_ROOT / GUIDE).read_text()) == [
        EXAMPLE.read_text(),
        PASSWORD_CHANGE.text,
        ACCOUNT_BAN.text,
        *(claimed.text for claimed in FRAMEWORK_EXAMPLES),
        PAGES.text,
    ]


def test_the_guide_shows_each_framework_example_verbatim() -> None:
    for claimed in FRAMEWORK_EXAMPLES:
        assert claimed.example is not None
        assert claimed.text == (REPO_ROOT / claimed.example).read_text()


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example module, imported with its environment; its Redis swapped for fakeredis."""
    with example_module("existing_app", monkeypatch, "guide-example-secret-0123456789-0123456789") as module:
        yield module


def test_the_example_app_does_what_the_guide_says(example: ModuleType) -> None:
    with TestClient(example.app, base_url="https://testserver") as client:
        assert client.get("/").json() == {"hello": "world"}  # "/$": the home page is public
        assert client.get("/api/notes").status_code == 401  # everything else needs a token
        assert client.post("/login", json={"email": "ana@example.com", "password": "nope"}).status_code == 401

        answer = client.post("/login", json={"email": "ana@example.com", "password": "correct horse"})
        assert answer.status_code == 200
        assert set(answer.json()) == {"access_token", "token_type", "expires_in"}
        assert "httponly" in answer.headers["set-cookie"].lower()
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert client.get("/api/notes", headers=bearer).json() == {
            "owner": "ana@example.com",
            "notes": ["buy milk"],
        }

        refreshed = client.post("/auth/refresh", headers={"Origin": "https://testserver"})
        assert refreshed.status_code == 200
        assert client.get("/healthz").json()["store"] == "ok"
        script = client.get("/static/sr/refresh-manager.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")


# -- Ending sessions from server code: the recipes, on the example app --------------------------

BASE_URL = "https://testserver"
ORIGIN = {"Origin": BASE_URL}
ANA, PASSWORD = "ana@example.com", "correct horse"
REVOKED = {"error": "invalid_token", "error_description": "token revoked"}


@dataclass(frozen=True)
class Device:
    """One logged-in browser: its access token and its refresh cookie."""

    access_token: str
    refresh_cookie: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def recipe_app(example: ModuleType, recipe: Any) -> tuple[Starlette, dict[str, Any]]:
    """The example app with a recipe run into its namespace, as "Added to the app above" says, and the
    route its first comment names put in front (with any ``login`` it defines replacing step 4's)."""
    namespace = run_python(recipe, dict(vars(example)))
    named = search(r"^# Added to the app above, with (Route\(.*?\))[.;]$", recipe.text, re.M).group(1)
    routes: list[BaseRoute] = [eval(named, {"Route": Route}, namespace)]  # noqa: S307 - our own docs
    if namespace["login"] is not example.login:
        routes.append(Route("/login", namespace["login"], methods=["POST"]))
    app = Starlette(routes=[*routes, *example.app.routes], middleware=[example.auth.middleware()])
    return app, namespace


def log_in(client: TestClient, email: str, password: str) -> httpx2.Response:
    client.cookies.clear()  # only what a test passes travels
    answer = client.post("/login", json={"email": email, "password": password})
    client.cookies.clear()
    return answer


def device(client: TestClient, email: str = ANA, password: str = PASSWORD) -> Device:
    answer = log_in(client, email, password)
    assert answer.status_code == 200, answer.text
    return Device(answer.json()["access_token"], answer.cookies["refresh_token"])


def refresh(client: TestClient, browser: Device) -> httpx2.Response:
    cookie = {"Cookie": f"refresh_token={browser.refresh_cookie}"}
    return client.post("/auth/refresh", headers={**ORIGIN, **cookie})


def assert_ended(client: TestClient, browser: Device) -> None:
    answer = client.get("/api/notes", headers=browser.bearer)
    assert (answer.status_code, answer.json()) == (401, REVOKED)
    answer = refresh(client, browser)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


def live_sessions(client: TestClient, auth: TokenAuth, subject: str) -> int:
    assert client.portal is not None
    return len(client.portal.call(auth.list_sessions, subject))


def test_the_password_change_recipe_ends_every_other_session(example: ModuleType) -> None:
    app, _ = recipe_app(example, PASSWORD_CHANGE)
    with TestClient(app, base_url=BASE_URL) as client:
        this, *others = [device(client) for _ in range(3)]
        wrong = {"old_password": "nope", "new_password": "battery staple"}
        assert client.post("/account/password", json=wrong, headers=this.bearer).status_code == 403
        assert live_sessions(client, example.auth, ANA) == 3  # a wrong password ends nothing

        right = {"old_password": PASSWORD, "new_password": "battery staple"}
        answer = client.post("/account/password", json=right, headers=this.bearer)

        assert answer.json() == {"other_sessions_ended": 2}
        for other in others:
            assert_ended(client, other)
        # the device that changed the password stays logged in, and keeps refreshing
        assert client.get("/api/notes", headers=this.bearer).status_code == 200
        assert refresh(client, this).status_code == 200
        assert live_sessions(client, example.auth, ANA) == 1
        assert log_in(client, ANA, PASSWORD).status_code == 401
        assert log_in(client, ANA, "battery staple").status_code == 200


def test_the_account_ban_recipe_ends_every_session_and_refuses_logins(example: ModuleType) -> None:
    app, _ = recipe_app(example, ACCOUNT_BAN)
    with TestClient(app, base_url=BASE_URL) as client:
        devices = [device(client) for _ in range(2)]
        assert client.portal is not None
        login = functools.partial(example.auth.sessions.login, "root@example.com", {"scope": "admin"})
        admin = {"Authorization": f"Bearer {client.portal.call(login).access_token}"}
        ban = f"/admin/users/{ANA}/ban"
        assert client.post(ban, headers=devices[0].bearer).status_code == 403  # only admins ban
        assert live_sessions(client, example.auth, ANA) == 2

        answer = client.post(ban, headers=admin)

        assert answer.json() == {"sessions_ended": 2}
        for browser in devices:
            assert_ended(client, browser)
        refused = log_in(client, ANA, PASSWORD)
        assert (refused.status_code, refused.json()) == (403, {"error": "account banned"})
        assert log_in(client, ANA, "nope").status_code == 401
        assert live_sessions(client, example.auth, ANA) == 0
        assert client.get("/api/notes", headers=admin).status_code == 200  # nobody else is touched


class BannedDuringLogin:
    """A ban flag set between a login's first check and its second: the race the second check closes."""

    def __init__(self) -> None:
        self.checks = 0

    def __contains__(self, email: object) -> bool:
        self.checks += 1
        return self.checks > 1


def test_the_account_ban_recipe_ends_a_session_that_a_racing_login_created(example: ModuleType) -> None:
    app, namespace = recipe_app(example, ACCOUNT_BAN)
    namespace["BANNED"] = banned = BannedDuringLogin()
    with TestClient(app, base_url=BASE_URL) as client:
        refused = log_in(client, ANA, PASSWORD)

        assert (refused.status_code, refused.json()) == (403, {"error": "account banned"})
        assert banned.checks == 2  # the session was created between the checks...
        assert live_sessions(client, example.auth, ANA) == 0  # ...and ended by the login itself


def test_install_lines_name_the_project_and_its_extras() -> None:
    lines = shell_lines(INSTALL.text)
    assert [pip_install(line)[1] for line in lines] == [set(), {"fastapi"}, {"prometheus"}]
    # "# the library: starlette, redis, pyjwt"
    listed = search(r"# the library: (.*)$", INSTALL.text, re.M).group(1).split(", ")
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {re.split(r"[\[<>=]", d)[0] for d in dependencies} == set(listed)


def test_sequence_diagram_names_real_routes_endpoints_and_scripts(example: ModuleType) -> None:
    diagram = FLOW.text
    requests = re.findall(r"->>A: (GET|POST|DELETE) (/[^\s,]*)", diagram)
    assert requests, "the diagram shows requests"
    with TestClient(example.app, base_url="https://testserver") as client:
        for method, path in requests:
            if example.auth.endpoints.handles(path):
                # the middleware answers it; 405 would mean the wrong method
                answered = client.request(method, path, headers={"Origin": "https://testserver"})
                assert answered.status_code not in (404, 405), f"{method} {path}"
            else:
                scope = {"type": "http", "path": path, "method": method}
                matches = [route.matches(scope)[0] for route in example.app.router.routes]
                assert Match.FULL in matches, f"the example app has no route for {method} {path}"
    for script in re.findall(r"EVALSHA (\w+)", diagram):
        assert script in SCRIPTS, f"no Lua script named {script}"


def test_sequence_diagram_refresh_margin_is_the_managers() -> None:
    """The diagram's "expires_in minus margin (e.g. 810 s of 900)" is the refresh manager's margin."""
    due, lifetime = map(int, search(r"e\.g\. (\d+) s of (\d+)", FLOW.text).groups())
    assert lifetime - node_value(f"manager.computeMarginMs({lifetime * 1000})") / 1000 == due
