"""The auth endpoints under the prefix: refresh, logout, logout-all, sessions, revoke and the JWK Set.

Each endpoint is an ASGI app. The refresh token travels back the way it came: a cookie-borne
refresh is answered with ``Set-Cookie``, a body-borne one in the JSON body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .access_tokens import AccessTokenCodec
from .errors import AuthError, InvalidRequest, InvalidToken, StoreUnavailable, UnsupportedGrantType
from .jwks import JWKS_HEADERS, jwk_set
from .observe import log_fields
from .page_cookies import clear_page_cookies, request_cookies, set_page_cookies
from .pages import foreign_request, is_navigation
from .planted_cookies import delete_planted_cookies
from .refresh_tokens import looks_like_refresh_token
from .sessions import IssuedSession, SessionService
from .settings import Settings
from .web import (
    EncodedJSONAnswer,
    authorization_values,
    bearer_token,
    check_same_origin,
    clear_refresh_cookie,
    count_cookies,
    error_answer,
    json_answer,
    query_carries_token,
    read_parameters,
    root_path,
    route_path,
    set_refresh_cookie,
    unauthorized_answer,
    unavailable_answer,
)

logger = logging.getLogger("starlette_refresh.endpoints")

Transport = Literal["cookie", "body"]
Handler = Callable[[Request], Awaitable[Response]]


class _MissingToken(InvalidToken):
    """No access token at all: answered with the bare challenge."""


class _PlantedCookies(InvalidRequest):
    """More than one refresh cookie: answered 400 with the deletion of those this app never set."""


def token_answer(
    settings: Settings,
    issued: IssuedSession,
    transport: Transport,
    root_path: str,
    *,
    planted_by: Headers | None = None,
) -> Response:
    """The login/refresh success body, with the refresh token sent back through ``transport``
    (a cookie's path carries the request's ``root_path``). With ``planted_by`` (a login's request
    headers), a cookie answer first deletes every refresh cookie this app never set, so that one
    planted before the login cannot stand beside the new one."""
    # Both tokens are base64url segments joined by dots (a JWS; our refresh format) and expires_in is
    # an int, none of which JSON escapes: the body is put together directly, the same bytes
    # JSONResponse made of the dict (compact separators, keys in this order).
    in_body = f',"refresh_token":"{issued.refresh_token}"' if transport == "body" else ""
    access = f'"access_token":"{issued.access_token}","token_type":"Bearer","expires_in":{issued.expires_in}'
    response = EncodedJSONAnswer(f"{{{access}{in_body}}}".encode())
    if transport == "cookie":
        if planted_by is not None:
            delete_planted_cookies(response, settings, planted_by, root_path)
        set_refresh_cookie(response, settings, issued.refresh_token, issued.refresh_expires_in, root_path)
        if settings.page_mode:
            # The same refresh token in the page cookie: every answer that sets one sets both.
            set_page_cookies(response, settings, issued)
    return response


class AuthEndpoints:
    """Routes requests under ``settings.prefix`` to the library's endpoints."""

    def __init__(self, settings: Settings, service: SessionService, access: AccessTokenCodec) -> None:
        self.settings = settings
        self.service = service
        self.access = access
        prefix = settings.prefix
        self._routes: dict[str, tuple[str, Handler]] = {
            f"{prefix}/refresh": ("POST", self.refresh),
            f"{prefix}/logout": ("POST", self.logout),
            f"{prefix}/logout-all": ("POST", self.logout_all),
            f"{prefix}/sessions": ("GET", self.list_sessions),
            f"{prefix}/revoke": ("POST", self.revoke),
            f"{prefix}/jwks.json": ("GET", self.jwks),
        }
        # The ring is fixed for the life of the process, so the set is built once.
        self._jwk_set = jwk_set(access.key_ring)
        self._session_path = f"{prefix}/sessions/"
        self._below_prefix = f"{prefix}/"

    def handles(self, path: str) -> bool:
        """True for paths this library answers; other paths under the prefix go to the app.

        Every path below ``{prefix}/sessions/`` is the library's, slashes and all: the route path is
        decoded, so ``/sessions/a%2Fb`` arrives as ``/sessions/a/b``, and it names no session of the
        subject (404 ``not_found``), not a route of the app.
        """
        if not path.startswith(self._below_prefix):
            return False  # most requests: one comparison
        if path in self._routes:
            return True
        return path.startswith(self._session_path) and len(path) > len(self._session_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers a request for which :meth:`handles` said True (given its route path)."""
        request = Request(scope, receive)
        path = route_path(scope)
        if path in self._routes:
            method, handler = self._routes[path]
        else:
            method, handler = "DELETE", self.revoke_session
        if request.method != method:
            response = json_answer(
                405, {"error": "invalid_request", "error_description": f"use {method}"}, {"Allow": method}
            )
        else:
            response = await self._answer(request, handler, path)
        await response(scope, receive, send)

    async def _answer(self, request: Request, handler: Handler, path: str) -> Response:
        try:
            # Before anything else: a cross-site page can neither use the refresh cookie nor, by a
            # form whose answer clears it, delete it (SameSite keeps the cookie off such a request,
            # not the Set-Cookie off its answer).
            check_same_origin(request.scope, request.headers, self.settings)
            if query_carries_token(request.scope):
                raise InvalidRequest("tokens in the query string are refused; send them in a header or body")
            return await handler(request)
        except StoreUnavailable as exc:
            logger.warning(
                "%s %s answered 503: %s",
                request.method,
                path,
                exc,
                extra=log_fields("unavailable", outcome="unavailable", path=path),
            )
            return unavailable_answer(self.settings)
        except _MissingToken:
            return unauthorized_answer(self.settings)
        except _PlantedCookies as exc:
            response = error_answer(exc)
            delete_planted_cookies(response, self.settings, request.headers, root_path(request.scope))
            return response
        except InvalidToken as exc:
            return unauthorized_answer(self.settings, exc)
        except AuthError as exc:
            return error_answer(exc)

    async def refresh(self, request: Request) -> Response:
        """``POST {prefix}/refresh``: rotate the refresh token and mint a new access token."""
        token, transport = await self._refresh_token_of(request, required=True)
        assert token is not None
        # An invalid_grant answer (raised from here) carries no Set-Cookie: it may arrive after a
        # newer login in another tab has set a new cookie, which clearing would log out.
        issued = await self.service.refresh(token)
        return token_answer(self.settings, issued, transport, root_path(request.scope))

    async def logout(self, request: Request) -> Response:
        """``POST {prefix}/logout``: end this session (by refresh token, else access token); 204."""
        token, _ = await self._refresh_token_of(request, required=False)
        hint = None
        if token is None:
            claims = self._optional_claims(request)
            if claims is not None:
                hint = (claims["sub"], claims["sid"])
        await self.service.logout(token, hint)
        return self._logged_out(request)

    async def logout_all(self, request: Request) -> Response:
        """``POST {prefix}/logout-all`` (access token): end every session of the subject; 204."""
        claims = self._required_claims(request)
        await self.service.logout_all(claims["sub"])
        return self._logged_out(request)

    async def list_sessions(self, request: Request) -> Response:
        """``GET {prefix}/sessions`` (access token): the subject's live sessions."""
        claims = self._required_claims(request)
        sessions = await self.service.list_sessions(claims["sub"], claims["sid"])
        return json_answer(200, {"sessions": [s.as_json() for s in sessions]})

    async def revoke_session(self, request: Request) -> Response:
        """``DELETE {prefix}/sessions/{id}`` (access token): 204, or 404 if not the subject's."""
        claims = self._required_claims(request)
        session_id = route_path(request.scope)[len(self._session_path) :]
        if not await self.service.revoke(claims["sub"], session_id):
            return json_answer(404, {"error": "not_found", "error_description": "no such session"})
        if session_id == claims["sid"]:
            return self._logged_out(request)
        return json_answer(204, None)

    async def revoke(self, request: Request) -> Response:
        """``POST {prefix}/revoke`` (RFC 7009): ends the session of a refresh or access token; 200.

        Answered 200 for any well-formed request, whether the token was known, valid or already
        revoked (RFC 7009 section 2.2), so the answer tells a caller nothing about a token it holds.
        Refresh and access tokens cannot be mistaken for one another, so ``token_type_hint`` is
        accepted and not needed.
        """
        body, _ = await read_parameters(request, self.settings.max_body_bytes)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise InvalidRequest("token is required: the refresh or access token to revoke")
        if "token_type_hint" in body and not isinstance(body["token_type_hint"], str):
            raise InvalidRequest("token_type_hint must be a string")
        if looks_like_refresh_token(token):
            await self.service.logout(token)
        else:
            claims = self._claims_or_none(token)
            if claims is not None:
                await self.service.logout(None, (claims["sub"], claims["sid"]))
        return json_answer(200, None)

    async def jwks(self, request: Request) -> Response:
        """``GET {prefix}/jwks.json``: the public keys that verify access tokens (RFC 7517), for other
        services; 404 when tokens are signed with a shared secret, which has no public half."""
        if self._jwk_set is None:
            return json_answer(
                404,
                {
                    "error": "not_found",
                    "error_description": "no public keys: access tokens are signed with a shared secret",
                },
            )
        return JSONResponse(self._jwk_set, headers=JWKS_HEADERS)

    def _logged_out(self, request: Request) -> Response:
        """204 that clears the cookies; in page mode, a form's navigation is sent on to
        ``login_url`` (303) and an htmx request told to go there (``HX-Redirect``)."""
        response = json_answer(204, None)
        settings = self.settings
        if settings.page_mode and settings.login_url is not None:
            login = root_path(request.scope) + settings.login_url
            if request.headers.get("hx-request") == "true":
                response.headers["HX-Redirect"] = login
            elif is_navigation(request.headers):
                response = json_answer(303, None, {"Location": login})
            clear_page_cookies(response, settings)
        clear_refresh_cookie(response, settings, root_path(request.scope))
        return response

    async def _refresh_token_of(self, request: Request, *, required: bool) -> tuple[str | None, Transport]:
        """The presented refresh token and how it came: the cookie, a JSON body, or an RFC 6749
        section 6 form (``grant_type=refresh_token``; its other fields, such as ``client_id`` and
        ``scope``, are ignored)."""
        body, is_form = await read_parameters(request, self.settings.max_body_bytes)
        if is_form and "grant_type" not in body:
            raise InvalidRequest("grant_type is required: grant_type=refresh_token")
        if "grant_type" in body and body["grant_type"] != "refresh_token":
            raise UnsupportedGrantType("only grant_type=refresh_token is supported here")
        body_token = body.get("refresh_token")
        if body_token is not None and (not isinstance(body_token, str) or not body_token):
            raise InvalidRequest("refresh_token must be a non-empty string")
        if count_cookies(request.headers, self.settings.cookie_name) > 1:
            raise _PlantedCookies(
                "more than one refresh cookie: this answer deletes those this site did not set "
                "(planted by another host?), so a retry sends only its own"
            )
        cookie_token = request.cookies.get(self.settings.cookie_name) or None
        if self.settings.page_mode:
            page_tokens = request_cookies(request.scope, (self.settings.page_cookie_name,))
            if len(page_tokens[self.settings.page_cookie_name]) > 1:
                raise InvalidRequest("more than one page cookie: some were set by another host")
            if page_tokens[self.settings.page_cookie_name] and page_tokens[self.settings.page_cookie_name][0]:
                # Every answer sets both to the same token; a refresh cookie that differs predates
                # page mode (or a cookie the browser failed to keep), and the page cookie is newer.
                cookie_token = page_tokens[self.settings.page_cookie_name][0]
        if body_token is not None:
            if cookie_token is not None and cookie_token != body_token:
                raise InvalidRequest("the refresh cookie and the body carry different refresh tokens")
            return body_token, "body"
        if cookie_token is not None:
            return cookie_token, "cookie"
        if required:
            raise InvalidRequest(
                "no refresh token: send the refresh cookie or a JSON body with refresh_token"
            )
        return None, "cookie"

    def _required_claims(self, request: Request) -> Mapping[str, Any]:
        token = bearer_token(authorization_values(request.scope))
        if token is None and self.settings.page_mode:
            token = self._page_access_token(request)
        if token is None:
            raise _MissingToken("an access token is required")
        return self.access.verify(token)

    def _page_access_token(self, request: Request) -> str | None:
        """The access cookie's token, for a request from a page of this site (an unsafe one must
        prove it, as every cookie-authenticated request to the app must)."""
        name = self.settings.page_access_cookie_name
        values = request_cookies(request.scope, (name,))[name]
        if len(values) != 1 or not values[0]:
            return None
        if request.method not in ("GET", "HEAD") and (
            refusal := foreign_request(request.scope, self.settings)
        ):
            raise refusal
        return values[0]

    def _optional_claims(self, request: Request) -> Mapping[str, Any] | None:
        try:
            token = bearer_token(authorization_values(request.scope))
        except AuthError:
            return None
        return self._claims_or_none(token) if token else None

    def _claims_or_none(self, token: str) -> Mapping[str, Any] | None:
        """The claims of a valid access token, else None (expired, revoked, forged or garbage)."""
        try:
            return self.access.verify(token)
        except AuthError:
            return None
