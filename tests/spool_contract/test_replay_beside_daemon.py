"""`sm replay` beside a running `sm run` (the normal systemd set-up) reports the truth.

Messages the daemon is uploading are followed to their outcome, not reported as failing, and
a down destination gets one probe across both processes. The daemon is a real `sm run`
process; faults and delays are injected on the wire by the fault proxy.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from stored_messages_cli.spool import Spool
from tests.spool_contract.test_crash_safety import PROJECT, counts, prepare, start_sm
from tests.support.fixtures.faults import ACCESS_DENIED, PASS, FaultProxy

UPLOADS = "/email/"  # the messages' keys (the daemon's create-only proof writes under _sm/)


def first_upload(faults: FaultProxy, base: int, timeout: float = 60.0) -> None:
    """Block until the daemon's first message upload is on the wire (it proves create-only
    writes first, with requests of its own)."""
    deadline = time.monotonic() + timeout
    while faults.count("PUT", path_contains=UPLOADS) <= base:
        assert time.monotonic() < deadline, "no message upload seen"
        time.sleep(0.01)


def test_replay_follows_what_the_daemon_is_uploading(
        cli, sm_home: Path, tmp_path: Path, faults, s3_bucket, make_message) -> None:
    prepare(cli, faults, s3_bucket, make_message, 6)
    faults.delay = 1.0  # every upload takes a second: the daemon holds messages in flight
    faults.delay_only = UPLOADS  # its create-only proof at start is not slowed
    base = faults.count("PUT", path_contains=UPLOADS)
    daemon = start_sm(sm_home, tmp_path / "run.log", "run", "--concurrency", "2")
    try:
        first_upload(faults, base)
        assert counts(sm_home)["in_flight"] >= 1
        replayed = cli("--json", "replay", "--wait", "60")
        assert replayed.exit_code == 0, replayed.output
        document = json.loads(replayed.stdout)
        assert document["still_failing"] == 0
        assert document["in_progress_elsewhere"] == 0  # followed to the end
        assert document["stored"] == document["replayed"] >= 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    faults.delay = 0.0


def test_replay_with_no_wait_reports_in_progress_elsewhere_and_exits_0(
        cli, sm_home: Path, tmp_path: Path, faults, s3_bucket, make_message) -> None:
    prepare(cli, faults, s3_bucket, make_message, 4)
    faults.delay = 3.0
    faults.delay_only = UPLOADS  # its create-only proof at start is not slowed
    base = faults.count("PUT", path_contains=UPLOADS)
    daemon = start_sm(sm_home, tmp_path / "run.log", "run", "--concurrency", "2")
    try:
        first_upload(faults, base)
        replayed = cli("--json", "replay", "--wait", "0")
        assert replayed.exit_code == 0, replayed.output
        document = json.loads(replayed.stdout)
        assert document["still_failing"] == 0
        assert document["in_progress_elsewhere"] == document["replayed"] >= 1
        assert document["failures"] == []  # nothing reported failing
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    faults.delay = 0.0


def test_a_down_destination_gets_one_probe_across_processes(
        cli, sm_home: Path, faults, s3_bucket, make_message) -> None:
    prepare(cli, faults, s3_bucket, make_message, 3)
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # down: parked behind the next probe
    with Spool.open(home=sm_home) as spool:
        assert spool.health.get(PROJECT).health == "unreachable"
        # Another process (a daemon at its slot) holds the probe lease right now.
        assert spool.health.take_probe(PROJECT, spool.clock.now() + 300)
    before = faults.count("PUT")
    faults.mode = PASS
    waiting = cli("--json", "replay", "--wait", "0")
    assert faults.count("PUT") == before  # replay did not send a second probe
    assert waiting.exit_code == 1
    assert json.loads(waiting.stdout)["by_reason"] == {"unreachable": 3}
    with Spool.open(home=sm_home) as spool:
        spool.health.release_probe(PROJECT)  # that probe ended without an answer
    done = cli("--json", "replay")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["stored"] == 3


def test_two_replays_at_once_report_no_phantom_failures(
        cli, sm_home: Path, faults, s3_bucket, s3_client, make_message) -> None:
    import os
    import subprocess
    import sys

    s3_client.put_bucket_versioning(Bucket=s3_bucket,
                                    VersioningConfiguration={"Status": "Enabled"})
    messages = prepare(cli, faults, s3_bucket, make_message, 6)
    faults.mode = ACCESS_DENIED
    assert cli("run", "--once").exit_code == 1  # all six wait for the destination
    faults.mode = PASS
    faults.delay = 0.3  # uploads slow enough for the two replays to overlap
    faults.delay_only = UPLOADS
    command = [sys.executable, "-m", "stored_messages_cli.cli.app", "--json", "replay",
               "--wait", "60"]
    env = dict(os.environ, SM_HOME=str(sm_home))
    replays = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    results = [r.communicate(timeout=120) for r in replays]
    faults.delay = 0.0
    for replay, (out, err) in zip(replays, results, strict=True):
        assert replay.returncode == 0, (out + err).decode()
        document = json.loads(out)
        assert document["still_failing"] == 0
        assert document["stored"] == document["replayed"]
    assert counts(sm_home)["stored"] == 6
    versions = s3_client.list_object_versions(Bucket=s3_bucket, Prefix="email/")["Versions"]
    assert sorted(v["Key"].rsplit("/", 1)[-1] for v in versions) == sorted(
        f"{m['message_id']}.json.gz" for m in messages)  # each object written once
