"""A batch of an encrypted project's messages (issue 28): no plain gzip made at validation,
each cached key checked once in the batch's transaction, the envelopes compressed together,
and the same bytes as one message at a time."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.message import gzip_member, parse_message, parse_messages
from stored_messages_cli.message.envelope import parse_envelope
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
    checks: list[str] = []
    live = spool.store.recipient_key_live

    def counted(kid: str) -> bool:
        checks.append(kid)
        return live(kid)

    monkeypatch.setattr(spool.store, "recipient_key_live", counted)
    raws = [message(make_message, f"m-{i}", ("ann@example.com", "bob@example.com")[i % 2])
            for i in range(100)]  # long enough for the two compressing threads
    spool.record_many(raws)
    assert len(checks) == 2 and len(set(checks)) == 2  # one read per key, not per message
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
