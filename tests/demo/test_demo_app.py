"""The demo app: its endpoints in process, its settings, and ``python -m demo_app`` as a real process.

The in-process tests drive ``create_app()`` through Starlette's TestClient against a real redis-server.
The process tests run ``python -m demo_app`` the way a user does: without ``REDIS_URL`` it starts its
own redis-server (AOF) in ``DEMO_DATA_DIR``, and a restart must keep the session alive.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import jwt
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from demo_app.app import create_app
from demo_app.embedded_redis import NOT_FOUND_MESSAGE, EmbeddedRedis, EmbeddedRedisError
from demo_app.settings import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DemoSettings,
    SettingsError,
    load_or_create_secret,
    load_settings,
)
from harness.processes import REPO_ROOT, RedisServer, free_port
from starlette_refresh.sockets import SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX

SECRET = "demo-test-secret-0123456789-0123456789-0123456789"
CREDENTIALS = {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
#: Every variable the demo reads; process tests start from an environment without them.
DEMO_VARIABLES = (
    "REDIS_URL",
    "REDIS_PORT",
    "JWT_SECRET",
    "ACCESS_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "REFRESH_GRACE_SECONDS",
    "LEEWAY_SECONDS",
    "HOST",
    "PORT",
    "DEMO_DATA_DIR",
    "WEB_CONCURRENCY",
    "COOKIE_SECURE",
)


# --------------------------------------------------------------------------------------------------
# In-process app


def demo_settings(redis: RedisServer, data_dir: Path, **env: str) -> DemoSettings:
    return load_settings({"REDIS_URL": redis.url, "DEMO_DATA_DIR": str(data_dir), **env})


@pytest.fixture
def client(redis_server: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    """The demo app in process (lifespan running) on the test's redis-server."""
    with TestClient(create_app(demo_settings(redis_server, tmp_path / "data"))) as test_client:
        yield test_client


def login(client: TestClient) -> str:
    """Logs the demo user in; returns the access token (the refresh cookie stays in the client)."""
    response = client.post("/auth/login", json=CREDENTIALS)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_page_is_public_and_has_the_test_hooks(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert re.search(r"<input[^>]*name=\"email\"", html)
    assert re.search(r"<input[^>]*name=\"password\"", html)
    assert re.search(r"<button[^>]*type=\"submit\"", html)
    assert 'data-testid="login-error"' in html
    assert 'src="/static/demo/login.js"' in html
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # A bad token on the public page is ignored, as on any excluded path.
    assert client.get("/", headers=bearer("not-a-token")).status_code == 200


def test_dashboard_is_public_and_has_the_test_hooks(client: TestClient) -> None:
    response = client.get("/app")
    assert response.status_code == 200
    for testid in (
        "status",
        "connection",
        "user-email",
        "expires-in",
        "refresh-count",
        "last-refresh",
        "logout",
        "logout-all",
        "sessions",
        "log",
    ):
        assert f'data-testid="{testid}"' in response.text, testid
    assert 'src="/static/demo/dashboard.js"' in response.text


def test_static_assets_are_public(client: TestClient) -> None:
    for path in ("/static/demo/demo.css", "/static/demo/login.js", "/static/demo/dashboard.js"):
        assert client.get(path).status_code == 200, path
    script = client.get("/static/demo/dashboard.js").text
    assert 'from "../refresh-manager.js"' in script
    assert client.get("/static/no-such-file.js").status_code == 404  # excluded: 404, not 401
    assert client.get("/favicon.ico").status_code == 204


def test_everything_else_needs_an_access_token(client: TestClient) -> None:
    """The login page at exactly "/" must not open every path (exclude "/" would)."""
    for path in ("/api/me", "/no-such-page", "/apps", "/static-not", "/healthzz"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/").status_code == 405  # the public page app answers only GET /


def test_the_live_socket_needs_a_token_then_says_hello_ticks_and_echoes(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/api/live"):
        pass  # pragma: no cover
    assert denied.value.status_code == 401
    token = login(client)
    protocols = [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token]
    with client.websocket_connect("/api/live", subprotocols=protocols) as ws:
        assert ws.accepted_subprotocol == SOCKET_PROTOCOL
        hello = ws.receive_json()
        claims = jwt.decode(token, options={"verify_signature": False})
        assert hello == {"type": "hello", "email": DEMO_EMAIL, "sid": claims["sid"], "exp": claims["exp"]}
        ws.send_text("ping")
        answers = [ws.receive_json() for _ in range(2)]  # a tick may come first
        assert {"type": "echo", "text": "ping"} in answers
        assert any(answer["type"] == "tick" for answer in [*answers, ws.receive_json()])


def test_login_then_api_me_answers_from_the_token(client: TestClient) -> None:
    response = client.post("/auth/login", json={"email": " Test@Example.com ", "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Path=/auth" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # COOKIE_SECURE defaults to false: the demo is plain http

    me = client.get("/api/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"
    profile = me.json()
    assert profile["sub"] == "user-1"
    assert profile["email"] == DEMO_EMAIL
    sessions = client.get("/auth/sessions", headers=bearer(body["access_token"])).json()["sessions"]
    assert [s["id"] for s in sessions if s["current"]] == [profile["sid"]]


def test_refresh_through_the_cookie_gives_a_working_token(client: TestClient) -> None:
    first = login(client)
    for _ in range(3):
        refreshed = client.post("/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        token = refreshed.json()["access_token"]
        assert token != first
        assert client.get("/api/me", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": DEMO_EMAIL, "password": "wrong"},
        {"email": "someone@example.com", "password": DEMO_PASSWORD},
        {"email": DEMO_EMAIL},
        {"email": DEMO_EMAIL, "password": 1234},
        {"email": None, "password": None},
        [DEMO_EMAIL, DEMO_PASSWORD],
        None,
        "password",
    ],
)
def test_wrong_credentials_get_401_invalid_credentials(client: TestClient, body: object) -> None:
    content = json.dumps(body).encode()  # json=None would send no body at all
    response = client.post("/auth/login", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials"}
    assert "set-cookie" not in response.headers


def test_a_lone_surrogate_in_the_password_is_just_wrong(client: TestClient) -> None:
    content = b'{"email": "test@example.com", "password": "\\ud800"}'
    response = client.post("/auth/login", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials"}


@pytest.mark.parametrize("content", [b"", b"{", b"email=test@example.com&password=password", b"\xff\xfe"])
def test_a_body_that_is_not_json_gets_400_invalid_request(client: TestClient, content: bytes) -> None:
    response = client.post("/auth/login", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}


def test_an_oversized_login_body_is_refused(client: TestClient) -> None:
    big = {"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "padding": "x" * 20_000}
    assert client.post("/auth/login", json=big).status_code == 400


def test_a_login_from_another_site_is_refused(client: TestClient) -> None:
    response = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_cookie_secure_setting_reaches_the_cookie(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = demo_settings(redis_server, tmp_path / "data", COOKIE_SECURE="true")
    with TestClient(create_app(settings), base_url="https://testserver") as secure_client:
        response = secure_client.post("/auth/login", json=CREDENTIALS)
    assert response.status_code == 200
    assert "Secure" in response.headers["set-cookie"]


def test_healthz_reports_the_store(client: TestClient, redis_server: RedisServer) -> None:
    healthy = client.get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json() == {"status": "ok", "store": "ok"}
    redis_server.stop()
    started = time.monotonic()
    degraded = client.get("/healthz")
    assert degraded.status_code == 503
    assert degraded.json() == {"status": "degraded", "store": "unavailable"}
    assert time.monotonic() - started < 3
    redis_server.start()
    assert client.get("/healthz").status_code == 200


def test_create_app_without_redis_url_says_what_to_do(tmp_path: Path) -> None:
    settings = load_settings({"JWT_SECRET": SECRET, "DEMO_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match=r"REDIS_URL is not set: run `python -m demo_app`"):
        create_app(settings)


# --------------------------------------------------------------------------------------------------
# Settings


def test_settings_defaults(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.redis_url is None
    assert (settings.auth.access_ttl, settings.auth.refresh_ttl, settings.auth.refresh_grace) == (
        900,
        604_800,
        10.0,
    )
    assert (settings.host, settings.port, settings.web_concurrency) == ("127.0.0.1", 8000, 1)
    assert settings.auth.cookie_secure is False
    assert settings.redis_port is None
    assert settings.data_dir == (tmp_path / ".demo-data").resolve()
    assert settings.auth.absolute_ttl == 30 * 86_400
    assert settings.public_url == "http://127.0.0.1:8000/"


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://:pw@10.0.0.5:6380/2",
        "JWT_SECRET": SECRET,
        "ACCESS_TOKEN_TTL": "60",
        "REFRESH_TOKEN_TTL": "5184000",
        "REFRESH_GRACE_SECONDS": "2.5",
        "LEEWAY_SECONDS": "0",
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "REDIS_PORT": "7777",
        "DEMO_DATA_DIR": "data",
        "WEB_CONCURRENCY": "4",
        "COOKIE_SECURE": "YES",
    }
    settings = load_settings(env, cwd=tmp_path)
    assert settings.redis_url == "redis://:pw@10.0.0.5:6380/2"
    assert settings.jwt_secret == SECRET
    assert (settings.auth.access_ttl, settings.auth.refresh_ttl, settings.auth.refresh_grace) == (
        60,
        5_184_000,
        2.5,
    )
    assert settings.auth.absolute_ttl == 5_184_000  # raised to the idle lifetime
    assert settings.auth.leeway == 0
    assert (settings.host, settings.port, settings.redis_port) == ("0.0.0.0", 9000, 7777)
    assert settings.public_url == "http://127.0.0.1:9000/"
    assert settings.web_concurrency == 4
    assert settings.auth.cookie_secure is True
    assert settings.data_dir == tmp_path / "data"
    assert not settings.data_dir.exists()  # nothing to keep there when JWT_SECRET is given


def test_blank_variables_count_as_unset(tmp_path: Path) -> None:
    settings = load_settings({"REDIS_URL": "", "PORT": "  ", "JWT_SECRET": SECRET}, cwd=tmp_path)
    assert settings.redis_url is None
    assert settings.port == 8000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCESS_TOKEN_TTL": "abc"}, "ACCESS_TOKEN_TTL must be a whole number of seconds, got 'abc'"),
        ({"ACCESS_TOKEN_TTL": "1.5"}, "ACCESS_TOKEN_TTL must be a whole number of seconds, got '1.5'"),
        ({"ACCESS_TOKEN_TTL": "-5"}, "ACCESS_TOKEN_TTL must be a whole number of seconds, got '-5'"),
        ({"ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL must be a whole number > 0, got 0"),
        ({"REFRESH_TOKEN_TTL": "1e9"}, "REFRESH_TOKEN_TTL must be a whole number of seconds, got '1e9'"),
        (
            {"ACCESS_TOKEN_TTL": "900", "REFRESH_TOKEN_TTL": "600"},
            "ACCESS_TOKEN_TTL (900s) must be shorter than REFRESH_TOKEN_TTL (600s), "
            "or refreshing could never help",
        ),
        (
            {"REFRESH_GRACE_SECONDS": "soon"},
            "REFRESH_GRACE_SECONDS must be a number of seconds >= 0 (e.g. 10 or 2.5), got 'soon'",
        ),
        (
            {"REFRESH_GRACE_SECONDS": "nan"},
            "REFRESH_GRACE_SECONDS must be a number of seconds >= 0 (e.g. 10 or 2.5), got 'nan'",
        ),
        (
            {"ACCESS_TOKEN_TTL": "2", "REFRESH_TOKEN_TTL": "5", "REFRESH_GRACE_SECONDS": "10"},
            "REFRESH_GRACE_SECONDS must be >= 0 and shorter than REFRESH_TOKEN_TTL (5s), got 10.0",
        ),
        ({"PORT": "http"}, "PORT must be a TCP port number between 1 and 65535, got 'http'"),
        ({"PORT": "70000"}, "PORT must be a TCP port number between 1 and 65535, got '70000'"),
        ({"REDIS_PORT": "0"}, "REDIS_PORT must be a TCP port number between 1 and 65535, got '0'"),
        ({"HOST": "local host"}, "HOST must be a host name or IP address to listen on, got 'local host'"),
        (
            {"WEB_CONCURRENCY": "two"},
            "WEB_CONCURRENCY must be a whole number of worker processes, got 'two'",
        ),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be between 1 and 64 worker processes, got '0'"),
        ({"WEB_CONCURRENCY": "65"}, "WEB_CONCURRENCY must be between 1 and 64 worker processes, got '65'"),
        (
            {"LEEWAY_SECONDS": "301"},
            "LEEWAY_SECONDS=301 is more than 5 minutes; fix the servers' clocks instead",
        ),
        (
            {"COOKIE_SECURE": "maybe"},
            "COOKIE_SECURE must be true or false (also 1/0, yes/no, on/off), got 'maybe'",
        ),
        (
            {"REDIS_URL": "localhost:6379"},
            "REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://), "
            "got a value starting with 'localhost:63'",
        ),
        (
            {"JWT_SECRET": "short"},
            "JWT_SECRET must hold at least 32 bytes, got 5; generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'",
        ),
    ],
)
def test_bad_settings_give_one_clear_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, cwd=tmp_path)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_a_bad_redis_url_never_echoes_its_password(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"REDIS_URL": "http://user:hunter2@cache:6379/0"}, cwd=tmp_path)
    assert "hunter2" not in str(caught.value)
    assert "'http'" in str(caught.value)


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingsError, match=r"DEMO_DATA_DIR must be a directory, but .*file is a file"):
        load_settings({"DEMO_DATA_DIR": str(tmp_path / "file")})


def test_jwt_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    env = {"DEMO_DATA_DIR": str(tmp_path / "data")}
    first = load_settings(env)
    path = tmp_path / "data" / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert len(first.jwt_secret) >= 64
    assert path.read_text().strip() == first.jwt_secret
    assert load_settings(env).jwt_secret == first.jwt_secret
    other = load_settings({"DEMO_DATA_DIR": str(tmp_path / "other")})
    assert other.jwt_secret != first.jwt_secret


def test_jwt_secret_from_the_environment_wins(tmp_path: Path) -> None:
    settings = load_settings({"DEMO_DATA_DIR": str(tmp_path), "JWT_SECRET": SECRET})
    assert settings.jwt_secret == SECRET
    assert not (tmp_path / "jwt-secret").exists()


def test_a_readable_secret_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "jwt-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o644)
    assert load_or_create_secret(path) == SECRET
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_short_secret_file_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "jwt-secret"
    path.write_text("tiny")
    path.chmod(0o600)
    with pytest.raises(SettingsError, match=r"must hold at least 32 bytes, got 4; delete .* to generate"):
        load_or_create_secret(path)


def test_workers_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwt-secret"
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets_seen = set(pool.map(lambda _: load_or_create_secret(path), range(16)))
    assert len(secrets_seen) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt-secret"]  # no temporary files left


# --------------------------------------------------------------------------------------------------
# Embedded redis-server


def test_embedded_redis_refuses_a_second_server_on_the_same_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", log_path=tmp_path / "redis.log") as first:
        assert first.running
        second = EmbeddedRedis(tmp_path / "redis", log_path=tmp_path / "redis-2.log")
        with pytest.raises(EmbeddedRedisError, match=r"another redis-server \(pid \d+\) already uses"):
            second.start()
        assert not second.running
    assert not first.running
    assert not (tmp_path / "redis" / "redis-server.pid").exists()


def test_embedded_redis_without_redis_server_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no redis-server on PATH
    with pytest.raises(EmbeddedRedisError) as caught:
        EmbeddedRedis(tmp_path / "redis").start()
    assert str(caught.value) == NOT_FOUND_MESSAGE


# --------------------------------------------------------------------------------------------------
# `python -m demo_app` as a real process


class DemoProcess:
    """One ``python -m demo_app`` child with its stdout and stderr in files."""

    def __init__(self, env: Mapping[str, str], cwd: Path, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "stdout.log"
        self.stderr_path = log_dir / "stderr.log"
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "demo_app"],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Waits for the URL line and a 200 from /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"demo exited with {self.process.returncode} at startup\n{self.describe()}")
            if "starlette-refresh demo: open " in self.stdout():
                try:
                    if httpx2.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
            time.sleep(0.1)
        pytest.fail(f"demo not serving after {timeout}s\n{self.describe()}")

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30.0) -> int:
        """Sends ``sig`` and waits for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"demo still running {timeout}s after {sig.name}\n{self.describe()}")


DemoRunner = Callable[..., DemoProcess]


@pytest.fixture
def run_demo(tmp_path: Path) -> Iterator[DemoRunner]:
    """Starts ``python -m demo_app`` with the given variables (and none inherited); stops them all."""
    started: list[DemoProcess] = []
    base = {k: v for k, v in os.environ.items() if k not in DEMO_VARIABLES}
    pythonpath = [str(REPO_ROOT), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    base.update({"PYTHONPATH": os.pathsep.join(pythonpath), "PYTHONUNBUFFERED": "1"})

    def run(wait: bool = True, **env: str) -> DemoProcess:
        env.setdefault("PORT", str(free_port()))
        demo = DemoProcess({**base, **env}, cwd=tmp_path, log_dir=tmp_path / f"demo-{len(started) + 1}")
        started.append(demo)
        if wait:
            demo.wait_until_serving()
        return demo

    yield run
    for demo in started:
        if demo.process.poll() is None:
            demo.process.terminate()
            try:
                demo.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                demo.process.kill()  # its redis-server gets SIGTERM through PR_SET_PDEATHSIG
                demo.process.wait()


def redis_processes_on(port: int) -> list[int]:
    """Live redis-server processes serving 127.0.0.1:<port> (redis-server sets its title so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if "redis-server" in cmdline and f":{port}" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def embedded_redis_port(demo: DemoProcess) -> int:
    match = re.search(r"embedded redis-server at redis://127\.0\.0\.1:(\d+)/0", demo.stdout())
    assert match, demo.describe()
    return int(match.group(1))


def demo_login(url: str) -> tuple[str, str]:
    """Logs in over HTTP; returns (access token, refresh cookie value)."""
    response = httpx2.post(f"{url}/auth/login", json=CREDENTIALS, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"], response.cookies["refresh_token"]


def demo_refresh(url: str, cookie: str) -> httpx2.Response:
    """One refresh through the cookie, on a new connection."""
    return httpx2.post(f"{url}/auth/refresh", headers={"Cookie": f"refresh_token={cookie}"}, timeout=10)


def demo_me(url: str, token: str) -> httpx2.Response:
    return httpx2.get(f"{url}/api/me", headers=bearer(token), timeout=10)


@pytest.mark.integration
def test_python_m_demo_app_with_embedded_redis_keeps_sessions_across_restarts(
    run_demo: DemoRunner, tmp_path: Path
) -> None:
    data_dir = tmp_path / "demo-data"
    demo = run_demo(DEMO_DATA_DIR=str(data_dir))

    banner = (
        f"starlette-refresh demo: open http://127.0.0.1:{demo.port}/  (user {DEMO_EMAIL} / {DEMO_PASSWORD})"
    )
    assert banner in demo.stdout().splitlines()
    health = httpx2.get(f"{demo.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "store": "ok"}
    assert httpx2.get(f"{demo.url}/", timeout=10).status_code == 200

    access, cookie = demo_login(demo.url)
    profile = demo_me(demo.url, access).json()
    assert profile["email"] == DEMO_EMAIL
    rotated = demo_refresh(demo.url, cookie)
    assert rotated.status_code == 200, rotated.text
    cookie = rotated.cookies["refresh_token"]

    secret_file = data_dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert (data_dir / "redis" / "appendonlydir").is_dir()
    redis_port = embedded_redis_port(demo)
    redis_pid = int((data_dir / "redis" / "redis-server.pid").read_text())
    assert pid_alive(redis_pid)
    assert redis_processes_on(redis_port) == [redis_pid]

    # Ctrl-C: uvicorn stops, then its redis-server (which writes its AOF); nothing is left behind.
    assert demo.stop(signal.SIGINT) == 0, demo.describe()
    assert not pid_alive(redis_pid)
    assert redis_processes_on(redis_port) == []
    assert not (data_dir / "redis" / "redis-server.pid").exists()
    assert "starlette-refresh demo: stopped" in demo.stdout()
    assert "User requested shutdown" in (data_dir / "redis.log").read_text()

    # A new demo on the same data: the same secret, the same sessions.
    again = run_demo(DEMO_DATA_DIR=str(data_dir))
    restored = demo_refresh(again.url, cookie)
    assert restored.status_code == 200, restored.text
    assert demo_me(again.url, restored.json()["access_token"]).json()["sid"] == profile["sid"]
    assert "refresh rotated" in again.stderr()
    new_redis_port = embedded_redis_port(again)

    assert again.stop(signal.SIGTERM) == 0, again.describe()
    assert redis_processes_on(new_redis_port) == []


@pytest.mark.integration
def test_python_m_demo_app_with_two_workers_shares_sessions(
    run_demo: DemoRunner, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two uvicorn workers, one generated JWT secret: any worker accepts any worker's tokens."""
    demo = run_demo(REDIS_URL=redis_server.url, WEB_CONCURRENCY="2", DEMO_DATA_DIR=str(tmp_path / "data"))
    access, cookie = demo_login(demo.url)
    assert demo_me(demo.url, access).status_code == 200
    for _ in range(8):  # every call on a new connection, so both workers take turns
        answer = demo_refresh(demo.url, cookie)
        assert answer.status_code == 200, answer.text
        cookie = answer.cookies["refresh_token"]
        me = demo_me(demo.url, answer.json()["access_token"])
        assert me.status_code == 200, me.text
        assert me.json()["email"] == DEMO_EMAIL
    assert demo.stderr().count("Started server process") == 2
    assert demo.stderr().count("refresh rotated") == 8
    assert "embedded redis-server" not in demo.stdout()
    assert demo.stop(signal.SIGINT) == 0, demo.describe()


def test_python_m_demo_app_reports_a_bad_setting_in_one_line(run_demo: DemoRunner) -> None:
    demo = run_demo(wait=False, ACCESS_TOKEN_TTL="abc")
    assert demo.process.wait(timeout=30) == 2
    assert (
        demo.stderr()
        == "starlette-refresh demo: ACCESS_TOKEN_TTL must be a whole number of seconds, got 'abc'\n"
    )


def test_python_m_demo_app_without_redis_server_says_what_to_install(
    run_demo: DemoRunner, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    demo = run_demo(wait=False, PATH=str(empty), JWT_SECRET=SECRET, DEMO_DATA_DIR=str(tmp_path / "data"))
    assert demo.process.wait(timeout=30) == 1
    assert demo.stderr().strip().splitlines()[-1] == f"starlette-refresh demo: {NOT_FOUND_MESSAGE}"
