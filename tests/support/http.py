"""Local HTTP servers for tests: `ScriptedServer` answers each request with the next scripted
`Reply` and records every request it `Received`; `FaultyProxy` passes requests (and websockets)
through to a real server, except those it is told to fail."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list -> JSON, str -> text/plain
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Answers each request with the next scripted `Reply` (200 {} once the script runs out),
    and records what it received."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.received.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                reply = server.replies.popleft() if server.replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, str):
                    payload, content_type = reply.body.encode(), "text/plain"
                else:
                    payload, content_type = json.dumps(reply.body).encode(), "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout tests)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class FaultyProxy:
    """A reverse proxy to `upstream` (http://host:port) that answers `fail(method, path)`
    requests with 503 itself, and tunnels websocket upgrades untouched."""

    def __init__(self, upstream: str, fail: Callable[[str, str], bool]) -> None:
        host, port = upstream.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
        target = (host, int(port))
        self.failed: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if fail(self.command, self.path):
                    proxy.failed.append((self.command, self.path))
                    payload = b'{"exception_message": "Service Unavailable"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                head = [f"{self.command} {self.path} HTTP/1.1"]
                head += [f"{name}: {value}" for name, value in self.headers.items()
                         if name.lower() != "connection" or self._upgrade()]
                if not self._upgrade():
                    head.append("Connection: close")
                upstream_socket = socket.create_connection(target, timeout=60)
                upstream_socket.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                self._pipe(upstream_socket)
                self.close_connection = True

            def _upgrade(self) -> bool:
                return self.headers.get("Upgrade", "").lower() == "websocket"

            def _pipe(self, upstream_socket: socket.socket) -> None:
                """Copy bytes both ways until either side closes."""
                sockets = [self.connection, upstream_socket]
                try:
                    while True:
                        readable, _, _ = select.select(sockets, [], [], 60)
                        if not readable:
                            return
                        for source in readable:
                            data = source.recv(65536)
                            if not data:
                                return
                            (upstream_socket if source is self.connection
                             else self.connection).sendall(data)
                except OSError:
                    return
                finally:
                    upstream_socket.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
