"""Schemathesis, a third-party OpenAPI fuzzer, against examples/fastapi_app.py's schema (issue 14).

In-process over ASGI, on fakeredis, with every check Schemathesis has: its default enables all of
them but ``max_response_time``, which needs a limit and would time a shared CI machine, not the
contract (bench/ measures speed). Its stateless phases (examples, coverage, fuzzing) run over every
operation of ``/openapi.json``, then its stateful phase over the links it infers. Each case carries
the access token of a fresh login, since the fuzzer itself logs out, ends every session and deletes
sessions as it goes; its ``ignored_auth`` check also sends each one without a token and with a bad
one. About 550 stateless cases and 120 stateful steps, some 10 s; the module prints the count
("schemathesis 4.x: N cases run: ..."). The answers it cannot reach at random (a missing scope, a
cross-site request, a store outage, a malformed ``Authorization`` header) go through its checks
below as hand-made cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import schemathesis
from fastapi import Depends, FastAPI
from hypothesis import settings
from schemathesis.python import asgi

from examples.fastapi_app import PUBLIC_PATHS, create_app
from starlette_refresh import TokenAuth
from starlette_refresh.fastapi import CurrentUser, OptionalUser, document_auth_endpoints, require_scopes
from tests.apps import SECRET

#: Hypothesis examples per operation in the fuzzing phase (the coverage phase adds its own cases).
EXAMPLES_PER_OPERATION = 40
#: Scenarios (sequences of linked calls) in the stateful phase.
STATEFUL_SCENARIOS = 15
#: The most calls in one scenario.
MAX_STEPS = 8

ANA = {"email": "ana@example.com", "password": "correct horse"}
COOKIE = "refresh_token"
JSON = "application/json"
POSITIVE_DATA_ACCEPTANCE = schemathesis.checks.positive_data_acceptance


def build_app() -> FastAPI:
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), exclude=PUBLIC_PATHS)
    return create_app(auth)


APP = build_app()
# The schema the app serves at /openapi.json, called in-process. (Not from_asgi, which would start the
# app at collection time; schemathesis.pytest.from_fixture fails on pytest 9.2: no Node._nodeid.)
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
SCHEMA.app = APP


@SCHEMA.auth(refresh_interval=None)  # a fresh login for every case
class FreshLogin:
    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        with asgi.get_client(APP) as client:
            answer = client.post("/login", json=ANA)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


STATEFUL = "stateful: "


@pytest.fixture(scope="module", autouse=True)
def tally(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """Cases run, by operation label (``"stateful: " + label`` in the stateful phase); the totals are
    printed when the module is done."""
    counts: Counter[str] = Counter()
    yield counts
    # Schemathesis keeps an in-process app's lifespan running until the process exits.
    asgi.shutdown_lifespans()
    stateless = {label: n for label, n in counts.items() if not label.startswith(STATEFUL)}
    line = (
        f"schemathesis {schemathesis.__version__}: {counts.total()} cases run: "
        f"{sum(stateless.values())} over {len(stateless)} operations, "
        f"{counts.total() - sum(stateless.values())} in linked sequences"
    )
    if not counts:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


# POST /auth/refresh and /auth/logout take the refresh token from the cookie or the body: one of
# them (refresh) and, when both come, the same token (both). OpenAPI cannot tie a cookie parameter to
# a body property, so a request that breaks this rule is schema-valid and still answered 400
# invalid_request, as the contract says (the schema's descriptions say it in words). And a refresh
# token the fuzzer makes up is schema-valid but unknown: RFC 6749 section 5.2 answers it 400
# invalid_grant. For those requests alone positive_data_acceptance is inapplicable by design; every
# other case of the two operations gets it, and every other check runs on all of them.
TOKEN_ENDPOINTS = {"POST /auth/refresh": True, "POST /auth/logout": False}  # label: a token is required


def refused_by_design(case: schemathesis.Case, response: schemathesis.Response) -> bool:
    """A schema-valid request the contract refuses: it breaks the token rule, or its token is unknown."""
    if breaks_the_refresh_token_rule(case):
        return True
    return response.status_code == 400 and response.json().get("error") == "invalid_grant"


def breaks_the_refresh_token_rule(case: schemathesis.Case) -> bool:
    cookie = (case.cookies or {}).get(COOKIE) or None  # an empty cookie counts as none
    body = case.body.get("refresh_token") if isinstance(case.body, dict) else None  # null: none
    if cookie is not None and body is not None and cookie != body:
        return True
    return TOKEN_ENDPOINTS[case.operation.label] and cookie is None and body is None


def unless(exempt: Callable[[schemathesis.Case, schemathesis.Response], bool], check: Any) -> Any:
    """``check``, but for the cases (and answers) ``exempt`` picks."""

    def narrowed(
        ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
    ) -> bool | None:
        if exempt(case, response):
            return None
        result: bool | None = check(ctx, response, case)
        return result

    narrowed.__name__ = check.__name__
    return narrowed


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None)
def test_every_operation_passes_every_check(case: schemathesis.Case, tally: Counter[str]) -> None:
    tally[case.operation.label] += 1
    if case.operation.label in TOKEN_ENDPOINTS:
        case.call_and_validate(
            excluded_checks=[POSITIVE_DATA_ACCEPTANCE],
            additional_checks=[
                unless(refused_by_design, POSITIVE_DATA_ACCEPTANCE),
            ],
        )
    else:
        case.call_and_validate()


def test_every_operation_was_fuzzed(tally: Counter[str]) -> None:
    """Every operation of the schema got cases (this runs after the test above, in file order)."""
    operations = {result.ok().label for result in SCHEMA.get_all_operations()}
    fuzzed = {label for label in tally if not label.startswith(STATEFUL)}
    if not fuzzed:
        pytest.skip("test_every_operation_passes_every_check did not run")
    assert len(operations) == 12
    assert fuzzed == operations
    assert all(tally[label] > 0 for label in operations)


def test_linked_calls_pass_every_check(tally: Counter[str]) -> None:
    """Schemathesis's stateful phase: sequences along the links it infers (GET /auth/sessions gives
    the ids DELETE /auth/sessions/{session_id} takes), with the checks that need a history."""

    class LinkedCalls(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each scenario starts with no session, so the sessions GET lists depend on the scenario's
            # own steps only: Hypothesis replays a scenario and needs it to draw the same way again.
            with asgi.get_client(APP) as client:
                access = client.post("/login", json=ANA).json()["access_token"]
                ended = client.post("/auth/logout-all", headers={"Authorization": f"Bearer {access}"})
            assert ended.status_code == 204, ended.text

        def step(self, input: Any) -> Any:
            tally[STATEFUL + input.case.operation.label] += 1
            return super().step(input)

    LinkedCalls.run(
        settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=MAX_STEPS, deadline=None)
    )
    assert tally[STATEFUL + "DELETE /auth/sessions/{session_id}"] > 0


# ---------------------------------------------------------------------------------------------
# Answers the fuzzer does not reach at random, through every check all the same
# ---------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log_in(email: str = ANA["email"], password: str = ANA["password"]) -> tuple[str, str]:
    """A new session's access token and refresh token (from its cookie)."""
    with asgi.get_client(APP) as client:
        answer = client.post("/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"], answer.cookies[COOKIE]


def checked(
    path: str, method: str, *, app: FastAPI = APP, excluded: list[Any] | None = None, **parts: Any
) -> schemathesis.Response:
    """Sends one hand-made case and runs every applicable check on its answer (the checks that
    judge generated data, positive or negative, need a generated case and pass it by)."""
    case = SCHEMA[path][method].Case(**parts)
    response: schemathesis.Response = case.call_and_validate(app=app, excluded_checks=excluded)
    return response


def test_a_malformed_authorization_header_is_the_documented_400() -> None:
    answer = checked("/me", "GET", headers={"Authorization": "Bearer"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_the_two_401_bodies_are_documented() -> None:
    bare = checked("/me", "GET")
    assert (bare.status_code, bare.json()) == (401, {"error_description": "an access token is required"})
    bad = checked("/auth/sessions", "GET", headers=bearer("garbage"))
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_token")


def test_optional_auth_takes_a_bad_token_as_none() -> None:
    answer = checked("/welcome", "GET", headers=bearer("garbage"))
    assert (answer.status_code, answer.json()) == (200, {"hello": "stranger"})


def test_a_missing_scope_is_the_documented_403() -> None:
    bob, _ = log_in("bob@example.com", "battery")
    answer = checked("/notes", "POST", headers=bearer(bob))
    assert (answer.status_code, answer.json()["detail"]["error"]) == (403, "insufficient_scope")


def test_wrong_credentials_are_the_documented_401() -> None:
    answer = checked("/login", "POST", body={"email": ANA["email"], "password": "nope"})
    assert answer.status_code == 401


def test_refresh_by_cookie_and_by_body() -> None:
    _, refresh_token = log_in()
    by_cookie = checked("/auth/refresh", "POST", cookies={COOKIE: refresh_token})
    assert by_cookie.status_code == 200
    assert "refresh_token" not in by_cookie.json()
    _, refresh_token = log_in()
    by_body = checked("/auth/refresh", "POST", body={"refresh_token": refresh_token}, media_type=JSON)
    assert (by_body.status_code, "refresh_token" in by_body.json()) == (200, True)


def test_a_cookie_and_a_body_that_disagree_are_the_documented_400() -> None:
    _, mine = log_in()
    _, other = log_in()
    answer = checked(
        "/auth/refresh", "POST", cookies={COOKIE: mine}, body={"refresh_token": other}, media_type=JSON
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_a_cross_site_request_is_the_documented_403() -> None:
    answer = checked("/auth/refresh", "POST", headers={"Origin": "https://elsewhere.example"})
    assert (answer.status_code, answer.json()["error"]) == (403, "cross_site_request")


@pytest.mark.parametrize("session_id", ["a/b", "a%2Fb", "..%2F..%2Fme"])
def test_a_session_id_with_a_slash_is_the_librarys_404(session_id: str) -> None:
    access, _ = log_in()
    answer = checked(
        "/auth/sessions/{session_id}",
        "DELETE",
        path_parameters={"session_id": session_id},
        headers=bearer(access),
    )
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "error_description": "no such session"}


def test_a_store_outage_is_the_documented_503() -> None:
    server = fakeredis.FakeServer()
    app = create_app(
        TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(server=server), exclude=PUBLIC_PATHS)
    )
    with asgi.get_client(app) as client:
        answer = client.post("/login", json=ANA)
    access, refresh_token = answer.json()["access_token"], answer.cookies[COOKIE]
    server.connected = False
    # not_a_server_error fails every 5xx, and this test makes the outage on purpose.
    outage = {"app": app, "excluded": [schemathesis.checks.not_a_server_error]}
    for answer in (
        checked("/auth/refresh", "POST", cookies={COOKIE: refresh_token}, **outage),
        checked("/auth/sessions", "GET", headers=bearer(access), **outage),
    ):
        assert (answer.status_code, answer.json()["error"]) == (503, "temporarily_unavailable")
        assert answer.headers["retry-after"]


def test_a_blank_body_is_a_malformed_body() -> None:
    """Found by Schemathesis: a body of only whitespace was read as no body (logout answered 204)."""
    with asgi.get_client(APP) as client:
        answer = client.post("/auth/logout", data=b"\x0b", headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_the_library_claims_every_path_below_its_sessions_path() -> None:
    endpoints = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis()).endpoints
    for path in ("/auth/sessions/abc", "/auth/sessions/a/b", "/auth/sessions/../x", "/auth/sessions/ "):
        assert endpoints.handles(path), path
    for path in ("/auth/sessions/", "/auth/sessionsx/a", "/auth/custom/a/b", "/sessions/a"):
        assert not endpoints.handles(path), path


def test_the_schema_follows_exclude_and_the_dependencies() -> None:
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), exclude=["/open"])
    app = FastAPI(middleware=[auth.middleware()])

    @app.get("/open/me")
    async def open_me(user: CurrentUser) -> str:
        return user.identity

    @app.get("/open/hello")
    async def open_hello(user: OptionalUser) -> str:
        return "hi"

    @app.get("/open/plain")
    async def open_plain() -> str:
        return "hi"

    @app.get("/closed", responses={401: {"description": "the app's own"}})
    async def closed() -> str:  # no dependency: the middleware still wants a token
        return "hi"

    @app.get("/closed/scoped", dependencies=[Depends(require_scopes("admin"))])
    async def scoped() -> str:
        return "hi"

    document_auth_endpoints(app, auth)
    paths = app.openapi()["paths"]
    bearer = [{"HTTPBearer": []}]

    open_me_op = paths["/open/me"]["get"]
    assert open_me_op["security"] == bearer
    assert "400" not in open_me_op["responses"]  # the middleware lets any header through here
    assert open_me_op["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuthErrorDetail"
    }
    assert paths["/open/hello"]["get"]["security"] == [*bearer, {}]
    assert "security" not in paths["/open/plain"]["get"]
    assert not {"400", "401"} & set(paths["/open/plain"]["get"]["responses"])

    closed_op = paths["/closed"]["get"]
    assert closed_op["security"] == bearer
    assert closed_op["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuthError"
    }
    assert closed_op["responses"]["401"]["description"].startswith("the app's own; or no access token")
    assert closed_op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is False
    scoped_403 = paths["/closed/scoped"]["get"]["responses"]["403"]
    assert "admin" in scoped_403["description"]
    assert scoped_403["headers"]["WWW-Authenticate"]["required"] is True
