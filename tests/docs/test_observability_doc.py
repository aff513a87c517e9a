"""docs/observability.md: the Prometheus app runs as written, every query names real metrics, labels
and label values, the Observer shown is the real Protocol, and the JSON formatter prints the log line
shown, with the fields the code emits."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth, observe
from starlette_refresh.prometheus import STORE_BUCKETS, PrometheusMetrics
from tests.apps import SECRET, build_app
from tests.docs.blocks import (
    REPO_ROOT,
    Claim,
    backticked,
    claim,
    doc_text,
    markdown_table,
    pip_install,
    replace_ellipsis,
    run_python,
    search,
    shell_lines,
)

OBSERVABILITY = "docs/observability.md"
INSTALL = claim(OBSERVABILITY, "sh", 'pip install "starlette-refresh[prometheus]"')
PROMETHEUS_APP = claim(OBSERVABILITY, "python", "observer=PrometheusMetrics()")
QUERIES = [
    claim(OBSERVABILITY, "promql", "sum by (outcome) (rate(starlette_refresh_refreshes_total[5m]))"),
    claim(OBSERVABILITY, "promql", 'starlette_refresh_refreshes_total{outcome="reused"}'),
    claim(OBSERVABILITY, "promql", 'starlette_refresh_refreshes_total{outcome="unavailable"}'),
    claim(OBSERVABILITY, "promql", "histogram_quantile(0.99"),
    claim(OBSERVABILITY, "promql", "sum(rate(starlette_refresh_logins_total[5m]))"),
    claim(OBSERVABILITY, "promql", "# sessions ended, by reason"),
]
OBSERVER = claim(OBSERVABILITY, "python", "class Observer(Protocol):")
FORMATTER = claim(OBSERVABILITY, "python", "class JsonFormatter(logging.Formatter):")
LOG_LINE = claim(OBSERVABILITY, "json", '"sr_event": "refresh"')

PACKAGE = REPO_ROOT / "middleware" / "starlette_refresh"


def test_install_line_names_the_prometheus_extra() -> None:
    assert [pip_install(line)[1] for line in shell_lines(INSTALL.text)] == [{"prometheus"}]


# -- The Prometheus app ------------------------------------------------------------------------


@pytest.fixture
def prometheus_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """PROMETHEUS_APP run as written (on fakeredis), with a login route where it says ``...``; its
    metrics are taken out of the global registry afterwards."""
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")  # never connected: replaced below
    namespace = run_python(PROMETHEUS_APP)
    auth: TokenAuth = namespace["auth"]
    auth.store._client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())  # type: ignore[attr-defined]

    async def login(request: Request) -> Response:
        return await auth.login(request, subject="42")

    replace_ellipsis(namespace["app"].router.routes, Route("/login", login, methods=["POST"]))
    try:
        yield namespace
    finally:
        metrics = auth.observer
        assert isinstance(metrics, PrometheusMetrics)
        for collector in (metrics.logins, metrics.refreshes, metrics.revocations, metrics.store_operations):
            REGISTRY.unregister(collector)


def _scrape(client: TestClient) -> dict[str, float]:
    answer = client.get("/metrics/")
    assert answer.status_code == 200
    samples = {}
    for line in answer.text.splitlines():
        if line.startswith("starlette_refresh_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_prometheus_app_exports_the_metrics_the_doc_lists(prometheus_app: dict[str, Any]) -> None:
    with TestClient(prometheus_app["app"], base_url="https://testserver") as client:
        # "/metrics answers with 307 to /metrics/"; "anyone who can reach the app can read the metrics"
        redirect = client.get("/metrics", follow_redirects=False)
        assert redirect.status_code == 307
        assert redirect.headers["location"].endswith("/metrics/")
        before = _scrape(client)
        # "Every outcome ... and every kind ... exists from the start at 0"
        for outcome in observe.REFRESH_OUTCOMES:
            assert before[f'starlette_refresh_refreshes_total{{outcome="{outcome}"}}'] == 0
        for kind in observe.REVOCATION_KINDS:
            assert before[f'starlette_refresh_revocations_total{{kind="{kind}"}}'] == 0
        assert before["starlette_refresh_logins_total"] == 0

        assert client.post("/login").status_code == 200
        assert client.post("/auth/refresh").status_code == 200
        client.cookies.clear()  # a body token next to a different cookie is a 400, not a refresh
        assert client.post("/auth/refresh", json={"refresh_token": "forged"}).status_code == 400
        assert client.post("/auth/refresh", content=b"not json").status_code == 400  # not counted
        after = _scrape(client)
    assert after["starlette_refresh_logins_total"] == 1
    assert after['starlette_refresh_refreshes_total{outcome="rotated"}'] == 1
    assert after['starlette_refresh_refreshes_total{outcome="invalid"}'] == 1
    assert sum(v for k, v in after.items() if k.startswith("starlette_refresh_refreshes_total{")) == 2
    assert after['starlette_refresh_store_operation_seconds_count{operation="create",outcome="ok"}'] == 1
    assert after['starlette_refresh_store_operation_seconds_count{operation="rotate",outcome="ok"}'] == 1


def test_a_second_instance_on_one_registry_fails_as_the_doc_says() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    assert "fails with `Duplicated timeseries`" in doc_text(OBSERVABILITY)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry=registry)


# -- Metrics, labels and queries ---------------------------------------------------------------


def _exported() -> dict[str, tuple[str, set[str]]]:
    """sample name -> (type, label names), from a fresh registry, with one observation per family
    (the histogram's label pairs appear on first use)."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    metrics.store_operation("rotate", 0.001, "ok")
    exported: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = set(sample.labels) - {"le"} | ({"le"} if sample.name.endswith("_bucket") else set())
            exported[sample.name] = (family.type, labels)
    return exported


#: label -> the values it can take
LABEL_VALUES: dict[tuple[str, str], set[str]] = {
    ("starlette_refresh_refreshes_total", "outcome"): set(observe.REFRESH_OUTCOMES),
    ("starlette_refresh_revocations_total", "kind"): set(observe.REVOCATION_KINDS),
    ("starlette_refresh_websocket_events_total", "event"): set(observe.SOCKET_EVENTS),
}


def _label_values(metric: str, label: str) -> set[str]:
    if metric.startswith("starlette_refresh_store_operation_seconds") and label == "outcome":
        return set(observe.STORE_OUTCOMES)
    return LABEL_VALUES[metric, label]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.contains or "")
def test_every_query_names_exported_metrics_labels_and_values(query: Claim) -> None:
    exported = _exported()
    text = "\n".join(line for line in query.text.splitlines() if not line.lstrip().startswith("#"))
    assert text.count("(") == text.count(")")
    assert text.count("{") == text.count("}")
    names = re.findall(r"\b(starlette_refresh_\w+)", text)
    assert names, "a query without a metric"
    for name in names:
        assert name in exported, f"{name} is not exported; exported: {sorted(exported)}"
    for name, selector in re.findall(r"\b(starlette_refresh_\w+)\{([^}]*)\}", text):
        for label, value in re.findall(r'(\w+)="([^"]*)"', selector):
            assert label in exported[name][1], f"{name} has no label {label}"
            assert value in _label_values(name, label), f'{name}{{{label}="{value}"}} never exists'
    used: set[str] = set().union(*(exported[name][1] for name in names))
    for grouping in re.findall(r"\bby \(([^)]*)\)", text):
        for label in (part.strip() for part in grouping.split(",")):
            assert label in used, f"by ({label}): no metric of this query has that label"


def test_metrics_table_is_what_prometheus_metrics_registers() -> None:
    exported = _exported()
    rows = markdown_table(OBSERVABILITY, "### Metrics", "metric")
    documented: dict[str, tuple[str, set[str]]] = {}
    for metric, kind, label_cell, _ in rows:
        documented[backticked(metric)[0]] = (kind, set(backticked(label_cell)))
    families: dict[str, tuple[str, set[str]]] = {}
    for name, (kind, labels) in exported.items():
        if kind == "counter" and name.endswith("_total"):
            families[name] = (kind, labels)
        if kind == "histogram" and name.endswith("_count"):
            families[name.removesuffix("_count")] = (kind, labels)
        if kind == "gauge":
            families[name] = (kind, labels)
    assert documented == families


def test_outcome_kind_and_operation_lists_are_the_codes() -> None:
    text = doc_text(OBSERVABILITY)
    outcomes = markdown_table(OBSERVABILITY, "`refreshes_total{outcome}`:", "outcome")
    assert [backticked(row[0])[0] for row in outcomes] == list(observe.REFRESH_OUTCOMES)
    kinds = markdown_table(OBSERVABILITY, "`revocations_total{kind}`:", "kind")
    assert [backticked(row[0])[0] for row in kinds] == list(observe.REVOCATION_KINDS)
    events = markdown_table(OBSERVABILITY, "`websocket_events_total{event}`:", "event")
    assert [backticked(row[0])[0] for row in events] == list(observe.SOCKET_EVENTS)
    listed = search(r"`operation` is the store method: (.*?)\.\n", text, re.DOTALL).group(1)
    guarded = re.findall(r'_guard\("(\w+)"\)', (PACKAGE / "store.py").read_text())
    assert set(backticked(listed)) == set(guarded)
    buckets = search(r"Buckets, in seconds: ([\d., ]+)\.", text).group(1)
    assert tuple(float(b) for b in buckets.split(", ")) == STORE_BUCKETS


# -- Writing another observer ------------------------------------------------------------------


def _methods(tree: ast.AST, class_name: str) -> dict[str, str]:
    """method -> its signature as source, for one class of a syntax tree."""
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    return {
        f.name: f"({ast.unparse(f.args)}) -> {ast.unparse(f.returns) if f.returns else ''}"
        for f in cls.body
        if isinstance(f, ast.FunctionDef)
    }


def test_observer_shown_is_the_real_protocol() -> None:
    shown = _methods(ast.parse(OBSERVER.text), "Observer")
    real = _methods(ast.parse(inspect.getsource(observe)), "Observer")
    assert shown == real
    assert len(shown) == 5  # "any object with these five methods"
    assert "class Observer(Protocol):" in OBSERVER.text


# -- Structured log fields ---------------------------------------------------------------------


def test_json_formatter_prints_the_line_shown(caplog: pytest.LogCaptureFixture) -> None:
    formatter = run_python(FORMATTER)["JsonFormatter"]()
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), exclude=["/login"])
    caplog.set_level(logging.INFO, logger="starlette_refresh")
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        assert client.post("/login").status_code == 200
        assert client.post("/auth/refresh").status_code == 200
    rotated = [r for r in caplog.records if r.getMessage().startswith("refresh rotated:")]
    assert len(rotated) == 1
    printed = json.loads(formatter.format(rotated[0]))
    shown = json.loads(LOG_LINE.text)

    assert printed.keys() == shown.keys()
    for key in ("level", "logger", "sr_event", "sr_outcome", "sr_generation"):
        assert printed[key] == shown[key], key
    for key, value in shown.items():
        assert type(printed[key]) is type(value), key
    pattern = r"refresh rotated: session (\S+) gen 0 \(refresh ([0-9a-f]{12})\) -> gen 1"
    for line in (printed, shown):
        session, fingerprint = search(pattern, line["message"]).groups()
        assert (line["sr_session"], line["sr_fingerprint"]) == (session, fingerprint)
        assert re.fullmatch(r"[0-9a-f]{20}", line["sr_user"])  # "20 hex digits"
        assert len(line["sr_session"]) == len(printed["sr_session"])


def _events_in_code() -> set[str]:
    events = set()
    for source in PACKAGE.glob("*.py"):
        text = source.read_text()
        events |= set(re.findall(r'log_fields\(\s*"(\w+)"', text))
        # SessionService._parse logs under the name its caller gives
        events |= set(re.findall(r'self\._parse\(\w+, "(\w+)"\)', text))
    return events


def test_log_field_table_is_every_field_and_event_the_code_emits() -> None:
    table = markdown_table(OBSERVABILITY, "## Structured log fields", "field")
    rows = {backticked(row[0])[0]: row[1] for row in table}
    parameters = [p for p in inspect.signature(observe.log_fields).parameters if p != "event"]
    assert set(rows) == {"sr_event", *(f"sr_{p}" for p in parameters)}
    documented_events = {word for word in backticked(rows["sr_event"]) if re.fullmatch(r"[a-z_]+", word)}
    assert documented_events == _events_in_code()
    # sr_outcome names, for each event, outcomes; every event it names exists
    named = re.findall(r"`(\w+)`(?: and `(\w+)`)?:", rows["sr_outcome"])
    outcome_events = {event for pair in named for event in pair if event}
    assert outcome_events, "sr_outcome lists outcomes per event"
    assert outcome_events <= _events_in_code()
