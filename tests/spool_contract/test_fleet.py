"""A fleet on one PostgreSQL spool (docs/fleet.md): many `sm run` workers, many senders.

- three `sm run` workers drain one spool to a versioned bucket; one is killed with -9
  mid-run and replaced: every message is stored exactly once with its exact bytes;
- during a 403 outage the workers send one probe per slot between them, not one each;
- sender processes record while workers drain: nothing lost, nothing twice.

`SM_TEST_FLEET_MESSAGES` sets the first test's size (default 600 so the suite stays quick;
docs/fleet.md gives the 10,000-message run).
"""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.message import parse_message
from stored_messages_cli.retry import RetryPolicy
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import HealthState
from tests.spool_contract.test_concurrency import BLOCKS, PER_BLOCK, sender
from tests.support.fixtures.core import mixed_messages
from tests.support.fixtures.faults import ACCESS_DENIED
from tests.support.spool_db import rows

pytestmark = [pytest.mark.slow,
              pytest.mark.parametrize("spool_backend", ["postgresql"], indirect=True)]

PROJECT = "12345"
FLEET_MESSAGES = int(os.environ.get("SM_TEST_FLEET_MESSAGES", "600"))
SLOT = 8 * 3600.0


def fleet_messages(count: int) -> list[dict[str, Any]]:
    return mixed_messages(count, lambda index: f"f-{index:05d}")


def worker(home: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """One `sm run` worker process on the test's spool (SM_SPOOL_URL)."""
    env = dict(os.environ, SM_HOME=str(home), SM_POLL_INTERVAL="0.05", SM_LEASE_SECONDS="20")
    return subprocess.Popen([sys.executable, "-m", "stored_messages_cli.cli.app", "-q", "run",
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def count_stored() -> int:
    return int(rows(os.environ["SM_SPOOL_URL"],
                    "SELECT COUNT(*) FROM messages WHERE state = 'stored'")[0][0])


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_three_workers_one_killed_with_9_store_every_message_exactly_once(
        sm_home: Path, tmp_path: Path, moto_endpoint: str, s3_bucket: str,
        s3_client: Any) -> None:
    s3_client.put_bucket_versioning(Bucket=s3_bucket,
                                    VersioningConfiguration={"Status": "Enabled"})
    save_projects(sm_home / "config.toml", {PROJECT: ProjectDestination(
        url=f"s3://{s3_bucket}/", endpoint_url=moto_endpoint, allow_insecure_endpoint=True)})
    sent = fleet_messages(FLEET_MESSAGES)
    with Spool.open(home=sm_home) as spool:
        for start in range(0, len(sent), 1000):
            assert set(spool.record_many(sent[start:start + 1000])) == {"accepted"}
    log = tmp_path / "workers.log"
    workers = [worker(sm_home, log, "--concurrency", "4") for _ in range(3)]
    started = time.monotonic()
    try:
        wait_until(lambda: count_stored() >= FLEET_MESSAGES // 4, 300, "a quarter stored")
        workers[0].send_signal(signal.SIGKILL)  # mid-run: it holds leases and uploads
        workers[0].wait(timeout=30)
        at_kill = count_stored()
        assert at_kill < FLEET_MESSAGES, "the kill came too late to interrupt anything"
        workers[0] = worker(sm_home, log, "--concurrency", "4")  # the host comes back
        wait_until(lambda: count_stored() == FLEET_MESSAGES, 600, "every message stored")
        print(f"{FLEET_MESSAGES} messages drained in {time.monotonic() - started:.1f} s")
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exits = [process.wait(timeout=60) for process in workers]
    assert exits[1:] == [0, 0] and exits[0] == 0, log.read_text()[-3000:]

    states = {r[0]: r[1] for r in rows(sm_home, "SELECT message_id, state FROM messages")}
    assert states == {m["message_id"]: "stored" for m in sent}
    expected = {parse_message(m).key: parse_message(m).payload() for m in sent}
    versions: dict[str, int] = {}
    for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=s3_bucket):
        for version in page.get("Versions", []):
            if not version["Key"].startswith("_sm/"):
                versions[version["Key"]] = versions.get(version["Key"], 0) + 1
    assert versions == dict.fromkeys(expected, 1)  # each message once, nothing else
    for key, payload in expected.items():
        body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert gzip.decompress(body) == payload, key
    running = rows(sm_home, "SELECT COUNT(*) FROM daemons WHERE stopped_at IS NULL")[0][0]
    assert running == 0  # three stopped; the killed one was found dead by its replacement


def test_a_403_outage_gets_one_probe_per_slot_across_the_fleet(
        sm_home: Path, clock: Any, faults: Any, proxied_s3: Any, make_message: Any) -> None:
    with Spool.open(home=sm_home, clock=clock) as spool:
        spool.record_many([make_message(message_id=f"o-{n}", recipient={"email": f"o{n}@x.io"})
                           for n in range(30)])
    faults.mode = ACCESS_DENIED
    spools = [Spool.open(home=sm_home, clock=clock) for _ in range(3)]  # three connections
    archivers = [Archiver(s, [ProjectTarget(PROJECT, proxied_s3())], clock=clock,
                          concurrency=4, policy=RetryPolicy(recovery_probes=()))
                 for s in spools]

    def all_at_once() -> None:
        threads = [threading.Thread(target=a.run, kwargs={"once": True}) for a in archivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    try:
        t0 = clock.now()
        all_at_once()
        first = faults.count("PUT")
        assert 1 <= first <= 12  # only what each worker had in flight when the 403s came
        health = spools[0].health.get(PROJECT)
        assert (health.health, health.next_probe_at) == (HealthState.UNREACHABLE, t0 + SLOT)
        for slot in range(1, 4):
            clock.set(t0 + slot * SLOT - 1)
            all_at_once()
            assert faults.count("PUT") == first + slot - 1  # nothing between slots
            clock.set(t0 + slot * SLOT)
            all_at_once()
            assert faults.count("PUT") == first + slot  # one probe in the slot, fleet-wide
        assert faults.count() == faults.count("PUT")
        waiting = rows(sm_home, "SELECT state, COUNT(*) FROM messages GROUP BY state")
        assert [tuple(r) for r in waiting] == [("retry_wait", 30)]
    finally:
        for spool in spools:
            spool.close()


def test_sender_processes_record_while_two_workers_drain(sm_home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir(mode=0o700)
    save_projects(sm_home / "config.toml", {PROJECT: ProjectDestination(
        url=f"file://{archive}/")})
    log = tmp_path / "workers.log"
    workers = [worker(sm_home, log) for _ in range(2)]
    context = multiprocessing.get_context("spawn")
    senders = [context.Process(target=sender, args=(str(sm_home), n)) for n in range(3)]
    total = 3 * BLOCKS * PER_BLOCK
    try:
        for process in senders:
            process.start()
        for process in senders:
            process.join(timeout=120)
        assert [p.exitcode for p in senders] == [0, 0, 0]
        wait_until(lambda: count_stored() == total, 120, "every message stored")
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        exits = [process.wait(timeout=60) for process in workers]
    assert exits == [0, 0], log.read_text()[-3000:]
    stored = rows(sm_home, "SELECT stored_key, payload_sha256, state FROM messages")
    assert {r[2] for r in stored} == {"stored"} and len(stored) == total
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.json.gz"))
    assert files == sorted(r[0] for r in stored)  # every message once, nothing else
    for key, payload_sha, _ in stored:
        payload = gzip.decompress((archive / key).read_bytes())
        assert hashlib.sha256(payload).hexdigest() == payload_sha
