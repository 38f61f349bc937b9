"""A recording relay for the lean PUT tests (GCS and Azure): it passes every request on to an
emulator and records it (method, path, headers, body), unless `fault` answers it with a
canned reply, resets its connection, or passes it on and loses the answer. And a token
endpoint (`TokenServer`) for the credentials the lean PUTs refresh."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.http_relay import RelayHandler

LEAN_AGENT = "sm-put"  # in the User-Agent of every request a lean path sends
RESET = "reset"
LOST = "lost"  # passed on to the emulator, answered with a reply that does not read


@dataclass(frozen=True)
class Seen:
    """One request as it crossed the relay, and what the relay did with it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    action: str
    peer: int = 0  # the client's port: one per TCP connection

    @property
    def lean(self) -> bool:
        return LEAN_AGENT in self.headers.get("user-agent", "")

    @property
    def upload(self) -> bool:
        """A GCS upload or an Azure Put Blob."""
        return (self.method == "POST" and self.path.startswith("/upload/")) or (
            self.method == "PUT" and "x-ms-blob-type" in self.headers)


# a decision: None (pass on), RESET, LOST, or a canned (status, body, headers)
Fault = Callable[[Seen], str | tuple[int, bytes, dict[str, str]] | None]


class Relay:
    """Records every request; `fault` may answer one (a status and JSON body) or reset it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seen: list[Seen] = []
        self.fault: Fault | None = None
        self._lock = threading.Lock()
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                probe = Seen(self.command, self.path,
                             {k.lower(): v for k, v in self.headers.items()}, body, "pass")
                decision = relay.fault(probe) if relay.fault is not None else None
                action = ("pass" if decision is None else decision if isinstance(decision, str)
                          else str(decision[0]))
                with relay._lock:
                    relay.seen.append(Seen(probe.method, probe.path, probe.headers, body,
                                           action, self.client_address[1]))
                if decision == RESET:  # SO_LINGER 0: close() sends RST
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                elif decision == LOST:
                    connection = http.client.HTTPConnection(*relay.upstream, timeout=30)
                    try:
                        connection.request(self.command, self.path, body, dict(self.headers))
                        connection.getresponse().read()
                    finally:
                        connection.close()
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif isinstance(decision, tuple):
                    status, payload, headers = decision
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self._relay(relay.upstream, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def uploads(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.upload]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()




class TokenServer:
    """A token endpoint on loopback: each request (GET or POST, its body read) is answered
    200 with the JSON `answer(n, lifetime)` gives for the n-th token, whose lifetime is the
    n-th of `lifetimes` (the last one repeating)."""

    def __init__(self, lifetimes: list[int], answer: Callable[[int, int], dict[str, Any]],
                 path: str) -> None:
        self.lifetimes = lifetimes
        self.issued = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.issued += 1
                lifetime = server.lifetimes[min(server.issued, len(server.lifetimes)) - 1]
                payload = json.dumps(answer(server.issued, lifetime)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
