"""The built wheel and sdist: what they contain, and a wheel installed into a fresh venv that serves the JS.

Builds both with ``python -m build`` (an isolated build with hatchling from the package index), then
installs the wheel and its dependencies into a new virtual environment that cannot see this checkout.
There it imports the package, checks ``py.typed``, and drives ``auth.static_files()`` as a raw ASGI
app. The browser modules it serves must be byte-for-byte copies of the files in ``static/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

SERVE_IN_FRESH_VENV = r"""
import asyncio, hashlib, importlib, importlib.resources, json, sys
import starlette_refresh
from starlette.exceptions import HTTPException
from starlette_refresh import TokenAuth

package = importlib.resources.files("starlette_refresh")
auth = TokenAuth(secret_key="packaging-test-secret-0123456789-0123456789", redis_url="redis://127.0.0.1:1/0")
app = auth.static_files()

async def get(path):
    sent = []
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http",
             "server": ("test", 80), "client": ("test", 1)}
    requested = False
    async def receive():
        nonlocal requested
        if requested:  # the response listens for a disconnect meanwhile: never comes
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    try:
        await app(scope, receive, send)
    except HTTPException as refused:  # StaticFiles raises it; an app's exception middleware answers it
        return refused.status_code, None, None
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers.get("content-type"), hashlib.sha256(body).hexdigest()

def missing_extra(module):
    try:
        importlib.import_module(module)
    except ImportError as error:
        return str(error)
    return "imported"

print(json.dumps({
    "without_prometheus": missing_extra("starlette_refresh.prometheus"),
    "without_fastapi": missing_extra("starlette_refresh.fastapi"),
    "file": starlette_refresh.__file__,
    "py_typed": package.joinpath("py.typed").is_file(),
    "served": {name: asyncio.run(get("/" + name)) for name in sys.argv[1:]},
    "other": asyncio.run(get("/package.json"))[0],
}))
"""


#: The browser files the wheel ships and static_files() serves, with their media types.
BROWSER_FILES = {
    "refresh-manager.js": "text/javascript; charset=utf-8",
    "refresh-manager.d.ts": "application/typescript; charset=utf-8",
    "refresh-socket.js": "text/javascript; charset=utf-8",
    "refresh-socket.d.ts": "application/typescript; charset=utf-8",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO_ROOT)], out)
    return out


def test_the_wheel_carries_the_package_its_types_and_the_browser_module(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {name: archive.read(f"starlette_refresh/static/{name}") for name in BROWSER_FILES}

    assert "starlette_refresh/py.typed" in names
    assert "starlette_refresh/__init__.py" in names
    for name, content in shipped.items():
        assert content == (REPO_ROOT / "static" / name).read_bytes(), name
    assert {name for name in names if "/static/" in name} == {
        f"starlette_refresh/static/{name}" for name in BROWSER_FILES
    }
    assert not any(name.startswith(("tests/", "demo_app/", "bench/")) for name in names)


def test_the_sdist_carries_the_sources_the_module_and_its_npm_manifest(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    for needed in (
        "pyproject.toml",
        "README.md",
        "middleware/starlette_refresh/py.typed",
        "static/refresh-manager.js",
        "static/refresh-manager.d.ts",
        "static/refresh-socket.js",
        "static/refresh-socket.d.ts",
        "static/package.json",
        "static/README.md",
    ):
        assert needed in names, needed


def test_the_installed_wheel_imports_and_serves_the_refresh_manager(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], tmp_path)

    report = json.loads(run([str(python), "-c", SERVE_IN_FRESH_VENV, *BROWSER_FILES], tmp_path, timeout=60))

    assert report["file"].startswith(str(venv)), report["file"]  # the wheel, not this checkout
    assert report["py_typed"] is True
    assert report["served"] == {
        name: [200, media_type, sha256(REPO_ROOT / "static" / name)]
        for name, media_type in BROWSER_FILES.items()
    }
    assert report["other"] == 404
    # The optional extras are not installed there: importing them says which extra to install.
    assert 'pip install "starlette-refresh[prometheus]"' in report["without_prometheus"]
    assert 'pip install "starlette-refresh[fastapi]"' in report["without_fastapi"]
