"""A legal hold over 600 objects survives `kill -9` of `sm hold create` half-way: the next
`sm run --once` finishes it, and S3 (moto, object lock) reports every version held, with one
`hold` entry per object in the log (SPEC 9.4).

The bucket and the index are filled through boto3 and the library (600 CLI calls would take
minutes); the hold itself runs as a real `sm` process. The count only has to leave holds on
both sides of the kill: 600 is three of the hold's pages of 200, and the kill lands after the
first (2,000 took a minute of moto's CPU)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool
from tests.test_holds import PROJECT, connect, locked_bucket  # noqa: F401 - the fixture

COUNT = 600
REPO = Path(__file__).resolve().parent.parent


def fill(s3_client: Any, bucket: str, spool: Spool) -> dict[str, str]:
    """COUNT objects in the bucket and the index, campaign `big`; key -> version id."""
    rhash = sha256_hex(b"someone")

    def put(index: int) -> tuple[str, str]:
        key = f"archive/email/{PROJECT}/{rhash}/big/m-{index:05d}.json.gz"
        body = gzip.compress(b'{"n":%d}' % index, mtime=0)
        answer = s3_client.put_object(Bucket=bucket, Key=key, Body=body,
                                      ChecksumAlgorithm="SHA256")
        return key, answer["VersionId"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        versions = dict(pool.map(put, range(COUNT)))
    spool.index.add_learnt([
        ((PROJECT, key.rsplit("/", 1)[1][:-8], "email", "blast", "big", rhash,
          "2026-11-01T09:00:00Z", key, "ab" * 32, version, f"s3://{bucket}/archive/", None),
         [rhash]) for key, version in versions.items()])
    return versions


@pytest.mark.slow
def test_kill_9_half_way_then_sm_run_once_holds_all_600(
        cli: Callable[..., Any], sm_home: Path, locked_bucket: str,  # noqa: F811
        moto_endpoint: str, s3_client: Any) -> None:
    connect(cli, locked_bucket, moto_endpoint)
    with Spool.open(home=sm_home) as spool:
        versions = fill(s3_client, locked_bucket, spool)
    env = {**os.environ, "SM_HOME": str(sm_home), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "stored_messages_cli.cli.app", "hold", "create", "big",
         "--project", PROJECT, "--campaign", "big", "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        with Spool.open(home=sm_home) as spool:
            while time.monotonic() < deadline:
                if spool.store.hold_case("big") is not None:
                    objects, pending, _ = spool.store.hold_counts("big")
                    if objects == COUNT and pending <= COUNT - 150:
                        break
                time.sleep(0.02)
            else:
                pytest.fail("sm hold create did not get under way")
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            _, pending, _ = spool.store.hold_counts("big")
    finally:
        if process.poll() is None:
            process.kill()
    assert 0 < pending < COUNT  # killed half-way, with holds still to apply

    ran = cli("run", "--once")
    assert ran.exit_code == 0, ran.output

    def held(item: tuple[str, str]) -> bool:
        answer = s3_client.get_object_legal_hold(Bucket=locked_bucket, Key=item[0],
                                                 VersionId=item[1])
        return bool(answer.get("LegalHold", {}).get("Status") == "ON")

    with ThreadPoolExecutor(max_workers=16) as pool:
        states = list(pool.map(held, versions.items()))
    assert states.count(True) == COUNT
    shown = json.loads(cli("--json", "hold", "show", "big").stdout)
    assert (shown["objects"], shown["pending"]) == (COUNT, 0)
    listed = s3_client.list_objects_v2(Bucket=locked_bucket,
                                       Prefix=f"archive/_sm/manifests/{PROJECT}/")
    entries = []
    for item in listed.get("Contents", []):
        body = s3_client.get_object(Bucket=locked_bucket, Key=item["Key"])["Body"].read()
        entries += [json.loads(line) for line in gzip.decompress(body).splitlines()[1:]]
    holds = sorted(e["key"] for e in entries if e["outcome"] == "hold")
    assert holds == sorted(versions)  # each object's hold entered exactly once
