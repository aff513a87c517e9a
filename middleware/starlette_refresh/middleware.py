"""The ASGI middleware: answers the auth endpoints, authenticates everything else.

Pure ASGI, with no request/response wrapper middleware: it handles ``http`` and ``websocket``
scopes, and hooks the ``lifespan`` startup to connect to the store, so an unreachable store stops
the app from starting. Where no lifespan startup comes (Django, many plain ASGI apps), the first
request starts it instead, and no request is served before it has started.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access_tokens import AccessTokenCodec
from .clock import Clock
from .endpoints import AuthEndpoints
from .errors import AuthError, CrossSiteRequest, InvalidRequest, InvalidToken
from .observe import Observer
from .pages import PageGate
from .revocations import RevocationList
from .settings import Settings
from .sockets import TokenWindow, authorization_from_subprotocols, serve_anonymous_socket, serve_token_socket
from .startup import Startup
from .token_cache import VerifiedTokens
from .user import Principal
from .web import (
    authorization_values,
    bearer_token,
    check_same_origin,
    error_answer,
    query_carries_token,
    route_path,
    unauthorized_answer,
    unavailable_answer,
)

logger = logging.getLogger("starlette_refresh.middleware")

# A cross-site page may still link to a page under the prefix (an identity provider redirecting back
# to /auth/callback); it may not post to one, which could set or clear the refresh cookie.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuthMiddleware:
    """Built by :meth:`TokenAuth.middleware`; not meant to be constructed by hand."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        access: AccessTokenCodec,
        endpoints: AuthEndpoints,
        clock: Clock,
        revocations: RevocationList,
        observer: Observer,
        startup: Startup,
    ) -> None:
        self.app = app
        self.settings = settings
        self.access = access
        self.endpoints = endpoints
        self.clock = clock
        self.revocations = revocations
        self.observer = observer
        self.startup = startup
        # Authorization headers already verified, by their raw bytes: a repeat skips the parsing too.
        self._principals: VerifiedTokens[bytes, Principal] = VerifiedTokens(settings.access_cache_size, clock)
        self._is_revoked = revocations.is_revoked
        self._below_prefix = settings.prefix + "/"
        self._pages = (
            PageGate(settings, endpoints.service, self._verified, self._adopted)
            if settings.page_mode
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if not self.startup.started and not await self._started_for(scope, receive, send):
            return
        path = route_path(scope)
        if kind == "http" and path.startswith(self._below_prefix):
            if self.endpoints.handles(path):
                await self.endpoints(scope, receive, send)
                return
            if scope["method"] not in _SAFE_METHODS and (cross_site := _cross_site(scope, self.settings)):
                await error_answer(cross_site)(scope, receive, send)  # the app's own login, say
                return
        refusal: AuthError | None = None
        try:
            principal = self._principal(scope, kind)
        except AuthError as error:
            principal, refusal = None, error
        if principal is None and refusal is None and kind == "http" and self._pages is not None:
            excluded = self.settings.is_excluded(path)
            if await self._pages(self.app, scope, receive, send, excluded=excluded):
                return
        # An excluded path lets in a request without a token, or with a bad one (which counts as
        # none); never a malformed handshake.
        if principal is None and (isinstance(refusal, _BadHandshake) or not self.settings.is_excluded(path)):
            await self._refuse(scope, receive, send, refusal)
            return
        _admit(scope, principal)
        if kind == "http":
            await self.app(scope, receive, send)
        elif principal is None:
            await serve_anonymous_socket(self.app, scope, receive, send)
        else:
            await self._serve_token_socket(scope, receive, send, principal)

    def _principal(self, scope: Scope, kind: str) -> Principal | None:
        """Who the request's access token proves; None without a token; AuthError for a bad one.

        A header verified before, still in its window and not revoked, costs a dict lookup; any
        other goes through every check, which also names the problem, and is remembered when it passes.
        """
        authorization = authorization_values(scope)
        if kind == "websocket":
            try:
                authorization = authorization_from_subprotocols(scope, authorization)
            except InvalidRequest as error:
                raise _BadHandshake(error.description) from error
        query_token = bool(scope.get("query_string")) and query_carries_token(scope)
        if len(authorization) == 1 and not query_token:
            principal = self._principals.get(authorization[0])
            if principal is not None and not self._is_revoked(principal.session_id):
                return principal
        if query_token:
            raise InvalidRequest("tokens in the query string are refused; send Authorization: Bearer")
        token = bearer_token(authorization)
        if token is None:
            return None
        return self._verified(authorization[0], token)

    def _verified(self, carrier: bytes, token: str) -> Principal:
        """The principal of ``token``, which came in ``carrier`` (the raw header or cookie value that
        keys the cache); AuthError when it fails a check."""
        principal = self._principals.get(carrier)
        if principal is not None and not self._is_revoked(principal.session_id):
            return principal
        return self._adopted(carrier, self.access.verify(token))

    def _adopted(self, carrier: bytes, claims: Mapping[str, Any]) -> Principal:
        """The principal of a token whose ``claims`` passed every check, or were just signed here;
        remembered for the token's window, so its next request costs a dict lookup."""
        principal = Principal.of(claims if isinstance(claims, MappingProxyType) else MappingProxyType(claims))
        self._principals.remember(carrier, principal, *self.access.validity(claims))
        return principal

    async def _serve_token_socket(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal
    ) -> None:
        """The app runs until the socket closes, its token ends or its session is revoked."""
        await serve_token_socket(
            self.app,
            scope,
            receive,
            send,
            session_id=principal.session_id,
            window=self._window(principal.user.claims),
            clock=self.clock,
            watch_revocation=self.revocations.watch,
            renew=partial(self._renewal, principal.session_id),
            observer=self.observer,
        )

    def _renewal(self, session_id: str, token: str) -> TokenWindow:
        """Checks a token a socket of ``session_id`` was renewed with: valid, not revoked, and of
        the same session (a renewal extends a session; it never switches the socket to another)."""
        claims = self.access.verify(token)
        if claims["sid"] != session_id:
            raise InvalidToken("the token belongs to another session")
        return self._window(claims)

    def _window(self, claims: Mapping[str, Any]) -> TokenWindow:
        return TokenWindow(self.access.validity(claims)[1], int(claims["exp"]))

    async def _started_for(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Starts the library for a request that came before any lifespan startup; when the start
        fails, answers the request 503 (retry) and returns False: nothing is served unstarted."""
        try:
            await self.startup.start_on_request()
        except Exception:  # logged by the start; every failure is the same answer to the client
            # 1013: try again later.
            reason = "the session store is unavailable; retry shortly"
            await _answer_refusal(scope, receive, send, unavailable_answer(self.settings), 1013, reason)
            return False
        return True

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: AuthError | None) -> None:
        if isinstance(error, InvalidToken) or error is None:
            response = unauthorized_answer(self.settings, error)
        else:
            response = error_answer(error)
        reason = error.description if error is not None else "an access token is required"
        # 1008: policy violation, which servers turn into a 403.
        await _answer_refusal(scope, receive, send, response, 1008, reason)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure: BaseException | None = None

        async def receive_with_startup() -> Message:
            nonlocal failure
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup.start()
                except Exception as exc:
                    # Report it ourselves (Starlette's router reads this message outside its error
                    # handling), then raise so in-process servers such as TestClient fail too.
                    failure = exc
                    logger.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
            return message

        async def send_with_shutdown(message: Message) -> None:
            if failure is not None:
                return  # the server has its answer already
            if message["type"] == "lifespan.shutdown.complete":
                await self.startup.stop()
            await send(message)

        await self.app(scope, receive_with_startup, send_with_shutdown)


async def _answer_refusal(
    scope: Scope, receive: Receive, send: Send, response: Response, close_code: int, reason: str
) -> None:
    """Sends ``response`` to an HTTP request; refuses a WebSocket handshake with it where the server
    supports HTTP answers to handshakes, else closes it with ``close_code``."""
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        # Starlette's Response sends websocket.http.response.* messages for websocket scopes.
        await response(scope, receive, send)
        return
    await send({"type": "websocket.close", "code": close_code, "reason": reason[:120]})


def _cross_site(scope: Scope, settings: Settings) -> CrossSiteRequest | None:
    try:
        check_same_origin(scope, Headers(scope=scope), settings)
    except CrossSiteRequest as refusal:
        return refusal
    return None


def _admit(scope: Scope, principal: Principal | None) -> None:
    """Lets the request in as ``principal`` (anonymous when None), per Starlette's conventions.
    Each request gets its own credentials object; the user is shared by requests with the same header."""
    if principal is None:
        scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
    else:
        scope["user"], scope["auth"] = principal.user, principal.credentials()


class _BadHandshake(InvalidRequest):
    """A WebSocket handshake that offers its token wrongly: refused even on an excluded path."""
