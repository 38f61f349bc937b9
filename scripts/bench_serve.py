"""`scripts/bench.py --serve`: `sm serve` beside `sm ingest` (docs/performance.md).

Two figures, each over fresh homes, rounds alternating:

- JSON Lines batches of 1,000 realistic emails POSTed over the Unix socket, one keep-alive
  connection: messages per CPU-second of the `sm serve` process (its CPU from /proc while the
  batches go in; start-up excluded) against `sm --json ingest FILE` of the same lines (the
  whole command's CPU, and the same less the CPU of `sm ingest` of an empty file, its
  start-up): target ≥ 0.8×.
- single-message POSTs from 8 keep-alive clients (threads with pre-built requests, so the
  clients' CPU stays small) over loopback TCP with the bearer token, and over the Unix
  socket: messages a second, target ≥ 2,000.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789abcdef0123"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["SM_HOME"] = str(home)
    return env


def _sm(home: Path, *args: str) -> float:
    """CPU seconds of one whole `sm ARGS…` command."""
    before = _children_cpu()
    subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", *args],
                   env=_env(home), check=True, stdout=subprocess.DEVNULL)
    return _children_cpu() - before


class Server:
    """`sm serve` as its own process, on a Unix socket and loopback TCP."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, mode=0o700)
        self.socket_path = home / "s.sock"
        token_file = home / "token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stored_messages_cli.cli.app", "serve", "--socket",
             str(self.socket_path), "--listen", f"127.0.0.1:{self.port}", "--token-file",
             str(token_file)], env=_env(home), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.unix() as probe:
                    _request(probe, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def unix(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket_path))
        return sock

    def tcp(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def cpu(self) -> float:
        return _process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _post(body: bytes, content_type: str, token: str | None = None) -> bytes:
    """A whole POST /v1/messages request, ready to send."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v1/messages HTTP/1.1\r\nHost: sm\r\nContent-Type: {content_type}\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n").encode() + body


def _request(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send one request on a keep-alive socket; (status, body) of its answer."""
    sock.sendall(request)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest


def batches_round(work: Path, name: str, lines: list[bytes], batch: int = 1000
                  ) -> dict[str, float]:
    """One round of each: `sm serve` fed batches, `sm ingest` of the same file."""
    messages = len(lines)
    home = work / f"{name}-serve"
    server = Server(home)
    try:
        with server.unix() as sock:
            requests = [_post(b"".join(lines[i:i + batch]), "application/x-ndjson")
                        for i in range(0, messages, batch)]
            cpu_before, started = server.cpu(), time.perf_counter()
            for request in requests:
                status, answer = _request(sock, request)
                assert status == 202 and json.loads(answer)["accepted"] == batch, answer
            wall, cpu = time.perf_counter() - started, server.cpu() - cpu_before
    finally:
        server.stop()
    source = work / f"{name}.jsonl"
    source.write_bytes(b"".join(lines))
    empty = work / f"{name}-empty.jsonl"
    empty.write_bytes(b"")
    start_up = _sm(work / f"{name}-empty", "--json", "ingest", str(empty))
    ingest = _sm(work / f"{name}-ingest", "--json", "ingest", str(source))
    return {"serve": messages / cpu, "serve_wall": messages / wall,
            "ingest": messages / ingest, "ingest_less_start": messages / (ingest - start_up)}


def _clients(connect: Callable[[], socket.socket], requests: list[list[bytes]]
             ) -> tuple[float, list[Any]]:
    """Each list of requests sent by its own client on one keep-alive connection, all
    starting together; (seconds until the last answer, answers that were not a 202)."""
    failures: list[Any] = []
    ready = threading.Barrier(len(requests) + 1)

    def client(mine: list[bytes]) -> None:
        with connect() as sock:
            ready.wait()
            for request in mine:
                status, answer = _request(sock, request)
                if status != 202 or b'"accepted":1' not in answer:
                    failures.append((status, answer))

    threads = [threading.Thread(target=client, args=(part,)) for part in requests]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, failures


def singles_round(work: Path, name: str, documents: list[bytes], clients: int = 8
                  ) -> dict[str, float]:
    """Messages a second of single-message POSTs from `clients` keep-alive clients, over
    TCP (with the token) and over the Unix socket, one server."""
    server = Server(work / f"{name}-singles")
    rates: dict[str, float] = {}
    try:
        for transport, connect, token in (("tcp", server.tcp, TOKEN),
                                          ("unix", server.unix, None)):
            share = [documents[i::clients] for i in range(clients)]
            requests = [[_post(d.replace(b'"id-', f'"{transport}-'.encode()),
                               "application/json", token) for d in part] for part in share]
            cpu_before, clients_before = server.cpu(), time.process_time()
            elapsed, failures = _clients(connect, requests)
            cpu = server.cpu() - cpu_before
            rates[f"{transport}_client_us"] = (time.process_time() - clients_before) / len(
                documents) * 1e6
            assert not failures, failures[:3]
            rates[transport] = len(documents) / elapsed
            rates[f"{transport}_cpu_us"] = cpu / len(documents) * 1e6
    finally:
        server.stop()
    return rates


def commit_ms(work: Path, count: int = 50) -> float:
    """Median ms of a one-row WAL + synchronous=FULL transaction on this disk: eight
    clients that each wait for their COMMIT cannot go faster than 8 per COMMIT."""
    conn = sqlite3.connect(work / "commit.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 2400,))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(times) * 1000


def bench_serve(work: Path, rounds: int, scale: float, message: Callable[[int, str], Any],
                row: Callable[[str, str, str, str, str], None]) -> None:
    """Both figures over `rounds` alternating rounds; medians printed with their range."""
    count = int(20_000 * scale)
    singles = int(8_000 * scale)
    results: list[dict[str, float]] = []
    single_rates: list[dict[str, float]] = []
    for number in range(rounds):
        lines = [json.dumps(message(i, f"b{number}")).encode() + b"\n" for i in range(count)]
        if not os.environ.get("SM_BENCH_SINGLES_ONLY"):
            results.append(batches_round(work, f"r{number}", lines))
        documents = [json.dumps(message(i, "id")).encode() for i in range(singles)]
        single_rates.append(singles_round(work, f"r{number}", documents))
        single_rates[-1]["commit_ms"] = commit_ms(work)
        print(f"  round {number + 1}: {results[-1:]} {single_rates[-1]}"
              f" (load {os.getloadavg()[0]:.2f})", flush=True)

    def median(key: str, samples: list[dict[str, float]]) -> float:
        return statistics.median(sample[key] for sample in samples)

    def span(key: str, samples: list[dict[str, float]]) -> str:
        values = [sample[key] for sample in samples]
        return f"{min(values):,.0f}-{max(values):,.0f}"

    if not results:
        results = [{key: float("nan") for key in ("serve", "ingest_less_start", "ingest",
                                                   "serve_wall")}]
    serve, ingest = median("serve", results), median("ingest_less_start", results)
    row(f"sm serve, batches of 1,000 ({count})", f"{serve:,.0f} msg/CPU-s",
        f"{ingest:,.0f}", f"{serve / ingest:.2f}x",
        "≥ 0.8× sm ingest (less its start-up)")
    whole = median("ingest", results)
    row("  vs sm ingest, whole command", "", f"{whole:,.0f}", f"{serve / whole:.2f}x", "")
    row("  serve wall clock", f"{median('serve_wall', results):,.0f} msg/s", "", "",
        f"range {span('serve_wall', results)}")
    for transport in ("tcp", "unix"):
        row(f"sm serve, single POSTs, 8 clients, {transport}",
            f"{median(transport, single_rates):,.0f} msg/s", "-", "-",
            f"≥ 2,000 msg/s (range {span(transport, single_rates)})")
        row("  server CPU per message", f"{median(f'{transport}_cpu_us', single_rates):,.0f}"
            " µs", "", "", f"range {span(f'{transport}_cpu_us', single_rates)}")
        row("  the 8 clients' CPU per message",
            f"{median(f'{transport}_client_us', single_rates):,.0f} µs", "", "",
            f"range {span(f'{transport}_client_us', single_rates)}")
    commit = median("commit_ms", single_rates)
    row("  one durable COMMIT on this disk", f"{commit:.2f} ms", "", "",
        f"8 clients: ≤ {8000 / commit:,.0f} msg/s if nothing else took time")
