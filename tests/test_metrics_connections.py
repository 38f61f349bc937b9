"""The metrics/health endpoint holds at most 64 connections and closes one that stays silent
past its read timeout (SPEC 9.2): idle clients can never take the file descriptors uploads
need, and /healthz still answers. Real sockets on loopback."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stored_messages_cli import Spool
from stored_messages_cli.ops.metrics import (
    MAX_CONNECTIONS,
    DaemonMetrics,
    Liveness,
    MetricsServer,
    parse_metrics_addr,
)
from tests.support.daemon import PROJECT, http_get, wait_for


def held_connections(port: int) -> int:
    """Connections to `port` that this process holds open (the server's accepted sockets)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])  # 01: ESTABLISHED, seen from the server's side
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    started: list[MetricsServer] = []
    with Spool(tmp_path / "spool.db") as spool:
        metrics = DaemonMetrics(spool.path, {PROJECT: f"file://{tmp_path}/a/"}, "test",
                                Liveness(0.05, floor=600))

        def start(read_timeout: float) -> MetricsServer:
            server = MetricsServer(metrics, "127.0.0.1", 0, read_timeout=read_timeout).start()
            started.append(server)
            return server

        yield start
        for server in started:
            server.stop()
        metrics.close()


def test_idle_connections_beyond_the_cap_wait_and_healthz_still_answers(serve) -> None:
    server = serve(read_timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
            for _ in range(MAX_CONNECTIONS + 16)]
    try:
        wait_for(lambda: held_connections(server.port) == MAX_CONNECTIONS, timeout=10,
                 what=f"{MAX_CONNECTIONS} connections held")
        time.sleep(0.3)  # the other 16 are not taken while the cap is reached
        assert held_connections(server.port) == MAX_CONNECTIONS
        started = time.monotonic()
        assert http_get(server.url + "/healthz") == (200, "ok\n")
        assert time.monotonic() - started < 5  # the silent ones were cut after 1 s
        assert held_connections(server.port) <= MAX_CONNECTIONS
    finally:
        for connection in idle:
            connection.close()


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x"])
def test_a_silent_connection_is_closed_after_the_read_timeout(serve, sent: bytes) -> None:
    server = serve(read_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(sent)
        started = time.monotonic()
        assert connection.recv(1024) == b""  # closed by the server, no answer
        elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 3
    wait_for(lambda: held_connections(server.port) == 0, timeout=5, what="connection released")
    assert http_get(server.url + "/healthz") == (200, "ok\n")


def test_the_kubernetes_example_binds_the_pod_ip_not_every_interface() -> None:
    import yaml  # only this test reads YAML

    manifest = yaml.safe_load(
        (Path(__file__).parents[1] / "contrib/container/kubernetes.yaml").read_text())
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    addr = env["SM_METRICS_ADDR"]["value"]
    # Kubernetes expands $(POD_IP) from the variable defined before it
    assert list(env).index("POD_IP") < list(env).index("SM_METRICS_ADDR")
    assert parse_metrics_addr(addr.replace("$(POD_IP)", "10.1.2.3")) == ("10.1.2.3", 9464)


def test_a_client_trickling_its_request_is_cut_at_the_read_timeout(serve) -> None:
    server = serve(read_timeout=0.5)
    trickle = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        with pytest.raises(OSError):  # the server cut the connection: a send fails
            for byte in trickle:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)  # each read waits far less than the timeout
    assert time.monotonic() - started < 3  # all 200 bytes would take 10 s
    wait_for(lambda: held_connections(server.port) == 0, timeout=5, what="connection released")
    assert http_get(server.url + "/healthz") == (200, "ok\n")
