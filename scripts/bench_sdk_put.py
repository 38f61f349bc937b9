"""Benchmark: what the GCS and Azure SDKs cost a PUT, against the same request sent raw.

Issue 25 asks for a lean upload on GCS and Azure "where their SDK's per-call cost dominates
(measure first)". This measures it: `GCSDestination.put` (the multipart upload,
`ifGenerationMatch=0`, CRC32C) and `AzureDestination.put` (Put Blob, `If-None-Match: *`,
Content-MD5, Shared Key signature), each as shipped (the lean path where there is one) and
with the lean path off (every PUT through google-cloud-storage / azure-storage-blob), against
a raw loop that sends the same request (the same method, path, query, headers and body
bytes, the checksum and for Azure the Shared Key signature computed in the thread) on
`http.client` keep-alive connections, one per thread.

Both talk to a stand-in in a **separate process**: a minimal HTTP/1.1 server that keeps
connections alive and answers each upload as the service does (GCS: 200 and the object's
JSON resource, echoing the metadata it was sent; Azure: 201 with the ETag, Content-MD5 and
request id headers), so the figure is the client's CPU, not an emulator's. Each round runs
the three sides (shipped, SDK, raw) in a rotated and alternating order, each side warmed up
first; printed: CPU per PUT of the benchmark process (threads included; the stand-in's CPU
is not counted) and PUTs per second, per round, medians, and their ratios.

    .venv/bin/python scripts/bench_sdk_put.py            # 1,000 PUTs a side, 8 threads, 3 rounds
    .venv/bin/python scripts/bench_sdk_put.py --count 2000 --rounds 5

It is a benchmark, not a test: it asserts nothing but that every PUT was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "bench-bucket"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")  # Azurite's published development key


# ----------------------------------------------------------------------------- the stand-in


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One kept-alive connection: read each request whole and answer it as the service."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            writer.write(_answer(method, target, headers, body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _answer(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    if method == "POST" and target.startswith("/upload/storage/v1/"):  # GCS multipart upload
        boundary = headers["content-type"].split("boundary=", 1)[1].strip('"').encode()
        first = body.split(b"--" + boundary)[1]
        resource = json.loads(first.split(b"\r\n\r\n", 1)[1])
        resource.update({"kind": "storage#object", "bucket": BUCKET, "generation": "1",
                         "metageneration": "1", "id": f"{BUCKET}/{resource['name']}/1"})
        text = json.dumps(resource).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
                b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text)
    if method == "PUT":  # Azure Put Blob
        md5 = headers.get("content-md5", "")
        return ("HTTP/1.1 201 Created\r\nETag: \"0x8D9\"\r\n"
                f"Last-Modified: {formatdate(usegmt=True)}\r\nContent-MD5: {md5}\r\n"
                f"x-ms-request-id: {uuid.uuid4()}\r\nx-ms-version: 2021-08-06\r\n"
                "x-ms-request-server-encrypted: true\r\n"
                f"Date: {formatdate(usegmt=True)}\r\nContent-Length: 0\r\n\r\n").encode()
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def serve(port_file: Path) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_connection, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ----------------------------------------------------------------------------- the two sides


def objects(count: int, prefix: str) -> list[tuple[str, bytes, str]]:
    """`count` gzip objects of the realistic email, with their keys and payload hashes."""
    from bench import message  # scripts/bench.py

    from stored_messages_cli.message import parse_message

    made = []
    for index in range(count):
        msg = parse_message(message(index, prefix))
        made.append((msg.key, msg.object_bytes, msg.payload_sha))
    return made


class _Connections(threading.local):
    conn: http.client.HTTPConnection | None = None


def raw_gcs(port: int) -> Callable[[tuple[str, bytes, str]], None]:
    """The GCS SDK's multipart upload, sent raw: the same query and body parts."""
    import google_crc32c

    local = _Connections()

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, sha = item
        if local.conn is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port)
        crc = base64.b64encode(google_crc32c.Checksum(body).digest()).decode()
        resource = json.dumps({"name": key, "metadata": {"sm-payload-sha256": sha},
                               "contentType": "application/gzip", "crc32c": crc}).encode()
        boundary = "===============" + uuid.uuid4().hex + "=="
        parts = (b"--" + boundary.encode() + b"\r\ncontent-type: application/json; charset=UTF-8"
                 b"\r\n\r\n" + resource + b"\r\n--" + boundary.encode()
                 + b"\r\ncontent-type: application/gzip\r\n\r\n" + body + b"\r\n--"
                 + boundary.encode() + b"--")
        local.conn.request(
            "POST", f"/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart&ifGenerationMatch=0",
            body=parts, headers={"content-type": f'multipart/related; boundary="{boundary}"',
                                 "x-goog-api-client": "bench", "User-Agent": "bench"})
        response = local.conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and answer["generation"] == "1", response.status

    return put


def raw_azure(port: int) -> Callable[[tuple[str, bytes, str]], None]:
    """Azure's Put Blob, sent raw: the same headers, Content-MD5 and Shared Key signature."""
    local = _Connections()
    secret = base64.b64decode(ACCOUNT_KEY)

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, sha = item
        if local.conn is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        path = f"/{ACCOUNT}/{BUCKET}/{quote(key)}"
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-meta-sm_payload_sha256": sha,
                   "x-ms-blob-content-type": "application/gzip",
                   "x-ms-blob-content-md5": md5, "Content-MD5": md5, "If-None-Match": "*",
                   "x-ms-version": "2021-08-06", "x-ms-date": formatdate(usegmt=True),
                   "x-ms-client-request-id": str(uuid.uuid4()),
                   "Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        canonical = "\n".join(f"{name}:{value}" for name, value in sorted(
            (name.lower(), value) for name, value in headers.items()
            if name.lower().startswith("x-ms-")))
        to_sign = "\n".join(["PUT", "", "", str(len(body)), md5, "application/octet-stream",
                             "", "", "", "*", "", "", canonical, f"/{ACCOUNT}{path}"])
        signature = base64.b64encode(hmac.digest(secret, to_sign.encode(), "sha256")).decode()
        headers["Authorization"] = f"SharedKey {ACCOUNT}:{signature}"
        local.conn.request("PUT", path, body=body, headers=headers)
        response = local.conn.getresponse()
        response.read()
        assert response.status == 201, response.status

    return put


Put = Callable[[tuple[str, bytes, str]], None]


def sdk(kind: str, port: int, lean: bool = True) -> tuple[Put, Callable[[], None]]:
    """The destination's own `put` as shipped (`lean`), or with its lean path off (every PUT
    through the SDK), and how to close it."""
    from stored_messages_cli.destinations.base import DestinationOptions

    options = DestinationOptions(allow_insecure_endpoint=True, max_connections=8)
    if kind == "gcs":
        from stored_messages_cli.destinations.gcs import GCSDestination

        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        destination = GCSDestination(f"gs://{BUCKET}/", options)
    else:
        from stored_messages_cli.destinations.azure import AzureDestination

        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")
        destination = AzureDestination(f"az://{BUCKET}/", options)
    if hasattr(destination, "lean_enabled"):
        destination.lean_enabled = lean

    def put(item: tuple[str, bytes, str]) -> None:
        key, body, sha = item
        assert destination.put(key, body, sha).created

    def close() -> None:
        lean = getattr(destination, "lean_put", None)
        if lean is not None and lean.handed_back:  # the figure would not be the lean path's
            raise SystemExit(f"{kind}: {lean.handed_back} PUTs went to the SDK after all")
        destination.close()

    return put, close


def side(put: Callable[[tuple[str, bytes, str]], None], items: list[tuple[str, bytes, str]],
         threads: int) -> tuple[float, float]:
    """(µs of CPU per PUT, PUTs per second) of `put` over `items` on `threads` threads."""
    with ThreadPoolExecutor(threads) as pool:
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(put, items))
        return ((time.process_time() - cpu) / len(items) * 1e6,
                len(items) / (time.perf_counter() - wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return
    port_file = Path(f"/tmp/sm-bench-standin-{os.getpid()}")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        port = int(port_file.read_text())
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average"
              f" {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for kind, raw in (("gcs", raw_gcs(port)), ("azure", raw_azure(port))):
            put, close = sdk(kind, port)
            sdk_put, sdk_close = sdk(kind, port, lean=False)
            sides = {"raw": raw, "put": put, "sdk": sdk_put}
            for name, warm in sides.items():  # connections opened, clients built, first PUTs
                side(warm, objects(args.threads * 4, f"w{kind}{name}"), args.threads)
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            names = list(sides)
            for round_ in range(args.rounds):
                shift = round_ % len(names)  # each side first in turn
                for name in (names[shift:] + names[:shift])[::1 if round_ % 2 == 0 else -1]:
                    items = objects(args.count, f"{kind}{name}{round_}")
                    figures[name].append(side(sides[name], items, args.threads))
            close()
            sdk_close()
            cpu = {name: statistics.median(c for c, _ in figures[name]) for name in names}
            rate = {name: statistics.median(r for _, r in figures[name]) for name in names}
            print(f"{kind}: put as shipped {cpu['put']:,.0f} µs CPU a PUT, {rate['put']:,.0f}"
                  f" PUT/s; through the SDK {cpu['sdk']:,.0f} µs, {rate['sdk']:,.0f} PUT/s;"
                  f" the same request raw {cpu['raw']:,.0f} µs, {rate['raw']:,.0f} PUT/s;"
                  f" CPU shipped/raw {cpu['put'] / cpu['raw']:.2f}x, sdk/raw"
                  f" {cpu['sdk'] / cpu['raw']:.2f}x, sdk/shipped {cpu['sdk'] / cpu['put']:.2f}x")
            print("  rounds, µs CPU shipped/sdk/raw: " + ", ".join(
                f"{p:,.0f}/{k:,.0f}/{r:,.0f}" for (p, _), (k, _), (r, _) in zip(
                    figures["put"], figures["sdk"], figures["raw"], strict=True)))
            print(f"  load average now: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    finally:
        server.terminate()
        server.wait()
        port_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
