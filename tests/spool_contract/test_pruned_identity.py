"""A stored message's identity outlives `sm spool prune` (SPEC 9.2), on both backends.

Prune deletes the row of a message stored long ago; its project, message id, payload
SHA-256, key (and the content hash intake compares) stay in the archive index. Recording it
again is a `duplicate`; other content, another `sent_at` or a send failure is a conflict
naming the stored copy; `sm show` and `sm find` still answer, and nothing new reaches the
bucket.
"""

from __future__ import annotations

import copy
import itertools
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli import MessageConflict
from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.investigate.index import ArchiveIndex, FindQuery
from stored_messages_cli.investigate.show import show_message
from stored_messages_cli.message import parse_message, sha256_hex
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.archive import EntryRow
from stored_messages_cli.spool.maintenance import prune
from tests.support.fixtures.core import EMAIL_MESSAGE, connected_folder
from tests.support.spool_db import raw_connection, rows

DAY = 86400.0
PROJECT = "12345"


def bucket_files(folder: Path) -> list[str]:
    """The objects a folder destination holds (its manifests and checkpoints aside)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json.gz")
                  if "_sm" not in p.parts)


def store_and_prune(spool: Spool, clock: FakeClock, folder: Path,
                    messages: list[dict[str, Any]]) -> None:
    """Record `messages`, archive them to `folder`, seal their manifest entries, and prune
    their rows 40 days later; checks that the rows are gone."""
    folder.mkdir(mode=0o700, exist_ok=True)
    spool.record_many(messages)
    destination = connected_folder(f"file://{folder}/")
    Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock,
             concurrency=1).run(once=True)
    Manifests(spool, {PROJECT: destination}).close()  # prune keeps open entries
    clock.advance(40 * DAY)
    assert prune(spool, 30 * DAY).stored >= len(messages)
    for message in messages:
        assert spool.message_state(PROJECT, message["message_id"]) is None


def stored_message(message_id: str = "m-1") -> dict[str, Any]:
    message = copy.deepcopy(EMAIL_MESSAGE)
    message["message_id"] = message_id
    return message


def other_content(message: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    changed["recipient"] = {"email": "mallory@evil.example"}
    changed["content"]["to"] = "mallory@evil.example"
    changed["content"]["html"] = "<p>pay here</p>"
    return changed


def unconfirmed(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("sent_at", "provider")}


def test_the_same_message_after_prune_is_a_duplicate(spool, clock, tmp_path: Path) -> None:
    message = stored_message()
    folder = tmp_path / "bucket"
    store_and_prune(spool, clock, folder, [message])
    before = bucket_files(folder)

    assert spool.record(message) == "duplicate"
    assert spool.record(unconfirmed(message)) == "duplicate"  # rendered again
    assert spool.record_many([message, stored_message("m-2")]) == ["duplicate", "accepted"]
    report = spool.ingest_lines([f"{line}\n" for line in [json.dumps(message)]], source="again")
    assert report.as_dict() == {"accepted": 0, "duplicate": 1, "rejected": 0,
                                "discarded": 0, "errors": []}
    assert spool.intake.confirm_sent(PROJECT, "m-1", sent_at=message["sent_at"]) == \
        "duplicate"
    assert spool.message_state(PROJECT, "m-1") is None  # no second row
    assert bucket_files(folder) == before


def test_other_content_after_prune_is_a_conflict_naming_the_stored_copy(
        spool, clock, tmp_path: Path) -> None:
    message = stored_message()
    folder = tmp_path / "bucket"
    store_and_prune(spool, clock, folder, [message])
    key = f"{parse_message(message).key}"
    payload_sha = parse_message(message).payload_sha

    with pytest.raises(MessageConflict) as other:
        spool.record(other_content(message))
    assert f"was stored at {key} (payload_sha256 {payload_sha}) with other content" in \
        str(other.value)
    with pytest.raises(MessageConflict, match="with another sent_at or provider"):
        spool.record({**message, "sent_at": "2026-11-28T09:00:00Z"})
    with pytest.raises(MessageConflict, match="with other content"):
        spool.record(unconfirmed(other_content(message)))
    with pytest.raises(MessageConflict, match="confirmed with another sent_at"):
        spool.intake.confirm_sent(PROJECT, "m-1", sent_at="2026-11-28T09:00:00Z")
    with pytest.raises(MessageConflict, match="a send failure cannot follow"):
        spool.intake.record_send_failure(PROJECT, "m-1", reason="bounced")
    with pytest.raises(MessageConflict):  # a batch holding it is refused as a whole
        spool.record_many([stored_message("m-3"), other_content(message)])

    report = spool.ingest_lines([f"{line}\n" for line in [json.dumps(other_content(message))]],
                                source="attack.jsonl")
    assert (report.accepted, report.duplicate, report.rejected) == (0, 0, 1)
    assert report.errors[0]["reason"].startswith(
        f"conflict: message m-1 of project {PROJECT} was stored at {key}")
    assert spool.message_state(PROJECT, "m-1") is None
    assert spool.message_state(PROJECT, "m-3") is None
    assert bucket_files(folder) == [key]


def test_show_and_find_still_answer_after_prune_and_an_attempted_overwrite(
        spool, clock, tmp_path: Path) -> None:
    message = stored_message()
    store_and_prune(spool, clock, tmp_path / "bucket", [message])
    with pytest.raises(MessageConflict):
        spool.record(other_content(message))
    parsed = parse_message(message)

    shown = show_message(ArchiveIndex.of(spool), "m-1")
    assert {k: shown[k] for k in ("state", "key", "payload_sha256", "body_in_spool")} == {
        "state": "stored", "key": parsed.key, "payload_sha256": parsed.payload_sha,
        "body_in_spool": False}
    found = ArchiveIndex.of(spool).find(FindQuery(
        recipient_hashes=(sha256_hex(b"ann.lee@example.com"),)))
    assert [(e.message_id, e.key) for e in found.entries] == [("m-1", parsed.key)]
    evil = ArchiveIndex.of(spool).find(FindQuery(
        recipient_hashes=(sha256_hex(b"mallory@evil.example"),)))
    assert evil.entries == []


def test_prune_keeps_8_bytes_of_the_content_hash_on_the_index_entry(
        spool, clock, tmp_path: Path) -> None:
    message = stored_message()
    store_and_prune(spool, clock, tmp_path / "bucket", [message])
    (found,) = rows(spool, "SELECT content_prefix FROM archive_entries"
                           " WHERE message_id = {p}", ("m-1",))
    assert bytes(found[0]) == bytes.fromhex(parse_message(message).content_sha256())[:8]


def test_an_entry_indexed_from_the_bucket_compares_by_payload(spool, clock, tmp_path: Path
                                                              ) -> None:
    """An entry without the content prefix (from `sm index rebuild`, or pruned by an older sm):
    a confirmed copy is compared by its payload hash; an unconfirmed one cannot be."""
    message = stored_message()
    store_and_prune(spool, clock, tmp_path / "bucket", [message])
    conn = raw_connection(spool)
    try:
        conn.execute("UPDATE archive_entries SET content_prefix = NULL")
        if isinstance(conn, sqlite3.Connection):
            conn.commit()
    finally:
        conn.close()

    assert spool.record(message) == "duplicate"
    with pytest.raises(MessageConflict, match="with another payload"):
        spool.record(other_content(message))
    with pytest.raises(MessageConflict, match="cannot be compared"):
        spool.record(unconfirmed(message))


def test_two_processes_recording_a_pruned_id_at_once_get_one_outcome(
        spool, clock, tmp_path: Path, sm_home: Path) -> None:
    message = stored_message()
    folder = tmp_path / "bucket"
    store_and_prune(spool, clock, folder, [message])
    copies = [message, other_content(message)] * 4
    outcomes: list[str] = []
    start = threading.Barrier(len(copies))

    def record(copy_: dict[str, Any]) -> None:
        with Spool.open(home=sm_home) as writer:  # its own connection, as another process
            start.wait()
            try:
                outcomes.append(writer.record(copy_))
            except MessageConflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=record, args=(c,)) for c in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict"] * 4 + ["duplicate"] * 4
    assert spool.message_state(PROJECT, "m-1") is None
    assert bucket_files(folder) == [parse_message(message).key]
    assert len(rows(spool, "SELECT id FROM archive_entries WHERE message_id = {p}",
                    ("m-1",))) == 1


# --------------------------------------------------------------------- the property

_IDS = itertools.count()
OPERATIONS = ("same", "same_unconfirmed", "other_content", "other_unconfirmed",
              "other_sent_at", "other_provider", "sent_event", "late_sent_event",
              "send_failed")


def _apply(spool: Spool, message: dict[str, Any], operation: str) -> str:
    """One operation on a stored message; its outcome, or `conflict`."""
    message_id = message["message_id"]
    try:
        if operation == "sent_event":
            return spool.intake.confirm_sent(PROJECT, message_id, sent_at=message["sent_at"])
        if operation == "late_sent_event":
            return spool.intake.confirm_sent(PROJECT, message_id,
                                             sent_at="2026-12-01T00:00:00Z")
        if operation == "send_failed":
            return spool.intake.record_send_failure(PROJECT, message_id, reason="bounced")
        variant = {
            "same": message, "same_unconfirmed": unconfirmed(message),
            "other_content": other_content(message),
            "other_unconfirmed": unconfirmed(other_content(message)),
            "other_sent_at": {**message, "sent_at": "2026-11-27T17:00:01Z"},
            "other_provider": {**message, "provider": {"name": "ses", "message_id": "x"}},
        }[operation]
        return spool.record(variant)
    except MessageConflict:
        return "conflict"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=6),
       data=st.data())
def test_prune_at_any_point_never_changes_what_a_second_record_is(
        spool, clock, tmp_path: Path, operations: list[str], data: st.DataObject) -> None:
    message = stored_message(f"p-{next(_IDS)}")
    folder = tmp_path / "bucket"
    folder.mkdir(mode=0o700, exist_ok=True)
    spool.record(message)
    destination = connected_folder(f"file://{folder}/")
    Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock,
             concurrency=1).run(once=True)
    Manifests(spool, {PROJECT: destination}).close()
    before = [_apply(spool, message, operation) for operation in operations]  # row kept
    assert spool.message_state(PROJECT, message["message_id"])["state"] == "stored"

    at = data.draw(st.integers(0, len(operations) - 1), label="prune before operation")
    after = []
    for number, operation in enumerate(operations):
        if number == at:
            clock.advance(40 * DAY)
            prune(spool, 30 * DAY)
            assert spool.message_state(PROJECT, message["message_id"]) is None
        after.append(_apply(spool, message, operation))
    assert after == before
    assert [name for name in bucket_files(folder)
            if name.endswith(f"/{message['message_id']}.json.gz")] == [
        parse_message(message).key]


def test_the_bucket_naming_another_object_replaces_the_identity(spool, clock, tmp_path: Path
                                                                ) -> None:
    """`sm index rebuild` finding the message at another key with other bytes: the index
    names that object now, and the content prefix of the pruned row goes with the old one."""
    message = stored_message()
    store_and_prune(spool, clock, tmp_path / "bucket", [message])
    (entry,) = ArchiveIndex.of(spool).entries_for("m-1")
    moved = EntryRow(PROJECT, "m-1", entry.medium, entry.message_type, entry.campaign_id,
                     entry.recipient_hash, entry.sent_at, "elsewhere/" + entry.key,
                     sha256_hex(b"other bytes"), None, entry.destination_url, entry.stored_at)
    with spool.store.write():
        assert spool.store.index_rows([moved], "other_key") == 1

    with pytest.raises(MessageConflict, match="was stored at elsewhere/.* with another payload"):
        spool.record(message)
    with pytest.raises(MessageConflict, match="cannot be compared"):
        spool.record(unconfirmed(message))


def test_the_bucket_naming_the_same_payload_elsewhere_keeps_the_identity(
        spool, clock, tmp_path: Path) -> None:
    message = stored_message()
    store_and_prune(spool, clock, tmp_path / "bucket", [message])
    (entry,) = ArchiveIndex.of(spool).entries_for("m-1")
    moved = EntryRow(PROJECT, "m-1", entry.medium, entry.message_type, entry.campaign_id,
                     entry.recipient_hash, entry.sent_at, "elsewhere/" + entry.key,
                     entry.payload_sha256, None, entry.destination_url, entry.stored_at)
    with spool.store.write():
        assert spool.store.index_rows([moved], "other_key") == 1

    assert spool.record(message) == "duplicate"
    assert spool.record(unconfirmed(message)) == "duplicate"


def test_an_id_learnt_from_the_bucket_is_stored_for_a_first_record_too(spool) -> None:
    """The index holds an object this spool never recorded (`sm index rebuild`): recording
    that message is a duplicate, another one under its id a conflict, and no row is made."""
    message = stored_message("from-bucket")
    parsed = parse_message(message)
    with spool.store.write():
        spool.store.index_rows([EntryRow(
            PROJECT, "from-bucket", "email", "blast", parsed.campaign_id,
            parsed.recipient_hash, parsed.sent_at_text, parsed.key, parsed.payload_sha, None,
            "file:///elsewhere/", 1.0)], "other_key")

    assert spool.record(message) == "duplicate"
    with pytest.raises(MessageConflict, match=f"was stored at {parsed.key}"):
        spool.record(other_content(message))
    assert spool.record_many([message]) == ["duplicate"]
    assert spool.message_state(PROJECT, "from-bucket") is None
