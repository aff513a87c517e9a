"""docs/deployment.md: "the two rules" snippet, the server command lines, the least-privilege Redis user
and the planned-failover runbook, each run or checked against real processes."""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from harness.processes import RedisServer, free_port
from starlette_refresh import TokenAuth
from starlette_refresh.errors import ConfigurationError, StoreUnavailable
from tests.apps import SECRET, build_app
from tests.docs.blocks import claim, run_python, search, shell_lines
from tests.support.fixtures import RedisServerFactory
from tests.support.topologies import FENCE_PAUSE_MS
from tests.support.topology_fixtures import SentinelGroupFactory

DEPLOYMENT = "docs/deployment.md"
ONE_SECRET = claim(DEPLOYMENT, "python", 'secret_key=os.environ["JWT_SECRET"]')
SERVERS = claim(DEPLOYMENT, "sh", "uvicorn app:app")
ACL_USER = claim(DEPLOYMENT, "", "user sessions on")
FENCE = claim(DEPLOYMENT, "sh", "SENTINEL FAILOVER")


# -- The two rules -----------------------------------------------------------------------------


def _worker(monkeypatch: pytest.MonkeyPatch, secret: str, redis_url: str) -> TokenAuth:
    """One app process's TokenAuth, built by the doc's line from its environment."""
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("REDIS_URL", redis_url)
    auth: TokenAuth = run_python(ONE_SECRET)["auth"]
    return auth


def _logged_in(client: TestClient) -> tuple[str, str]:
    answer = client.post("/login", json={"transport": "body"})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"], answer.json()["refresh_token"]


def _session(client: TestClient, auth: TokenAuth) -> tuple[str, str]:
    """A login on ``auth``'s process (the doc's line excludes no login route, so not over HTTP)."""
    assert client.portal is not None  # inside the client's lifespan, where the store runs
    issued = client.portal.call(auth.sessions.login, "42", None, "test")
    return issued.access_token, issued.refresh_token


def test_one_secret_and_one_store_let_any_process_serve_any_session(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _worker(monkeypatch, SECRET, redis_server.url)
    second = _worker(monkeypatch, SECRET, redis_server.url)
    with (
        TestClient(build_app(first), base_url="https://testserver") as one,
        TestClient(build_app(second), base_url="https://testserver") as two,
    ):
        access, refresh = _session(one, first)
        assert two.get("/me", headers={"Authorization": f"Bearer {access}"}).status_code == 200
        rotated = two.post("/auth/refresh", json={"refresh_token": refresh})
        assert rotated.status_code == 200, rotated.text
        again = one.post("/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
        assert again.status_code == 200, again.text


def test_a_secret_per_process_rejects_the_other_workers_tokens(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _worker(monkeypatch, SECRET, redis_server.url)
    other = _worker(monkeypatch, SECRET[::-1], redis_server.url)
    with (
        TestClient(build_app(first), base_url="https://testserver") as one,
        TestClient(build_app(other), base_url="https://testserver") as two,
    ):
        access, refresh = _session(one, first)
        refused = two.get("/me", headers={"Authorization": f"Bearer {access}"})
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert two.post("/auth/refresh", json={"refresh_token": refresh}).status_code == 400


def test_a_missing_store_fails_when_the_app_is_built() -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        TokenAuth(secret_key=SECRET)


def test_an_unreachable_redis_stops_startup_naming_the_url_with_the_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    auth = _worker(monkeypatch, SECRET, f"redis://:hunter2-hunter2@127.0.0.1:{port}/0")
    with pytest.raises(StoreUnavailable) as refused, TestClient(build_app(auth)):
        pass  # pragma: no cover - startup fails
    assert f"redis://:***@127.0.0.1:{port}/0" in str(refused.value)
    assert "hunter2" not in str(refused.value)


# -- Several workers, several hosts ------------------------------------------------------------


def _uvicorn_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout


#: gunicorn is not a dependency; its options as documented at https://docs.gunicorn.org/en/stable/settings.html
GUNICORN_OPTIONS = {"-k", "--worker-class", "-w", "--workers", "-b", "--bind", "--forwarded-allow-ips"}


def test_server_command_lines_use_real_options() -> None:
    lines = [shlex.split(line) for line in shell_lines(SERVERS.text)]
    assert [words[0] for words in lines] == ["uvicorn", "gunicorn"]
    uvicorn_options = set(re.findall(r"(--[a-z-]+)", _uvicorn_help()))
    for words in lines:
        assert words[1] == "app:app"
        options = {word for word in words[2:] if word.startswith("-")}
        known = uvicorn_options if words[0] == "uvicorn" else GUNICORN_OPTIONS
        assert options <= known, f"{words[0]} has no option {options - known}"


def test_gunicorn_line_uses_the_maintained_uvicorn_worker() -> None:
    gunicorn = shlex.split(shell_lines(SERVERS.text)[1])
    worker = gunicorn[gunicorn.index("-k") + 1]
    # uvicorn >= 0.30 deprecates its own worker module in favour of the uvicorn-worker package
    deprecated = Path(uvicorn.__file__ or "").parent / "workers.py"
    if "deprecated" in deprecated.read_text():
        assert worker == "uvicorn_worker.UvicornWorker"
    assert "uvicorn-worker" in SERVERS.text  # the comment names the package to install


def test_proxy_address_is_the_same_on_both_lines() -> None:
    addresses = re.findall(r"--forwarded-allow-ips (\S+)", SERVERS.text)
    assert len(addresses) == 2
    assert len(set(addresses)) == 1


# -- A least-privilege Redis user --------------------------------------------------------------


def _acl_server(factory: RedisServerFactory, line: str) -> tuple[RedisServer, str]:
    """A redis-server whose only user is the doc's; the URL that logs in as it."""
    words = line.split()
    assert words[:3] == ["user", "sessions", "on"], line
    password = next(word[1:] for word in words if word.startswith(">"))
    server = factory(
        extra_args=["--user", "default", "off", "--user", *words[1:]], username="sessions", password=password
    )
    return server, f"redis://sessions:{password}@127.0.0.1:{server.port}/0"


def _exercise_every_store_operation(auth: TokenAuth) -> None:
    """Login, refresh, grace, listing, revoke, logout, logout-all, reuse and health: every script,
    the pub/sub feed and the server commands the store uses."""
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        access, refresh = _logged_in(client)
        bearer = {"Authorization": f"Bearer {access}"}
        rotated = client.post("/auth/refresh", json={"refresh_token": refresh})
        assert rotated.status_code == 200, rotated.text
        assert client.post("/auth/refresh", json={"refresh_token": refresh}).status_code == 200  # grace
        sessions = client.get("/auth/sessions", headers=bearer)
        assert sessions.status_code == 200, sessions.text
        other_access, _ = _logged_in(client)
        other = client.get("/me", headers={"Authorization": f"Bearer {other_access}"}).json()["sid"]
        assert client.delete(f"/auth/sessions/{other}", headers=bearer).status_code == 204
        current = rotated.json()["refresh_token"]
        assert client.post("/auth/logout", json={"refresh_token": current}).status_code == 204
        third, _ = _logged_in(client)
        logout_all = client.post("/auth/logout-all", headers={"Authorization": f"Bearer {third}"})
        assert logout_all.status_code == 204
        health = client.get("/health").json()
        assert health["store"] == "ok", health
        deadline = time.monotonic() + 5
        while auth.revocation_feed.status()["live"] is not True and time.monotonic() < deadline:
            time.sleep(0.02)
        assert auth.revocation_feed.status()["live"], "the revocation feed could not subscribe"


def _auth(redis_url: str) -> TokenAuth:
    return TokenAuth(secret_key=SECRET, redis_url=redis_url, exclude=["/login", "/health"])


def test_least_privilege_user_runs_every_operation(
    redis_server_factory: RedisServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    line = shell_lines(ACL_USER.text)
    assert len(line) == 1
    _, url = _acl_server(redis_server_factory, line[0])
    caplog.set_level(logging.DEBUG, logger="starlette_refresh")
    _exercise_every_store_operation(_auth(url))
    assert "NOPERM" not in caplog.text
    # with config|get the app checks persistence; this fixture runs appendonly yes
    assert "could not read the Redis configuration" not in caplog.text
    assert "session store ready" in caplog.text


def test_without_config_get_the_app_says_it_could_not_check(
    redis_server_factory: RedisServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The doc: "`config|get` is optional ... Without it the app logs that it could not check"."""
    assert "+config|get" in ACL_USER.text
    _, url = _acl_server(redis_server_factory, shell_lines(ACL_USER.text)[0].replace(" +config|get", ""))
    caplog.set_level(logging.INFO, logger="starlette_refresh")
    _exercise_every_store_operation(_auth(url))
    assert "could not read the Redis configuration" in caplog.text
    assert "NOPERM" not in caplog.text.replace("CONFIG GET refused", "")


# -- Planned failover: fence the old primary first ---------------------------------------------


def _redis_cli(words: list[str]) -> str:
    done = subprocess.run(["redis-cli", *words], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.integration
def test_the_fence_runbook_runs_as_written_on_a_real_sentinel_group(
    sentinel_group_factory: SentinelGroupFactory,
) -> None:
    """Every line of the runbook, placeholders filled in, against a primary, a replica and a sentinel."""
    group = sentinel_group_factory(replicas=1, sentinels=1)
    group.wait_settled()  # the sentinel knows the replica: an operator starts from a healthy group
    old = group.primary()
    sentinel_host, sentinel_port = group.sentinel_addresses[0]
    fill = {
        "-h <primary>": f"-h 127.0.0.1 -p {old.port}",
        "-h <old primary>": f"-h 127.0.0.1 -p {old.port}",
        "-h <sentinel> -p 26379": f"-h {sentinel_host} -p {sentinel_port}",
        "<its number of replicas>": str(len(group.replicas())),
        "<service>": group.service,
    }
    ran: list[list[str]] = []
    for raw in FENCE.text.splitlines():
        if "wait until the old primary reports role:slave (INFO replication)" in raw:
            _wait_for_role(old, "slave")
        line = shell_lines(raw)
        if not line:
            continue
        command = line[0]
        for placeholder, value in fill.items():
            command = command.replace(placeholder, value)
        assert "<" not in command, f"an unfilled placeholder in {command!r}"
        words = shlex.split(command)
        assert words[0] == "redis-cli"
        assert _redis_cli(words[1:]) == "OK", command
        ran.append(words[5:])
    # the runbook is the fence the failover tests measure (tests/support/topologies.py, fence=True)
    assert ran == [
        ["CONFIG", "SET", "min-replicas-to-write", "1"],
        ["CLIENT", "PAUSE", str(FENCE_PAUSE_MS), "WRITE"],
        ["SENTINEL", "FAILOVER", group.service],
        ["CONFIG", "SET", "min-replicas-to-write", "0"],
    ]
    assert group.primary().port != old.port
    assert _redis_cli(["-p", str(old.port), "CONFIG", "GET", "min-replicas-to-write"]).split() == [
        "min-replicas-to-write",
        "0",
    ]


def _wait_for_role(server: RedisServer, role: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _redis_cli(["-p", str(server.port), "INFO", "replication"])
        if f"role:{role}" in info:
            return
        time.sleep(0.1)
    raise AssertionError(f"{server!r} never reported role:{role}")


def test_runbook_commands_name_the_pause_the_prose_explains() -> None:
    """The doc: "The pause holds writes"; "Reset the setting afterwards": both in the runbook."""
    text = FENCE.text
    pause = int(search(r"CLIENT PAUSE (\d+) WRITE", text).group(1))
    assert pause == FENCE_PAUSE_MS
    assert text.rstrip().endswith("CONFIG SET min-replicas-to-write 0")
