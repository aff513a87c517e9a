"""docs/performance.md: the commands that reproduce the numbers name real parts and options, and the
text states the defaults of ``bench/http.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.docs.blocks import REPO_ROOT, claim, doc_text, search, shell_lines

PERFORMANCE = "docs/performance.md"
BENCHMARKS = claim(PERFORMANCE, "sh", "scripts/bench")


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
        helped = bench_help(part, options)
        for option in (o for o in options if o.startswith("-")):
            assert re.search(rf"\s{re.escape(option)}\b", helped), f"bench.{part} has no {option}"


def test_benchmark_prose_states_the_defaults_of_bench_http() -> None:
    """The prose's rounds, seconds, threads and connections are bench.http's defaults."""
    source = (REPO_ROOT / "bench" / "http.py").read_text()
    text = doc_text(PERFORMANCE)
    rounds = search(r'"--rounds", type=int, default=(\d+)', source).group(1)
    seconds = search(r'"--seconds", type=int, default=(\d+)', source).group(1)
    connections = search(r'"--connections", type=int, default=(\d+)', source).group(1)
    assert f"{rounds} rounds of {seconds} s by default" in text
    assert "wrk -t1 " in source
    assert f"one\nthread and {connections} connections" in text


def test_the_version_comparison_command_takes_the_option_shown() -> None:
    """The doc: "run `scripts/bench hot_path --before DIR`"."""
    line = search(r"run `(scripts/bench hot_path [^`]+)`", doc_text(PERFORMANCE)).group(1)
    _, part, *options = line.split()
    assert (REPO_ROOT / "bench" / f"{part}.py").is_file()
    arguments = [REPO_ROOT.as_posix() if word == "DIR" else word for word in options]
    assert "--before" in bench_help(part, arguments)
    assert "no network and no Redis" in doc_text(PERFORMANCE)
    assert "no network, no Redis on this path" in (REPO_ROOT / "bench" / f"{part}.py").read_text()


def bench_help(part: str, options: list[str]) -> str:
    """``python -m bench.<part> <options> --help``'s output; fails the test unless it exits 0.

    --help goes last: argparse converts every option before it, and exits 0 without running anything.
    """
    helped = subprocess.run(
        [sys.executable, "-m", f"bench.{part}", *options, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    return helped.stdout
