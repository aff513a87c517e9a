"""docs/capacity.md: the commands that reproduce the numbers take the options shown, and the refresh
margin the calculation uses is the browser refresh manager's."""

from __future__ import annotations

import shlex
import subprocess
import sys

from bench import capacity
from tests.docs.blocks import REPO_ROOT, claim, doc_text, node_value, search, shell_lines

CAPACITY = "docs/capacity.md"
REPRODUCE = claim(CAPACITY, "sh", "-m bench.capacity")
COMPARE = claim(CAPACITY, "sh", "-m bench.store_format")


def test_reproduce_commands_run_the_benchmark_with_options_it_accepts() -> None:
    lines = [shlex.split(line) for line in shell_lines(REPRODUCE.text)]
    assert len(lines) == 2
    for words in lines:
        assert words[:3] == [".venv/bin/python", "-m", "bench.capacity"]
        capacity.parse_args(words[3:])  # argparse exits (SystemExit) on an unknown or malformed option
    assert lines[1][3:] == ["--sessions", "100000", "--access-ttl", "300"]
    # "# 1,000,000 sessions": the default
    default = int(search(r"# ([\d,]+) sessions", REPRODUCE.text).group(1).replace(",", ""))
    assert capacity.parse_args([]).sessions == default


def test_the_venv_the_commands_use_is_the_one_tests_run_and_scripts_demo_create() -> None:
    """The doc: "(`tests/run` or `scripts/demo` creates `.venv` on first use.)"."""
    assert "(`tests/run` or `scripts/demo` creates `.venv` on first use.)" in doc_text(CAPACITY)
    for script in ("tests/run", "scripts/demo"):
        text = (REPO_ROOT / script).read_text()
        assert 'VENV="$ROOT/.venv"' in text, script
        assert "scripts/bootstrap.sh" in text, script
    assert "ensure_venv" in (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()


def test_the_benchmark_redis_is_the_one_described() -> None:
    """The doc: "starts its own `redis-server` (7.0, `appendonly yes`, `appendfsync everysec`)"."""
    source = (REPO_ROOT / "bench" / "capacity.py").read_text()
    assert 'RedisServer(Path(data_dir), extra_args=["--appendfsync", "everysec"])' in source
    assert "appendonly=False" not in source  # RedisServer runs appendonly yes unless told otherwise
    assert "(7.0, `appendonly yes`, `appendfsync everysec`)" in doc_text(CAPACITY)


def test_refresh_margins_are_the_refresh_managers() -> None:
    """The doc: "refresh margin | 90 s" at 900 s, and "at 5 minutes (margin 60 s)"."""
    text = doc_text(CAPACITY)
    assert "| refresh margin | 90 s |" in text
    assert node_value("manager.computeMarginMs(900_000)") == 90_000
    assert "at 5 minutes (margin 60 s)" in text
    assert node_value("manager.computeMarginMs(300_000)") == 60_000


def test_the_before_and_after_commands_check_out_release_01_and_take_their_options() -> None:
    """The doc: "git worktree add /tmp/before ae5813a  # release 0.1", then both benchmarks with
    --before /tmp/before."""
    from bench import store_format
    from tests.integration.test_rolling_upgrade import PREVIOUS_RELEASE

    lines = [shlex.split(line) for line in shell_lines(COMPARE.text)]
    assert lines[0][:4] == ["git", "worktree", "add", "/tmp/before"]
    assert PREVIOUS_RELEASE.startswith(lines[0][4])  # the same commit as the rolling-upgrade test's
    assert lines[1][:3] == [".venv/bin/python", "-m", "bench.store_format"]
    assert store_format.parse_args(lines[1][3:]).before.as_posix() == "/tmp/before"
    assert lines[2][:3] == [".venv/bin/python", "-m", "bench.http"]
    usage = subprocess.run(
        [sys.executable, "-m", "bench.http", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert lines[2][3:] == ["--before", "/tmp/before"]
    assert "--before" in usage
