"""README.md, the front door: it stays short, its two commands are real, its minimal example runs
against a real redis-server, and the numbers it quotes are the ones docs/performance.md measured.

The reference material it links to is checked where it lives: docs/settings.md by
test_settings_doc.py, docs/performance.md by test_performance_doc.py, docs/browser.md by
test_browser_doc.py, docs/websockets.md by test_websockets_doc.py, docs/layout.md by
test_layout_doc.py, and every link of every document by test_links.py."""

from __future__ import annotations

import os
import re

import pytest
from starlette.testclient import TestClient

from harness.processes import RedisServer
from starlette_refresh.errors import ConfigurationError
from tests.apps import SECRET
from tests.docs.blocks import REPO_ROOT, claim, doc_text, markdown_table, run_python, search, shell_lines

README = "README.md"
QUICKSTART = claim(README, "bash", "scripts/demo")
MINIMAL = claim(README, "python", 'auth.login(request, subject="42"')

#: A front door, not a manual: what and why, two commands, one example, a feature list, links.
MAX_README_LINES = 210


def test_the_readme_is_a_front_door_of_about_200_lines_at_most() -> None:
    lines = doc_text(README).splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; reference material belongs in docs/ (see docs/layout.md)"
    )


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


def test_the_quick_loop_is_what_tests_run_quick_runs() -> None:
    """The README: "`tests/run --quick` runs ruff, mypy and the unit, store and property suites on
    fakeredis (no redis-server, browser or uvicorn)"."""
    readme = doc_text(README)
    named = search(
        r"`tests/run --quick`\*\* runs ruff, mypy and the ([\w, ]+?)\s+suites on\s+fakeredis", readme
    )
    run = (REPO_ROOT / "tests" / "run").read_text()
    assert '[[ "${1:-}" == "--quick" ]]' in run
    suites = search(r"^QUICK_SUITES=\(([^)]*)\)$", run, re.M).group(1).split()
    assert re.split(r", | and ", named.group(1)) == [suite.removeprefix("tests/") for suite in suites]
    main = run[run.index("# Main") :]
    quick = main.index('if [[ "$QUICK" == "1" ]]; then')
    quick_block = main[quick : main.index("\nfi\n", quick)]
    # ruff and mypy first; then only those suites, without the tests that start a redis-server
    assert main.index('say "ruff"') < quick
    pytest_quick = 'pytest -m "not integration" "${QUICK_SUITES[@]}"'
    assert quick_block.index('say "mypy"') < quick_block.index(pytest_quick)
    assert main.index("ensure_redis_server") > main.index('if [[ "$QUICK" == "0" ]]')
    assert "run_js_tests" not in quick_block  # the JS tests are the full run's
    assert quick < main.index("run_js_tests ")


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


# -- The numbers the README quotes ------------------------------------------------------------

PERFORMANCE = "docs/performance.md"
TIMES = "\N{MULTIPLICATION SIGN}"


def _ratios() -> dict[str, str]:
    """docs/performance.md's ratio table: the ratio's words (bold dropped) -> its result."""
    rows = markdown_table(PERFORMANCE, "## Requests per second", "ratio (same run)")
    return {row[0].replace("**", ""): row[1].replace("**", "") for row in rows}


def test_the_headline_ratios_are_the_measured_ones() -> None:
    readme = doc_text(README)
    ratios = _ratios()
    same_app = search(
        r"a protected request runs at \*\*([\d.]+ %)\*\* of the rate of an\s+unprotected", readme
    )
    headline = "protected / unprotected endpoint, same app (headline; "
    assert [result for words, result in ratios.items() if words.startswith(headline)] == [same_app.group(1)]
    peer = search(rf"at ([\d.]+ {TIMES}) the rate of a Starlette `AuthenticationMiddleware`\s+that", readme)
    assert ratios["ours protected / peer protected"] == peer.group(1)


def test_the_peer_and_the_machine_the_readme_names_are_the_measured_ones() -> None:
    readme = doc_text(README)
    assert "`AuthenticationMiddleware`\n  that calls `pyjwt.decode` per request" in readme
    rows = markdown_table(PERFORMANCE, "## Requests per second", "scenario")
    scenarios = [row[0] for row in rows]
    assert "peer: Starlette `AuthenticationMiddleware` + `pyjwt.decode` per request, no token" in scenarios
    assert "peer, protected, valid token" in scenarios
    assert "on 2 cores" in readme
    assert "one run on a 2-core CI machine" in doc_text(PERFORMANCE)
