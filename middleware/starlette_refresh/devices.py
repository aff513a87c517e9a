"""Short device labels for the session list: "Chrome 131 on Windows" instead of a 111-byte User-Agent.

A label is what a person needs to recognise a device in ``GET /auth/sessions``, and it is what the
store keeps: a real browser's User-Agent is three times longer than the rest of a session's record.
Short User-Agents (API clients, test tools: ``curl/8.5.0``) are kept as they are, so applying the
label twice gives the same label, and sessions stored whole by an earlier release read the same way.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_LABEL_CHARS = 40

# Checked in order: most browsers also name the engines they descend from (Edge says Chrome and Safari).
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\bOPR/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS|HeadlessChrome)/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")),
)
_SYSTEMS = (
    ("iPhone", re.compile(r"\biPhone\b")),
    ("iPad", re.compile(r"\biPad\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


@lru_cache(maxsize=256)
def device_label(user_agent: str) -> str:
    """A label of at most :data:`MAX_LABEL_CHARS` characters that names the browser and system.

    ``"Mozilla/5.0 (X11; Linux x86_64) ... Chrome/131.0.0.0 Safari/537.36"`` gives
    ``"Chrome 131 on Linux"``; a User-Agent no longer than the limit is returned unchanged, and one
    that names no known browser is cut to the limit.
    """
    agent = user_agent.strip()
    if len(agent) <= MAX_LABEL_CHARS:
        return agent
    browser = next(((name, m.group(1)) for name, p in _BROWSERS if (m := p.search(agent))), None)
    system = next((name for name, p in _SYSTEMS if p.search(agent)), None)
    if browser is None:
        return agent[:MAX_LABEL_CHARS].rstrip()
    label = f"{browser[0]} {browser[1]}"
    return f"{label} on {system}" if system else label
