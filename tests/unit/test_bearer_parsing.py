"""The one Authorization parser reads raw ASGI headers; it must agree with RFC 6750's grammar.

The reference below is written from the RFC (``Bearer`` in any case, one space, a token without
spaces; RFC 9110 allows blanks around a field value), independently of the parser's own code."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_refresh import InvalidRequest
from starlette_refresh.web import authorization_values, bearer_token

VALUES = st.one_of(
    st.sampled_from(
        ["Bearer abc.def.ghi", "bearer x", "BEARER  x ", "Bearer", "Bearer ", "Basic dXNlcg==", " Bearer a b"]
    ),
    st.text(alphabet=" \tBearBEARbasic.x-_=", max_size=20),
)


def scope_bearer_token(scope: dict[str, object]) -> str | None:
    """What the middleware does with a request's raw headers."""
    return bearer_token(authorization_values(scope))


def reference_bearer_token(scope: dict[str, object]) -> str | None:
    """RFC 6750 section 2.1, read directly: what a request's Authorization headers carry."""
    values = [value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"]  # type: ignore[attr-defined]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("more than one Authorization header")
    field = re.fullmatch(r"(?P<scheme>[^ ]*)(?: (?P<rest>.*))?", values[0].strip(), re.DOTALL)
    assert field is not None
    if field["scheme"].lower() != "bearer":
        return None  # another scheme is not ours to judge
    token = (field["rest"] or "").strip()
    if not token or " " in token:
        raise InvalidRequest("malformed Authorization header; expected 'Bearer <token>'")
    return token


NAMES = st.sampled_from([b"authorization", b"x-authorization", b"host"])


def outcome(parse: object, scope: dict[str, object]) -> object:
    try:
        return parse(scope)  # type: ignore[operator]
    except InvalidRequest as error:
        return ("invalid", error.description)


@settings(max_examples=400, deadline=None)
@given(headers=st.lists(st.tuples(NAMES, VALUES.map(lambda v: v.encode("latin-1"))), max_size=4))
def test_raw_scope_parsing_agrees_with_the_rfc(headers: list[tuple[bytes, bytes]]) -> None:
    scope = {"type": "http", "headers": headers}

    assert outcome(scope_bearer_token, scope) == outcome(reference_bearer_token, scope)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer   abc  ")], "abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([], None),
    ],
)
def test_raw_scope_parsing(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert scope_bearer_token({"headers": headers}) == expected


def test_two_authorization_headers_are_a_bad_request() -> None:
    with pytest.raises(InvalidRequest, match="more than one Authorization header"):
        scope_bearer_token({"headers": [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]})
