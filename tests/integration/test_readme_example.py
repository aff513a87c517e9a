"""The README's minimal example, run as written against a real redis-server, so the docs cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.apps import SECRET
from tests.support.processes import RedisServer

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-example: {name}\b.*?-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README has no example marked {name!r}"
    return match.group(1)


def test_minimal_example_logs_in_refreshes_and_protects(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    namespace: dict[str, Any] = {}
    exec(compile(readme_example("minimal"), str(README), "exec"), namespace)  # noqa: S102 - our own README

    with TestClient(namespace["app"], base_url="http://testserver") as client:
        assert client.get("/me").status_code == 401
        login = client.post("/login")
        assert login.status_code == 200
        access = login.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {access}"}).json() == {"sub": "42"}
        refreshed = client.post("/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        new_access = refreshed.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {new_access}"}).json() == {"sub": "42"}
