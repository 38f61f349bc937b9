"""Benchmark: what an archive PUT's transport alone costs, urllib3's pool against http.client.

The lean S3 PUT sends on a urllib3 pool (`s3_http.HttpPool`, as issue 25 asks). This sends the
same request (a 1,200-byte body and an archive PUT's headers) to the keep-alive S3 stand-in of
`bench_put.py` (its own process) on one thread, three ways, and prints the process CPU per
request: `HttpPool`'s call (`urlopen` with its options), urllib3's connection alone
(`HTTPConnection.request` + `getresponse`, no pool), and `http.client`'s keep-alive connection.
Rounds alternate the three; the stand-in's CPU is not counted.

    .venv/bin/python scripts/bench_transport.py [--count 3000] [--rounds 3]

It is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import urllib3  # noqa: E402
from bench_put import start_stand_in  # noqa: E402 (scripts/bench_put.py)
from urllib3.util.retry import Retry  # noqa: E402

NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server, url = start_stand_in()
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        body = os.urandom(1200)
        headers = {"Content-Type": "application/gzip", "If-None-Match": "*",
                   "x-amz-checksum-sha256": "x" * 44, "x-amz-meta-sm-payload-sha256": "y" * 64,
                   "x-amz-date": "20261207T000000Z", "Authorization": "AWS4 " + "z" * 180,
                   "Host": f"{host}:{port}", "Content-Length": str(len(body))}
        pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), maxsize=8,
                                   socket_options=[NO_DELAY]).connection_from_host(
                                       host, port, "http")

        def pooled() -> None:  # as s3_http.HttpPool.send calls it
            raw = pool.urlopen(method="PUT", url="/bench-bucket/k", body=body, headers=headers,
                               retries=Retry(False), assert_same_host=False, redirect=False,
                               preload_content=False, decode_content=False, chunked=False,
                               enforce_content_length=False)
            raw.read()
            raw.release_conn()

        conn = urllib3.connection.HTTPConnection(host, port, socket_options=[NO_DELAY],
                                                 timeout=30)

        def connection() -> None:
            conn.request("PUT", "/bench-bucket/k", body=body, headers=headers, chunked=False,
                         preload_content=False, decode_content=False,
                         enforce_content_length=False)
            conn.getresponse().read()

        plain = http.client.HTTPConnection(host, port, timeout=30)
        plain.connect()
        assert plain.sock is not None
        plain.sock.setsockopt(*NO_DELAY)

        def standard() -> None:
            plain.request("PUT", "/bench-bucket/k", body=body, headers=headers)
            plain.getresponse().read()

        sides: list[tuple[str, Callable[[], None]]] = [
            ("urllib3 pool (HttpPool's urlopen)", pooled),
            ("urllib3 connection, no pool", connection), ("http.client", standard)]
        cpu: dict[str, list[float]] = {name: [] for name, _ in sides}
        print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for round_ in range(args.rounds):
            for name, send in sides[round_ % 3:] + sides[:round_ % 3]:
                for _ in range(100):  # warm
                    send()
                started = time.process_time()
                for _ in range(args.count):
                    send()
                cpu[name].append((time.process_time() - started) / args.count * 1e6)
        base = statistics.median(cpu["http.client"])
        for name, samples in cpu.items():
            print(f"  {name:<36} {statistics.median(samples):7.1f} µs CPU a request"
                  f" ({statistics.median(samples) / base:.2f}x http.client; rounds "
                  + ", ".join(f"{v:.0f}" for v in samples) + ")")
        print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
