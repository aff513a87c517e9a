"""Small HTTP helpers for talking to real app processes."""

from __future__ import annotations

from typing import Any

import httpx2

from harness.processes import AppServer, RedisServer


def app_env(redis: RedisServer, **overrides: str) -> dict[str, str]:
    """Environment for ``tests.apps:app_from_env`` pointing at ``redis``."""
    return {"SR_REDIS_URL": redis.url, **overrides}


def login(app: AppServer, subject: str = "42", transport: str = "body") -> dict[str, Any]:
    """Logs in through the app's /login route; returns the JSON body (plus the cookie, if any)."""
    response = httpx2.post(f"{app.url}/login", json={"subject": subject, "transport": transport}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    if transport == "cookie":
        body["cookie"] = response.cookies["refresh_token"]
    return body


def refresh(app: AppServer, refresh_token: str) -> httpx2.Response:
    """A body-transport refresh."""
    return httpx2.post(f"{app.url}/auth/refresh", json={"refresh_token": refresh_token}, timeout=10)


def me(app: AppServer, access_token: str) -> httpx2.Response:
    """Calls the protected route."""
    return httpx2.get(f"{app.url}/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
