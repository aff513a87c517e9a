"""Logins for any framework: a session issued from an ASGI scope, answered as plain data.

A login view of Django, Litestar or Quart cannot return a Starlette response; it gets a
:class:`LoginAnswer` (status, JSON body, headers) to copy onto its own. ``TokenAuth.login`` is the
same login, answered as a Starlette response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Scope

from .endpoints import Transport, token_answer
from .errors import AuthError, StoreUnavailable
from .observe import log_fields
from .sessions import SessionService
from .settings import Settings
from .web import check_same_origin, error_answer, root_path, unavailable_answer

logger = logging.getLogger("starlette_refresh")

# The framework's JSON response sets these itself.
_BODY_HEADERS = frozenset({b"content-type", b"content-length"})


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """What a login answers, for a view to copy onto its own framework's response.

    ``status`` is 200, 403 (a cookie login from another site's page) or 503 (the store is down:
    retry); ``body`` is the JSON object to send (``access_token``, ``token_type``, ``expires_in``,
    and ``refresh_token`` with the body transport; the ``error`` otherwise); ``headers`` are the
    ``(name, value)`` pairs to add: ``cache-control``, ``retry-after`` on a 503, and on a cookie login
    one or more ``set-cookie`` (the refresh cookie, after deletions of cookies a sibling host
    planted). Names repeat, so add each pair; never set them as a dict.
    """

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        """True when a session was issued."""
        return self.status == 200

    @classmethod
    def of(cls, response: Response) -> LoginAnswer:
        """The answer a Starlette response of the library's makes."""
        body = json.loads(bytes(response.body)) if response.body else {}
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
            if name not in _BODY_HEADERS
        ]
        return cls(response.status_code, body, headers)


async def login_response(
    settings: Settings,
    sessions: SessionService,
    scope: Scope,
    subject: str,
    claims: Mapping[str, Any] | None,
    transport: Transport,
) -> Response:
    """Starts a session for ``subject`` on the request ``scope``; returns the answer (``TokenAuth.login``
    sends it as it is, ``TokenAuth.issue_session`` hands it over as a :class:`LoginAnswer`).

    The scope gives what a login must look at: ``Origin`` and ``Sec-Fetch-Site`` (a cookie login
    from another site's page is refused), the ``User-Agent`` the session list shows, the ``Host`` and
    ``Cookie`` headers (refresh cookies planted for a parent domain are deleted) and the
    ``root_path`` the cookie's path carries.
    """
    if transport not in ("cookie", "body"):
        raise ValueError("transport must be 'cookie' or 'body'")
    headers = Headers(scope=scope)
    try:
        if transport == "cookie":
            check_same_origin(scope, headers, settings)
        issued = await sessions.login(subject, claims, headers.get("user-agent", ""))
    except StoreUnavailable as exc:
        logger.warning("login answered 503: %s", exc, extra=log_fields("login", outcome="unavailable"))
        return unavailable_answer(settings)
    except AuthError as exc:
        return error_answer(exc)
    return token_answer(settings, issued, transport, root_path(scope), planted_by=headers)
