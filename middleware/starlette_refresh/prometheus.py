"""Prometheus metrics for starlette-refresh: an :class:`~starlette_refresh.observe.Observer`.

Needs the ``prometheus`` extra (``pip install "starlette-refresh[prometheus]"``). Nothing else in the
package imports this module, so the core runs without prometheus_client::

    from starlette_refresh.prometheus import PrometheusMetrics

    auth = TokenAuth(..., observer=PrometheusMetrics())

docs/observability.md lists the metrics, their labels and example queries.
"""

from __future__ import annotations

from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        'starlette_refresh.prometheus needs prometheus_client: pip install "starlette-refresh[prometheus]"'
    ) from exc

from .observe import (
    REFRESH_OUTCOMES,
    REVOCATION_KINDS,
    SOCKET_EVENTS,
    RefreshOutcome,
    RevocationKind,
    SocketEvent,
    StoreOutcome,
)

__all__ = ["STORE_BUCKETS", "PrometheusMetrics"]

STORE_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Store latency buckets, seconds: a healthy Redis answers in well under a millisecond on a LAN, and
the top bucket lies past the default ``store_timeout`` (2 s), where operations fail."""


class PrometheusMetrics:
    """Counts logins, refreshes by outcome, revoked sessions by kind and WebSocket events, keeps the
    number of open WebSockets, and times store operations.

    Metrics (with the default ``namespace``): ``starlette_refresh_logins_total``,
    ``starlette_refresh_refreshes_total{outcome}``, ``starlette_refresh_revocations_total{kind}``
    (sessions ended), ``starlette_refresh_websocket_events_total{event}``,
    ``starlette_refresh_websockets_open`` and
    ``starlette_refresh_store_operation_seconds{operation,outcome}``.

    Create one per process and registry (a second one on the same registry is refused as a duplicate);
    several :class:`~starlette_refresh.TokenAuth` instances may share it. Every refresh outcome,
    revocation kind and WebSocket event is created at zero up front, so rates and ratios exist before
    the first event.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "starlette_refresh"
    ) -> None:
        chosen = registry if registry is not None else REGISTRY
        where: dict[str, Any] = {"namespace": namespace, "registry": chosen}
        self.logins = Counter("logins", "Sessions created by a successful login.", **where)
        self.refreshes = Counter(
            "refreshes",
            "Refresh requests that reached the session service, by outcome: rotated, grace, reused, "
            "expired, revoked, invalid, unavailable.",
            ["outcome"],
            **where,
        )
        self.revocations = Counter(
            "revocations",
            "Sessions ended before their time, by kind: logout, logout_all, session_revoke, reuse, evicted.",
            ["kind"],
            **where,
        )
        self.websocket_events = Counter(
            "websocket_events",
            "WebSockets opened with a token, by event: opened, renewed, renewal_refused, expired, "
            "revoked (closed with 4401 for that reason), ended.",
            ["event"],
            **where,
        )
        self.websockets_open = Gauge(
            "websockets_open", "WebSockets opened with a token and open now, in this process.", **where
        )
        self.store_operations = Histogram(
            "store_operation_seconds",
            "Duration of session store operations (including any wait for a connection), by operation "
            "and outcome: ok, unavailable, error.",
            ["operation", "outcome"],
            buckets=STORE_BUCKETS,
            **where,
        )
        # Children looked up once: the hooks run on every request, and labels() takes a lock.
        self._refreshes = {outcome: self.refreshes.labels(outcome) for outcome in REFRESH_OUTCOMES}
        self._revocations = {kind: self.revocations.labels(kind) for kind in REVOCATION_KINDS}
        self._websocket_events = {event: self.websocket_events.labels(event) for event in SOCKET_EVENTS}
        # Not created up front: one histogram per operation and outcome would add hundreds of series
        # that mostly stay empty.
        self._store: dict[tuple[str, str], Histogram] = {}

    def login(self) -> None:
        """Counts one login."""
        self.logins.inc()

    def refresh(self, outcome: RefreshOutcome) -> None:
        """Counts one refresh under ``outcome``."""
        child = self._refreshes.get(outcome)
        if child is None:  # an outcome newer than this module: still counted, never an error
            child = self._refreshes[outcome] = self.refreshes.labels(outcome)
        child.inc()

    def revocation(self, kind: RevocationKind, sessions: int) -> None:
        """Counts ``sessions`` ended sessions under ``kind``."""
        child = self._revocations.get(kind)
        if child is None:
            child = self._revocations[kind] = self.revocations.labels(kind)
        child.inc(sessions)

    def websocket(self, event: SocketEvent) -> None:
        """Counts one WebSocket event; ``opened`` and ``ended`` also move the open sockets gauge."""
        child = self._websocket_events.get(event)
        if child is None:
            child = self._websocket_events[event] = self.websocket_events.labels(event)
        child.inc()
        if event == "opened":
            self.websockets_open.inc()
        elif event == "ended":
            self.websockets_open.dec()

    def store_operation(self, operation: str, seconds: float, outcome: StoreOutcome) -> None:
        """Observes one store operation's duration."""
        key = (operation, outcome)
        child = self._store.get(key)
        if child is None:
            child = self._store[key] = self.store_operations.labels(operation, outcome)
        child.observe(seconds)
