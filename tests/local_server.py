"""Serve pages over http on a free local port, for tests that need real pages."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A browser that moved on (a test's next navigation) drops its connection mid-answer.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Yield the base url (``http://127.0.0.1:PORT/``) of a server for ``root``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _PagesAndRedirects(BaseHTTPRequestHandler):
    """``/redirect?to=URL`` answers 302 to URL (after ``wait`` seconds, if given); any other
    path is the server's ``render`` of its query (one value per name). Every path asked for goes
    into the server's ``asked``."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.asked.append(self.path)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/redirect":
            time.sleep(float(query.get("wait", 0)))
            self.send_response(302)
            self.send_header("Location", query["to"])
            self.end_headers()
            return
        body = self.server.render(query)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        # Asked of the server each time, as a page that changes is: never from a cache.
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


@contextlib.contextmanager
def serve_pages(render: Callable[[dict[str, str]], bytes]) -> Iterator[ThreadingHTTPServer]:
    """A server on a free local port whose pages ``render`` writes from their query, and which
    redirects ``/redirect?to=URL``; its ``server_port`` and ``asked`` (the paths asked for)."""
    server = _Server(("127.0.0.1", 0), _PagesAndRedirects)
    server.render, server.asked = render, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
