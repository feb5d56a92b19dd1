"""A loopback HTTP/1.1 server for crawler tests and benchmarks: routes map a path to a response or an injected fault
(status codes, resets, truncated bodies, slow drips, redirects), and every request is counted per path.

Binds 127.0.0.1 only, on an ephemeral port, in a daemon thread. It is a test fixture, not part of the library.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Route = Callable[[BaseHTTPRequestHandler, int], None]
"""Writes the whole response for one request; the int is how many times this path was requested before."""


@dataclass
class Body:
    """200 (or `status`) with these bytes and headers."""

    data: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def __call__(self, h: BaseHTTPRequestHandler, count: int) -> None:
        h.send_response(self.status)
        h.send_header("Content-Type", self.content_type)
        h.send_header("Content-Length", str(len(self.data)))
        for key, value in self.headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(self.data)


def status(code: int, headers: dict[str, str] | None = None) -> Route:
    return Body(f"status {code}\n".encode(), "text/plain", code, headers or {})


def fail_first(n: int, failure: Route, then: Route) -> Route:
    """`failure` for the first `n` requests of this path, then `then`."""
    return lambda h, count: (failure if count < n else then)(h, count)


def redirect(location: str, code: int = 302) -> Route:
    return status(code, {"Location": location})


def reset(h: BaseHTTPRequestHandler, count: int) -> None:
    """Close the socket with SO_LINGER 0: the client sees a TCP reset instead of a response."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.close_connection = True


def truncated(data: bytes) -> Route:
    """Announce more bytes than are sent, then close the connection."""

    def route(h: BaseHTTPRequestHandler, count: int) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(data) + 10_000))
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.close_connection = True

    return route


def drip(seconds: float, interval: float = 0.05) -> Route:
    """Headers at once, then one byte per `interval` for `seconds`: alive, but slower than any sane read timeout."""

    def route(h: BaseHTTPRequestHandler, count: int) -> None:
        n = int(seconds / interval)
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(n))
        h.end_headers()
        for _ in range(n):
            h.wfile.write(b"\xff")
            h.wfile.flush()
            time.sleep(interval)

    return route


class CrawlServer:
    """Serve `routes` on 127.0.0.1; unknown paths get 404. `requests[path]` counts requests (query included), `log` times them."""

    def __init__(self, routes: dict[str, Route] | None = None, delay: float = 0.0):
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[float, str]] = []  # (time.monotonic(), path) of every request, in arrival order
        self.lock = threading.Lock()
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts
            disable_nagle_algorithm = True  # without it keep-alive clients stall near 500 requests/s

            def do_GET(self) -> None:
                with server.lock:
                    count = server.requests[self.path]
                    server.requests[self.path] += 1
                    server.log.append((time.monotonic(), self.path))
                if server.delay:
                    time.sleep(server.delay)
                route = server.routes.get(self.path, status(404))
                try:
                    route(self, count)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # the client gave up (timeout, too_large): nothing to do

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address) -> None:  # resets and aborts are expected here
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> CrawlServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
