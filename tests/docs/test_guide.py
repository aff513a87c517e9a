"""docs/guide.md: the app it shows is examples/existing_app.py verbatim, and that app works as described;
its install lines name real extras, and its sequence diagram names real endpoints and scripts."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from types import ModuleType

import pytest
from starlette.routing import Match
from starlette.testclient import TestClient

from starlette_refresh.lua import SCRIPTS
from tests.docs.blocks import (
    REPO_ROOT,
    claim,
    claim_example,
    example_module,
    node_value,
    pip_install,
    python_blocks,
    search,
    shell_lines,
)

GUIDE = "docs/guide.md"
EXAMPLE = REPO_ROOT / "examples" / "existing_app.py"
INSTALL = claim(GUIDE, "sh", "pip install starlette-refresh")
APP = claim_example(GUIDE, "examples/existing_app.py")
FLOW = claim(GUIDE, "mermaid", "sequenceDiagram")


def test_the_guide_shows_the_example_verbatim() -> None:
    assert APP.text == EXAMPLE.read_text()


def test_every_python_block_in_the_guide_is_the_tested_example() -> None:
    assert python_blocks((REPO_ROOT / GUIDE).read_text()) == [EXAMPLE.read_text()]


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
