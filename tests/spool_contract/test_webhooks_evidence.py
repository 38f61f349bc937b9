"""Delivery evidence on each spool backend (SPEC 9.3): the upload `sm run` makes each turn
writes the exact bytes create-only and enters the object in the log in one transaction; a
failed upload (a planted object at the key) is retried later and never entered; an event
recorded but not applied before a crash is applied on the next turn; every message of a
batch ingest is findable by its provider message id."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.config.providers import SesSettings
from stored_messages_cli.destinations import open_destination
from stored_messages_cli.destinations.file import ensure_folder
from stored_messages_cli.evidence.delivery import DeliveryEvidence, evidence_key
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.delivery_rows import NewProviderEvent
from stored_messages_cli.states import State
from stored_messages_cli.webhooks import Receiver
from tests.support.fixtures.core import jsonl
from tests.support.provider_signing import SnsSigner, ses_event
from tests.support.spool_db import rows

PROJECT = "12345"


@pytest.fixture
def signer(tmp_path: Path) -> SnsSigner:
    return SnsSigner(tmp_path / "sns")


@pytest.fixture
def receiver(spool: Spool, clock: FakeClock, signer: SnsSigner) -> Receiver:
    return Receiver(spool, {PROJECT: {"ses": SesSettings(trust_store=str(signer.pem_path))}},
                    clock)


def _message(make_message: Callable[..., dict[str, Any]], message_id: str,
             provider_id: str) -> dict[str, Any]:
    message = make_message(message_id=message_id,
                           provider={"name": "ses", "message_id": provider_id})
    message.pop("sent_at")
    return message


def test_evidence_is_uploaded_once_with_its_log_entry(
        spool: Spool, receiver: Receiver, signer: SnsSigner, tmp_path: Path,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_message(make_message, "m-1", "ses-1"))
    body = json.dumps(signer.sign(ses_event("Send", "ses-1", sns_id="sns-1"))).encode()
    assert receiver.receive("ses", PROJECT, body, {}, "")[0] == 200
    url = f"file://{tmp_path / 'archive'}/"
    ensure_folder(url)
    destination = open_destination(url)
    uploader = DeliveryEvidence(spool, {PROJECT: destination})
    assert uploader.upload_due() == 1
    assert uploader.upload_due() == 0  # archived: not again
    key = evidence_key(PROJECT, "m-1", "sns-1")
    stored = (tmp_path / "archive" / key).read_bytes()
    assert base64.b64decode(json.loads(gzip.decompress(stored))["body_base64"]) == body
    [event] = spool.deliveries.delivery_of(PROJECT, "m-1")
    assert (event["key"], event["state"]) == (key, "archived")
    outcomes = spool.evidence.open_outcomes(PROJECT)
    assert ("m-1", "evidence", key) in outcomes
    # the spool's copy of the request is dropped: the bucket holds it, the log its hash
    [(kept,)] = rows(spool, 'SELECT "body" FROM "provider_events" WHERE "event_id" = {p}',
                     ("sns-1",))
    assert bytes(kept) == b""


def test_a_planted_object_at_the_key_is_retried_never_entered(
        spool: Spool, receiver: Receiver, signer: SnsSigner, tmp_path: Path, clock: FakeClock,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_message(make_message, "m-2", "ses-2"))
    body = json.dumps(signer.sign(ses_event("Delivery", "ses-2", sns_id="sns-2"))).encode()
    receiver.receive("ses", PROJECT, body, {}, "")
    url = f"file://{tmp_path / 'archive'}/"
    ensure_folder(url)
    planted = tmp_path / "archive" / evidence_key(PROJECT, "m-2", "sns-2")
    planted.parent.mkdir(parents=True)
    planted.write_bytes(gzip.compress(b'{"forged": true}'))
    uploader = DeliveryEvidence(spool, {PROJECT: open_destination(url)})
    assert uploader.upload_due() == 0
    assert uploader.upload_due() == 0  # not due again yet
    assert planted.read_bytes() == gzip.compress(b'{"forged": true}')  # left untouched
    assert not [o for o in spool.evidence.open_outcomes(PROJECT) if o[1] == "evidence"]
    planted.unlink()
    clock.advance(31)
    assert uploader.upload_due() == 1


def test_an_event_recorded_but_not_applied_before_a_crash_is_applied_next_turn(
        spool: Spool, make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_message(make_message, "m-3", "ses-3"))
    with spool.store.write():  # what `record` wrote before the process died
        spool.store.add_provider_event(NewProviderEvent(
            PROJECT, "ses", "sns-3", "ses-3", ("ses-3",), "accepted", "2026-11-27T17:00:00Z",
            b"{}", "{}", "{}", "sent"), "m-3", spool.clock.now())
    spool.deliveries.match_orphans()
    row = spool.report.message_state(PROJECT, "m-3")
    assert row is not None and row["state"] == State.QUEUED


def test_every_message_of_a_batch_is_findable_by_its_provider_id(
        spool: Spool, make_message: Callable[..., dict[str, Any]]) -> None:
    messages = [_message(make_message, f"b-{i}", f"ses-b-{i}") for i in range(5)]
    report = spool.intake.ingest_lines(jsonl(*messages).splitlines())
    assert report.accepted == 5
    for i in range(5):
        assert spool.store.message_for_provider_id(PROJECT, ["nope", f"ses-b-{i}"]) == f"b-{i}"


def test_on_its_own_thread_the_last_pass_comes_with_close(
        spool: Spool, receiver: Receiver, signer: SnsSigner, tmp_path: Path,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_message(make_message, "m-6", "ses-6"))
    url = f"file://{tmp_path / 'archive'}/"
    ensure_folder(url)
    uploader = DeliveryEvidence(spool, {PROJECT: open_destination(url)}, background=True)
    uploader.tick()  # nothing to do yet, on the evidence thread
    body = json.dumps(signer.sign(ses_event("Delivery", "ses-6", sns_id="sns-6"))).encode()
    receiver.receive("ses", PROJECT, body, {}, "")
    uploader.close()  # joins the running turn, then one more pass
    key = evidence_key(PROJECT, "m-6", "sns-6")
    assert (tmp_path / "archive" / key).exists()
    assert ("m-6", "evidence", key) in spool.evidence.open_outcomes(PROJECT)


def test_a_confirmed_copy_naming_the_provider_id_makes_it_findable(
        spool: Spool, make_message: Callable[..., dict[str, Any]]) -> None:
    rendered = make_message(message_id="m-7")
    rendered.pop("sent_at")
    rendered.pop("provider")
    spool.record(rendered)
    assert spool.store.message_for_provider_id(PROJECT, ["ses-7"]) is None
    spool.record(make_message(message_id="m-7", provider={"name": "ses", "message_id": "ses-7"}))
    assert spool.store.message_for_provider_id(PROJECT, ["ses-7"]) == "m-7"


def test_prune_forgets_the_events_and_ids_of_the_messages_it_deletes(
        spool: Spool, receiver: Receiver, signer: SnsSigner, clock: FakeClock,
        make_message: Callable[..., dict[str, Any]]) -> None:
    from stored_messages_cli.spool.maintenance import prune

    spool.record(_message(make_message, "m-8", "ses-8"))
    spool.record(_message(make_message, "m-9", "ses-9"))  # stays: awaiting confirmation
    for provider_id, sns_id in (("ses-8", "sns-8"), ("ses-9", "sns-9")):
        kind = "Reject" if provider_id == "ses-8" else "DeliveryDelay"
        receiver.receive("ses", PROJECT, json.dumps(signer.sign(ses_event(
            kind, provider_id, sns_id=sns_id))).encode(), {}, "")
    clock.advance(40 * 86400)
    report = prune(spool, 30 * 86400)
    assert report.discarded == 1  # m-8, discarded as send_failed
    assert spool.deliveries.delivery_of(PROJECT, "m-8") == []
    assert spool.store.message_for_provider_id(PROJECT, ["ses-8"]) is None
    assert [e["event"] for e in spool.deliveries.delivery_of(PROJECT, "m-9")] == ["other"]
    assert spool.store.message_for_provider_id(PROJECT, ["ses-9"]) == "m-9"
