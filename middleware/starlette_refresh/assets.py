"""The browser modules, served by the app that issues the tokens.

The wheel ships the refresh manager (``refresh-manager.js``), the WebSocket module built on it
(``refresh-socket.js``) and their TypeScript declarations inside the package
(``starlette_refresh/static/``). In a development checkout installed in editable mode they are found
in the repository's ``static/`` folder instead. :class:`ManagerFiles` serves those files and nothing
else, so the demo's assets and the tests next to them never become public.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from .errors import ConfigurationError

#: The files a page may fetch, with the media types browsers and editors expect for them.
MANAGER_FILES = {
    "refresh-manager.js": "text/javascript; charset=utf-8",
    "refresh-manager.d.ts": "application/typescript; charset=utf-8",
    "refresh-socket.js": "text/javascript; charset=utf-8",
    "refresh-socket.d.ts": "application/typescript; charset=utf-8",
}


def manager_directory() -> Path:
    """The folder holding the browser modules' files; ConfigurationError when any is missing."""
    package = Path(__file__).resolve().parent
    for folder in (package / "static", package.parents[1] / "static"):
        if all((folder / name).is_file() for name in MANAGER_FILES):
            return folder
    raise ConfigurationError(
        f"the browser modules' files ({', '.join(MANAGER_FILES)}) are missing from this "
        f"installation of starlette-refresh ({package}); reinstall the package"
    )


class ManagerFiles(StaticFiles):
    """``StaticFiles`` restricted to :data:`MANAGER_FILES`, with their media types. Mount it anywhere."""

    def __init__(self) -> None:
        super().__init__(directory=manager_directory())

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in MANAGER_FILES:
            return "", None
        return super().lookup_path(path)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MANAGER_FILES.get(os.path.basename(full_path))
        if media_type is not None:
            response.headers["content-type"] = media_type
        return response
