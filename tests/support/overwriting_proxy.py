"""A relay in front of moto that can start dropping `If-None-Match` at any moment, like a store
(or a proxy in front of it) that stops honouring conditional writes after `sm connect`."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.support.http_relay import RelayHandler


class OverwritingProxy:
    """Forward to moto; while `strip` is set, every PUT loses its create-only condition."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.strip = False
        self.stripped = 0  # conditional writes that lost their condition
        self.puts: list[str] = []  # object keys of every PUT, in order
        self._lock = threading.Lock()
        relay = self

        class Handler(RelayHandler):
            def _handle(self) -> None:
                body = self._body()
                with relay._lock:
                    if self.command == "PUT":
                        path = unquote(urlsplit(self.path).path).lstrip("/")
                        relay.puts.append(path.split("/", 1)[1] if "/" in path else "")
                    if relay.strip and self.headers.get("If-None-Match") is not None:
                        del self.headers["If-None-Match"]
                        relay.stripped += 1
                self._relay(target, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="overwriting-proxy",
                         daemon=True).start()

    def put_keys(self) -> list[str]:
        """The keys PUT so far."""
        with self._lock:
            return list(self.puts)

    def close(self) -> None:
        """Stop relaying."""
        self.server.shutdown()
        self.server.server_close()
