"""The HTTP side: a standard-library threading HTTP server that hands each request to App and
writes its Response, with the security headers on every answer.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from goq_web.app import SECURITY_HEADERS, App, Response


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a burst of browsers opening at once is not refused

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that drops its connection (a closed tab, a preconnect it gave up) is no
        error of ours: say nothing. Anything else is one line, not socketserver's traceback."""
        import sys

        exc = sys.exception()
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        sys.stderr.write(f"goq web: request from {client_address} failed: {exc!r}\n")


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "goq-web"
    sys_version = ""

    def _answer(self) -> None:
        headers = {k: v for k, v in self.headers.items()}
        response = self.server.app.handle(self.command, self.path, headers)
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in {**SECURITY_HEADERS, **response.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        """Quiet: one line per request would drown the terminal."""
