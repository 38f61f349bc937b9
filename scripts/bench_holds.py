#!/usr/bin/env python3
"""Benchmark legal holds: `sm hold create` and `sm hold release` over N objects, as processes.

    .venv/bin/python scripts/bench_holds.py               # 2,000 objects, folder and moto
    .venv/bin/python scripts/bench_holds.py --count 500 --workers 16
    .venv/bin/python scripts/bench_holds.py --folder-only

The folder run measures sm's own cost (the ledger, its log entries, sealing and writing the
segment, a chmod per object); the moto run adds one S3 request per object to a moto server in
its own process (moto answers one request at a time, so it bounds the figure, not sm). The
objects and the index rows are made through boto3 and the library, not timed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stored_messages_cli.message import sha256_hex  # noqa: E402
from stored_messages_cli.spool import Spool  # noqa: E402

PROJECT = "1"


def sm(env: dict[str, str], *args: str) -> float:
    """Run `sm ARGS` in a process; its wall time (exit status checked)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", *args],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"sm {' '.join(args)} failed: {done.stderr[-500:]}")
    return time.monotonic() - started


def index(home: Path, url: str, versions: dict[str, str | None]) -> None:
    with Spool.open(home=home) as spool:
        spool.index.add_learnt([
            ((PROJECT, key.rsplit("/", 1)[1][:-8], "email", "blast", "big", "h",
              "2026-11-01T09:00:00Z", key, "ab" * 32, version, url, None), ["h"])
            for key, version in versions.items()])


def report(label: str, env: dict[str, str], count: int, workers: int) -> None:
    held = sm(env, "--json", "hold", "create", "big", "--project", PROJECT, "--campaign",
              "big", "--workers", str(workers))
    released = sm(env, "--json", "hold", "release", "big", "--workers", str(workers))
    print(f"{label}: hold create {count} objects {held:.2f} s ({count / held:.0f}/s),"
          f" hold release {released:.2f} s ({count / released:.0f}/s), --workers {workers}")


def folder(base: Path, count: int, workers: int) -> None:
    from stored_messages_cli.destinations.file import FileDestination

    home, root = base / "folder-home", base / "folder-archive"
    env = {**os.environ, "SM_HOME": str(home), "PYTHONPATH": str(REPO)}
    sm(env, "connect", f"file://{root}/", "--project", PROJECT)
    destination = FileDestination(f"file://{root}/")
    keys = {}
    for number in range(count):
        key = f"email/{PROJECT}/h/big/m-{number:06d}.json.gz"
        destination.put(key, gzip.compress(b"{}", mtime=0), sha256_hex(b"{}"))
        keys[key] = None
    index(home, destination.url, keys)
    report("folder", env, count, workers)


def moto(base: Path, count: int, workers: int) -> None:
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], env={**os.environ, **aws},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, **{
            "aws_access_key_id": "bench", "aws_secret_access_key": "bench",
            "region_name": "us-east-1"})
        for _ in range(100):
            try:
                client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        home = base / "s3-home"
        env = {**os.environ, **aws, "SM_HOME": str(home), "PYTHONPATH": str(REPO)}
        sm(env, "connect", f"s3://{bucket}/archive/", "--project", PROJECT, "--endpoint-url",
           endpoint, "--allow-insecure-endpoint")

        def put(number: int) -> tuple[str, str | None]:
            key = f"archive/email/{PROJECT}/h/big/m-{number:06d}.json.gz"
            answer = client.put_object(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256",
                                       Body=gzip.compress(b"{}", mtime=0))
            return key, answer.get("VersionId")

        with ThreadPoolExecutor(max_workers=16) as pool:
            versions = dict(pool.map(put, range(count)))
        index(home, f"s3://{bucket}/archive/", versions)
        report("moto S3 (object lock)", env, count, workers)
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--folder-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        folder(Path(base), args.count, args.workers)
        if not args.folder_only:
            moto(Path(base), args.count, args.workers)


if __name__ == "__main__":
    main()
