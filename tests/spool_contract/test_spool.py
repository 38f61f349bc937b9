"""Spool states (SPEC 4): every transition, idempotent recording, bodies leaving, permissions."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli import InvalidMessage, MessageConflict, UnknownMessage
from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.message import parse_message
from stored_messages_cli.spool import Retry, Spool, Stored
from stored_messages_cli.spool.bodies import payload_of
from tests.support.fixtures.core import connected_folder
from tests.support.spool_db import mark, raw_connection, rows

DAY = 86400.0




def row(spool: Spool, message_id: str, project_id: str = "12345") -> dict[str, Any]:
    """The raw spool row with its kept body (`payload`, None when gone), read over a
    separate connection (what is committed)."""
    found = rows(spool, "SELECT m.*, b.payload FROM messages m LEFT JOIN message_bodies b"
                 " ON b.id = m.id WHERE project_id = {p} AND message_id = {p}",
                 (project_id, message_id))
    assert found, f"{message_id} is not in the spool"
    result = {name: found[0][name] for name in found[0].keys()}
    result["kept"] = result["payload"]  # as the spool keeps it: the gzip object
    if result["payload"] is not None:
        result["payload"] = payload_of(bytes(result["payload"]))
    return result


def awaiting(make_message, **overrides: Any) -> dict[str, Any]:
    message = make_message(**overrides)
    del message["sent_at"]
    del message["provider"]
    return message


def archive(spool: Spool, folder: Path, clock) -> Archiver:
    archiver = Archiver(spool, [ProjectTarget("12345", connected_folder(f"file://{folder}/"))],
                        clock=clock, concurrency=2)
    archiver.run(once=True)
    return archiver


# ----------------------------------------------------------------------------- recording


def test_confirmed_message_is_queued_with_its_exact_payload(spool, make_message) -> None:
    message = make_message()
    assert spool.record(message) == "accepted"
    stored = row(spool, message["message_id"])
    assert stored["state"] == "queued"
    assert stored["payload"] == parse_message(message).payload()
    # Kept as the object it will be uploaded as: deterministic gzip (a 2.4 KB email ~400 B).
    assert bytes(stored["kept"]) == gzip.compress(stored["payload"], compresslevel=6, mtime=0)
    assert stored["key"] == parse_message(message).key


def test_unconfirmed_message_awaits_confirmation(spool, make_message) -> None:
    message = awaiting(make_message)
    assert spool.record(message) == "accepted"
    assert row(spool, message["message_id"])["state"] == "awaiting_confirmation"


def test_sent_event_moves_awaiting_to_queued_with_sent_at_and_provider(spool, make_message):
    message = awaiting(make_message)
    spool.record(message)
    provider = {"name": "ses", "message_id": "0100-x"}
    assert spool.confirm_sent(12345, message["message_id"], sent_at="2026-11-27T17:00:05Z",
                              provider=provider) == "accepted"
    stored = row(spool, message["message_id"])
    assert stored["state"] == "queued"
    assert stored["payload"] == parse_message(
        dict(message, sent_at="2026-11-27T17:00:05Z", provider=provider)).payload()


def test_re_recording_with_sent_at_moves_awaiting_to_queued(spool, make_message) -> None:
    message = make_message()
    spool.record(awaiting(make_message))
    assert spool.record(message) == "accepted"
    stored = row(spool, message["message_id"])
    assert stored["state"] == "queued"
    assert stored["payload"] == parse_message(message).payload()


def test_send_failed_discards_and_drops_the_body(spool, make_message) -> None:
    message = awaiting(make_message)
    spool.record(message)
    assert spool.record_send_failure(12345, message["message_id"], reason="bounced") == "accepted"
    stored = row(spool, message["message_id"])
    assert (stored["state"], stored["payload"]) == ("discarded", None)
    assert (stored["final_reason"], stored["last_error"]) == ("send_failed", "bounced")
    assert spool.record_send_failure(12345, message["message_id"]) == "duplicate"
    with pytest.raises(MessageConflict, match="discarded \\(its send failed\\)"):
        spool.confirm_sent(12345, message["message_id"], sent_at="2026-11-27T17:00:00Z")


def test_never_confirmed_is_discarded_after_confirm_timeout(spool, make_message, clock):
    message = awaiting(make_message)
    spool.record(message)
    clock.advance(DAY - 1)
    assert spool.intake.discard_unconfirmed(DAY) == 0
    assert row(spool, message["message_id"])["state"] == "awaiting_confirmation"
    clock.advance(1)
    assert spool.intake.discard_unconfirmed(DAY) == 1
    stored = row(spool, message["message_id"])
    assert (stored["state"], stored["final_reason"]) == ("discarded", "never_confirmed")
    assert stored["payload"] is not None  # kept through the grace period (SPEC 4)
    clock.advance(7 * DAY)
    spool.intake.discard_unconfirmed(DAY)  # the grace is over: the body leaves the spool
    assert row(spool, message["message_id"])["payload"] is None


def test_a_late_sent_event_revives_a_never_confirmed_message(spool, make_message, clock):
    message = awaiting(make_message)
    spool.record(message)
    clock.advance(DAY + 1)
    assert spool.intake.discard_unconfirmed(DAY) == 1
    clock.advance(3 * DAY)  # an SMS delivery receipt three days late
    assert spool.confirm_sent(12345, message["message_id"],
                              sent_at="2026-11-27T17:00:00Z") == "accepted"
    revived = row(spool, message["message_id"])
    assert (revived["state"], revived["final_reason"]) == ("queued", None)
    assert json.loads(revived["payload"])["sent_at"] == "2026-11-27T17:00:00Z"


def test_after_the_grace_a_late_confirmation_is_a_conflict(spool, make_message, clock):
    message = awaiting(make_message)
    spool.record(message)
    clock.advance(DAY + 1)
    spool.intake.discard_unconfirmed(DAY)
    clock.advance(8 * DAY)
    spool.intake.discard_unconfirmed(DAY)
    with pytest.raises(MessageConflict, match="never confirmed"):
        spool.confirm_sent(12345, message["message_id"], sent_at="2026-11-27T17:00:00Z")
    assert row(spool, message["message_id"])["state"] == "discarded"


def test_archiver_discards_the_unconfirmed_and_never_uploads_them(
        spool, make_message, clock, tmp_path) -> None:
    spool.record(awaiting(make_message, message_id="late"))
    clock.advance(DAY + 1)
    archive(spool, tmp_path / "a", clock)
    assert row(spool, "late")["state"] == "discarded"
    assert not (tmp_path / "a").exists() or list((tmp_path / "a").rglob("*.gz")) == []


def test_medium_not_archived_is_discarded_at_ingest(sm_home, clock, make_message) -> None:
    save_projects(sm_home / "config.toml", {"12345": ProjectDestination(
        url="file:///tmp/x/", mediums=["email"])})
    with Spool.open(clock=clock) as spool:
        assert spool.record(make_message("sms")) == "discarded"
        assert spool.record(make_message("sms")) == "duplicate"
        assert spool.record(make_message("email")) == "accepted"
        stored = row(spool, "sms-1")
        assert (stored["state"], stored["final_reason"], stored["payload"]) == (
            "discarded", "medium_not_archived", None)


def test_project_without_destination_waits_in_queued(spool, make_message, clock, tmp_path):
    spool.record(make_message(project_id=999))
    spool.record(make_message())
    clock.advance(30 * DAY)  # no timeout discards a confirmed message
    archive(spool, tmp_path / "a", clock)
    assert row(spool, make_message()["message_id"], "999")["state"] == "queued"
    assert row(spool, make_message()["message_id"])["state"] == "stored"


# ----------------------------------------------------------------------------- idempotence


def test_same_message_again_is_a_duplicate(spool, make_message) -> None:
    assert spool.record(make_message()) == "accepted"
    assert spool.record(make_message()) == "duplicate"
    assert spool.record(awaiting(make_message)) == "duplicate"


def test_other_content_is_a_conflict_and_the_first_copy_stays(spool, make_message) -> None:
    first = make_message()
    spool.record(first)
    other = make_message()
    other["content"]["subject"] = "Changed"
    with pytest.raises(MessageConflict, match="recorded before with other content"):
        spool.record(other)
    assert row(spool, first["message_id"])["payload"] == parse_message(first).payload()


def test_other_sent_at_after_confirmation_is_a_conflict(spool, make_message) -> None:
    spool.record(make_message())
    with pytest.raises(MessageConflict, match="already confirmed"):
        spool.record(make_message(sent_at="2026-11-27T18:00:00Z"))
    assert spool.confirm_sent(12345, make_message()["message_id"],
                              sent_at="2026-11-27T17:00:00Z") == "duplicate"
    with pytest.raises(MessageConflict, match="already confirmed with another sent_at"):
        spool.confirm_sent(12345, make_message()["message_id"], sent_at="2026-11-28T17:00:00Z")
    with pytest.raises(MessageConflict, match="send failure cannot follow"):
        spool.record_send_failure(12345, make_message()["message_id"])


def test_events_for_unknown_messages_are_refused(spool) -> None:
    with pytest.raises(UnknownMessage, match="no message nope of project 1 was recorded"):
        spool.confirm_sent(1, "nope", sent_at="2026-11-27T17:00:00Z")
    with pytest.raises(UnknownMessage):
        spool.record_send_failure(1, "nope")


def test_record_many_is_all_or_nothing(spool, make_message) -> None:
    good = [make_message(message_id=f"m{i}") for i in range(3)]
    bad = dict(make_message(message_id="bad"), medium="fax")
    with pytest.raises(InvalidMessage, match="^message 3: medium must be"):
        spool.record_many([*good, bad])
    assert spool.status()["counts"]["queued"] == 0
    assert spool.record_many(good) == ["accepted"] * 3
    assert spool.status()["counts"]["queued"] == 3


# ----------------------------------------------------------------------------- archiving


def test_stored_drops_the_body_and_keeps_hash_key_and_index(
        spool, make_message, clock, tmp_path) -> None:
    message = make_message()
    spool.record(message)
    archive(spool, tmp_path / "a", clock)
    stored = row(spool, message["message_id"])
    payload = parse_message(message).payload()
    assert stored["state"] == "stored"
    assert stored["payload"] is None
    assert stored["stored_key"] == parse_message(message).key
    assert stored["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert gzip.decompress((tmp_path / "a" / stored["stored_key"]).read_bytes()) == payload
    index = rows(spool, "SELECT key FROM archive_index WHERE message_id = {p}",
                 (message["message_id"],))
    assert [tuple(r) for r in index] == [(stored["stored_key"],)]


# Hashes of every shape the index may hold: a lowercase hex SHA-256 (kept as 32 bytes), and
# text it must give back exactly: upper case, short, 32 characters (hex or not, one or two bytes
# each), a backslash (PostgreSQL's bytea escape), and none at all.
ODD_HASHES = [hashlib.sha256(b"a@x.io").hexdigest(), hashlib.sha256(b"b").hexdigest().upper(),
              "not-a-hash", "x" * 32, "0123456789abcdef" * 2, "\u00e9" * 16, "\\x41\\", None]


def test_index_rows_give_back_every_hash_exactly_as_written(spool) -> None:
    from stored_messages_cli.investigate.index import ArchiveIndex, FindQuery, IndexEntry

    written = [IndexEntry(
        project_id="12345", message_id=f"m-{n}", medium="email", message_type="blast",
        campaign_id="111", recipient_hash=value or "r", sent_at="2026-11-27T17:00:00Z",
        key=f"archive/email/12345/{value or 'r'}/111/m-{n}.json.gz", payload_sha256=value,
        destination_url="s3://bucket/archive/", stored_at=1.5e9)
        for n, value in enumerate(ODD_HASHES)]
    index = ArchiveIndex.of(spool)
    assert index.add(written) == len(written)
    found = index.find(FindQuery(limit=None)).entries
    assert sorted(found, key=lambda e: e.message_id) == written
    by_recipient = index.find(FindQuery(recipient_hashes=("x" * 32,))).entries
    assert [e.message_id for e in by_recipient] == ["m-3"]


def test_lapsed_lease_returns_to_queued_and_nothing_is_deleted_on_claim(
        spool, make_message, clock) -> None:
    spool.record(make_message())
    claimed = spool.queue.claim("other-host:1:abc", "12345", 10, lease_seconds=300)
    assert [c.message_id for c in claimed] == [make_message()["message_id"]]
    assert row(spool, claimed[0].message_id)["state"] == "in_flight"
    assert row(spool, claimed[0].message_id)["payload"] == claimed[0].payload
    clock.advance(299)
    assert spool.queue.release_expired_leases() == 0
    clock.advance(1)
    assert spool.queue.release_expired_leases() == 1
    assert row(spool, claimed[0].message_id)["state"] == "queued"


def test_a_dead_local_owner_loses_its_lease_at_once(spool, make_message) -> None:
    import socket

    spool.record(make_message())
    spool.queue.claim(f"{socket.gethostname()}:999999999:abc", "12345", 10, lease_seconds=300)
    assert spool.queue.release_expired_leases() == 1


def test_a_failed_attempt_waits_in_retry_wait(spool, make_message, clock) -> None:
    spool.record(make_message())
    claimed = spool.queue.claim("me", "12345", 1, lease_seconds=60)[0]
    spool.queue.settle("me", [Retry(claimed.row_id, "rate_limited", clock.now() + 5, "SlowDown")])
    stored = row(spool, claimed.message_id)
    assert (stored["state"], stored["retry_reason"], stored["next_attempt_at"]) == (
        "retry_wait", "rate_limited", clock.now() + 5)
    assert spool.queue.claim("me", "12345", 1, lease_seconds=60) == []
    clock.advance(5)
    again = spool.queue.claim("me", "12345", 1, lease_seconds=60)
    assert [c.row_id for c in again] == [claimed.row_id]
    spool.queue.settle("me", [Stored(claimed.row_id, claimed.key, "file:///x/")])
    assert row(spool, claimed.message_id)["state"] == "stored"


def test_a_claim_takes_due_retries_and_queued_messages_oldest_first(
        spool, make_message, clock) -> None:
    for n in range(4):
        spool.record(make_message(message_id=f"m-{n}"))
    first = spool.queue.claim("me", "12345", 2, lease_seconds=60)
    assert [c.message_id for c in first] == ["m-0", "m-1"]
    spool.queue.settle("me", [Retry(first[0].row_id, "rate_limited", clock.now() + 5, "SlowDown"),
                              Retry(first[1].row_id, "rate_limited", clock.now() + 100, "x")])
    clock.advance(5)
    # m-0 is due again and older than the queued m-2 and m-3; m-1 waits.
    claimed = spool.queue.claim("me", "12345", 2, lease_seconds=60)
    assert [c.message_id for c in claimed] == ["m-0", "m-2"]
    for message in claimed:
        assert message.payload == row(spool, message.message_id)["payload"]
        assert row(spool, message.message_id)["state"] == "in_flight"
    assert (claimed[0].attempts, claimed[0].retry_reason) == (1, "rate_limited")
    # A schedule further ahead than `overdue_after` (a clock that went back) is due too.
    late = spool.queue.claim("me", "12345", 5, lease_seconds=60,
                             overdue_after=clock.now() + 50)
    assert [c.message_id for c in late] == ["m-1", "m-3"]
    assert late[0].payload == row(spool, "m-1")["payload"]


# ----------------------------------------------------------------------------- the file


@pytest.mark.parametrize("spool_backend", ["sqlite"], indirect=True)  # a file's modes
def test_spool_and_config_are_owner_only(sm_home, clock, make_message) -> None:
    with Spool.open(clock=clock) as spool:
        spool.record(make_message())
        save_projects(sm_home / "config.toml", {})
        for name in ("spool.db", "spool.db-wal", "spool.db-shm", "config.toml"):
            mode = stat.S_IMODE((sm_home / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)}"
        assert stat.S_IMODE(sm_home.stat().st_mode) == 0o700


@pytest.mark.parametrize("spool_backend", ["sqlite"], indirect=True)
def test_spool_is_wal_with_full_sync(spool) -> None:
    assert spool.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_recorded_message_is_on_disk_when_record_returns(spool, make_message) -> None:
    spool.record(make_message())
    other = raw_connection(spool)
    assert [tuple(r) for r in other.execute("SELECT state FROM messages").fetchall()] == [
        ("queued",)]
    kept = other.execute("SELECT payload FROM message_bodies").fetchone()[0]
    payload = json.loads(payload_of(kept))
    assert payload["schema_version"] == 1


def test_other_bytes_under_the_key_fail_as_conflict_and_are_left_alone(
        spool, make_message, clock, tmp_path) -> None:
    message = make_message()
    key = parse_message(message).key
    squatter = tmp_path / "a" / key
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(gzip.compress(b'{"someone":"else"}', mtime=0))
    spool.record(message)
    archive(spool, tmp_path / "a", clock)
    stored = row(spool, message["message_id"])
    assert stored["state"] == "failed"
    assert stored["final_reason"] == "conflict"
    assert stored["last_error"].endswith("already exists with other content")
    assert stored["payload"] == parse_message(message).payload()  # kept for a replay
    assert gzip.decompress(squatter.read_bytes()) == b'{"someone":"else"}'


def test_a_stored_message_settles_with_its_complete_manifest_entry(
        spool, make_message, clock, tmp_path) -> None:
    """The entry made in the settling UPDATE carries the bucket object's real hash and size
    and the identifier hashes (no payload kept); a row whose ingest hashes are damaged keeps
    its payload for the completion instead of getting guessed hashes."""
    good = make_message(message_id="m-good", recipient={"email": "Ann@X.io", "user_id": "u-1"})
    damaged = make_message(message_id="m-damaged")
    spool.record(good)
    spool.record(damaged)
    conn = raw_connection(spool)
    try:
        conn.execute("UPDATE messages SET recipient_hashes = '{not json'"
                     f" WHERE message_id = {mark(conn)}", ("m-damaged",))
        if isinstance(conn, sqlite3.Connection):  # PostgreSQL's test connection autocommits
            conn.commit()
    finally:
        conn.close()
    claimed = {c.message_id: c for c in spool.queue.claim("me", "12345", 10, lease_seconds=60)}
    outcomes = []
    for message_id, message in claimed.items():
        (tmp_path / message_id).write_bytes(gzip.compress(message.payload))
        body = (tmp_path / message_id).read_bytes()
        outcomes.append(Stored(message.row_id, message.key, "file:///a/", None,
                               hashlib.sha256(body).hexdigest(), len(body)))
    spool.queue.settle("me", outcomes)
    entries = {r["message_id"]: r for r in rows(
        spool, "SELECT message_id, object_sha256, size, recipient_hashes,"
        " payload IS NULL AS gone FROM manifest_entries")}
    body = (tmp_path / "m-good").read_bytes()
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert (entries["m-good"]["object_sha256"], entries["m-good"]["size"]) == (
        hashlib.sha256(body).hexdigest(), len(body))
    assert json.loads(entries["m-good"]["recipient_hashes"]) == {
        "email": sha("ann@x.io"), "user_id": sha("u-1")}
    assert list(json.loads(entries["m-good"]["recipient_hashes"])) == ["email", "user_id"]
    assert bool(entries["m-good"]["gone"]) is True
    damaged_entry = entries["m-damaged"]
    assert (damaged_entry["object_sha256"], damaged_entry["size"],
            damaged_entry["recipient_hashes"], bool(damaged_entry["gone"])) == (
        None, None, None, False)
