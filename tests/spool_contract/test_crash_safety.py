"""Crash safety and shutdown of a real `sm run` process (SPEC 4, 6).

kill -9 during uploads to a versioned bucket, then a restart: every message is stored exactly
once (one version per key; create-only writes refuse a second one). SIGTERM finishes in-flight
uploads, leaves nothing in flight and exits 0; a second signal exits at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import parse_message
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import jsonl
from tests.support.fixtures.faults import PASS, STALL

PROJECT = "12345"
pytestmark = [pytest.mark.slow]


def prepare(cli: Any, faults: Any, bucket: str, make_message: Any, count: int
            ) -> list[dict[str, Any]]:
    """Connect the project (through the proxy) and ingest `count` confirmed emails."""
    result = cli("connect", f"s3://{bucket}/", "--project", PROJECT, "--endpoint-url",
                 faults.url, "--allow-insecure-endpoint")
    assert result.exit_code == 0, result.output
    messages = [make_message(message_id=f"m{n:04d}", recipient={"email": f"p{n}@example.com"})
                for n in range(count)]
    assert cli("ingest", "-", input=jsonl(*messages)).exit_code == 0
    return messages


def start_sm(sm_home: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`sm ARGS…` as its own process, stderr to `log`."""
    env = dict(os.environ, SM_HOME=str(sm_home))
    return subprocess.Popen([sys.executable, "-m", "stored_messages_cli.cli.app", *args],
                            env=env, stdout=subprocess.PIPE, stderr=log.open("wb"))


def counts(sm_home: Path) -> dict[str, int]:
    """Messages per state in the spool."""
    with Spool.open(home=sm_home) as spool:
        return spool.status()["counts"]


def versions_per_key(s3_client: Any, bucket: str) -> dict[str, int]:
    """How many versions each archived key has (delete markers aside)."""
    found: dict[str, int] = {}
    for page in s3_client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix="email/"):
        for version in page.get("Versions", []):
            found[version["Key"]] = found.get(version["Key"], 0) + 1
    return found


def test_kill_9_during_uploads_then_restart_stores_every_message_exactly_once(
        cli, sm_home, tmp_path, faults, s3_bucket, s3_client, make_message) -> None:
    s3_client.put_bucket_versioning(Bucket=s3_bucket,
                                    VersioningConfiguration={"Status": "Enabled"})
    messages = prepare(cli, faults, s3_bucket, make_message, 120)
    faults.delay = 0.03
    base = faults.count("PUT")
    daemon = start_sm(sm_home, tmp_path / "run.log", "run", "--concurrency", "8")
    faults.wait_for("PUT", base + 30)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=10)
    at_kill = counts(sm_home)
    assert at_kill["stored"] < 120  # killed mid-way

    faults.delay = 0.0
    restart = subprocess.run(
        [sys.executable, "-m", "stored_messages_cli.cli.app", "--json", "run", "--once"],
        env=dict(os.environ, SM_HOME=str(sm_home)), capture_output=True, timeout=120)
    assert restart.returncode == 0, restart.stderr.decode()

    after = counts(sm_home)
    assert (after["stored"], after["in_flight"], after["queued"]) == (120, 0, 0)
    expected_keys = {parse_message(m).key for m in messages}
    assert versions_per_key(s3_client, s3_bucket) == dict.fromkeys(expected_keys, 1)
    report = json.loads(restart.stdout)
    assert report["stored"] + report["already_stored"] == 120 - at_kill["stored"]


def test_sigterm_finishes_in_flight_uploads_and_exits_0(
        cli, sm_home, tmp_path, faults, s3_bucket, s3_client, make_message) -> None:
    messages = prepare(cli, faults, s3_bucket, make_message, 200)
    faults.delay = 0.03
    base = faults.count("PUT")
    log = tmp_path / "run.log"
    daemon = start_sm(sm_home, log, "run", "--concurrency", "8")
    faults.wait_for("PUT", base + 20)
    daemon.send_signal(signal.SIGTERM)
    stdout, _ = daemon.communicate(timeout=60)

    assert daemon.returncode == 0
    assert "Stopping" in log.read_text()
    state = counts(sm_home)
    assert state["in_flight"] == 0
    assert state["stored"] + state["queued"] == 200
    assert 0 < state["stored"] < 200
    with Spool.open(home=sm_home) as spool:
        stored = {row["stored_key"] for m in messages
                  if (row := spool.message_state(PROJECT, m["message_id"]))["state"] == "stored"}
    assert set(versions_per_key(s3_client, s3_bucket)) == stored  # finished ones were recorded
    assert f"stored {state['stored']}" in stdout.decode()


def test_a_second_signal_exits_at_once_and_a_restart_recovers(
        cli, sm_home, tmp_path, faults, s3_bucket, s3_client, make_message) -> None:
    messages = prepare(cli, faults, s3_bucket, make_message, 5)
    # uploads hang well past the test's patience (the daemon's create-only proof, under
    # _sm/, goes through: it comes first)
    faults.rule = lambda seen: PASS if "/_sm/" in seen.path else STALL
    faults.stall_seconds = 20.0
    base = faults.count("PUT", path_contains="/email/")
    daemon = start_sm(sm_home, tmp_path / "run.log", "run", "--concurrency", "2")
    deadline = time.monotonic() + 30
    while faults.count("PUT", path_contains="/email/") <= base:
        assert time.monotonic() < deadline, "no upload seen"
        time.sleep(0.01)
    daemon.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert daemon.poll() is None  # still finishing its in-flight uploads
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=5)
    assert daemon.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    assert counts(sm_home)["in_flight"] >= 1  # left behind by the hard exit

    faults.rule = None
    faults.mode = PASS
    assert cli("run", "--once").exit_code == 0  # the dead process's leases come back
    assert counts(sm_home)["stored"] == 5
    assert set(versions_per_key(s3_client, s3_bucket)) == {parse_message(m).key
                                                           for m in messages}
