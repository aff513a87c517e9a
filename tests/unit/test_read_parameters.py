"""Reading an endpoint's parameters from the ASGI body messages (:func:`.web.read_parameters`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from starlette_refresh.errors import InvalidRequest
from starlette_refresh.web import read_parameters

JSON = [(b"content-type", b"application/json")]


def read(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]], limit: int = 100) -> Any:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    return asyncio.run(read_parameters(request, limit))


def chunk(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_a_body_in_several_messages_is_read_whole() -> None:
    messages = [chunk(b'{"refresh_', True), chunk(b"", True), chunk(b'token":"t"}', False)]
    assert read(messages, JSON) == ({"refresh_token": "t"}, False)


def test_no_body_is_no_parameters() -> None:
    assert read([{"type": "http.request"}], []) == ({}, False)


def test_a_client_that_leaves_mid_body_is_a_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        read([chunk(b'{"refresh_', True), {"type": "http.disconnect"}], JSON)


def test_a_streamed_body_past_the_limit_is_refused_before_the_rest_is_read() -> None:
    messages = [chunk(b"x" * 60, True), chunk(b"x" * 60, True)]  # no last message: never asked for
    with pytest.raises(InvalidRequest, match="larger than 100 bytes"):
        read(messages, JSON)
