"""Benchmark: sm's S3 PUT path against a raw boto3 `put_object` loop (issue 15).

Both send the same objects with the same headers (`If-None-Match: *`, `ChecksumSHA256` and
its algorithm, `Content-Type`, the `sm-payload-sha256` metadata; no `Expect: 100-continue`
on either side) from the same number of threads, the SHA-256 computed in the thread on both
sides, to an S3 stand-in that runs in a **separate process**: a minimal HTTP/1.1 server that
keeps connections alive, reads each request whole and answers 200 with a version id, at a
few tens of microseconds of CPU per request. moto cannot measure this: it closes every
connection and spends ~7 ms of CPU per request, so a moto-based ratio measures moto.

Rounds alternate (raw, sm, raw, sm, …) so that both sides meet the same machine load; each
side is warmed up first (client built, connections opened, and for sm the first PUT, which
goes through boto3 and teaches the lean path its route). Printed: messages per second (wall)
and CPU per PUT of the benchmark process (the stand-in's CPU is not counted), per round and
as medians, and the ratio of the medians.

    .venv/bin/python scripts/bench_put.py                 # 3,000 PUTs per side, 8 threads, 3 rounds
    .venv/bin/python scripts/bench_put.py --count 1000 --threads 16 --rounds 5

It is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "bench-bucket"
_RESPONSE = (b"HTTP/1.1 200 OK\r\nx-amz-version-id: 3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY\r\n"
             b'ETag: "d41d8cd98f00b204e9800998ecf8427e"\r\nContent-Length: 0\r\n\r\n')


# ----------------------------------------------------------------------------- the stand-in


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One kept-alive connection: read each request (headers, then Content-Length bytes or
    a chunked body) and answer 200."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"expect" and b"100-continue" in value.lower():
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if chunked:
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    await reader.readexactly(size + 2) if size else None
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b""):
                            pass
                        break
            elif length:
                await reader.readexactly(length)
            writer.write(_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve() -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def start_stand_in() -> tuple[subprocess.Popen[str], str]:
    """The S3 stand-in in its own process, and its URL."""
    process = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- the two sides


def objects(count: int, salt: str) -> list[tuple[str, bytes, str]]:
    """`count` (key, gzip body, payload sha256) like the archiver's: ~2.4 KB emails."""
    made = []
    for index in range(count):
        payload = json.dumps({
            "message_id": f"{salt}-{index}", "project_id": "12345", "medium": "email",
            "message_type": "blast", "campaign_id": "77",
            "recipient": {"email": f"user{index}@example.com"},
            "content": {"from": "news@example.com", "to": f"user{index}@example.com",
                        "subject": f"Your weekly digest #{index}",
                        "html": "<p>" + " ".join(f"word{(index * 7 + i) % 997}"
                                                 for i in range(260)) + "</p>"},
            "sent_at": "2026-11-27T17:00:00Z"}, sort_keys=True, separators=(",", ":")).encode()
        key = f"archive/email/12345/{hashlib.sha256(str(index).encode()).hexdigest()[:16]}" \
              f"/77/{salt}-{index}.json.gz"
        made.append((key, gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()))
    return made


def raw_boto3_put(url: str, threads: int) -> tuple[Callable[[tuple[str, bytes, str]], None],
                                                    Callable[[], None]]:
    """A plain boto3 client's `put_object` with sm's headers; the SHA-256 in the thread."""
    import boto3
    from botocore.config import Config
    from botocore.handlers import add_expect_header

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=Config(
        retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=threads,
        s3={"addressing_style": "path"}))
    client.meta.events.unregister("before-call.s3", add_expect_header)  # same headers as sm

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, payload_sha = item
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        client.put_object(Bucket=BUCKET, Key=key, Body=body, IfNoneMatch="*",
                          ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                          ContentType="application/gzip",
                          Metadata={"sm-payload-sha256": payload_sha})

    return put, client.close


def sm_put(url: str, threads: int) -> tuple[Callable[[tuple[str, bytes, str]], None],
                                             Callable[[], None]]:
    """`S3Destination.put`, as the archiver's upload threads call it."""
    from stored_messages_cli.destinations import DestinationOptions
    from stored_messages_cli.destinations.s3 import S3Destination

    destination = S3Destination(f"s3://{BUCKET}/archive/", DestinationOptions(
        endpoint_url=url, allow_insecure_endpoint=True, region="us-east-1",
        max_connections=threads))

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, payload_sha = item
        destination.put(key, body, payload_sha)

    return put, destination.close


def timed_round(put: Callable[[tuple[str, bytes, str]], None],
                items: list[tuple[str, bytes, str]], threads: int) -> tuple[float, float]:
    """(PUTs per second, CPU seconds per PUT of this process) for `items` on `threads`."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, items[:threads * 2]))  # warm: every thread, every connection
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(put, items[threads * 2:]))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = len(items) - threads * 2
    return done / wall, cpu / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="PUTs per side and round")
    parser.add_argument("--threads", type=int, default=8, help="threads on each side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    # Credentials for signing only; nothing from this machine's AWS configuration is read.
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                       "AWS_DEFAULT_REGION": "us-east-1"})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs;"
          f" {args.count} PUTs per side and round, {args.threads} threads, {args.rounds} rounds")
    server, url = start_stand_in()
    results: dict[str, list[tuple[float, float]]] = {"raw boto3 put_object": [],
                                                     "sm S3Destination.put": []}
    try:
        for round_number in range(args.rounds):
            for label, make in (("raw boto3 put_object", raw_boto3_put),
                                ("sm S3Destination.put", sm_put)):
                put, close = make(url, args.threads)
                try:
                    rate, cpu = timed_round(put, objects(args.count, f"r{round_number}"),
                                            args.threads)
                finally:
                    close()
                results[label].append((rate, cpu))
                print(f"  round {round_number + 1}: {label:<22} {rate:8,.0f} PUT/s"
                      f"   {cpu * 1e6:6,.0f} µs CPU per PUT")
    finally:
        server.terminate()
        server.wait()
    medians = {label: (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows))
               for label, rows in results.items()}
    raw_rate, raw_cpu = medians["raw boto3 put_object"]
    sm_rate, sm_cpu = medians["sm S3Destination.put"]
    print(f"raw boto3 put_object   {raw_rate:8,.0f} PUT/s   {raw_cpu * 1e6:6,.0f} µs CPU per PUT"
          " (median of rounds)")
    print(f"sm S3Destination.put   {sm_rate:8,.0f} PUT/s   {sm_cpu * 1e6:6,.0f} µs CPU per PUT"
          " (median of rounds)")
    print(f"ratio sm / raw boto3   {sm_rate / raw_rate:.2f}x throughput"
          f"   {raw_cpu / sm_cpu:.2f}x less CPU per PUT   (target ≥ 2x throughput)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
