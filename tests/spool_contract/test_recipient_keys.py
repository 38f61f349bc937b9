"""Recipient data keys on each spool backend (SPEC 9.5): made once per recipient, wrapped
(never in the clear), sealing every kept body, destroyed by an erasure so nothing in the
spool opens the object again, and shared by two spools on one database."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import parse_message
from stored_messages_cli.message.envelope import parse_envelope
from stored_messages_cli.spool import Spool, Stored
from stored_messages_cli.spool.recipient_keys import Erased
from stored_messages_cli.spool.sealing import RecipientKeys
from tests.support.spool_db import rows

SECRET = "Your secret order 4471 shipped"


@pytest.fixture(autouse=True)
def encrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_ENCRYPTION", "per-recipient")


def message(make_message: Any, message_id: str, email: str = "ann@example.com") -> Any:
    return make_message(message_id=message_id, recipient={"email": email},
                        content={"from": "a@shop.example", "to": email, "subject": SECRET,
                                 "html": f"<p>{SECRET}</p>"})


def kept_bodies(spool: Spool) -> list[bytes]:
    return [gzip.decompress(bytes(r["payload"]))
            for r in rows(spool, "SELECT payload FROM message_bodies")]


def keys_of(spool: Spool) -> RecipientKeys:
    assert spool.intake.keys is not None
    return spool.intake.keys


def test_one_wrapped_key_per_recipient_seals_every_kept_body(spool: Spool, make_message: Any,
                                                            sm_home: Path) -> None:
    spool.record(message(make_message, "m-1"))
    spool.record(message(make_message, "m-2"))
    spool.record(message(make_message, "m-3", "bob@example.com"))
    keys = rows(spool, "SELECT kid, recipient, wrapped, wrapped_with FROM recipient_keys")
    assert len(keys) == 2  # one per recipient
    assert {k["recipient"] for k in keys} == {
        hashlib.sha256(b"ann@example.com").hexdigest(),
        hashlib.sha256(b"bob@example.com").hexdigest()}
    assert all(str(k["wrapped_with"]).startswith("master:") for k in keys)
    assert all(len(bytes(k["wrapped"])) == 12 + 32 + 16 for k in keys)  # nonce, key, tag
    bodies = kept_bodies(spool)
    assert len(bodies) == 3
    for body in bodies:
        assert SECRET.encode() not in body and b"ann@example.com" not in body
        assert parse_envelope(body).kid in {k["kid"] for k in keys}
    master = (sm_home / "keys" / "master.key")
    assert master.stat().st_mode & 0o777 == 0o600


def test_a_stored_object_opens_then_erasure_leaves_no_key_that_opens_it(
        spool: Spool, make_message: Any, tmp_path: Path) -> None:
    spool.record(message(make_message, "m-1"))
    [claimed] = spool.queue.claim("me", "12345", 10, lease_seconds=60)
    body = claimed.body
    assert body is not None
    envelope_bytes = gzip.decompress(body)
    assert hashlib.sha256(envelope_bytes).hexdigest() == claimed.payload_sha256
    spool.queue.settle("me", [Stored(claimed.row_id, claimed.key, f"file://{tmp_path}/",
                                     None, hashlib.sha256(body).hexdigest(), len(body))])
    envelope = parse_envelope(envelope_bytes)
    keys = keys_of(spool)
    plain = keys.key_for(envelope.kid, "m-1").open(envelope, claimed.key)
    assert SECRET.encode() in plain and b'"message_id":"m-1"' in plain
    [row] = rows(spool, "SELECT recipient FROM recipient_keys")
    with spool.store.write():
        erased = spool.store.erase_recipient_keys("12345", [row["recipient"]], "GDPR", 5.0)
    spool.store.after_erasure()
    assert [k.kid for k in erased] == [envelope.kid]
    keys.forget_cached()
    with pytest.raises(Erased, match="erased on"):
        keys.key_for(envelope.kid, "m-1")
    # no key left in the spool opens it: every key sm holds is tried
    for live in rows(spool, "SELECT kid FROM recipient_keys WHERE wrapped IS NOT NULL"):
        with pytest.raises(Exception):  # noqa: B017 - any failure to open will do
            keys.key_for(str(live["kid"]), "m-1").open(envelope, claimed.key)
    [gone] = rows(spool, "SELECT wrapped, erased_at, erase_reason FROM recipient_keys")
    assert gone["wrapped"] is None and gone["erase_reason"] == "GDPR"
    # a new message to the same recipient gets a new key
    spool.record(message(make_message, "m-2"))
    live = rows(spool, "SELECT kid FROM recipient_keys WHERE erased_at IS NULL")
    assert len(live) == 1 and live[0]["kid"] != envelope.kid
    assert keys.erased_at("12345", [row["recipient"]]) == {row["recipient"]: 5.0}


def test_a_late_sent_event_reseals_the_confirmed_message(spool: Spool, make_message: Any
                                                          ) -> None:
    unconfirmed = message(make_message, "m-9")
    del unconfirmed["sent_at"]
    spool.record(unconfirmed)
    assert spool.intake.confirm_sent("12345", "m-9", sent_at="2026-11-27T17:00:00Z") == \
        "accepted"
    [body] = kept_bodies(spool)
    envelope = parse_envelope(body)
    [claimed] = spool.queue.claim("me", "12345", 10, lease_seconds=60)
    plain = keys_of(spool).key_for(envelope.kid, "m-9").open(envelope, claimed.key)
    assert b'"sent_at":"2026-11-27T17:00:00Z"' in plain and SECRET.encode() in plain
    assert hashlib.sha256(body).hexdigest() == claimed.payload_sha256


def test_the_same_message_twice_is_a_duplicate_not_a_conflict(spool: Spool,
                                                             make_message: Any) -> None:
    assert spool.record(message(make_message, "m-1")) == "accepted"
    assert spool.record(message(make_message, "m-1")) == "duplicate"


def test_two_spools_on_one_database_share_one_key_per_recipient(
        spool: Spool, make_message: Any, sm_home: Path, clock: Any) -> None:
    with Spool.open(home=sm_home, clock=clock) as second:
        spool.record(message(make_message, "m-1"))
        second.record(message(make_message, "m-2"))
    keys = rows(spool, "SELECT kid FROM recipient_keys")
    assert len(keys) == 1
    assert {parse_envelope(b).kid for b in kept_bodies(spool)} == {keys[0]["kid"]}


@pytest.mark.parametrize("spool_backend", ["sqlite"], indirect=True)
def test_sqlite_keeps_no_copy_of_an_erased_key_in_its_files(spool: Spool, make_message: Any,
                                                            sm_home: Path) -> None:
    spool.record(message(make_message, "m-1"))
    [row] = rows(spool, "SELECT recipient, wrapped FROM recipient_keys")
    wrapped = bytes(row["wrapped"])
    with spool.store.write():
        spool.store.erase_recipient_keys("12345", [row["recipient"]], "GDPR", 5.0)
    spool.store.after_erasure()
    for path in sm_home.glob("spool.db*"):
        assert wrapped not in path.read_bytes(), path


def test_a_key_erased_by_another_spool_is_never_used_again(spool: Spool, make_message: Any,
                                                         sm_home: Path, clock: Any) -> None:
    spool.record(message(make_message, "m-1"))  # this spool now holds ann's key in memory
    [first] = rows(spool, "SELECT kid, recipient FROM recipient_keys")
    with Spool.open(home=sm_home, clock=clock) as other:  # `sm forget` in another process
        with other.store.write():
            other.store.erase_recipient_keys("12345", [first["recipient"]], "GDPR", 5.0)
    spool.record(message(make_message, "m-2"))
    sealed = {parse_envelope(b).kid for b in kept_bodies(spool)}
    [second] = rows(spool, "SELECT kid FROM recipient_keys WHERE erased_at IS NULL")
    assert sealed == {first["kid"], second["kid"]} and second["kid"] != first["kid"]


def test_a_rolled_back_key_is_not_used_by_the_next_message(spool: Spool, make_message: Any
                                                         ) -> None:
    keys = keys_of(spool)
    with pytest.raises(RuntimeError), spool.store.write():
        keys.protect(parse_message(message(make_message, "m-0")))  # then the batch fails
        raise RuntimeError("disk full, say")
    assert rows(spool, "SELECT kid FROM recipient_keys") == []
    assert keys._live  # the key made in it is still cached
    spool.record(message(make_message, "m-1"))
    [row] = rows(spool, "SELECT kid FROM recipient_keys")
    [body] = kept_bodies(spool)
    assert parse_envelope(body).kid == row["kid"]  # sealed under a key the spool holds


def test_evidence_is_sealed_under_the_recipients_key_and_erased_with_it(
        spool: Spool, make_message: Any) -> None:
    spool.record(message(make_message, "m-1"))
    [row] = rows(spool, "SELECT kid, recipient FROM recipient_keys")
    keys = keys_of(spool)
    event = b'{"event":"delivered","to":"ann@example.com"}'
    where = "_sm/evidence/12345/m-1/delivered.json.gz"
    with spool.store.write():
        sealed = keys.seal_evidence("12345", row["recipient"], where, event)
    assert b"ann@example.com" not in sealed
    envelope = parse_envelope(sealed)
    assert envelope.kid == row["kid"]
    assert keys.key_for(envelope.kid, where).open(envelope, where) == event
    with spool.store.write():
        spool.store.erase_recipient_keys("12345", [row["recipient"]], "GDPR", 5.0)
    keys.forget_cached()
    with pytest.raises(Erased):
        keys.key_for(envelope.kid, where)


def test_an_encrypted_message_recorded_again_after_prune_is_a_duplicate(
        spool: Spool, clock: Any, tmp_path: Path) -> None:
    from tests.spool_contract.test_pruned_identity import (
        bucket_files,
        other_content,
        store_and_prune,
        stored_message,
    )

    message = stored_message()
    folder = tmp_path / "bucket"
    store_and_prune(spool, clock, folder, [message])
    [key] = bucket_files(folder)
    stored = gzip.decompress((folder / key).read_bytes())
    assert message["recipient"]["email"].encode() not in stored
    assert message["content"]["subject"].encode() not in stored
    assert parse_envelope(gzip.decompress((folder / key).read_bytes()))
    assert spool.record(message) == "duplicate"
    with pytest.raises(Exception, match="other content"):
        spool.record(other_content(message) | {"recipient": message["recipient"]})


def test_forget_destroys_the_keys_and_logs_each_stored_message(
        spool: Spool, clock: Any, make_message: Any, tmp_path: Path) -> None:
    from stored_messages_cli.archiver import Archiver, ProjectTarget
    from stored_messages_cli.evidence.erasure import forget
    from tests.support.fixtures.core import connected_folder

    folder = tmp_path / "bucket"
    folder.mkdir(mode=0o700)
    spool.record_many([message(make_message, "m-1"), message(make_message, "m-2"),
                       message(make_message, "m-3", "bob@example.com")])
    destination = connected_folder(f"file://{folder}/")
    Archiver(spool, [ProjectTarget("12345", destination)], clock=clock,
             concurrency=1).run(once=True)
    clock.advance(60)
    erasure = forget(spool, keys_of(spool), "12345", " Ann@Example.com ", "GDPR #1")
    assert sorted(erasure.messages) == ["m-1", "m-2"] and len(erasure.keys) == 1
    erased = rows(spool, "SELECT message_id, outcome, reason, payload_sha256, stored_key"
                  " FROM manifest_entries WHERE outcome = 'erased' ORDER BY message_id")
    stored = {r["message_id"]: r for r in rows(
        spool, "SELECT message_id, payload_sha256, stored_key FROM manifest_entries"
        " WHERE outcome = 'stored'")}
    assert [r["message_id"] for r in erased] == ["m-1", "m-2"]
    for row in erased:
        assert row["reason"] == "GDPR #1"
        assert row["payload_sha256"] == stored[row["message_id"]]["payload_sha256"]
        assert row["stored_key"] == stored[row["message_id"]]["stored_key"]
    # again: nothing left to destroy, nothing logged twice
    again = forget(spool, keys_of(spool), "12345", "ann@example.com", "GDPR #1")
    assert again.keys == [] and again.messages == []
    assert len(rows(spool, "SELECT 1 FROM manifest_entries WHERE outcome = 'erased'")) == 2


def test_kill_9_mid_ingest_leaves_no_body_sealed_under_a_missing_key(
        spool: Spool, sm_home: Path) -> None:
    """A recorder killed with SIGKILL while making keys and sealing: whatever committed,
    each kept body opens with a key the spool holds (keys and bodies commit together)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, itertools\n"
        "from stored_messages_cli import Spool\n"
        "from tests.support.fixtures.core import EMAIL_MESSAGE\n"
        "import copy\n"
        "with Spool.open(home=sys.argv[1]) as spool:\n"
        "    for batch in itertools.count():\n"
        "        items = []\n"
        "        for i in range(20):\n"
        "            m = copy.deepcopy(EMAIL_MESSAGE)\n"
        "            m['message_id'] = f'k-{batch}-{i}'\n"
        "            m['recipient'] = {'email': f'r{batch}-{i % 7}@example.com'}\n"
        "            items.append(m)\n"
        "        spool.record_many(items)\n"
        "        print(batch, flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", code, str(sm_home)], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # some batches committed, the next one under way
        line = child.stdout.readline()
        if line and int(line) >= 3:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    bodies = rows(spool, "SELECT m.key, b.payload FROM message_bodies b"
                  " JOIN messages m ON m.id = b.id")
    assert len(bodies) >= 80
    keys = keys_of(spool)
    for row in bodies:
        envelope = parse_envelope(gzip.decompress(bytes(row["payload"])))
        plain = keys.key_for(envelope.kid, row["key"]).open(envelope, row["key"])
        assert b'"message_id":"k-' in plain


def test_a_sent_event_for_a_message_erased_while_unconfirmed_is_a_rejected_line(
        spool: Spool, make_message: Any) -> None:
    import json as json_

    unconfirmed = message(make_message, "m-5")
    del unconfirmed["sent_at"]
    spool.record(unconfirmed)
    [row] = rows(spool, "SELECT recipient FROM recipient_keys")
    with spool.store.write():
        spool.store.erase_recipient_keys("12345", [row["recipient"]], "GDPR", 5.0)
    event = {"event": "sent", "project_id": "12345", "message_id": "m-5",
             "sent_at": "2026-11-27T17:00:00Z"}
    report = spool.ingest_lines([json_.dumps(event) + "\n", json_.dumps(
        message(make_message, "m-6", "bob@example.com")) + "\n"], source="events")
    assert report.accepted == 1 and report.rejected == 1  # the next line still goes in
    assert "erased" in report.errors[0]["reason"]
