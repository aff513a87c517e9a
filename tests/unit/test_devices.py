"""Device labels for the session list, from User-Agents that browsers really send (copied from the
browsers' own documentation and release notes, not made up here), and the rules around them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlette_refresh.devices import MAX_LABEL_CHARS, device_label

REAL_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "Chrome 126 on Windows",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
        "Edge 131 on Windows",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Firefox 133 on Windows",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
        "Safari 18 on macOS",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.6 Mobile/15E148 Safari/604.1",
        "Safari 17 on iPhone",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "Chrome 131 on iPhone",
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
        "Chrome 131 on Android",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        "Samsung Internet 26 on Android",
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "Chrome 131 on ChromeOS",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 "
        "Safari/537.36",
        "Chrome 156 on Linux",
    ),
]


@pytest.mark.parametrize(("agent", "label"), REAL_AGENTS)
def test_a_real_browser_gets_its_name_version_and_system(agent: str, label: str) -> None:
    assert device_label(agent) == label


def test_short_agents_stay_as_they_are_and_unknown_long_ones_are_cut() -> None:
    assert device_label("curl/8.5.0") == "curl/8.5.0"
    assert device_label("  python-httpx/0.28.1 ") == "python-httpx/0.28.1"
    unknown = "SomeMonitoringRobot/3.1 (+https://monitoring.example.com/robot-info-page)"
    assert device_label(unknown) == unknown[:MAX_LABEL_CHARS]


@given(st.text(max_size=300))
def test_a_label_is_short_and_labelling_it_again_changes_nothing(agent: str) -> None:
    label = device_label(agent)
    assert len(label) <= MAX_LABEL_CHARS
    assert (
        device_label(label) == label
    )  # sessions converted from 0.1 keep the raw agent, labelled when listed
