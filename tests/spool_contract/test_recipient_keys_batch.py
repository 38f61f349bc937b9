"""A batch of an encrypted project's messages (issue 28): no plain gzip made at validation,
each cached key checked once in the batch's transaction, the envelopes compressed together,
and the same bytes as one message at a time."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import gzip_member, parse_message, parse_messages
from stored_messages_cli.message.envelope import parse_envelope
from stored_messages_cli.message.validate import sealed_as
from stored_messages_cli.spool import Spool
from tests.support.spool_db import rows


@pytest.fixture(autouse=True)
def encrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_ENCRYPTION", "per-recipient")


def message(make_message: Any, message_id: str, email: str) -> Any:
    return make_message(message_id=message_id, recipient={"email": email},
                        content={"from": "a@shop.example", "to": email, "subject": "Order",
                                 "html": f"<p>{message_id}</p>"})


def objects(spool: Spool) -> dict[str, bytes]:
    return {str(r["message_id"]): bytes(r["payload"]) for r in rows(
        spool, "SELECT m.message_id, b.payload FROM messages m"
               " JOIN message_bodies b ON b.id = m.id")}


def test_validation_leaves_the_object_to_sealing_only_for_the_projects_it_is_told(
        make_message: Any) -> None:
    raws = [message(make_message, f"m-{i}", "ann@example.com") for i in range(70)]
    raws += [{**message(make_message, f"o-{i}", "ann@example.com"), "project_id": 999}
             for i in range(70)]
    parsed = parse_messages(raws, lambda project: project == "12345")
    plain = parse_messages(raws)
    for made, usual, raw in zip(parsed, plain, raws, strict=True):
        assert not isinstance(made, Exception) and not isinstance(usual, Exception)
        if made.project_id == "12345":
            assert made.object_bytes == b""
            assert made.payload_bytes == usual.payload_bytes
        else:
            assert made == usual
            assert made.object_bytes == parse_message(raw).object_bytes


def test_a_batch_checks_each_cached_key_once_and_seals_as_one_at_a_time(
        spool: Spool, make_message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spool.record(message(make_message, "first-ann", "ann@example.com"))
    spool.record(message(make_message, "first-bob", "bob@example.com"))
    reads: list[str] = []

    def counting(name: str) -> Any:
        verb = getattr(spool.store, name)

        def counted(*args: Any) -> Any:
            reads.append(name)
            return verb(*args)
        return counted

    for name in ("recipient_key_live", "live_recipient_key", "live_recipient_keys",
                 "recipient_key"):
        monkeypatch.setattr(spool.store, name, counting(name))
    raws = [message(make_message, f"m-{i}", ("ann@example.com", "bob@example.com")[i % 2])
            for i in range(100)]  # a long batch
    spool.record_many(raws)
    assert reads == ["live_recipient_keys"]  # one lookup for the batch, not one per message
    stored = objects(spool)
    assert spool.intake.keys is not None
    for raw in raws:
        parsed = parse_message(raw)
        envelope = parse_envelope(gzip.decompress(stored[parsed.message_id]))
        key = spool.intake.keys.key_for(envelope.kid, parsed.message_id)
        assert key.open(envelope, parsed.key) == parsed.payload_bytes
        # the bytes one message at a time gives (the nonce hashing the payload itself)
        assert stored[parsed.message_id] == gzip_member(key.seal(parsed.payload_bytes,
                                                                 parsed.key))


def test_a_batch_of_new_recipients_makes_one_key_each_and_one_lookup(
        spool: Spool, make_message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[int] = []
    calls: list[str] = []
    batch_lookup = spool.store.live_recipient_keys
    one_insert = spool.store.add_recipient_key

    def inserted_one(key: Any) -> bool:
        calls.append("add_recipient_key")
        return one_insert(key)

    monkeypatch.setattr(spool.store, "add_recipient_key", inserted_one)

    def counted(project_id: str, recipients: Any) -> Any:
        lookups.append(len(recipients))
        return batch_lookup(project_id, recipients)

    monkeypatch.setattr(spool.store, "live_recipient_keys", counted)
    spool.record_many([message(make_message, f"n-{i}", f"user{i % 30}@example.com")
                       for i in range(90)])
    assert lookups == [30]  # and the 30 new keys inserted together:
    assert not any(call == "add_recipient_key" for call in calls)
    keys = rows(spool, "SELECT kid, recipient FROM recipient_keys")
    assert len(keys) == 30 and len({k["recipient"] for k in keys}) == 30
    assert {parse_envelope(gzip.decompress(body)).kid for body in objects(spool).values()} \
        == {k["kid"] for k in keys}


def test_a_new_key_that_loses_to_one_inserted_first_is_not_used(
        spool: Spool, make_message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer's key for a recipient, inserted before the batch's own: the batch
    seals that recipient's messages under the key the spool holds, not its own."""
    bulk = spool.store.add_recipient_keys
    theirs: list[str] = []

    def first_someone_else(keys: Any) -> Any:
        bob = keys[1]
        assert spool.intake.keys is not None
        protection = spool.intake.keys.protection(bob.project_id)
        assert protection is not None and protection.wrapper is not None
        other, _ = spool.intake.keys._new_key(bob.project_id, bob.recipient,
                                              protection.wrapper)
        assert spool.store.add_recipient_key(other)
        theirs.append(other.kid)
        return bulk(keys)

    monkeypatch.setattr(spool.store, "add_recipient_keys", first_someone_else)
    spool.record_many([message(make_message, "c-1", "ann@example.com"),
                       message(make_message, "c-2", "bob@example.com")])
    live = {k["recipient"]: k["kid"] for k in rows(spool, "SELECT kid, recipient FROM"
                                                          " recipient_keys")}
    assert len(live) == 2 and theirs[0] in live.values()
    stored = objects(spool)
    sealed = {parse_envelope(gzip.decompress(stored[m])).kid for m in ("c-1", "c-2")}
    assert sealed == set(live.values())


def test_sealed_as_is_replace_of_the_hash_and_the_object(make_message: Any) -> None:
    parsed = parse_message(message(make_message, "m-1", "ann@example.com"))
    assert sealed_as(parsed, "ab" * 32, b"object") == replace(
        parsed, payload_sha="ab" * 32, object_bytes=b"object")


def test_a_key_erased_between_two_batches_is_not_used_by_the_second(
        spool: Spool, make_message: Any, sm_home: Path, clock: Any) -> None:
    spool.record_many([message(make_message, f"a-{i}", "ann@example.com") for i in range(3)])
    [first] = rows(spool, "SELECT kid, recipient FROM recipient_keys")
    with Spool.open(home=sm_home, clock=clock) as other:  # `sm forget` in another process
        with other.store.write():
            other.store.erase_recipient_keys("12345", [first["recipient"]], "GDPR", 5.0)
    spool.record_many([message(make_message, f"b-{i}", "ann@example.com") for i in range(3)])
    [second] = rows(spool, "SELECT kid FROM recipient_keys WHERE erased_at IS NULL")
    assert second["kid"] != first["kid"]
    stored = objects(spool)
    for i in range(3):
        assert parse_envelope(gzip.decompress(stored[f"b-{i}"])).kid == second["kid"]
        assert parse_envelope(gzip.decompress(stored[f"a-{i}"])).kid == first["kid"]


def test_settings_that_do_not_load_leave_the_plain_gzip_and_fail_in_the_transaction(
        spool: Spool, make_message: Any) -> None:
    from stored_messages_cli.config.privacy import KeyUnavailable
    from stored_messages_cli.spool.sealing import RecipientKeys

    def unloadable(project_id: str) -> Any:
        raise KeyUnavailable("the master key file does not load")

    keys = RecipientKeys(spool.store, unloadable)
    assert keys.seals("12345") is False  # validation goes on, with the plain gzip
    with pytest.raises(KeyUnavailable), spool.store.write():
        keys.protect_many([])  # nothing to seal: no lookup
        keys.protect(parse_message(message(make_message, "m-1", "ann@example.com")))
