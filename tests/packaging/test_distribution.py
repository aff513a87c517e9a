"""The built wheel and sdist: what they contain, and a wheel installed into a fresh venv that serves the JS.

Builds both with ``python -m build`` (an isolated build with hatchling from the package index), then
installs the wheel and its dependencies into a new virtual environment that cannot see this checkout,
with redis-py pinned to the OLDEST release the package allows (the suite itself runs on the newest).
There it imports the package, checks ``py.typed``, drives ``auth.static_files()`` as a raw ASGI app
(the browser modules it serves must be byte-for-byte copies of the files in ``static/``), and runs a
session's life against a real redis-server: start-up checks, login, refresh, an outage, logout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from harness.processes import REPO_ROOT, RedisServer, free_port
from tests.support.venvs import new_venv, run

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


STORE_IN_FRESH_VENV = r"""
import asyncio, json, sys
import redis
from starlette_refresh import StoreUnavailable, TokenAuth
from starlette_refresh.errors import InvalidGrant

async def main(url, dead_url):
    auth = TokenAuth(secret_key="packaging-test-secret-0123456789-0123456789", redis_url=url)
    await auth.startup()  # ping, scripts, clock offset, persistence and replication checks
    issued = await auth.sessions.login("alice", {}, "packaging test")
    rotated = await auth.sessions.refresh(issued.refresh_token)
    again = await auth.sessions.refresh(issued.refresh_token)  # within the grace window
    await auth.sessions.logout(rotated.refresh_token)
    try:
        await auth.sessions.refresh(again.refresh_token)
        after_logout = "refreshed"
    except InvalidGrant as refused:
        after_logout = str(refused)
    await auth.shutdown()
    down = TokenAuth(secret_key="packaging-test-secret-0123456789-0123456789", redis_url=dead_url,
                     store_timeout=0.5)
    try:
        await down.sessions.login("alice", {}, "packaging test")
        outage = "logged in"
    except StoreUnavailable as unavailable:
        outage = type(unavailable).__name__
    return {"redis_py": redis.__version__, "generations": [issued.refresh_token.split(".")[3],
            rotated.refresh_token.split(".")[3]], "after_logout": after_logout, "outage": outage}

print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
"""


def oldest_redis_py() -> str:
    """The lowest redis-py release pyproject.toml allows (its ``>=`` bound)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    (redis,) = (Requirement(r) for r in project["dependencies"] if Requirement(r).name == "redis")
    (lowest,) = (spec.version for spec in redis.specifier if spec.operator == ">=")
    return lowest


#: The browser files the wheel ships and static_files() serves, with their media types.
BROWSER_FILES = {
    "refresh-manager.js": "text/javascript; charset=utf-8",
    "refresh-manager.d.ts": "application/typescript; charset=utf-8",
    "refresh-socket.js": "text/javascript; charset=utf-8",
    "refresh-socket.d.ts": "application/typescript; charset=utf-8",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    assert not any(name.startswith(("tests/", "harness/", "demo_app/", "bench/")) for name in names)


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
        # the tests in the sdist import their process harness from here
        "harness/processes.py",
    ):
        assert needed in names, needed


@pytest.fixture(scope="module")
def fresh_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel installed, and redis-py at the oldest release it allows; its python."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path_factory.mktemp("venv") / "venv"
    return new_venv(venv, str(wheel), f"redis=={oldest_redis_py()}")


def test_the_installed_wheel_imports_and_serves_the_refresh_manager(fresh_venv: Path, tmp_path: Path) -> None:
    served = run([str(fresh_venv), "-c", SERVE_IN_FRESH_VENV, *BROWSER_FILES], tmp_path, timeout=60)
    report = json.loads(served)

    assert report["file"].startswith(str(fresh_venv.parent.parent)), report["file"]  # not this checkout
    assert report["py_typed"] is True
    assert report["served"] == {
        name: [200, media_type, sha256(REPO_ROOT / "static" / name)]
        for name, media_type in BROWSER_FILES.items()
    }
    assert report["other"] == 404
    # The optional extras are not installed there: importing them says which extra to install.
    assert 'pip install "starlette-refresh[prometheus]"' in report["without_prometheus"]
    assert 'pip install "starlette-refresh[fastapi]"' in report["without_fastapi"]


def test_the_installed_wheel_keeps_sessions_on_the_oldest_redis_py_it_allows(
    fresh_venv: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """With the old ``>=5.0`` bound, redis-py 5.0.8 could be installed, and the store failed on it: it
    lacks names the store uses (a backoff class, two exception classes). The bound is now the oldest
    release this passes on."""
    live, dead = redis_server.url, f"redis://127.0.0.1:{free_port()}/0"
    report = json.loads(run([str(fresh_venv), "-c", STORE_IN_FRESH_VENV, live, dead], tmp_path, timeout=60))

    assert Version(report["redis_py"]) == Version(oldest_redis_py())
    assert report["generations"] == ["0", "1"]
    assert report["after_logout"] == "refresh token is invalid or revoked"
    assert report["outage"] == "StoreUnavailable"
