"""README.md: every code block runs or is checked against the code, and the settings table is the
real signature of ``TokenAuth``."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import fakeredis
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient, WebSocketDenialResponse

from starlette_refresh import TokenAuth
from starlette_refresh.errors import ConfigurationError
from starlette_refresh.observe import NullObserver
from starlette_refresh.sockets import (
    CLOSE_TOKEN_ENDED,
    RENEW_PREFIX,
    RENEWED_PREFIX,
    SOCKET_PROTOCOL,
    TOKEN_PROTOCOL_PREFIX,
)
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET, build_app
from tests.docs.blocks import (
    REPO_ROOT,
    backticked,
    claim,
    claim_example,
    example_module,
    markdown_table,
    replace_ellipsis,
    run_python,
    search,
    shell_lines,
)
from tests.support.processes import RedisServer

README = "README.md"
QUICKSTART = claim(README, "bash", "scripts/demo")
MINIMAL = claim(README, "python", 'auth.login(request, subject="42"')
BROWSER = claim(README, "html", "new RefreshManager()")
STATIC_FILES = claim(README, "python", 'Mount("/static/sr", auth.static_files())')
BENCHMARKS = claim(README, "sh", "scripts/bench")
LIVE_SOCKET = claim_example(README, "examples/live_socket.py")

MANAGER = REPO_ROOT / "static" / "refresh-manager.js"


# -- Quickstart --------------------------------------------------------------------------------


def test_quickstart_commands_are_executable_scripts() -> None:
    commands = [line.split()[0] for line in shell_lines(QUICKSTART.text)]
    assert commands == ["scripts/demo", "tests/run"]
    for command in commands:
        assert os.access(REPO_ROOT / command, os.X_OK), f"{command} is not an executable file"


def test_quickstart_comments_say_what_the_scripts_do() -> None:
    text = QUICKSTART.text
    demo_settings = (REPO_ROOT / "demo_app" / "settings.py").read_text()
    # "(test@example.com / password)": the demo's account
    email, password = search(r"\((\S+@\S+) / (\S+)\)", text).groups()
    assert f'DEMO_EMAIL = "{email}"' in demo_settings
    assert f'DEMO_PASSWORD = "{password}"' in demo_settings
    assert "http://127.0.0.1:8000/" in text
    # "then ruff, mypy, node --test, pytest": in that order
    run = (REPO_ROOT / "tests" / "run").read_text()
    main = run[run.index("# Main") :]
    steps = [main.index(step) for step in ('say "ruff"', 'say "mypy"', "run_js_tests", 'say "pytest"')]
    assert steps == sorted(steps)
    assert 'say "node --test"' in run
    assert "ruff, mypy, node --test, pytest" in text


# -- Minimal example ---------------------------------------------------------------------------


def test_minimal_example_logs_in_refreshes_and_protects(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as written against a real redis-server."""
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    namespace = run_python(MINIMAL)

    with TestClient(namespace["app"], base_url="http://testserver") as client:
        assert client.get("/me").status_code == 401
        login = client.post("/login")
        assert login.status_code == 200
        assert "refresh_token" not in login.json()  # a browser login: the refresh token is the cookie
        access = login.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {access}"}).json() == {"sub": "42"}
        refreshed = client.post("/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        new_access = refreshed.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {new_access}"}).json() == {"sub": "42"}


def test_minimal_example_secret_must_be_at_least_32_bytes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comment next to secret_key: "at least 32 bytes"."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("JWT_SECRET", "x" * 31)
    with pytest.raises(ConfigurationError, match="32"):
        run_python(MINIMAL)
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    run_python(MINIMAL)


# -- The browser refresh manager ----------------------------------------------------------------


def _served_app(exclude: list[str]) -> Starlette:
    """STATIC_FILES run as written, inside an app built the way its comment says."""
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), exclude=exclude)
    namespace = run_python(STATIC_FILES, {"Starlette": Starlette, "Mount": Mount, "auth": auth})
    app: Starlette = namespace["app"]
    replace_ellipsis(app.router.routes)  # "..." stands for the app's own routes
    return app


def test_static_files_line_serves_the_module_and_its_types_and_nothing_else() -> None:
    assert '"/static/sr" in TokenAuth(exclude=[...])' in STATIC_FILES.text
    with TestClient(_served_app(exclude=["/static/sr"]), base_url="https://testserver") as client:
        script = client.get("/static/sr/refresh-manager.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.content == MANAGER.read_bytes()
        types = client.get("/static/sr/refresh-manager.d.ts")
        assert types.status_code == 200
        assert types.content == (REPO_ROOT / "static" / "refresh-manager.d.ts").read_bytes()
        for other in ("package.json", "README.md", "tests/fakes.mjs", "demo/app.js"):
            assert client.get(f"/static/sr/{other}").status_code == 404


def test_static_files_need_the_exclude_entry_the_comment_asks_for() -> None:
    with TestClient(_served_app(exclude=[]), base_url="https://testserver") as client:
        assert client.get("/static/sr/refresh-manager.js").status_code == 401


def _module_script(html: str) -> str:
    match = re.fullmatch(r'\s*<script type="module">\n(.*)</script>\s*', html, re.DOTALL)
    assert match, "the README's browser example is one <script type=module>"
    return match.group(1)


def test_browser_example_imports_real_exports_from_the_served_path() -> None:
    script = _module_script(BROWSER.text)
    imports = re.findall(r'import \{([^}]*)\} from "([^"]+)"', script)
    assert imports, "the example imports the module"
    exported = r"^export (?:class|function|const|async function) (\w+)"
    exports = set(re.findall(exported, MANAGER.read_text(), re.M))
    for names, path in imports:
        # the path the README's static_files() line serves (tested above)
        assert path == "/static/sr/refresh-manager.js"
        assert {name.strip() for name in names.split(",")} <= exports
    # the methods and events it uses exist
    source = MANAGER.read_text()
    for method in ("start", "fetch"):
        assert re.search(rf"^\s+async {method}\(", source, re.M), method
    assert '"logged-out"' in source
    # "defaults: /auth/refresh, /auth/logout"
    assert 'refreshUrl: o.refreshUrl ?? "/auth/refresh"' in source
    assert 'logoutUrl: o.logoutUrl ?? "/auth/logout"' in source


# A browser stand-in: the example's fetch and location.assign are recorded, and the server answers
# as scripted by the scenario (argv[3]).
NODE_RUNNER = r"""
const [blockUrl, scenario] = process.argv.slice(2);
const calls = [];
let meAnswers = 0;
const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
globalThis.location = { assign: (url) => calls.push({ assign: url }) };
globalThis.fetch = async (input, init = {}) => {
  const url = String(input);
  const authorization = new Headers(init.headers).get("Authorization");
  calls.push({ url, method: init.method ?? "GET", authorization, credentials: init.credentials ?? null });
  if (url === "/auth/refresh") {
    if (scenario === "logged-out") return json(401, { error: "invalid_grant", error_description: "x" });
    const n = calls.filter((c) => c.url === "/auth/refresh").length;
    return json(200, { access_token: `token-${n}`, token_type: "Bearer", expires_in: 900 });
  }
  if (url === "/api/me") {
    meAnswers += 1;
    if (scenario === "expired-token" && meAnswers === 1) {
      const challenge = 'Bearer realm="api", error="invalid_token"';
      return json(401, { error: "invalid_token" }, { "WWW-Authenticate": challenge });
    }
    return json(200, { sub: "42" });
  }
  return json(404, {});
};
console.info = () => {};
await import(blockUrl);
await new Promise((resolve) => setTimeout(resolve, 50));
process.stdout.write("CALLS " + JSON.stringify(calls) + "\n");
process.exit(0);
"""


def _run_browser_example(tmp_path: Path, scenario: str) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:  # pragma: no cover - tests/run insists on node for the JS tests
        pytest.skip("node is not installed")
    script = _module_script(BROWSER.text).replace("/static/sr/refresh-manager.js", MANAGER.as_uri())
    (tmp_path / "block.mjs").write_text(script)
    (tmp_path / "runner.mjs").write_text(NODE_RUNNER)
    done = subprocess.run(
        [node, str(tmp_path / "runner.mjs"), (tmp_path / "block.mjs").as_uri(), scenario],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("CALLS "))
    calls: list[dict[str, Any]] = json.loads(line.removeprefix("CALLS "))
    return calls


def test_browser_example_runs_restores_the_session_and_calls_the_api(tmp_path: Path) -> None:
    calls = _run_browser_example(tmp_path, "logged-in")
    assert calls == [
        # "one refresh through the HttpOnly cookie"
        {"url": "/auth/refresh", "method": "POST", "authorization": None, "credentials": "same-origin"},
        # "Bearer attached"
        {"url": "/api/me", "method": "GET", "authorization": "Bearer token-1", "credentials": None},
    ]


def test_browser_example_refreshes_and_replays_once_on_401(tmp_path: Path) -> None:
    calls = _run_browser_example(tmp_path, "expired-token")
    assert [(c["url"], c["authorization"]) for c in calls] == [
        ("/auth/refresh", None),
        ("/api/me", "Bearer token-1"),
        ("/auth/refresh", None),  # "401 -> refresh + replay once"
        ("/api/me", "Bearer token-2"),
    ]


def test_browser_example_without_a_session_goes_home_and_does_not_call_the_api(tmp_path: Path) -> None:
    calls = _run_browser_example(tmp_path, "logged-out")
    assert [c.get("url", c.get("assign")) for c in calls] == ["/auth/refresh", "/"]
    assert calls[-1] == {"assign": "/"}  # the "logged-out" listener


# -- Performance -------------------------------------------------------------------------------


def test_benchmark_commands_name_real_parts_and_options() -> None:
    lines = shell_lines(BENCHMARKS.text)
    assert [line.split()[0] for line in lines] == ["scripts/bench", "scripts/bench"]
    script = REPO_ROOT / "scripts" / "bench"
    assert os.access(script, os.X_OK)
    # scripts/bench <part> <options> runs python -m bench.<part> <options>
    assert 'exec "$VENV/bin/python" -m "bench.$part" "$@"' in script.read_text()
    # "one part: http, refresh_cost, footprint or capacity"
    parts = search(r"one part: (.*)$", BENCHMARKS.text, re.M).group(1)
    for part in re.split(r", | or ", parts):
        assert (REPO_ROOT / "bench" / f"{part}.py").is_file(), part
    for line in lines[1:]:
        _, part, *options = line.split()
        # --help last: argparse converts every option before it, and exits 0 without running anything
        helped = subprocess.run(
            [sys.executable, "-m", f"bench.{part}", *options, "--help"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert helped.returncode == 0, helped.stderr
        for option in (o for o in options if o.startswith("-")):
            assert re.search(rf"\s{re.escape(option)}\b", helped.stdout), f"bench.{part} has no {option}"


def test_benchmark_prose_states_the_defaults_of_bench_http() -> None:
    """The prose's rounds, seconds, threads and connections are bench.http's defaults."""
    source = (REPO_ROOT / "bench" / "http.py").read_text()
    readme = (REPO_ROOT / README).read_text()
    rounds = search(r'"--rounds", type=int, default=(\d+)', source).group(1)
    seconds = search(r'"--seconds", type=int, default=(\d+)', source).group(1)
    connections = search(r'"--connections", type=int, default=(\d+)', source).group(1)
    assert f"{rounds} rounds of {seconds} s by default" in readme
    assert "wrk -t1 " in source
    assert f"one\nthread and {connections} connections" in readme


# -- Settings ----------------------------------------------------------------------------------

#: Defaults the table states in words, and the value they stand for in the signature.
WORDED_DEFAULTS = {
    ("secret_key", "required"): None,
    ("redis_url", "one required"): None,
    ("redis", "one required"): None,
    ("store", "one required"): None,
    ("cookie_path", "prefix"): None,  # the cookie's path defaults to the endpoint prefix
}


def _settings_rows() -> dict[str, str]:
    """argument -> default cell, one entry per argument named in the README's settings table."""
    table: dict[str, str] = {}
    for row in markdown_table(README, "## Settings", "argument"):
        names = backticked(row[0])
        assert names, f"a settings row without an argument: {row}"
        defaults = [row[1]] * len(names) if len(names) == 1 or "," not in row[1] else row[1].split(", ")
        assert len(defaults) == len(names), f"one default per argument in {row}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in table, f"{name} appears twice in the settings table"
            table[name] = default
    return table


def _value(name: str, cell: str) -> Any:
    if (name, cell) in WORDED_DEFAULTS:
        return WORDED_DEFAULTS[name, cell]
    spans = backticked(cell)
    assert spans, f"the default of {name} is neither `code` nor a known wording: {cell!r}"
    text = spans[0]
    if re.fullmatch(r"[a-z_]+\.[a-z_]+", text):  # a function, e.g. time.time
        module, _, attribute = text.partition(".")
        return getattr(importlib.import_module(module), attribute)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string, e.g. `strict`


def test_settings_table_names_every_argument_and_nothing_else() -> None:
    parameters = set(inspect.signature(TokenAuth.__init__).parameters) - {"self"}
    table = set(_settings_rows())
    assert table - parameters == set(), "the settings table names arguments TokenAuth does not take"
    assert parameters - table == set(), "TokenAuth arguments missing from the README's settings table"


def test_settings_table_states_the_real_defaults() -> None:
    parameters = inspect.signature(TokenAuth.__init__).parameters
    for name, cell in _settings_rows().items():
        default = parameters[name].default
        stated = _value(name, cell)
        message = f"README says {name} defaults to {cell}, TokenAuth says {default!r}"
        assert stated == default, message
        assert type(stated) in (type(default), int), message


def test_settings_table_worded_defaults_are_true() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        TokenAuth(redis=fakeredis.aioredis.FakeRedis())  # secret_key: required
    with pytest.raises(ConfigurationError, match="shared session store"):
        TokenAuth(secret_key=SECRET)  # redis_url / redis / store: one required
    auth = TokenAuth(
        secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), prefix="/session", exclude=["/login"]
    )
    assert auth.settings.cookie.path is None  # cookie_path: the prefix, at the time it is set
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        cookie = client.post("/login").headers["set-cookie"]
    assert "Path=/session" in cookie


def test_settings_table_observer_default_is_a_null_observer() -> None:
    cell = _settings_rows()["observer"]
    assert "NullObserver" in cell
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis())
    assert isinstance(auth.observer, NullObserver)
    assert time.time is inspect.signature(TokenAuth.__init__).parameters["clock"].default


# -- WebSockets ----------------------------------------------------------------------------------


@pytest.fixture
def live_socket_example(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[ModuleType]:
    """examples/live_socket.py (the README's block), imported with its environment, on fakeredis and
    the manual ``clock``."""
    with example_module("live_socket", monkeypatch, SECRET, clock=clock) as module:
        yield module


def _browser_protocols(access_token: str) -> list[str]:
    """What RefreshingWebSocket offers for a page with no protocol of its own: the marker, the token."""
    return [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + access_token]


def _receive_within(ws: Any, seconds: float = 5.0) -> Any:
    """``ws.receive()`` that fails after ``seconds`` instead of hanging when nothing comes."""

    async def receive() -> Any:
        with anyio.fail_after(seconds):
            return await ws._send_rx.receive()

    return ws.portal.call(receive)


def test_the_live_socket_example_resumes_for_a_logged_in_user_only(live_socket_example: ModuleType) -> None:
    auth = live_socket_example.auth
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/feed"):
            pass  # pragma: no cover
        assert refused.value.status_code == 401

        assert client.portal is not None  # the example has no login route: log in on its store
        issued = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(issued.access_token)) as ws:
            # The feed picks no protocol of its own, so the middleware selects the marker: renewal is on.
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL
            ws.send_json({"type": "resume", "after": 2})
            assert [ws.receive_json() for _ in range(3)] == [
                {"id": n, "text": f"update {n}", "for": "42"} for n in (3, 4, 5)
            ]
        # Not even a protocol the page offers: choosing one would turn renewal off.
        offering = ["feed.v1", *_browser_protocols(issued.access_token)]
        with client.websocket_connect("/ws/feed", subprotocols=offering) as ws:
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL


def test_the_live_socket_example_is_renewed_in_band_past_its_first_token(
    live_socket_example: ModuleType, clock: ManualClock
) -> None:
    auth = live_socket_example.auth
    ttl, leeway = auth.settings.access_ttl, auth.settings.leeway
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        assert client.portal is not None
        first = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(first.access_token)) as ws:
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL
            ws.send_json({"type": "resume", "after": 4})
            assert ws.receive_json() == {"id": 5, "text": "update 5", "for": "42"}

            clock.advance(ttl - 60)  # the page's manager refreshes before its token ends...
            second = client.portal.call(auth.sessions.refresh, first.refresh_token)
            ws.send_text(RENEW_PREFIX + second.access_token)  # ...and RefreshingWebSocket sends this
            second_exp = auth.verify_access_token(second.access_token)["exp"]
            assert _receive_within(ws) == {"type": "websocket.send", "text": f"{RENEWED_PREFIX}{second_exp}"}

            clock.advance(60 + leeway + 1)  # past the first token's end, leeway included
            ws.send_json({"type": "resume", "after": 3})  # the same socket; the feed never saw the renewal
            assert [ws.receive_json() for _ in range(2)] == [
                {"id": n, "text": f"update {n}", "for": "42"} for n in (4, 5)
            ]

            clock.advance(ttl - 60 - 1)  # the second token's end, leeway included: nothing renewed it
            assert _receive_within(ws) == {
                "type": "websocket.close",
                "code": CLOSE_TOKEN_ENDED,
                "reason": "token expired",
            }


@pytest.mark.parametrize("other_subject", ["42", "7"], ids=["same-user", "other-user"])
def test_the_live_socket_example_refuses_a_renewal_with_another_sessions_token(
    live_socket_example: ModuleType, other_subject: str
) -> None:
    auth = live_socket_example.auth
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        assert client.portal is not None
        other = client.portal.call(auth.sessions.login, other_subject, None, "test")  # a valid token...
        issued = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(issued.access_token)) as ws:
            ws.send_text(RENEW_PREFIX + other.access_token)  # ...of another session: never switched to
            assert _receive_within(ws) == {
                "type": "websocket.close",
                "code": CLOSE_TOKEN_ENDED,
                "reason": "renewal refused",
            }
