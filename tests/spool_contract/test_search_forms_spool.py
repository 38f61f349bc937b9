"""SPEC 9.2 search hashes on each spool backend: a message recorded with an NFD address and a
spaced phone number, stored to a real folder and settled, is found in the archive index by the
NFC spelling and by E.164; its manifest entry (made in the settling transaction) carries the
same search forms the payload gives; the key keeps the hash of the stored spelling."""

from __future__ import annotations

import gzip
import hashlib
import json
import unicodedata

from stored_messages_cli.investigate.index import ArchiveIndex, FindQuery
from stored_messages_cli.message import parse_message, recipient_hash_candidates
from stored_messages_cli.spool import Stored
from stored_messages_cli.spool.manifests import recipient_hashes
from tests.support.spool_db import rows

NFC = unicodedata.normalize("NFC", "zoë.çelik@example.com")
NFD = unicodedata.normalize("NFD", NFC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_nfc_and_e164_find_a_settled_message(spool, make_message, tmp_path) -> None:
    message = make_message(message_id="m-nfd",
                           recipient={"email": NFD, "phone_number": "+1 555 010 0000"})
    assert parse_message(message).recipient_hash == sha(NFD.lower())  # the key is unchanged
    spool.record(message)
    [claimed] = spool.queue.claim("me", "12345", 10, lease_seconds=60)
    body = gzip.compress(claimed.payload)
    path = tmp_path / "bucket" / claimed.key
    path.parent.mkdir(parents=True)
    path.write_bytes(body)
    spool.queue.settle("me", [Stored(claimed.row_id, claimed.key, f"file://{tmp_path}/bucket/",
                                     None, hashlib.sha256(body).hexdigest(), len(body))])
    index = ArchiveIndex.of(spool)
    for query in (NFC, NFD, NFC.upper(), "+15550100000", "+1 (555) 010-0000"):
        found = index.find(FindQuery(recipient_hashes=tuple(recipient_hash_candidates(query))))
        assert [e.message_id for e in found.entries] == ["m-nfd"], query
    assert index.find(FindQuery(recipient_hashes=tuple(
        recipient_hash_candidates("+15550100001")))).entries == []
    [entry] = rows(spool, "SELECT recipient_hashes FROM manifest_entries")
    hashes = json.loads(entry["recipient_hashes"])
    assert list(hashes) == ["email", "phone_number", "email_nfc", "phone_number_e164"]
    assert hashes == {"email": sha(NFD.lower()), "phone_number": sha("+1 555 010 0000"),
                      "email_nfc": sha(NFC.lower()), "phone_number_e164": sha("+15550100000")}
    assert hashes == recipient_hashes(claimed.payload, "unused")  # the payload path agrees


def test_default_phone_region_reaches_the_index_and_both_entry_paths(
        spool, make_message, tmp_path, monkeypatch) -> None:
    """With `default_phone_region`, a national number is recorded with its E.164 hash too:
    the archive index and the manifest entry have it, whether the settle knew the object's
    hash (the fast path) or the entry was completed from the kept payload (the slow one,
    which takes the hashes of ingest, not the payload's, which know no region)."""
    monkeypatch.setenv("SM_DEFAULT_PHONE_REGION", "US")
    national = "(555) 010-0000"
    for n in range(2):
        spool.record(make_message(message_id=f"m-{n}", recipient={"phone_number": national}))
    claimed = spool.queue.claim("me", "12345", 10, lease_seconds=60)
    outcomes = []
    for item in claimed:
        body = gzip.compress(item.payload)
        path = tmp_path / "bucket" / item.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        fast = item.message_id == "m-0"
        outcomes.append(Stored(item.row_id, item.key, f"file://{tmp_path}/bucket/", None,
                               hashlib.sha256(body).hexdigest() if fast else None,
                               len(body) if fast else None))
    spool.queue.settle("me", outcomes)
    with spool.store.write():
        spool.store.complete_entries()
    found = ArchiveIndex.of(spool).find(FindQuery(recipient_hashes=tuple(
        recipient_hash_candidates("+15550100000"))))
    assert sorted(e.message_id for e in found.entries) == ["m-0", "m-1"]
    expected = {"phone_number": sha(national), "phone_number_e164": sha("+15550100000")}
    entries = rows(spool, "SELECT message_id, recipient_hashes FROM manifest_entries"
                   " ORDER BY message_id")
    assert [json.loads(e["recipient_hashes"]) for e in entries] == [expected, expected]
    # the key keeps the hash of the stored spelling
    assert all(sha(national) in item.key for item in claimed)
