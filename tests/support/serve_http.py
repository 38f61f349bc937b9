"""Talking to a real `sm serve` with the standard library: http.client over TCP, and a small
http.client subclass over the Unix socket; starting the server as its own process or, for
tests that must reach into its spool (a full disk), on a thread of the test's process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN = "t0ken-for-tests-0123456789abcdef"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (keep-alive like any HTTPConnection)."""

    def __init__(self, path: str | Path, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | str = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON document, headers) of one request on `conn` (kept alive)."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    assert response.getheader("content-type", "").startswith("application/json"), raw
    return response.status, json.loads(raw), {k.lower(): v for k, v in response.getheaders()}


def post(conn: http.client.HTTPConnection, path: str, documents: list[Any] | Any, *,
         token: str | None = None, lines: bool | None = None
         ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST one document, or a list of them as JSON Lines."""
    as_lines = isinstance(documents, list) if lines is None else lines
    if as_lines:
        body = "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in documents)
        content_type = "application/x-ndjson"
    else:
        body = documents if isinstance(documents, str) else json.dumps(documents)
        content_type = "application/json"
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return call(conn, "POST", path, body.encode(), headers)


def short_dir() -> Path:
    """A private folder with a short path (a Unix socket path holds at most 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="sm-serve-", dir="/tmp"))


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an `sm serve` child process on `home`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SM_") and k not in ("LISTEN_PID", "LISTEN_FDS")}
    env.update(SM_HOME=str(home), **extra)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """`sm --log-format json serve ARGS…` as its own process."""

    def __init__(self, home: Path, *args: str, log: Path, **env: str) -> None:
        self.home = home
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stored_messages_cli.cli.app", "--log-format", "json",
             "serve", *args], env=serve_env(home, **env), stdout=subprocess.PIPE,
            stderr=log.open("wb"))

    def wait_ready(self, connect: Any, timeout: float = 30) -> None:
        """Until `GET /healthz` answers 200 on `connect()`'s connection."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"sm serve exited {self.process.returncode}:"
                                     f" {self.log.read_text()}")
            try:
                conn = connect()
                status, _, _ = call(conn, "GET", "/healthz")
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"sm serve did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal it and wait; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@contextmanager
def server_thread(app: Any) -> Iterator[int]:
    """`app` on uvicorn (as `sm serve` runs it) on a thread, on a loopback port; the port."""
    from stored_messages_cli.serve.listen import tcp_listener
    from stored_messages_cli.serve.server import make_server

    listener = tcp_listener("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener.sock]},
                              daemon=True)
    thread.start()
    port = int(listener.sock.getsockname()[1])
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
