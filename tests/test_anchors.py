"""The anchors of the signed log (SPEC 9.1): every checkpoint copied create-only to each
`checkpoint_copies` location and time-stamped by each `timestamp_authorities` TSA, with the
tokens beside every copy; a failing anchor is retried, never holds up archiving, and shows in
`sm status`, `--check` and the metrics; other bytes at a copy are never overwritten; a second
spool sealing the same log is named. Against a real `openssl ts` TSA on loopback, moto's S3
over HTTP and folders; outcomes read back from the real bytes."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.cli.status import evidence_document, evidence_problems
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.destinations.file import FileDestination
from stored_messages_cli.errors import DestinationError
from stored_messages_cli.evidence.anchors import timestamp_key
from stored_messages_cli.evidence.log import LogOptions
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.evidence.segments import copy_checkpoint_key, log_origin
from stored_messages_cli.evidence.timestamp import check_timestamp
from stored_messages_cli.ops.metrics import DaemonMetrics, MetricsServer
from stored_messages_cli.spool import Spool
from tests.support.daemon import http_get

PROJECT = "12345"
TXT = f"_sm/checkpoints/{PROJECT}/000000000003.txt"
TSR = f"_sm/checkpoints/{PROJECT}/000000000003.tsr"


def at_copy(destination: Any, suffix: str = ".txt") -> str:
    """Where a copy location keeps checkpoint 3 (or its token) of `destination`'s log: in
    the log's own folder."""
    return copy_checkpoint_key(PROJECT, log_origin(destination.url, PROJECT), 3, suffix)


def options(home: Path, **extra: Any) -> LogOptions:
    return LogOptions(home / "keys" / "signing.key", **extra)


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return path


def archive_three(spool: Spool, destination: Any, clock: FakeClock, manifests: Manifests,
                  make_message: Any) -> None:
    """Record three messages, archive them (sealing one segment of three) and stop."""
    spool.record_many([make_message(message_id=f"m-{i:04d}") for i in range(3)])
    archiver = Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock,
                        concurrency=1)
    archiver.on_tick(manifests.tick)
    archiver.run(once=True)
    manifests.close()


def stored_count(spool: Spool) -> int:
    return int(spool.report.status()["counts"]["stored"])


def s3_bytes(s3_client: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket, Key=f"archive/{key}")["Body"].read())


def s3_keys(s3_client: Any, bucket: str) -> set[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="archive/_sm/checkpoints/")
    return {item["Key"][len("archive/"):] for item in listed.get("Contents", [])}


def test_a_seal_copies_the_checkpoint_and_stamps_it_beside_every_copy(
        spool: Spool, clock: FakeClock, s3_destination: Any, s3_client: Any, s3_bucket: str,
        make_message: Any, sm_home: Path, tmp_path: Path, tsa: Any) -> None:
    copy = folder(tmp_path, "copy")
    manifests = Manifests(spool, {PROJECT: s3_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, copies=(f"file://{copy}/",),
                                              timestamp_authorities=(tsa.url,),
                                              timestamp_ca_file=tsa.ca_file))
    archive_three(spool, s3_destination, clock, manifests, make_message)

    checkpoint = s3_bytes(s3_client, s3_bucket, TXT)
    assert (copy / at_copy(s3_destination)).read_bytes() == checkpoint  # exact, create-only
    token = s3_bytes(s3_client, s3_bucket, TSR)
    assert (copy / at_copy(s3_destination, ".tsr")).read_bytes() == token
    verdict = check_timestamp(token, hashlib.sha256(checkpoint).digest(),
                              ca_pem=tsa.ca_file.read_bytes())
    assert verdict.ok and verdict.trusted_root, verdict.detail
    assert spool.evidence.anchors_behind(clock.now()) == []
    assert evidence_problems(evidence_document(spool)) == []


def test_a_second_authority_names_its_token_by_its_place(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tsa: Any) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, timestamp_authorities=(
                              tsa.url, tsa.url.replace("/tsr", "/second"))))
    archive_three(spool, file_destination, clock, manifests, make_message)
    base = Path(file_destination.url.removeprefix("file://"))
    digest = hashlib.sha256((base / TXT).read_bytes()).digest()
    for position in (1, 2):
        key = timestamp_key(PROJECT, 3, position)
        assert key.endswith(".tsr" if position == 1 else ".2.tsr")
        verdict = check_timestamp((base / key).read_bytes(), digest,
                                  ca_pem=tsa.ca_file.read_bytes())
        assert verdict.ok, verdict.detail


@pytest.mark.parametrize("fault", ["http_500", "slow"])
def test_a_tsa_down_holds_up_nothing_shows_behind_and_is_caught_up_when_it_recovers(
        fault: str, sm_home: Path, file_destination: FileDestination, make_message: Any,
        cli: Any, tsa: Any) -> None:
    sealed_at = time.time() - 7200  # sealed two hours ago by the wall clock `sm status` reads
    clock = FakeClock(sealed_at)
    base = Path(file_destination.url.removeprefix("file://"))
    with Spool.open(home=sm_home, clock=clock) as spool:
        manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                              log_options=options(sm_home, timestamp_authorities=(tsa.url,),
                                                  timestamp_ca_file=tsa.ca_file))
        manifests.anchors.request_timeout = 2.0  # the TSA answers after 3 s
        with tsa.fault(fault):
            archive_three(spool, file_destination, clock, manifests, make_message)

        assert stored_count(spool) == 3  # archiving went on
        assert (base / TXT).exists() and not (base / TSR).exists()
        assert [row["written_at"] for row in spool.evidence.segments(PROJECT)] == [sealed_at]
        [behind] = spool.evidence.anchors_behind(clock.now())
        assert (behind.kind, behind.target, behind.attempts) == ("timestamp", tsa.url, 1)
        assert behind.last_error
        # Not a problem yet at the spool's clock; after an hour it is.
        assert evidence_problems(evidence_document(spool)) == []
        clock.advance(3601)
        [(kind, detail)] = evidence_problems(evidence_document(spool))
        assert kind == "anchor_behind" and tsa.url in detail
        clock.set(sealed_at + 30)

        doc = json.loads(cli("--json", "status").stdout)
        assert doc["anchors"]["behind"] == 1
        assert doc["anchors"]["oldest_age_seconds"] > 3600
        assert doc["anchors"]["last_error"] == behind.last_error
        check = cli("--json", "status", "--check")
        assert check.exit_code == 1
        assert "anchor_behind" in [p["kind"] for p in json.loads(check.stdout)["problems"]]

        manifests.tick()  # not due yet: nothing asked
        assert spool.evidence.anchors_behind(clock.now())[0].attempts == 1
        clock.advance(61)
        manifests.tick()  # the TSA answers again
        assert spool.evidence.anchors_behind(clock.now()) == []
        verdict = check_timestamp((base / TSR).read_bytes(),
                                  hashlib.sha256((base / TXT).read_bytes()).digest(),
                                  ca_pem=tsa.ca_file.read_bytes())
        assert verdict.ok, verdict.detail
    check = json.loads(cli("--json", "status", "--check").stdout)
    assert "anchor_behind" not in [p["kind"] for p in check["problems"]]


def test_other_bytes_at_a_copy_are_never_overwritten_and_are_shown(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tmp_path: Path, cli: Any, caplog: pytest.LogCaptureFixture) -> None:
    copy = folder(tmp_path, "copy")
    forged = b"s3://elsewhere/#12345\n3\nAAAA\n\n\xe2\x80\x94 someone else\n"
    (copy / at_copy(file_destination)).parent.mkdir(parents=True)
    (copy / at_copy(file_destination)).write_bytes(forged)
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, copies=(f"file://{copy}/",)))
    with caplog.at_level(logging.ERROR, logger="sm.anchors"):
        archive_three(spool, file_destination, clock, manifests, make_message)

    assert (copy / at_copy(file_destination)).read_bytes() == forged  # never overwritten
    base = Path(file_destination.url.removeprefix("file://"))
    assert (base / TXT).exists() and stored_count(spool) == 3
    [behind] = spool.evidence.anchors_behind(clock.now())
    assert behind.kind == "copy" and "other bytes" in (behind.last_error or "")
    assert any("other bytes" in record.getMessage() for record in caplog.records)
    clock.advance(3600)
    manifests.tick()  # retried: still refused, still the same bytes
    assert (copy / at_copy(file_destination)).read_bytes() == forged
    doc = json.loads(cli("--json", "status").stdout)
    assert "other bytes" in doc["anchors"]["targets"][0]["last_error"]


def test_a_copy_location_that_cannot_be_opened_fails_its_anchor_only(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, copies=("ftp://nowhere/x/",)))
    archive_three(spool, file_destination, clock, manifests, make_message)
    assert stored_count(spool) == 3
    [behind] = spool.evidence.anchors_behind(clock.now())
    assert "cannot be opened" in (behind.last_error or "")


def test_metrics_count_the_anchors_behind_and_the_failing_manifest_writes(
        sm_home: Path, file_destination: FileDestination, make_message: Any) -> None:
    sealed_at = time.time() - 90  # the endpoint's gauges read the wall clock
    clock = FakeClock(sealed_at)
    with Spool.open(home=sm_home, clock=clock) as spool:
        manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                              log_options=options(sm_home, copies=("ftp://nowhere/x/",)))
        archive_three(spool, file_destination, clock, manifests, make_message)
        metrics = DaemonMetrics(spool.path, {PROJECT: file_destination.url}, "test")
        server = MetricsServer(metrics, "127.0.0.1", 0).start()
        try:
            code, text = http_get(server.url + "/metrics")
        finally:
            server.stop()
    assert code == 200, text
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples["sm_anchors_behind"] == 1
    assert 90 <= samples["sm_anchors_oldest_age_seconds"] < 150
    assert samples["sm_manifest_writes_failing"] == 0


@pytest.mark.parametrize("days_apart", [0, 2])
def test_a_second_spool_sealing_the_same_log_is_named(
        days_apart: int, sm_home: Path, tmp_path: Path, file_destination: FileDestination,
        make_message: Any, cli: Any) -> None:
    # The same day: the second spool's segment 1 meets the first's key; days apart: its
    # segment is written under another day and its checkpoint meets the first's.
    clock = FakeClock(time.time() - days_apart * 86400)
    with Spool(tmp_path / "other.db", clock=clock) as other:
        first = Manifests(other, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(tmp_path / "other-home"))
        archive_three(other, file_destination, clock, first, make_message)
        other_sealer = first.log.sealer
    clock.advance(days_apart * 86400)
    with Spool.open(home=sm_home, clock=clock) as spool:
        second = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                           log_options=options(sm_home))
        archive_three(spool, file_destination, clock, second, make_message)
        for _ in range(3):
            clock.advance(600)
            second.write_pending()
        [failing] = spool.evidence.failing_manifest_writes()
    assert failing["attempts"] >= 3
    assert failing["last_error"] == (
        f"segment 1 of this log was sealed by another spool (sealer {other_sealer}): two"
        " spools seal one log; share one PostgreSQL spool (docs/fleet.md)")
    check = cli("status", "--check")
    assert check.exit_code == 1
    assert "manifest_write_failing: project 12345: manifest 1 not written" in check.stdout
    assert "sealed by another spool" in check.stdout


def test_connect_creates_the_signing_key_and_prints_its_verifier_key(
        cli: Any, sm_home: Path, tmp_path: Path) -> None:
    archive = folder(tmp_path, "archive")
    connect = cli("--json", "connect", f"file://{archive}/", "--project", PROJECT)
    assert connect.exit_code == 0, connect.stderr
    shown = cli("key", "show")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(connect.stdout)["verifier_key"] == shown.stdout.strip()
    assert (sm_home / "keys" / "signing.key").exists()
    again = cli("connect", f"file://{archive}/", "--project", PROJECT)
    assert shown.stdout.strip() in again.stdout
    assert "keep it with your auditor" in again.stderr
    assert "another spool" not in again.stderr


def test_connect_warns_when_another_spool_seals_the_log_there(
        cli: Any, tmp_path: Path, make_message: Any) -> None:
    archive = folder(tmp_path, "archive")
    destination = FileDestination(f"file://{archive}/")
    clock = FakeClock(time.time())
    with Spool(tmp_path / "other.db", clock=clock) as other:
        manifests = Manifests(other, {PROJECT: destination}, 3, 900, clock=clock,
                              log_options=options(tmp_path / "other-home"))
        archive_three(other, destination, clock, manifests, make_message)
        sealer = manifests.log.sealer
    connect = cli("connect", f"file://{archive}/", "--project", PROJECT)
    assert connect.exit_code == 0, connect.stderr
    assert f"sealed by another spool (sealer {sealer})" in connect.stderr


class CheckpointsRefused:
    """A destination that takes messages and segments but refuses checkpoints while `down`."""

    def __init__(self, inner: FileDestination) -> None:
        self.inner = inner
        self.down = True

    def put(self, key: str, body: bytes, payload_sha256: str) -> Any:
        if "_sm/checkpoints/" in key and self.down:
            raise DestinationError("connection reset")
        return self.inner.put(key, body, payload_sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_copy_never_gets_ahead_of_the_destination(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tmp_path: Path, cli: Any) -> None:
    copy = folder(tmp_path, "copy")
    flaky = CheckpointsRefused(file_destination)
    manifests = Manifests(spool, {PROJECT: flaky}, 3, 900, clock=clock,
                          log_options=options(sm_home, copies=(f"file://{copy}/",)))
    archive_three(spool, flaky, clock, manifests, make_message)
    assert not (copy / at_copy(file_destination)).exists()  # a copy would read as truncation
    [owed] = spool.evidence.anchors_behind(clock.now())
    assert owed.kind == "copy" and owed.attempts == 0
    human = cli("status")
    assert "Anchors behind: 1" in human.stdout and "Manifests not yet written: 1" in human.stdout
    flaky.down = False
    clock.advance(600)
    manifests.tick()
    base = Path(file_destination.url.removeprefix("file://"))
    assert (copy / at_copy(file_destination)).read_bytes() == (base / TXT).read_bytes()
    assert spool.evidence.anchors_behind(clock.now()) == []


def test_a_tsa_that_is_down_is_left_alone_until_the_next_attempt(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tsa: Any) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 1, 900, clock=clock,
                          log_options=options(sm_home, timestamp_authorities=(tsa.url,),
                                              timestamp_ca_file=tsa.ca_file))
    with tsa.fault("http_500"):
        archive_three(spool, file_destination, clock, manifests, make_message)  # 3 seals
        assert len(spool.evidence.anchors_behind(clock.now())) == 3
        asked = tsa.requests
        for _ in range(5):
            manifests.tick()
        assert tsa.requests == asked  # three checkpoints owed, the TSA rests all the same
        clock.advance(61)
        manifests.tick()
        assert tsa.requests == asked + 1
    clock.advance(121)
    manifests.tick()  # recovered: the three are made within one tick
    assert spool.evidence.anchors_behind(clock.now()) == []


def test_without_a_ca_file_a_token_is_kept_with_a_warning_that_its_signer_is_unchecked(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tsa: Any, caplog: pytest.LogCaptureFixture) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, timestamp_authorities=(tsa.url,)))
    with caplog.at_level(logging.WARNING, logger="sm.anchors"):
        archive_three(spool, file_destination, clock, manifests, make_message)
    base = Path(file_destination.url.removeprefix("file://"))
    verdict = check_timestamp((base / TSR).read_bytes(),
                              hashlib.sha256((base / TXT).read_bytes()).digest(),
                              ca_pem=tsa.ca_file.read_bytes())
    assert verdict.ok, verdict.detail  # the auditor, who has the roots, checks it
    assert any("timestamp_ca_file is not set" in r.getMessage() for r in caplog.records)


def test_a_token_signed_by_another_ca_is_refused_and_asked_for_again(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tsa: Any) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, timestamp_authorities=(tsa.url,),
                                              timestamp_ca_file=tsa.ca_file))
    with tsa.fault("other_ca"):
        archive_three(spool, file_destination, clock, manifests, make_message)
    base = Path(file_destination.url.removeprefix("file://"))
    assert not (base / TSR).exists()
    [behind] = spool.evidence.anchors_behind(clock.now())
    assert behind.token is None and "does not check" in (behind.last_error or "")
    clock.advance(61)
    manifests.tick()
    assert check_timestamp((base / TSR).read_bytes(),
                           hashlib.sha256((base / TXT).read_bytes()).digest(),
                           ca_pem=tsa.ca_file.read_bytes()).ok


def test_a_reconnected_projects_two_logs_keep_their_copies_side_by_side(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After a reconnect the new log's tree sizes meet the earlier log's (both have a
    checkpoint at 3): one copy location keeps both, each in its log's folder, and neither is
    taken for a fork."""
    copy = folder(tmp_path, "copy")
    log_options = options(sm_home, copies=(f"file://{copy}/",))
    first = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                      log_options=log_options)
    archive_three(spool, file_destination, clock, first, make_message)
    second_folder = folder(tmp_path, "reconnected")
    second = FileDestination(f"file://{second_folder}/")
    manifests = Manifests(spool, {PROJECT: second}, 3, 900, clock=clock,
                          log_options=log_options)
    spool.record_many([make_message(message_id=f"n-{i:04d}") for i in range(3)])
    archiver = Archiver(spool, [ProjectTarget(PROJECT, second)], clock=clock, concurrency=1)
    archiver.on_tick(manifests.tick)
    with caplog.at_level(logging.ERROR, logger="sm.anchors"):
        archiver.run(once=True)
        manifests.close()
    base = Path(file_destination.url.removeprefix("file://"))
    assert (copy / at_copy(file_destination)).read_bytes() == (base / TXT).read_bytes()
    assert (copy / at_copy(second)).read_bytes() == (second_folder / TXT).read_bytes()
    assert at_copy(second) != at_copy(file_destination)
    assert spool.evidence.anchors_behind(clock.now()) == [] and "other bytes" not in caplog.text


def test_sm_run_makes_anchors_on_a_thread_of_their_own_beside_the_loop(
        spool: Spool, clock: FakeClock, file_destination: FileDestination, make_message: Any,
        sm_home: Path, tsa: Any) -> None:
    """With a TSA that answers only after the client gives up, the loop's tick still returns
    while the request is in flight on the anchoring thread; the daemon's stop waits for that
    turn, and the anchor stays owed, its failure on its row."""
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900, clock=clock,
                          log_options=options(sm_home, timestamp_authorities=(tsa.url,)),
                          background_anchors=True)
    manifests.anchors.request_timeout = 2.0  # the TSA answers after 3 s
    spool.record_many([make_message(message_id=f"m-{i:04d}") for i in range(3)])
    archiver = Archiver(spool, [ProjectTarget(PROJECT, file_destination)], clock=clock,
                        concurrency=1)
    archiver.run(once=True)
    with tsa.fault("slow"):
        manifests.tick()  # seals, writes, and hands the time-stamp to the anchoring thread
        anchoring = manifests._anchoring
        assert anchoring is not None and anchoring.name == "sm-anchors"
        assert anchoring.is_alive()  # the request is still out: tick did not wait for it
        manifests.close()
        assert not anchoring.is_alive()
    [owed] = spool.evidence.anchors_behind(clock.now())
    assert owed.kind == "timestamp" and owed.attempts >= 1 and owed.last_error
