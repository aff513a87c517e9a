"""docs/guide.md: the app it shows is examples/existing_app.py verbatim, and that app works as described."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from types import ModuleType

import fakeredis
import pytest
from starlette.testclient import TestClient

from tests.support.processes import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "guide.md"
EXAMPLE = REPO_ROOT / "examples" / "existing_app.py"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_guide_shows_the_example_verbatim() -> None:
    assert EXAMPLE.read_text() in python_blocks(GUIDE.read_text())


def test_every_python_block_in_the_guide_is_the_tested_example() -> None:
    assert python_blocks(GUIDE.read_text()) == [EXAMPLE.read_text()]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example module, imported with its environment; its Redis swapped for fakeredis."""
    monkeypatch.setenv("JWT_SECRET", "guide-example-secret-0123456789-0123456789")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")  # never connected: replaced below
    sys.modules.pop("examples.existing_app", None)
    module = importlib.import_module("examples.existing_app")
    module.auth.store._client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())
    yield module
    sys.modules.pop("examples.existing_app", None)


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
