"""The starlette-refresh demo: a login page and a live dashboard on top of :class:`TokenAuth`.

Run it with ``python -m demo_app``; without ``REDIS_URL`` it starts its own redis-server (append-only
persistence under ``DEMO_DATA_DIR``). ``demo_app.app:create_app`` is the ASGI app factory.
"""

from .settings import DemoSettings, SettingsError, load_settings

__all__ = ["DemoSettings", "SettingsError", "load_settings"]
