"""The provider webhook receiver on each spool backend (SPEC 9.3): verified events are kept
whole and confirm or discard their message; refused requests change nothing; orphans wait
for their message, then `orphan_event_ttl` drops them; a Mailgun token works once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.config.providers import MailgunSettings, SesSettings
from stored_messages_cli.spool import Spool
from stored_messages_cli.states import State
from stored_messages_cli.webhooks import Receiver
from tests.support.provider_signing import SnsSigner, mailgun_body, ses_event, subscription

PROJECT = "12345"


@pytest.fixture
def signer(tmp_path: Path) -> SnsSigner:
    return SnsSigner(tmp_path / "sns")


@pytest.fixture
def receiver(spool: Spool, clock: FakeClock, signer: SnsSigner,
             monkeypatch: pytest.MonkeyPatch) -> Receiver:
    monkeypatch.setenv("TEST_MG_KEY", "mailgun-key")
    return Receiver(spool, {PROJECT: {
        "ses": SesSettings(trust_store=str(signer.pem_path.parent)),
        "mailgun": MailgunSettings(signing_key_env="TEST_MG_KEY")}}, clock)


def _awaiting(make_message: Callable[..., dict[str, Any]], message_id: str,
              provider_id: str) -> dict[str, Any]:
    message = make_message(message_id=message_id,
                           provider={"name": "ses", "message_id": provider_id})
    message.pop("sent_at")
    return message


def _ses(signer: SnsSigner, kind: str, provider_id: str, sns_id: str) -> bytes:
    return json.dumps(signer.sign(ses_event(kind, provider_id, sns_id=sns_id))).encode()


def _events(spool: Spool) -> dict[str, int]:
    return spool.deliveries.counts()


def test_an_accepted_event_confirms_the_message_and_is_kept(
        spool: Spool, receiver: Receiver, signer: SnsSigner,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_awaiting(make_message, "m-1", "ses-1"))
    body = _ses(signer, "Send", "ses-1", "sns-a")
    status, answer = receiver.receive("ses", PROJECT, body, {"X-Amz-Sns-Message-Type":
                                                             "Notification"}, "")
    assert status == 200
    assert answer["events"] == [{"event_id": "sns-a", "provider_message_id": "ses-1",
                                 "kind": "accepted", "at": "2026-11-27T17:00:00Z",
                                 "recorded": True, "message_id": "m-1",
                                 "applied": "confirmed"}]
    row = spool.report.message_state(PROJECT, "m-1")
    assert row is not None and row["state"] == State.QUEUED
    assert row["payload_sha256"]  # the confirmed payload (its sent_at is the event's)
    [delivery] = spool.deliveries.delivery_of(PROJECT, "m-1")
    assert (delivery["event"], delivery["provider"], delivery["verified"], delivery["key"]) == (
        "accepted", "ses", True, None)
    [kept] = spool.deliveries.to_archive([PROJECT], 10)
    assert kept.body == body  # byte for byte
    assert json.loads(kept.headers) == {"x-amz-sns-message-type": "Notification"}
    assert json.loads(kept.result)["verified"] is True

    # the same SNS message again (a provider retry): kept once, applied once
    status, again = receiver.receive("ses", PROJECT, body, {}, "")
    assert status == 200 and again["events"][0]["recorded"] is False
    assert _events(spool) == {"matched": 1}


def test_a_rejection_discards_the_message_as_send_failed(
        spool: Spool, receiver: Receiver, signer: SnsSigner,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_awaiting(make_message, "m-2", "ses-2"))
    status, answer = receiver.receive("ses", PROJECT, _ses(signer, "Reject", "ses-2", "sns-r"),
                                      {}, "")
    assert status == 200 and answer["events"][0]["applied"] == "send_failed"
    row = spool.report.message_state(PROJECT, "m-2")
    assert row is not None and (row["state"], row["final_reason"]) == (State.DISCARDED,
                                                                       "send_failed")


def test_refused_and_unreadable_requests_change_nothing(
        spool: Spool, receiver: Receiver, signer: SnsSigner, tmp_path: Path,
        make_message: Callable[..., dict[str, Any]]) -> None:
    spool.record(_awaiting(make_message, "m-3", "ses-3"))
    stranger = SnsSigner(tmp_path / "stranger")
    forged = _ses(stranger, "Send", "ses-3", "sns-f")
    assert receiver.receive("ses", PROJECT, forged, {}, "")[0] == 401
    document = json.loads(_ses(signer, "Send", "ses-3", "sns-t"))
    document["Message"] = document["Message"].replace("Send", "Reject")
    assert receiver.receive("ses", PROJECT, json.dumps(document).encode(), {}, "")[0] == 401
    assert receiver.receive("ses", PROJECT, b"{not json", {}, "")[0] == 400
    assert receiver.receive("sendgrid", PROJECT, b"[]", {}, "")[0] == 404
    assert receiver.receive("ses", "99999", _ses(signer, "Send", "ses-3", "x"), {}, "")[0] == 404
    assert receiver.receive("nosuch", PROJECT, b"{}", {}, "")[0] == 404
    assert _events(spool) == {}
    row = spool.report.message_state(PROJECT, "m-3")
    assert row is not None and row["state"] == State.AWAITING_CONFIRMATION


def test_a_subscription_confirmation_is_recorded_not_visited(
        spool: Spool, receiver: Receiver, signer: SnsSigner) -> None:
    status, answer = receiver.receive("ses", PROJECT, json.dumps(
        signer.sign(subscription())).encode(), {}, "")
    assert status == 200 and answer["events"] == []
    assert answer["subscription"]["confirmed"] is False  # confirm_subscriptions is off
    assert answer["subscription"]["subscribe_url"].startswith("https://sns.us-east-1.")


def test_an_orphan_waits_for_its_message_then_the_ttl_drops_the_rest(
        spool: Spool, receiver: Receiver, signer: SnsSigner, clock: FakeClock,
        make_message: Callable[..., dict[str, Any]]) -> None:
    status, answer = receiver.receive("ses", PROJECT, _ses(signer, "Delivery", "ses-4", "sns-o"),
                                      {}, "")
    assert status == 200 and answer["events"][0]["message_id"] is None
    receiver.receive("ses", PROJECT, _ses(signer, "Delivery", "ses-never", "sns-n"), {}, "")
    assert _events(spool) == {"orphan": 2}
    spool.record(_awaiting(make_message, "m-4", "ses-4"))
    clock.advance(3600)
    assert spool.deliveries.match_orphans(received_before=clock.now() - 7 * 86400) == 1
    row = spool.report.message_state(PROJECT, "m-4")
    assert row is not None and row["state"] == State.QUEUED
    assert _events(spool) == {"matched": 1, "orphan": 1}
    clock.advance(7 * 86400)
    spool.deliveries.match_orphans(received_before=clock.now() - 7 * 86400)
    assert _events(spool) == {"matched": 1}


def test_a_sent_event_with_a_provider_id_makes_the_message_findable(
        spool: Spool, receiver: Receiver, signer: SnsSigner,
        make_message: Callable[..., dict[str, Any]]) -> None:
    message = make_message(message_id="m-5")
    message.pop("sent_at")
    message.pop("provider")
    spool.record(message)
    spool.confirm_sent(PROJECT, "m-5", sent_at="2026-11-27T17:00:00Z",
                       provider={"name": "ses", "message_id": "ses-5"})
    status, answer = receiver.receive("ses", PROJECT, _ses(signer, "Delivery", "ses-5", "sns-5"),
                                      {}, "")
    assert status == 200 and answer["events"][0]["message_id"] == "m-5"
    assert answer["events"][0]["applied"] == "unchanged"  # confirmed already


def test_a_replayed_mailgun_token_is_refused(
        spool: Spool, receiver: Receiver, clock: FakeClock,
        make_message: Callable[..., dict[str, Any]]) -> None:
    event = {"event": "delivered", "id": "mg-ev-1", "timestamp": clock.now() - 5,
             "message": {"headers": {"message-id": "mg-1@mg.example"}}}
    body = mailgun_body(b"mailgun-key", event, timestamp=int(clock.now()), token="tok-" + "a" * 46)
    assert receiver.receive("mailgun", PROJECT, body, {}, "")[0] == 200
    clock.advance(60)
    status, answer = receiver.receive("mailgun", PROJECT, body, {}, "")
    assert status == 401 and "replay" in answer["error"]
    assert _events(spool) == {"orphan": 1}
    # a tampered copy with a fresh token but the old signature: refused too
    tampered = json.loads(body)
    tampered["signature"]["token"] = "tok-" + "b" * 46
    assert receiver.receive("mailgun", PROJECT, json.dumps(tampered).encode(), {}, "")[0] == 401
