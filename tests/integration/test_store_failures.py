"""Each kind of store failure a real redis-server can produce answers 503, never 401, and heals.

Covered: a paused server (client timeout), a read-only replica (READONLY), a server busy running a
script (BUSY) and a server loading its dataset after a restart (LOADING). Refused connections are in
test_races_and_outages.py. Meanwhile valid access tokens keep working: they need no Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx2
import redis

from harness.processes import AppServer, RedisServer
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory, RedisServerFactory
from tests.support.stored import stored_generation

APP = "tests.apps:app_from_env"


def start_app(app_server_factory: AppServerFactory, server: RedisServer) -> AppServer:
    return app_server_factory(APP, app_env(server, SR_STORE_TIMEOUT="0.5"), factory=True)


def assert_unavailable(app: AppServer, refresh_token: str) -> None:
    started = time.monotonic()
    answer = refresh(app, refresh_token)
    elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "temporarily_unavailable"
    assert answer.headers["retry-after"] == "2"
    assert elapsed < 3, f"a store failure took {elapsed:.1f}s to answer"


def assert_recovers(app: AppServer, refresh_token: str) -> None:
    answer = refresh(app, refresh_token)
    assert answer.status_code == 200, answer.text
    assert me(app, answer.json()["access_token"]).status_code == 200


def test_paused_redis_times_out_into_503(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = start_app(app_server_factory, redis_server)
    issued = login(app)
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        assert_unavailable(app, issued["refresh_token"])
        assert me(app, issued["access_token"]).status_code == 200
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert_recovers(app, issued["refresh_token"])


def test_a_refresh_answered_503_during_a_stall_never_rotates_later(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    """Redis stalls past the timeout and then runs the queued refresh: it must change nothing, or
    the client's retry after the grace window would look like a stolen token's reuse."""
    server = redis_server_factory(extra_args=["--enable-debug-command", "local"])
    app = app_server_factory(APP, app_env(server, SR_STORE_TIMEOUT="0.5", SR_GRACE="1"), factory=True)
    issued = login(app)
    stall = threading.Thread(
        target=lambda: server.client(socket_timeout=10).execute_command("DEBUG", "SLEEP", "1.5")
    )
    stall.start()
    time.sleep(0.1)
    assert_unavailable(app, issued["refresh_token"])
    stall.join()
    # the queued refresh ran late and did nothing
    assert stored_generation(server.client(), issued["refresh_token"]) == 0
    time.sleep(1.2)  # past the 1 s grace window: a late rotation would now make the retry a "reuse"
    assert_recovers(app, issued["refresh_token"])


def test_read_only_replica_answers_503(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    # Redis's default repl-diskless-sync-delay holds each full sync 5 s for more replicas to join;
    # here it is only setup time: the test is about the READONLY answer once the roles are swapped.
    fast_sync = ["--repl-diskless-sync-delay", "0"]
    primary = redis_server_factory(extra_args=fast_sync)
    app = start_app(app_server_factory, primary)
    issued = login(app)
    # Copy the data to a second server, promote it, and demote the app's server to its replica.
    other = redis_server_factory(extra_args=fast_sync)
    other.client().replicaof("127.0.0.1", primary.port)
    wait_for(lambda: other.client().info("replication")["master_link_status"] == "up")
    other.client().replicaof("NO", "ONE")
    primary.client().replicaof("127.0.0.1", other.port)
    wait_for(lambda: primary.client().info("replication")["master_link_status"] == "up")

    assert_unavailable(app, issued["refresh_token"])
    assert me(app, issued["access_token"]).status_code == 200
    primary.client().replicaof("NO", "ONE")
    assert_recovers(app, issued["refresh_token"])


def test_busy_script_answers_503(redis_server: RedisServer, app_server_factory: AppServerFactory) -> None:
    app = start_app(app_server_factory, redis_server)
    issued = login(app)
    redis_server.client().config_set("busy-reply-threshold", 100)
    with busy(redis_server):
        assert_unavailable(app, issued["refresh_token"])
        assert me(app, issued["access_token"]).status_code == 200
    assert_recovers(app, issued["refresh_token"])


def test_loading_redis_answers_503_then_serves(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory(extra_args=["--enable-debug-command", "local"])
    app = start_app(app_server_factory, server)
    issued = login(app)
    server.client().execute_command("DEBUG", "POPULATE", "20000", "filler")
    # POPULATE is not written to the append-only file; a rewrite snapshots it there.
    server.client().bgrewriteaof()
    wait_for(lambda: server.client().info("persistence")["aof_rewrite_in_progress"] == 0)
    wait_for(lambda: server.client().info("persistence")["aof_rewrite_scheduled"] == 0)
    server.stop()
    # Restart by hand with a per-key load delay so loading lasts a few seconds.
    # Answer clients (with LOADING) every 1 KiB loaded instead of every 2 MiB.
    slow_load = ["--key-load-delay", "150", "--loading-process-events-interval-bytes", "1024"]
    loading = subprocess.Popen([*server.argv(), *slow_load])
    try:
        seen_loading = wait_for(lambda: "LOADING" in probe(server), timeout=5)
        assert seen_loading
        assert_unavailable(app, issued["refresh_token"])
        assert me(app, issued["access_token"]).status_code == 200
        wait_for(lambda: probe(server) == "PONG", timeout=30)
        assert_recovers(app, issued["refresh_token"])
    finally:
        loading.terminate()
        loading.wait(10)


def probe(server: RedisServer) -> str:
    try:
        return "PONG" if server.client(socket_timeout=0.5, retry=None).ping() else "?"
    except redis.exceptions.BusyLoadingError:
        return "LOADING"
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return "DOWN"


@contextmanager
def busy(server: RedisServer) -> Iterator[None]:
    """Keeps the server inside an endless Lua script until the block ends (then SCRIPT KILL)."""
    blocker = threading.Thread(target=_run_endless_script, args=(server,), daemon=True)
    blocker.start()
    wait_for(lambda: _is_busy(server))
    try:
        yield
    finally:
        server.client().script_kill()
        blocker.join(10)


def _is_busy(server: RedisServer) -> bool:
    try:
        server.client(socket_timeout=1).ping()
    except redis.exceptions.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _run_endless_script(server: RedisServer) -> None:
    with contextlib.suppress(redis.exceptions.RedisError):  # SCRIPT KILL ends it with an error
        server.client(socket_timeout=30).eval("while true do end", 0)


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def test_health_of_other_requests_is_unaffected(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    """Excluded routes never touch the store, down or not."""
    app = start_app(app_server_factory, redis_server)
    redis_server.kill()
    assert httpx2.get(f"{app.url}/public", timeout=5).json() == {"authenticated": False}
