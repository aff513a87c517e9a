"""docs/browser.md: the page example runs in Node against the real refresh manager, and the
``static_files()`` line serves the module, its types and nothing else."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from tests.apps import SECRET
from tests.docs.blocks import REPO_ROOT, claim, replace_ellipsis, run_python

BROWSER_DOC = "docs/browser.md"
BROWSER = claim(BROWSER_DOC, "html", "new RefreshManager()")
STATIC_FILES = claim(BROWSER_DOC, "python", 'Mount("/static/sr", auth.static_files())')

MANAGER = REPO_ROOT / "static" / "refresh-manager.js"


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
    assert match, "the browser example is one <script type=module>"
    return match.group(1)


def test_browser_example_imports_real_exports_from_the_served_path() -> None:
    script = _module_script(BROWSER.text)
    imports = re.findall(r'import \{([^}]*)\} from "([^"]+)"', script)
    assert imports, "the example imports the module"
    exported = r"^export (?:class|function|const|async function) (\w+)"
    exports = set(re.findall(exported, MANAGER.read_text(), re.M))
    for names, path in imports:
        # the path the doc's static_files() line serves (tested above)
        assert path == "/static/sr/refresh-manager.js"
        assert {name.strip() for name in names.split(",")} <= exports
    # the methods and events it uses exist
    source = MANAGER.read_text()
    for method in ("start", "fetch"):
        assert re.search(rf"^\s+async {method}\(", source, re.M), method
    assert '"logged-out"' in source
    # "defaults: /auth/refresh, /auth/logout"
    assert re.search(r'refreshUrl(?::| =) o\.refreshUrl \?\? "/auth/refresh"', source)
    assert re.search(r'logoutUrl(?::| =) o\.logoutUrl \?\? "/auth/logout"', source)


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
