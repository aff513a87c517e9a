"""Observability hooks: what the library decided and how long the store took.

:class:`TokenAuth` reports every session decision to an :class:`Observer` (by default
:class:`NullObserver`, which does nothing). ``starlette_refresh.prometheus.PrometheusMetrics`` is the
Prometheus implementation, behind the ``prometheus`` extra; this module imports nothing, so the core
never depends on a metrics library. docs/observability.md lists the metrics and the log fields.

Hooks run inline on the request path and are not guarded: an implementation must be cheap and must
not raise (count, observe, return).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

RefreshOutcome = Literal["rotated", "grace", "reused", "expired", "revoked", "invalid", "unavailable"]
"""How a refresh ended: ``rotated`` (a new token; also a token ahead of a store that lost writes),
``grace`` (the previous token again within the grace window), ``reused`` (an old token after the grace
window; the session was revoked), ``expired`` (idle or absolute lifetime over), ``revoked`` (the session
is revoked, or its record is gone or unknown), ``invalid`` (malformed or forged token) or
``unavailable`` (store outage, answered 503)."""

RevocationKind = Literal["logout", "logout_all", "session_revoke", "reuse", "evicted"]
"""Why sessions ended before their time: ``logout``, ``logout_all``, ``session_revoke`` (``DELETE
{prefix}/sessions/{id}``), ``reuse`` (refresh-token reuse detected) or ``evicted`` (a login went over
``max_sessions_per_user`` and ended the oldest sessions)."""

StoreOutcome = Literal["ok", "unavailable", "error"]
"""How a store operation ended: ``ok``, ``unavailable`` (an outage: answered 503) or ``error`` (any
other exception, such as a refused command or a bug)."""

SocketEvent = Literal["opened", "renewed", "renewal_refused", "expired", "revoked", "ended"]
"""What happened to a WebSocket opened with a token: ``opened`` (the app accepted it), ``renewed`` or
``renewal_refused`` (an in-band renewal; a refused one also closes the socket), ``expired`` or
``revoked`` (the middleware closed it with 4401 for that reason) and ``ended`` (the app returned from
a socket it had accepted, however it ended). ``opened`` minus ``ended`` is the sockets open now."""

REFRESH_OUTCOMES: tuple[RefreshOutcome, ...] = get_args(RefreshOutcome)
REVOCATION_KINDS: tuple[RevocationKind, ...] = get_args(RevocationKind)
STORE_OUTCOMES: tuple[StoreOutcome, ...] = get_args(StoreOutcome)
SOCKET_EVENTS: tuple[SocketEvent, ...] = get_args(SocketEvent)


class Observer(Protocol):
    """Receives the library's decisions; pass one as ``TokenAuth(observer=...)``."""

    def login(self) -> None:
        """A session was created (a successful login)."""

    def refresh(self, outcome: RefreshOutcome) -> None:
        """A refresh token reached the session service and got this answer (once per refresh)."""

    def revocation(self, kind: RevocationKind, sessions: int) -> None:
        """``sessions`` live sessions (at least one) just ended, for this reason."""

    def store_operation(self, operation: str, seconds: float, outcome: StoreOutcome) -> None:
        """One store operation (``rotate``, ``create``, ``revoke``...) took ``seconds``, including any
        wait for a free connection."""

    def websocket(self, event: SocketEvent) -> None:
        """Something happened to a WebSocket opened with a token (see :data:`SocketEvent`)."""


class NullObserver:
    """The default :class:`Observer`: ignores everything."""

    def login(self) -> None:
        """Ignored."""

    def refresh(self, outcome: RefreshOutcome) -> None:
        """Ignored."""

    def revocation(self, kind: RevocationKind, sessions: int) -> None:
        """Ignored."""

    def store_operation(self, operation: str, seconds: float, outcome: StoreOutcome) -> None:
        """Ignored."""

    def websocket(self, event: SocketEvent) -> None:
        """Ignored."""


def log_fields(
    event: str,
    *,
    outcome: str | None = None,
    user: str | None = None,
    session: str | None = None,
    sessions: Sequence[str] | None = None,
    generation: int | None = None,
    fingerprint: str | None = None,
    operation: str | None = None,
    path: str | None = None,
) -> dict[str, object]:
    """The ``extra=`` of a decision log line: ``sr_event`` plus the given fields, each as ``sr_<name>``.

    One vocabulary for every line, so a JSON formatter's output can be queried by field; keyword
    parameters rather than free keys, so a misspelt field fails type checking instead of drifting.
    ``fingerprint`` is :func:`~starlette_refresh.testing.fingerprint` of a token, never the token.
    """
    given: dict[str, object | None] = {
        "outcome": outcome,
        "user": user,
        "session": session,
        "sessions": list(sessions) if sessions is not None else None,
        "generation": generation,
        "fingerprint": fingerprint,
        "operation": operation,
        "path": path,
    }
    fields: dict[str, object] = {"sr_event": event}
    fields.update({f"sr_{name}": value for name, value in given.items() if value is not None})
    return fields
