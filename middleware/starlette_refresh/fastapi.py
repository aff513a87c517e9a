"""FastAPI dependencies over the middleware's work: typed users, claims and scopes, and OpenAPI.

The middleware authenticates every request before FastAPI routes it. These dependencies hand its
result to endpoints with types, and they declare the bearer scheme, so OpenAPI and the docs UI show
which routes need a token::

    from starlette_refresh.fastapi import CurrentUser, document_auth_endpoints, require_scopes

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]: ...

    @app.delete("/things/{id}", dependencies=[Depends(require_scopes("admin"))])
    async def delete_thing(id: str) -> None: ...

    document_auth_endpoints(app, auth)   # /auth/refresh and friends appear in /openapi.json

Only this module imports FastAPI; the rest of the package works without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

try:
    from fastapi import FastAPI, HTTPException, Request, Security, WebSocketException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise ImportError(
        'starlette_refresh.fastapi needs FastAPI: pip install "starlette-refresh[fastapi]"'
    ) from exc

from .auth import TokenAuth
from .user import TokenUser

__all__ = [
    "CurrentClaims",
    "CurrentUser",
    "OptionalUser",
    "bearer_scheme",
    "current_claims",
    "current_user",
    "document_auth_endpoints",
    "optional_user",
    "require_scopes",
]

_BEARER_DESCRIPTION = "A short-lived access token from a login or POST /auth/refresh."


class _BearerScheme(HTTPBearer):
    """``HTTPBearer`` that also resolves on WebSocket routes, where FastAPI has no ``Request``."""

    async def __call__(self, connection: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        if isinstance(connection, Request):
            return await super().__call__(connection)
        # A WebSocket: a browser offered its token as a subprotocol, which the middleware verified
        # and took out of the scope; there are no credentials to hand over here.
        return None


#: The OpenAPI security scheme every dependency below declares (``HTTPBearer`` in the schema).
bearer_scheme = _BearerScheme(scheme_name="HTTPBearer", auto_error=False, description=_BEARER_DESCRIPTION)

# Declaring the scheme is what puts it in OpenAPI; the middleware has already checked the token.
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def _user_of(connection: HTTPConnection) -> TokenUser | None:
    if "user" not in connection.scope:
        raise RuntimeError(
            "starlette-refresh's middleware is not installed on this app: add "
            "middleware=[auth.middleware()] (or app.add_middleware(...)) before using its dependencies"
        )
    user = connection.scope["user"]
    return user if isinstance(user, TokenUser) else None


def _refusal(connection: HTTPConnection, status: int, body: dict[str, str], challenge: str) -> Exception:
    """The HTTP error for a request; for a WebSocket, a close with 1008 (policy violation), which
    the refresh socket does not retry."""
    if connection.scope["type"] == "websocket":
        return WebSocketException(code=1008, reason=body["error_description"])
    return HTTPException(status_code=status, detail=body, headers={"WWW-Authenticate": challenge})


async def optional_user(connection: HTTPConnection, _: BearerCredentials) -> TokenUser | None:
    """The authenticated user, or None on a path listed in ``exclude`` that was called without a token."""
    return _user_of(connection)


async def current_user(connection: HTTPConnection, _: BearerCredentials) -> TokenUser:
    """The authenticated user; 401 with the middleware's challenge when there is none (an excluded
    path). Works on HTTP and WebSocket routes alike (a WebSocket is closed with 1008 instead)."""
    user = _user_of(connection)
    if user is None:
        body = {"error": "invalid_token", "error_description": "an access token is required"}
        raise _refusal(connection, 401, body, "Bearer")
    return user


#: ``user: CurrentUser`` in an endpoint's signature: the authenticated user.
CurrentUser = Annotated[TokenUser, Security(current_user)]
#: ``user: OptionalUser``: the user, or None on an excluded path called without a token.
OptionalUser = Annotated[TokenUser | None, Security(optional_user)]


async def current_claims(user: CurrentUser) -> Mapping[str, Any]:
    """The verified claims of the request's access token (read-only)."""
    return user.claims


#: ``claims: CurrentClaims``: the verified claims (read-only).
CurrentClaims = Annotated[Mapping[str, Any], Security(current_claims)]


def require_scopes(*scopes: str) -> Callable[..., Awaitable[TokenUser]]:
    """A dependency that needs every one of ``scopes`` in the token (``scope`` or ``scp`` claims).

    Missing scopes answer 403 ``insufficient_scope`` with the RFC 6750 challenge naming them (on a
    WebSocket route: a close with 1008 and the same description).
    """
    if not scopes or not all(isinstance(s, str) and s and " " not in s for s in scopes):
        raise ValueError(f"require_scopes needs one or more scope names without spaces, got {scopes!r}")
    needed = " ".join(scopes)

    async def scoped_user(connection: HTTPConnection, user: CurrentUser) -> TokenUser:
        granted = set(connection.auth.scopes)
        missing = [s for s in scopes if s not in granted]
        if missing:
            body = {"error": "insufficient_scope", "error_description": f"needs scope {' '.join(missing)}"}
            raise _refusal(connection, 403, body, f'Bearer error="insufficient_scope", scope="{needed}"')
        return user

    scoped_user.__name__ = f"require_scopes_{'_'.join(scopes)}"
    return scoped_user


def document_auth_endpoints(app: FastAPI, auth: TokenAuth) -> None:
    """Adds the endpoints the middleware answers (refresh, logout, logout-all, sessions) to the app's
    OpenAPI schema, with their request bodies, answers and errors as the HTTP contract defines them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("paths", {}).update(_auth_paths(auth.settings.prefix, auth.settings.cookie_name))
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(_SCHEMAS)
        components.setdefault("securitySchemes", {}).setdefault(
            "HTTPBearer",
            {"type": "http", "scheme": "bearer", "description": _BEARER_DESCRIPTION},
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_ref("AuthError")}


_SCHEMAS: dict[str, Any] = {
    "TokenAnswer": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "a JWT (typ at+jwt)"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "description": "seconds"},
            "refresh_token": {"type": "string", "description": "only when the request sent it in the body"},
        },
    },
    "RefreshRequest": {
        "type": "object",
        "properties": {"refresh_token": {"type": "string", "description": "or send the refresh cookie"}},
    },
    "AuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
    "Session": {
        "type": "object",
        "required": ["id", "created_at", "last_used_at", "user_agent", "current"],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": "string", "format": "date-time"},
            "user_agent": {"type": "string"},
            "current": {"type": "boolean"},
        },
    },
}


def _auth_paths(prefix: str, cookie: str) -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"HTTPBearer": []}]
    unavailable = _error("the session store is unavailable; retry after Retry-After seconds")
    cross_site = _error("a cookie-borne request from another site")
    body = {"required": False, **_ref("RefreshRequest")}
    return {
        f"{prefix}/refresh": {
            "post": {
                "tags": ["auth"],
                "summary": "Rotate the refresh token and get a new access token",
                "description": (
                    f"Send the refresh token in the `{cookie}` cookie or in the body; the new one comes back "
                    "the same way. The previous token within the grace window gets the same answer again; "
                    "any older one revokes the session."
                ),
                "requestBody": body,
                "responses": {
                    "200": {"description": "rotated", **_ref("TokenAnswer")},
                    "400": _error("malformed request or no token"),
                    "401": _error("invalid_grant: unknown, expired, revoked or reused token"),
                    "403": cross_site,
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/logout": {
            "post": {
                "tags": ["auth"],
                "summary": "End this session (idempotent)",
                "requestBody": body,
                "responses": {"204": {"description": "ended"}, "403": cross_site, "503": unavailable},
            }
        },
        f"{prefix}/logout-all": {
            "post": {
                "tags": ["auth"],
                "summary": "End every session of the token's subject",
                "security": bearer,
                "responses": {
                    "204": {"description": "ended"},
                    "401": _error("no valid access token"),
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/sessions": {
            "get": {
                "tags": ["auth"],
                "summary": "The subject's live sessions",
                "security": bearer,
                "responses": {
                    "200": {
                        "description": "sessions",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "sessions": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Session"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "401": _error("no valid access token"),
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/sessions/{{session_id}}": {
            "delete": {
                "tags": ["auth"],
                "summary": "End one of the subject's sessions",
                "security": bearer,
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "204": {"description": "ended"},
                    "401": _error("no valid access token"),
                    "404": _error("not one of the subject's sessions"),
                    "503": unavailable,
                },
            }
        },
    }
