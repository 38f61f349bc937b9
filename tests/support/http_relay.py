"""The HTTP relay both test proxies build on: read a request, pass it upstream unchanged."""

from __future__ import annotations

import http.client
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any


class RelayHandler(BaseHTTPRequestHandler):
    """A keep-alive handler that can read a request body and forward the request verbatim."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle holds the body ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean

    def _body(self) -> bytes:
        """The raw request body (chunked bodies are kept chunked, trailers included)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline()
                chunks.append(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers end with an empty line
                        line = self.rfile.readline()
                        chunks.append(line)
                        if line in (b"\r\n", b"\n", b""):
                            return b"".join(chunks)
                chunks.append(self.rfile.read(size + 2))
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _relay(self, upstream: tuple[str, int], body: bytes,
               extra: dict[str, str] | None = None) -> None:
        """Send the request to `upstream` as received and copy the answer back, with the
        headers `extra` added to a successful (2xx) answer."""
        connection = http.client.HTTPConnection(*upstream, timeout=60)
        try:
            connection.putrequest(self.command, self.path, skip_host=True,
                                  skip_accept_encoding=True)
            for name, value in self.headers.items():
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "content-length",
                                        "connection", "date", "server"):
                    self.send_header(name, value)
            if extra and response.status < 300:
                for name, value in extra.items():
                    self.send_header(name, value)
            # A HEAD answer has no body but keeps the object's length (the size of what HEAD
            # describes); a relay that said 0 would lie about every object it fronts.
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            connection.close()
