"""Pages of another origin for the browser tests: a hostile site, a sibling subdomain."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.processes import free_port


@contextmanager
def serving(page_at: Callable[[str], str]) -> Iterator[int]:
    """Serves ``page_at(path)`` (the path without its query) as HTML to every GET, from 127.0.0.1 on
    a free port, which it yields; a browser may reach it under any name that resolves there."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_at(self.path.split("?")[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
