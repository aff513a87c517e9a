"""docs/capacity.md: the commands that reproduce the numbers take the options shown, and the refresh
margin the calculation uses is the browser refresh manager's."""

from __future__ import annotations

import shlex

from bench import capacity
from tests.docs.blocks import REPO_ROOT, claim, doc_text, node_value, search, shell_lines

CAPACITY = "docs/capacity.md"
REPRODUCE = claim(CAPACITY, "sh", "-m bench.capacity")


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
