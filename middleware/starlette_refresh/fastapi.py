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

import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Annotated, Any

try:
    from fastapi import FastAPI, HTTPException, Request, Security, WebSocketException
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise ImportError(
        'starlette_refresh.fastapi needs FastAPI: pip install "starlette-refresh[fastapi]"'
    ) from exc

from .auth import TokenAuth
from .jwks import JWKS_MAX_AGE, jwk_set
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
    _SCOPE_CHECKS[scoped_user] = needed
    return scoped_user


# The dependencies require_scopes made, with the scopes each needs: OpenAPI documents their 403.
_SCOPE_CHECKS: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


def document_auth_endpoints(app: FastAPI, auth: TokenAuth) -> None:
    """Documents in the app's OpenAPI schema what the middleware answers, as the HTTP contract defines it.

    - The endpoints it answers (refresh, logout, logout-all, sessions, revoke, and with asymmetric
      keys the JWK Set): their refresh cookie, request bodies, answers and errors.
    - Every operation outside ``exclude`` needs an access token, dependencies or not: it gets the
      bearer ``security`` and the middleware's ``400`` (a malformed ``Authorization`` header) and
      ``401`` (whose body has no ``error`` when no token came).
    - On an excluded path the dependencies decide: ``CurrentUser`` (or claims, or scopes) needs a
      token, refused by FastAPI with ``401 {"detail": {...}}``; ``OptionalUser`` alone takes one
      optionally (``security: [{"HTTPBearer": []}, {}]``).
    - ``require_scopes`` routes: ``403 {"detail": {"error": "insufficient_scope", ...}}``.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        paths = schema.setdefault("paths", {})
        for route in app.routes:
            if isinstance(route, APIRoute) and route.include_in_schema and route.path_format in paths:
                _document_route(paths[route.path_format], route, auth)
        paths.update(_auth_paths(auth.settings.prefix, auth.settings.cookie_name))
        if jwk_set(auth.access.key_ring) is not None:  # with a shared secret only, nothing to publish
            paths.update(_jwks_path(auth.settings.prefix))
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(_SCHEMAS)
        components.setdefault("securitySchemes", {}).setdefault(
            "HTTPBearer",
            {"type": "http", "scheme": "bearer", "description": _BEARER_DESCRIPTION},
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def _document_route(path_item: dict[str, Any], route: APIRoute, auth: TokenAuth) -> None:
    """Adds to the operations of one of the app's routes the security and answers of the middleware
    and of this module's dependencies."""
    settings = auth.settings
    calls = set(_dependency_calls(route.dependant))
    scopes = [_SCOPE_CHECKS[call] for call in calls if call in _SCOPE_CHECKS]
    excluded = settings.is_excluded(route.path_format)
    below_prefix = route.path_format.startswith(settings.prefix + "/")
    for method in route.methods or ():
        operation = path_item.get(method.lower())
        if not isinstance(operation, dict):
            continue
        responses = operation.setdefault("responses", {})
        if not excluded:
            # The middleware refuses the request before FastAPI runs, whatever the dependencies say.
            operation["security"] = [{"HTTPBearer": []}]
            _add_response(responses, "400", _MALFORMED_AUTHORIZATION, _ref_schema("AuthError"))
            _add_response(
                responses, "401", _UNAUTHORIZED, _ref_schema("Unauthorized"), headers=_CHALLENGE_HEADER
            )
        elif current_user in calls:
            operation["security"] = [{"HTTPBearer": []}]
            _add_response(
                responses,
                "401",
                "invalid_token: an access token is required (refused by the dependency)",
                _ref_schema("AuthErrorDetail"),
                headers=_CHALLENGE_HEADER,
            )
        elif optional_user in calls:
            operation["security"] = [{"HTTPBearer": []}, {}]
        if scopes:
            _add_response(
                responses,
                "403",
                f"insufficient_scope: the token lacks a scope of {' / '.join(sorted(scopes))}",
                _ref_schema("AuthErrorDetail"),
                headers=_CHALLENGE_HEADER,
            )
        if below_prefix and method.lower() in _UNSAFE_METHODS:
            _add_response(responses, "403", _CROSS_SITE, _ref_schema("AuthError"))


def _add_response(
    responses: dict[str, Any],
    status: str,
    description: str,
    schema: dict[str, Any],
    *,
    headers: dict[str, Any] | None = None,
) -> None:
    """Documents one more answer with ``status``: added, or as an alternative to the one there."""
    existing = responses.get(status)
    if existing is None:
        answer: dict[str, Any] = {"description": description, **_json(schema)}
        if headers:
            answer["headers"] = headers
        responses[status] = answer
        return
    before = existing.get("description")
    existing["description"] = f"{before}; or {description}" if before else description
    json_content = existing.get("content", {}).get("application/json")
    known = json_content.get("schema") if isinstance(json_content, dict) else None
    # A body the app left undescribed ({} or none) stays so: it may be anything.
    if known and known != schema:
        json_content["schema"] = {"anyOf": [known, schema]}
    for name, header in (headers or {}).items():
        # Optional: the answer documented before may come without it.
        existing.setdefault("headers", {}).setdefault(name, {**header, "required": False})


def _ref_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return _json(_ref_schema(name))


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = {"description": description, **_ref("AuthError")}
    if headers:
        answer["headers"] = headers
    return answer


_MALFORMED_AUTHORIZATION = (
    "invalid_request: a malformed Authorization header (two of them, or Bearer without a token), "
    "or a token in the query string"
)
_UNAUTHORIZED = (
    "no access token (the body has only error_description), or an invalid or expired one "
    "(error: invalid_token)"
)
_CROSS_SITE = "cross_site_request: a request from another site's page"
_CHALLENGE_HEADER: dict[str, Any] = {
    "WWW-Authenticate": {
        "description": "the Bearer challenge (RFC 6750)",
        "required": True,
        "schema": {"type": "string"},
    }
}
_FORM = "application/x-www-form-urlencoded"
_RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {"description": "seconds", "required": True, "schema": {"type": "string"}}
}

_REFRESH_TOKEN_PROPERTY: dict[str, Any] = {
    "type": ["string", "null"],
    "minLength": 1,
    "description": "or send the refresh cookie (null counts as absent); both at once must be the same token",
}

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
        "properties": {
            "grant_type": {"type": "string", "enum": ["refresh_token"], "description": "optional in JSON"},
            "refresh_token": _REFRESH_TOKEN_PROPERTY,
        },
    },
    "LogoutRequest": {
        "type": "object",
        "properties": {"refresh_token": _REFRESH_TOKEN_PROPERTY},
    },
    "RefreshForm": {
        "type": "object",
        "description": "RFC 6749 section 6; other fields (client_id, client_secret, scope) are ignored",
        "required": ["grant_type", "refresh_token"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["refresh_token"]},
            "refresh_token": {"type": "string", "minLength": 1},
            "client_id": {"type": "string"},
            "scope": {"type": "string"},
        },
    },
    "RevocationRequest": {
        "type": "object",
        "description": "RFC 7009 section 2.1, as a form or as JSON",
        "required": ["token"],
        "properties": {
            "token": {"type": "string", "minLength": 1, "description": "a refresh or an access token"},
            "token_type_hint": {"type": "string", "description": "accepted, not needed"},
        },
    },
    "AuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
    "Unauthorized": {
        "type": "object",
        "description": "the middleware's 401: without a token the body has only error_description",
        "required": ["error_description"],
        "properties": {
            "error": {"type": "string", "enum": ["invalid_token"], "description": "absent without a token"},
            "error_description": {"type": "string"},
        },
    },
    "AuthErrorDetail": {
        "type": "object",
        "description": "a refusal by a dependency of starlette_refresh.fastapi, in FastAPI's error shape",
        "required": ["detail"],
        "properties": {"detail": {"$ref": "#/components/schemas/AuthError"}},
    },
    "JwkSet": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Jwk"}}},
    },
    "Jwk": {
        "type": "object",
        "description": "a public key (RFC 7517; members of RFC 7518 section 6 and RFC 8037 section 2)",
        "required": ["kty", "alg", "use"],
        "properties": {
            "kty": {"type": "string", "enum": ["RSA", "EC", "OKP"]},
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "use": {"type": "string", "enum": ["sig"]},
            "n": {"type": "string"},
            "e": {"type": "string"},
            "crv": {"type": "string"},
            "x": {"type": "string"},
            "y": {"type": "string"},
        },
        "additionalProperties": False,
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
    unavailable = _error(
        "temporarily_unavailable: the session store is unavailable; retry after Retry-After seconds",
        _RETRY_AFTER_HEADER,
    )
    cross_site = _error(_CROSS_SITE)
    malformed = _error(_MALFORMED_AUTHORIZATION)
    unauthorized = {"description": _UNAUTHORIZED, **_ref("Unauthorized"), "headers": _CHALLENGE_HEADER}
    body = {"required": False, **_ref("LogoutRequest")}
    refresh_body = {
        "required": False,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RefreshRequest"}},
            _FORM: {"schema": {"$ref": "#/components/schemas/RefreshForm"}},
        },
    }
    refresh_cookie = {
        "name": cookie,
        "in": "cookie",
        "required": False,
        "description": "the refresh token (HttpOnly; an empty one counts as absent), or send it in the body",
        "schema": {"type": "string"},
    }
    return {
        f"{prefix}/refresh": {
            "post": {
                "tags": ["auth"],
                "summary": "Rotate the refresh token and get a new access token",
                "description": (
                    f"Send the refresh token in the `{cookie}` cookie or in the body (one of them is "
                    "needed; both must be the same token); the new one comes back the same way. The "
                    "previous token within the grace window gets the same answer again; any older one "
                    "revokes the session."
                ),
                "parameters": [refresh_cookie],
                "requestBody": refresh_body,
                "responses": {
                    "200": {"description": "rotated", **_ref("TokenAnswer")},
                    "400": _error(
                        "invalid_grant (RFC 6749 section 5.2): an unknown, expired, revoked or reused "
                        "token; unsupported_grant_type: a grant_type other than refresh_token; "
                        "invalid_request: no token, the cookie and the body disagree, a malformed body, "
                        "or a token in the query string"
                    ),
                    "403": cross_site,
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/logout": {
            "post": {
                "tags": ["auth"],
                "summary": "End this session (idempotent)",
                "description": (
                    f"Names the session by the refresh token (the `{cookie}` cookie or the body; both "
                    "must be the same token), or else by the access token. Without either it ends nothing."
                ),
                "security": [{"HTTPBearer": []}, {}],
                "parameters": [refresh_cookie],
                "requestBody": body,
                "responses": {
                    "204": {"description": "ended"},
                    "400": _error(
                        "invalid_request: the cookie and the body disagree, a malformed body, or a token "
                        "in the query string"
                    ),
                    "403": cross_site,
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/revoke": {
            "post": {
                "tags": ["auth"],
                "summary": "Revoke a refresh or access token (RFC 7009): its session ends",
                "description": (
                    "Answers 200 whether or not the token was known, valid or already revoked, as RFC "
                    "7009 section 2.2 says."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/RevocationRequest"}},
                        _FORM: {"schema": {"$ref": "#/components/schemas/RevocationRequest"}},
                    },
                },
                "responses": {
                    "200": {"description": "revoked, or nothing to revoke"},
                    "400": _error("invalid_request: no token, or a malformed body"),
                    "403": cross_site,
                    "503": unavailable,
                },
            }
        },
        f"{prefix}/logout-all": {
            "post": {
                "tags": ["auth"],
                "summary": "End every session of the token's subject",
                "security": bearer,
                "responses": {
                    "204": {"description": "ended"},
                    "400": malformed,
                    "401": unauthorized,
                    "403": cross_site,
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
                                    "required": ["sessions"],
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
                    "400": malformed,
                    "401": unauthorized,
                    "403": cross_site,
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
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "description": "the id from GET sessions (the sid claim)",
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {
                    "204": {"description": "ended"},
                    "400": malformed,
                    "401": unauthorized,
                    "403": cross_site,
                    "404": _error("not_found: not one of the subject's live sessions"),
                    "503": unavailable,
                },
            }
        },
    }


def _jwks_path(prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}/jwks.json": {
            "get": {
                "tags": ["auth"],
                "summary": "The public keys that verify access tokens (RFC 7517 JWK Set)",
                "description": (
                    "Every key that verifies access tokens, the signing key and verify-only ones; a "
                    "token's kid names its key. Only public members: never a private or symmetric key."
                ),
                "responses": {
                    "200": {
                        "description": "the JWK Set",
                        **_ref("JwkSet"),
                        "headers": {
                            "Cache-Control": {
                                "description": f"public, max-age={JWKS_MAX_AGE}",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "400": _error("invalid_request: a token in the query string"),
                    "403": _error(_CROSS_SITE),
                },
            }
        }
    }
