"""A rolling upgrade from release 0.1 (store format 1) logs nobody out.

The previous release's wheel is built from its git commit and installed in a virtual environment
of its own; its app (its own tests/apps.py) and this release's run side by side on one redis-server
and refresh the same sessions, alternately. While the 0.1 process is up, this release writes format 1
(the sessions 0.1 can read); once it is gone, format 2, and every session moves over on its next
rotation. Then the upgrade is over: no session was lost, none was refused.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from harness.processes import REPO_ROOT, AppServer, RedisServer
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory
from tests.support.stored import stored_session, user_key
from tests.support.venvs import new_venv, run

pytestmark = pytest.mark.integration

#: Release 0.1, the last commit that stores sessions in format 1 (a hash per session).
PREVIOUS_RELEASE = "ae5813a645764bd4a9aadccddab915e48c2f1b7c"
APP = "tests.apps:app_from_env"
CHECK_INTERVAL = "0.5"  # seconds between counts of 0.1 processes (10 in production)


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Release 0.1 installed from a wheel built from its commit: (its venv's python, its source tree)."""
    where = tmp_path_factory.mktemp("release-0.1")
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", PREVIOUS_RELEASE],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"commit {PREVIOUS_RELEASE} (release 0.1) is not in this clone: {archive.stderr.decode()}; "
        "the upgrade test needs the repository's history (git fetch --unshallow)"
    )
    source = where / "src"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    # Built with this venv's hatchling (a test dependency) rather than in an isolated environment
    # that fetches it anew: the same backend 0.1 names, several seconds sooner.
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(where / "dist")]
    run([*build, str(source)], where)
    (wheel,) = (where / "dist").glob("starlette_refresh-0.1.0-*.whl")
    return new_venv(where / "venv", str(wheel), "uvicorn"), source


@pytest.fixture
def old_app(
    previous_release: tuple[Path, Path], redis_server: RedisServer, tmp_path: Path
) -> Iterator[AppServer]:
    python, source = previous_release
    server = AppServer(
        APP, app_env(redis_server), factory=True, cwd=source, log_dir=tmp_path / "old", python=python
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def format2_users(redis: RedisServer) -> list[str]:
    """The keys of format-2 user strings (format 1 keys end in :u and :s:<id>)."""
    client = redis.client()
    try:
        return [k.decode() for k in client.keys("sr:{*}") if re.fullmatch(rb"sr:\{[0-9a-f]{20}\}", k)]
    finally:
        client.close()


def wait_for_log(app: AppServer, text: str, within: float = 10.0) -> float:
    started = time.monotonic()
    while text not in app.log_text():
        assert time.monotonic() - started < within, (
            f"{app!r} never logged {text!r}:\n{app.log_text()[-2000:]}"
        )
        time.sleep(0.05)
    return time.monotonic() - started


def test_old_and_new_processes_serve_the_same_sessions_and_the_upgrade_moves_them_to_format2(
    old_app: AppServer, redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    old_sessions = [login(old_app, f"user-{n}") for n in range(4)]  # before the deploy starts
    new_app = app_server_factory(
        APP, app_env(redis_server, SR_FORMAT_CHECK_INTERVAL=CHECK_INTERVAL), factory=True
    )
    assert "1 process(es) of starlette-refresh 0.1 share this store: writing sessions in format 1" in (
        new_app.log_text()
    )
    new_sessions = [login(new_app, f"user-{n}") for n in range(2, 6)]  # users 2 and 3 have one of each
    tokens = [s["refresh_token"] for s in old_sessions + new_sessions]

    # Alternately through 0.1 and this release, each session starting on the other side each round.
    for round_number in range(6):
        for i, token in enumerate(tokens):
            app = (old_app, new_app)[(i + round_number) % 2]
            answer = refresh(app, token)
            assert answer.status_code == 200, f"round {round_number}, session {i} on {app!r}: {answer.text}"
            tokens[i] = answer.json()["refresh_token"]
            other = (new_app, old_app)[(i + round_number) % 2]
            assert me(other, answer.json()["access_token"]).status_code == 200
    assert format2_users(redis_server) == [], "a session moved to format 2 while 0.1 was serving"

    # A token presented twice, once on each side, within the grace window: the same child both times.
    first, second = refresh(old_app, tokens[0]), refresh(new_app, tokens[0])
    assert first.status_code == second.status_code == 200
    assert first.json()["refresh_token"] == second.json()["refresh_token"]
    tokens[0] = first.json()["refresh_token"]

    # A logout on this release ends the session on 0.1 too, and the other way round.
    ended_on_new, ended_on_old = tokens.pop(), tokens.pop()
    assert httpx_logout(new_app, ended_on_new) == 204
    assert httpx_logout(old_app, ended_on_old) == 204
    for token in (ended_on_new, ended_on_old):
        assert refresh(old_app, token).status_code == 400
        assert refresh(new_app, token).status_code == 400

    # The last 0.1 process goes: this release sees it and writes format 2 from then on.
    old_app.stop()
    waited = wait_for_log(
        new_app, "no process of starlette-refresh 0.1 shares this store: writing sessions in format 2"
    )
    print(
        f"\nformat 2 written {waited:.1f} s after the 0.1 process stopped (checks every {CHECK_INTERVAL} s)"
    )
    client = redis_server.client()
    try:
        for i, token in enumerate(tokens):
            answer = refresh(new_app, token)
            assert answer.status_code == 200, f"session {i} after the upgrade: {answer.text}"
            tokens[i] = answer.json()["refresh_token"]
            stored = stored_session(client, tokens[i])
            assert stored is not None
            assert stored.created_at_ms > 0, "not moved into its user's string"
            assert client.exists(user_key(tokens[i])) == 1
        leftovers = sorted(k.decode() for k in client.keys("sr:{*}*") if not k.decode().endswith("}"))
    finally:
        client.close()
    assert leftovers == [], f"format-1 keys left after every session rotated: {leftovers}"
    assert len(format2_users(redis_server)) == 4  # users 0 to 3; 4 and 5 logged out


def httpx_logout(app: AppServer, refresh_token: str) -> int:
    return httpx2.post(
        f"{app.url}/auth/logout", json={"refresh_token": refresh_token}, timeout=10
    ).status_code
