"""auth.static_files(): the refresh manager, the socket module and their declarations, with their media types,
and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from harness.processes import REPO_ROOT
from starlette_refresh import ConfigurationError, TokenAuth, assets

STATIC = REPO_ROOT / "static"


@pytest.fixture
def client(auth: TokenAuth) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/static/sr", auth.static_files())])
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("refresh-manager.js", "text/javascript; charset=utf-8"),
        ("refresh-manager.d.ts", "application/typescript; charset=utf-8"),
        ("refresh-socket.js", "text/javascript; charset=utf-8"),
        ("refresh-socket.d.ts", "application/typescript; charset=utf-8"),
    ],
)
def test_serves_the_modules_and_their_declarations(client: TestClient, name: str, media_type: str) -> None:
    answer = client.get(f"/static/sr/{name}")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == media_type
    assert answer.content == (STATIC / name).read_bytes()
    assert "etag" in answer.headers
    again = client.get(f"/static/sr/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "package.json",
        "README.md",
        "tests/fakes.mjs",
        "demo/dashboard.js",
        "examples/live-socket.js",
        "tests/socket.test.mjs",
        "../refresh-manager.js",
        "%2e%2e/pyproject.toml",
        "",
    ],
)
def test_serves_nothing_else(client: TestClient, path: str) -> None:
    assert client.get(f"/static/sr/{path}").status_code == 404


def test_the_files_it_serves_are_the_ones_in_static(auth: TokenAuth) -> None:
    assert Path(auth.static_files().directory or "").resolve() == STATIC.resolve()


def test_a_missing_file_names_every_file_the_package_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "refresh-manager.js").write_text("// only one of them")
    monkeypatch.setattr(assets, "__file__", str(tmp_path / "lib" / "starlette_refresh" / "assets.py"))

    with pytest.raises(ConfigurationError) as refused:
        assets.manager_directory()

    for name in ("refresh-manager.js", "refresh-manager.d.ts", "refresh-socket.js", "refresh-socket.d.ts"):
        assert name in str(refused.value)
