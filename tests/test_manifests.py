"""Manifest segments: every settled outcome is in its project's chain, sealed and written
create-only beside the messages, and nothing is lost between settling and writing."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.errors import DestinationError
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.evidence.segments import parse_segment, segment_key
from stored_messages_cli.message import gzip_body, identifier_hashes, sha256_hex
from stored_messages_cli.spool import Failed, Spool, Stored
from stored_messages_cli.states import FinalReason
from tests.support.fixtures.core import jsonl


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def messages(make_message: Any, count: int) -> list[dict[str, Any]]:
    return [make_message(message_id=f"m-{i:03d}") for i in range(count)]


def segments_in(root: Path, project: str = "12345") -> list[Path]:
    return sorted((root / "_sm" / "manifests" / project).rglob("*.jsonl.gz"))


def archive(spool: Spool, destination: Any, clock: FakeClock, manifests: Manifests) -> None:
    archiver = Archiver(spool, [ProjectTarget("12345", destination)], clock=clock,
                        concurrency=1)
    archiver.on_tick(manifests.tick)
    archiver.run(once=True)


class FlakyDestination:
    """A destination whose manifest writes fail while `down` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.url, self.prefix = inner.url, inner.prefix
        self.down = True
        self.puts: list[str] = []

    def put(self, key: str, body: bytes, payload_sha256: str) -> Any:
        if "_sm/manifests/" in key:
            self.puts.append(key)
            if self.down:
                raise DestinationError("connection refused")
        return self.inner.put(key, body, payload_sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_segment_holds_every_outcome_with_the_exact_header_and_entries(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    email, sms = make_message(), make_message("sms")
    spool.record_many([email, sms])
    manifests = Manifests(spool, {"12345": file_destination}, 100, 900)
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    root = Path(file_destination.root)
    [path] = segments_in(root)
    assert path.relative_to(root).as_posix() == segment_key("12345", 1, clock.now())
    assert path.relative_to(root).as_posix() == \
        "_sm/manifests/12345/2027/01/15/000000000001.jsonl.gz"
    body = path.read_bytes()
    lines = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    sealer = lines[0].pop("sealer")
    assert len(sealer) == 16 and int(sealer, 16) >= 0
    assert lines[0] == {"manifest_version": 2, "project_id": "12345", "seq": 1,
                        "prev_sha256": None, "sealed_at": "2027-01-15T08:00:00Z", "count": 2,
                        "tree_size": 2, "root": lines[0]["root"],
                        "origin": f"file://{root}/#12345"}
    email_key = (f"email/12345/{sha('ann.lee@example.com')}/1234567/"
                 "9c438a20d26e4e9f8ad4edea23f811cd.json.gz")
    email_object = (root / email_key).read_bytes()
    assert lines[1] == {
        "message_id": "9c438a20d26e4e9f8ad4edea23f811cd", "outcome": "stored", "key": email_key,
        "payload_sha256": sha256_hex(gzip.decompress(email_object)),
        "object_sha256": hashlib.sha256(email_object).hexdigest(), "size": len(email_object),
        "medium": "email", "message_type": "blast", "campaign_id": "1234567",
        "sent_at": "2026-11-27T17:00:00Z", "settled_at": "2027-01-15T08:00:00Z",
        "recipient_hashes": {"email": sha("ann.lee@example.com"), "user_id": sha("u-881")}}
    assert lines[2]["message_id"] == "sms-1"
    assert lines[2]["recipient_hashes"] == {"phone_number": sha("+15555550100")}
    assert lines[2]["campaign_id"] is None
    # the spool keeps the segment's hash, not its bytes, once it is written
    [row] = spool.conn.execute("SELECT seq, sha256, body IS NULL, written_at IS NOT NULL"
                               " FROM manifest_segments").fetchall()
    assert row == (1, hashlib.sha256(body).hexdigest(), 1, 1)
    assert spool.conn.execute("SELECT COUNT(*) FROM manifest_entries").fetchone()[0] == 0


def test_sealing_at_max_entries_and_max_age_numbers_and_chains_segments(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    spool.record_many(messages(make_message, 5))
    manifests = Manifests(spool, {"12345": file_destination}, 2, 600)
    archive(spool, file_destination, clock, manifests)
    manifests.tick()
    root = Path(file_destination.root)
    assert len(segments_in(root)) == 2  # the fifth outcome waits in the open segment
    clock.advance(599)
    manifests.tick()
    assert len(segments_in(root)) == 2
    clock.advance(1)
    manifests.tick()
    paths = segments_in(root)
    assert len(paths) == 3
    previous = None
    seen = []
    for seq, path in enumerate(paths, start=1):
        segment = parse_segment(path.read_bytes())
        assert segment.header["seq"] == seq
        assert segment.header["prev_sha256"] == previous
        previous = hashlib.sha256(path.read_bytes()).hexdigest()
        seen += [entry["message_id"] for entry in segment.entries]
    assert seen == [f"m-{i:03d}" for i in range(5)]  # sorted as settled, none twice


def test_a_tick_with_nothing_to_seal_does_not_wait_for_another_writer(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    """What is due is read without the write lock: while another process writes (an ingest
    holding the spool's write lock), a tick with nothing to seal returns at once."""
    spool.record_many(messages(make_message, 3))
    manifests = Manifests(spool, {"12345": file_destination}, 100, 600)
    archive(spool, file_destination, clock, manifests)
    writer = sqlite3.connect(spool.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        manifests.tick()
        assert time.monotonic() - started < 5  # not the spool's 60 s busy timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert segments_in(Path(file_destination.root)) == []
    clock.advance(600)  # the open segment's first outcome is now max_age old
    manifests.tick()
    [path] = segments_in(Path(file_destination.root))
    assert parse_segment(path.read_bytes()).header["count"] == 3


def test_failed_and_expired_outcomes_are_entries_too(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    spool.record_many(messages(make_message, 2))
    manifests = Manifests(spool, {"12345": file_destination}, 100, 600)
    claimed = spool.queue.claim("me", "12345", 10, lease_seconds=60)
    spool.queue.settle("me", [Failed(claimed[0].row_id, FinalReason.CONFLICT, "taken")])
    # expired the way the spool expires (one UPDATE of the state), by any code path
    spool.conn.execute("UPDATE messages SET state = 'expired', final_reason = ?,"
                       " updated_at = ? WHERE id = ?",
                       (FinalReason.EXPIRED_UNREACHABLE, clock.now(), claimed[1].row_id))
    manifests.close()
    [path] = segments_in(Path(file_destination.root))
    entries = parse_segment(path.read_bytes()).entries
    assert [(e["message_id"], e["outcome"], e.get("reason")) for e in entries] == [
        ("m-000", "failed", "conflict"), ("m-001", "expired", "expired_unreachable")]
    assert entries[0]["object_sha256"] is None and entries[0]["size"] is None
    assert entries[0]["key"] == claimed[0].key  # the key it would have had


def test_a_kill_after_settling_loses_no_entry(
        sm_home: Path, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    """The entry commits with the outcome: a process that dies before sealing loses nothing,
    and one that never registered the hook (another settler) still leaves a full entry."""
    first = Spool.open(home=sm_home, clock=clock)  # no Manifests: no hook at all
    first.record(make_message())
    claimed = first.queue.claim("me", "12345", 10, lease_seconds=60)
    body = gzip_body(claimed[0].payload)
    first.queue.settle("me", [Stored(claimed[0].row_id, claimed[0].key, file_destination.url)])
    file_destination.put(claimed[0].key, body, claimed[0].payload_sha256)
    first.close()  # "killed" here: nothing sealed, nothing written
    with Spool.open(home=sm_home, clock=clock) as second:
        Manifests(second, {"12345": file_destination}, 100, 600).close()
    [path] = segments_in(Path(file_destination.root))
    [entry] = parse_segment(path.read_bytes()).entries
    assert entry["object_sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["size"] == len(body)
    assert entry["recipient_hashes"]["email"] == sha("ann.lee@example.com")


def test_an_unwritten_segment_survives_a_restart_byte_for_byte(
        sm_home: Path, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    flaky = FlakyDestination(file_destination)
    with Spool.open(home=sm_home, clock=clock) as spool:
        spool.record_many(messages(make_message, 3))
        manifests = Manifests(spool, {"12345": flaky}, 100, 600)
        archive(spool, file_destination, clock, manifests)
        manifests.close()  # sealed, but the write failed
        [(sha_recorded, kept)] = spool.conn.execute(
            "SELECT sha256, body FROM manifest_segments WHERE written_at IS NULL").fetchall()
        assert hashlib.sha256(kept).hexdigest() == sha_recorded
    assert segments_in(Path(file_destination.root)) == []
    flaky.down = False
    with Spool.open(home=sm_home, clock=clock) as spool:
        manifests = Manifests(spool, {"12345": flaky}, 100, 600)
        clock.advance(1)
        manifests.tick()  # still backing off: nothing yet
        assert segments_in(Path(file_destination.root)) == []
        clock.advance(300)
        manifests.tick()
    [path] = segments_in(Path(file_destination.root))
    assert path.read_bytes() == kept  # the same bytes, the same number, never renumbered
    assert parse_segment(kept).header["seq"] == 1


def test_sm_run_writes_manifests_on_s3(cli, moto_endpoint, s3_bucket, s3_client,
                                       make_message, monkeypatch) -> None:
    monkeypatch.setenv("SM_MANIFEST_MAX_ENTRIES", "2")
    url = f"s3://{s3_bucket}/archive/"
    assert cli("connect", url, "--project", "12345", "--endpoint-url", moto_endpoint,
               "--allow-insecure-endpoint").exit_code == 0
    assert cli("ingest", input=jsonl(*messages(make_message, 3))).exit_code == 0
    ran = cli("run", "--once")
    assert ran.exit_code == 0, ran.output
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="archive/_sm/manifests/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert [key.rsplit("/", 1)[1] for key in keys] == ["000000000001.jsonl.gz",
                                                       "000000000002.jsonl.gz"]
    previous = None
    for key in keys:
        response = s3_client.get_object(Bucket=s3_bucket, Key=key)
        body = response["Body"].read()
        segment = parse_segment(body)
        assert segment.header["prev_sha256"] == previous
        assert response["Metadata"] == {
            "sm-payload-sha256": hashlib.sha256(gzip.decompress(body)).hexdigest()}
        previous = segment.sha256
        assert all(e["key"].startswith("archive/email/12345/") for e in segment.entries)
    # create-only: a second writer of the same segment does not change it
    again = cli("run", "--once")
    assert again.exit_code == 0
    assert len(s3_client.list_objects_v2(
        Bucket=s3_bucket, Prefix="archive/_sm/manifests/")["Contents"]) == 2


def test_an_entry_from_the_uploaders_hash_equals_one_from_the_payload(
        tmp_path: Path, make_message: Any) -> None:
    """The settle's fast path (object hash and size from the uploader, identifier hashes from
    ingest) writes exactly the entry the slow path (gzip and parse the kept payload) writes."""
    recipients = [{"email": "Ann@Example.com"}, {"user_id": "u-7", "email": "b@x.io"},
                  {"phone_number": "+15550100", "device_token": "T0k"}]
    entries = []
    for fast in (True, False):
        spool = Spool(tmp_path / f"{fast}.db", clock=FakeClock())
        try:
            for n, recipient in enumerate(recipients):
                spool.record({**make_message(message_id=f"m-{n}"), "recipient": recipient})
            claimed = spool.queue.claim("me", "12345", 10, lease_seconds=60)
            outcomes = []
            for c in claimed:
                body = gzip_body(c.payload)
                extra = (sha256_hex(body), len(body)) if fast else (None, None)
                outcomes.append(Stored(c.row_id, c.key, "file:///a/", None, *extra))
            spool.queue.settle("me", outcomes)
            if not fast:
                with spool.store.write():
                    assert spool.store.complete_entries() == len(recipients)
            entries.append(spool.conn.execute(
                "SELECT message_id, outcome, object_sha256, size, recipient_hashes, payload"
                " FROM manifest_entries ORDER BY message_id").fetchall())
        finally:
            spool.close()
    assert entries[0] == entries[1]
    assert all(row[2] is not None and row[5] is None for row in entries[0])
    assert json.loads(entries[0][1][4]) == {"email": sha("b@x.io"), "user_id": sha("u-7")}
    assert list(json.loads(entries[0][2][4])) == ["phone_number", "device_token"]


def test_unreadable_ingest_hashes_leave_the_entry_to_the_payload_path(
        tmp_path: Path, make_message: Any) -> None:
    """A row whose identifier hashes are not readable JSON (a damaged spool) does not get a
    guessed entry: the settle leaves it, and the completion from the payload fills it."""
    spool = Spool(tmp_path / "spool.db", clock=FakeClock())
    try:
        spool.record(make_message(message_id="m-1"))
        spool.conn.execute("UPDATE messages SET recipient_hashes = '{not json'")
        (claimed,) = spool.queue.claim("me", "12345", 10, lease_seconds=60)
        body = gzip_body(claimed.payload)
        spool.queue.settle("me", [Stored(claimed.row_id, claimed.key, "file:///a/", None,
                                         sha256_hex(body), len(body))])
        kept = spool.conn.execute("SELECT payload IS NOT NULL FROM manifest_entries").fetchone()
        with spool.store.write():
            assert spool.store.complete_entries() == 1
        entry = spool.conn.execute("SELECT object_sha256, size, recipient_hashes, payload"
                                   " FROM manifest_entries").fetchone()
    finally:
        spool.close()
    assert kept == (1,)
    assert entry[:2] == (sha256_hex(body), len(body)) and entry[3] is None
    recipient = json.loads(claimed.payload)["recipient"]
    assert json.loads(entry[2]) == identifier_hashes(recipient) and len(recipient) >= 2


def test_a_write_retry_set_before_the_clock_went_back_is_due_at_once(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any) -> None:
    """A failed write scheduled its retry while the clock ran a day ahead; once the clock is
    right again, a retry further out than any backoff (RETRY_CAP) is due now."""
    flaky = FlakyDestination(file_destination)
    spool.record_many(messages(make_message, 2))
    manifests = Manifests(spool, {"12345": flaky}, 100, 600)
    archive(spool, file_destination, clock, manifests)
    manifests.close()  # sealed, the write failed
    spool.conn.execute("UPDATE manifest_segments SET next_attempt_at = ?",
                       (clock.now() + 86400,))
    flaky.down = False
    manifests.tick()
    assert len(segments_in(Path(file_destination.root))) == 1
