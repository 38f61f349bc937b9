"""The lean archive index (migration step 7): the same answers in fewer bytes.

Readers see the `archive_index` view with the columns they always had; these tests check that
every value survives the move exactly (an upgraded 0.1.0 spool, keys outside the layout, odd
hashes), that recipient finds use every identifier, and that a stored message costs at most
400 bytes of spool once pruned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.investigate.index import ArchiveIndex, FindQuery, IndexEntry
from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool, Stored
from stored_messages_cli.spool.maintenance import prune, vacuum
from tests.test_migrations import legacy_spool
from tests.test_migrations import read as rows

INDEX_SQL = ("SELECT project_id, message_id, medium, message_type, campaign_id, recipient_hash,"
             " sent_at, key, payload_sha256, version_id, destination_url, stored_at"
             " FROM archive_index ORDER BY project_id, message_id")


def test_an_upgraded_spool_answers_exactly_what_its_table_held(tmp_path: Path) -> None:
    path = legacy_spool(tmp_path / "spool.db")
    before = rows(path, INDEX_SQL)
    assert len(before) == 1 and before[0][7].endswith("/stored-1.json.gz")
    Spool(path).close()
    assert rows(path, INDEX_SQL) == before
    # the key is the layout's: kept as NULL and rebuilt by the view; the hashes are 32 bytes
    assert rows(path, "SELECT key, length(recipient_hash), length(payload_sha256),"
                      " typeof(recipient_hash) FROM archive_entries") == [(None, 32, 32, "blob")]
    assert rows(path, "SELECT destination_url, key_prefix FROM archive_locations") == [
        ("file:///archive/", "")]


def entry(message_id: str, **changes: object) -> IndexEntry:
    values: dict[str, object] = {
        "project_id": "12345", "message_id": message_id, "medium": "email",
        "message_type": "blast", "campaign_id": "111", "recipient_hash": sha256_hex(b"a@x.io"),
        "sent_at": "2026-11-27T17:00:00Z", "key": "", "payload_sha256": sha256_hex(b"p"),
        "version_id": None, "destination_url": "s3://bucket/archive/", "stored_at": 1.5e9,
    }
    values.update(changes)
    if not values["key"]:
        values["key"] = (f"archive/email/12345/{values['recipient_hash']}/"
                         f"{values['campaign_id'] or 'unassociated'}/{message_id}.json.gz")
    return IndexEntry(**values)  # type: ignore[arg-type]


def test_every_value_round_trips_whatever_its_shape(tmp_path: Path) -> None:
    odd = [
        entry("in-layout"),
        entry("no-campaign", campaign_id=None),
        entry("other-key", key="elsewhere/email/12345/x/111/other-key.json.gz"),
        entry("upper-hash", recipient_hash=sha256_hex(b"b").upper()),
        entry("not-hex", recipient_hash="not-a-hash", payload_sha256="stale"),
        entry("no-hashes", payload_sha256=None, version_id="v-1", destination_url=None),
        entry("other-project", project_id="777"),
    ]
    spool = Spool(tmp_path / "spool.db")
    try:
        index = ArchiveIndex.of(spool)
        assert index.add(odd) == len(odd)
        found = {e.message_id: e for e in index.find(FindQuery(limit=None)).entries}
    finally:
        spool.close()
    assert found == {e.message_id: e for e in odd}


def test_the_bucket_replaces_a_row_only_under_another_key(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    try:
        index = ArchiveIndex.of(spool)
        assert index.add([entry("m-1")]) == 1
        assert index.add([entry("m-1", payload_sha256=sha256_hex(b"other"))]) == 0
        moved = entry("m-1", key="moved/m-1.json.gz", recipient_hashes=(sha256_hex(b"u-1"),))
        assert index.add([moved]) == 1
        (kept,) = index.entries_for("m-1")
        assert (kept.key, kept.payload_sha256) == ("moved/m-1.json.gz", moved.payload_sha256)
        by_user = index.find(FindQuery(recipient_hashes=(sha256_hex(b"u-1"),))).entries
        by_email = index.find(FindQuery(recipient_hashes=(sha256_hex(b"a@x.io"),))).entries
    finally:
        spool.close()
    assert [e.message_id for e in by_user] == ["m-1"]
    assert [e.message_id for e in by_email] == ["m-1"]


def test_a_stored_message_is_found_by_every_identifier(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    try:
        spool.record({
            "message_id": "m-1", "project_id": 12345, "medium": "email", "message_type": "blast",
            "campaign_id": 9, "recipient": {"email": "Ann@Example.com", "user_id": "u-1"},
            "sent_at": "2026-11-27T17:00:00Z",
            "content": {"from": "a@shop.io", "to": "Ann@Example.com", "subject": "hi",
                        "html": "<p>hi</p>"},
            "provider": {"name": "ses", "message_id": "p-1"}})
        (claimed,) = spool.queue.claim("me", "12345", 10, lease_seconds=60)
        spool.queue.settle("me", [Stored(claimed.row_id, "pre/" + claimed.key,
                                         "file:///a/pre/", None)])
        index = ArchiveIndex.of(spool)
        hits = {name: [e.message_id for e in index.find(FindQuery(
            recipient_hashes=(sha256_hex(value.encode()),))).entries]
            for name, value in (("email", "ann@example.com"), ("user_id", "u-1"),
                                ("nobody", "someone@else.io"))}
        (stored,) = index.entries_for("m-1")
    finally:
        spool.close()
    assert hits == {"email": ["m-1"], "user_id": ["m-1"], "nobody": []}
    assert stored.key == "pre/" + claimed.key and stored.destination_url == "file:///a/pre/"
    assert rows(tmp_path / "spool.db", "SELECT key FROM archive_entries") == [(None,)]


def test_a_pruned_stored_message_costs_at_most_400_bytes(tmp_path: Path,
                                                         file_destination: Any) -> None:
    count = 2000
    clock = FakeClock()
    spool = Spool(tmp_path / "spool.db", clock=clock)
    try:
        for first in range(0, count, 500):
            spool.record_many([{
                "message_id": f"{n:032x}", "project_id": 12345, "medium": "email",
                "message_type": "blast", "campaign_id": 1234567,
                "recipient": {"email": f"user{n}@example.com", "user_id": f"user-{n:08d}"},
                "sent_at": "2026-11-27T17:00:00Z",
                "content": {"from": "a@shop.io", "to": f"user{n}@example.com",
                            "subject": "hi", "html": "<p>hi</p>" * 200},
                "provider": {"name": "ses", "message_id": f"p-{n}"}}
                for n in range(first, first + 500)])
        while claimed := spool.queue.claim("me", "12345", 500, lease_seconds=60):
            spool.queue.settle("me", [Stored(c.row_id, "archive/" + c.key,
                                             "s3://bucket/archive/", None) for c in claimed])
        Manifests(spool, {"12345": file_destination}).close()  # prune keeps open entries
        clock.advance(40 * 86400)
        assert prune(spool, 30 * 86400).stored == count
        vacuum(spool)
    finally:
        spool.close()
    per_table = dict(rows(tmp_path / "spool.db",
                          "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    index_bytes = sum(size for name, size in per_table.items() if "archive" in name)
    assert index_bytes / count <= 400, per_table
    assert len(rows(tmp_path / "spool.db", INDEX_SQL)) == count
