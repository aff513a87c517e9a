"""``python -m demo_app``: runs the demo with uvicorn, and its own redis-server when REDIS_URL is unset.

Ctrl-C (SIGINT) or SIGTERM stops uvicorn first (it finishes the requests in flight), then the embedded
redis-server (SIGTERM: it writes its append-only file), so a restart keeps everyone logged in.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

import uvicorn

from .embedded_redis import EmbeddedRedis, EmbeddedRedisError
from .settings import DEMO_EMAIL, DEMO_PASSWORD, SettingsError, ensure_data_dir, load_settings

logger = logging.getLogger("demo_app")

EXIT_CONFIG = 2


class _StopRequested(BaseException):
    """Like KeyboardInterrupt: raised by our signal handler, so a stop unwinds through ``finally``."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signum)


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    print("starlette-refresh demo: still stopping, please wait...", file=sys.stderr, flush=True)


def main() -> int:
    """Runs the demo until Ctrl-C or SIGTERM; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s [%(process)d] %(name)s: %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"starlette-refresh demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    # Until uvicorn installs its own handlers (and after it restores ours and re-raises the signal
    # it caught), a stop request raises _StopRequested, so the finally block below always runs.
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    embedded: EmbeddedRedis | None = None
    try:
        if settings.redis_url is None:
            ensure_data_dir(settings.data_dir)
            embedded = EmbeddedRedis(
                settings.data_dir / "redis",
                port=settings.redis_port,
                log_path=settings.data_dir / "redis.log",
            )
            embedded.start()
            # The workers build the app from the environment: hand them the embedded server's URL.
            os.environ["REDIS_URL"] = embedded.url
            print(
                f"starlette-refresh demo: embedded redis-server at {embedded.url} "
                f"(data in {embedded.data_dir}, log {embedded.log_path})",
                flush=True,
            )
        # Workers read the same data folder (and its jwt-secret), whatever their working directory.
        os.environ["DEMO_DATA_DIR"] = str(settings.data_dir)
        print(
            f"starlette-refresh demo: open {settings.public_url}  (user {DEMO_EMAIL} / {DEMO_PASSWORD})",
            flush=True,
        )
        uvicorn.run(
            "demo_app.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.web_concurrency,
            log_level="info",
            timeout_graceful_shutdown=5,
        )
    except _StopRequested:
        pass
    except (EmbeddedRedisError, SettingsError) as exc:
        print(f"starlette-refresh demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, _still_stopping)
        signal.signal(signal.SIGTERM, _still_stopping)
        if embedded is not None:
            embedded.stop()
    print("starlette-refresh demo: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
