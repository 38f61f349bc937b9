"""`sm show MESSAGE_ID`: one message in each state, exact JSON, the reason of a discard, exit 1
for an unknown id, exit 2 for an id in two projects; and a stored message known only from the
index of a laptop (after `sm find --remote`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.queue import Failed, Retry, Stored
from stored_messages_cli.states import FinalReason, RetryClass
from tests.support.investigation_support import (
    archive,
    build_target,
    cli_for,
    connect,
    sha256_hex,
    sms,
)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
OWNER = "test-host:1:abcdef"


def at(offset: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + offset, UTC).isoformat().replace("+00:00", "Z")


def message(message_id: str, *, sent: bool = True) -> dict[str, Any]:
    document = sms(message_id, user_id="u-1")
    if not sent:
        document.pop("sent_at")
    return document


def payload_sha(message_id: str) -> str:
    from stored_messages_cli.message import parse_message

    return sha256_hex(parse_message(message(message_id)).payload())


def arrange(home: Path) -> None:
    """One message in each state, every time on a fake clock."""
    clock = FakeClock(T0)
    with Spool.open(home=home, clock=clock) as spool:
        spool.record(message("bounced", sent=False))
        spool.record(message("silent", sent=False))
        clock.advance(10)
        spool.record_send_failure(12345, "bounced", reason="550 5.1.1 mailbox unavailable")
        spool.intake.discard_unconfirmed(5)  # "silent"
        spool.record(message("waiting", sent=False))
        for name in ("queued", "retrying", "broken", "kept"):
            spool.record(message(name))
        clock.advance(10)
        claimed = {c.message_id: c.row_id for c in spool.queue.claim(
            OWNER, "12345", 10, lease_seconds=60)}
        clock.advance(5)
        spool.queue.settle(OWNER, [
            Retry(claimed["retrying"], RetryClass.UNREACHABLE, T0 + 3600, "connection refused"),
            Failed(claimed["broken"], FinalReason.CONFLICT, "the key holds other bytes"),
            Stored(claimed["kept"], "archive/sms/12345/k/unassociated/kept.json.gz",
                   "s3://bucket/archive/"),
        ])
        spool.queue.release(OWNER)


def test_show_each_state_exactly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    arrange(home)
    cli = cli_for(home)
    rhash = sha256_hex(b"u-1")

    def shown(message_id: str) -> dict[str, Any]:
        result = cli("--json", "show", message_id)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    base = {"final_reason": None, "last_error": None, "recorded_at": at(0),
            "confirmed_at": None, "first_failure_at": None, "next_attempt_at": None,
            "stored_at": None, "attempts": 0, "destination": None,
            "payload_sha256": None, "holds": [], "delivery": []}

    def key(name: str) -> str:
        return f"sms/12345/{rhash}/unassociated/{name}.json.gz"

    assert list(shown("waiting")) == [
        "message_id", "project_id", "state", "final_reason", "last_error", "recorded_at",
        "confirmed_at", "first_failure_at", "next_attempt_at", "stored_at", "attempts",
        "destination", "key", "payload_sha256", "body_in_spool", "holds", "delivery"]
    assert shown("silent") == {**base, "message_id": "silent", "project_id": "12345",
                               "state": "discarded", "final_reason": "never_confirmed",
                               # kept for confirm_grace: a late `sent` event revives it
                               "key": key("silent"), "body_in_spool": True}
    assert shown("bounced") == {**base, "message_id": "bounced", "project_id": "12345",
                                "state": "discarded", "final_reason": "send_failed",
                                "last_error": "550 5.1.1 mailbox unavailable",
                                "key": key("bounced"), "body_in_spool": False}
    confirmed = {**base, "recorded_at": at(10), "confirmed_at": at(10),
                 "project_id": "12345", "body_in_spool": True}
    assert shown("queued") == {**confirmed, "message_id": "queued", "state": "queued",
                               "key": key("queued"), "payload_sha256": payload_sha("queued")}
    assert shown("retrying") == {
        **confirmed, "message_id": "retrying", "state": "retry_wait",
        "last_error": "connection refused", "first_failure_at": at(25),
        "next_attempt_at": at(3600), "attempts": 1, "key": key("retrying"),
        "payload_sha256": payload_sha("retrying")}
    assert shown("broken") == {
        **confirmed, "message_id": "broken", "state": "failed", "final_reason": "conflict",
        "last_error": "the key holds other bytes", "attempts": 1, "key": key("broken"),
        "payload_sha256": payload_sha("broken")}
    assert shown("kept") == {
        **confirmed, "message_id": "kept", "state": "stored", "stored_at": at(25),
        "attempts": 1, "destination": "s3://bucket/archive/",
        "key": "archive/sms/12345/k/unassociated/kept.json.gz",
        "payload_sha256": payload_sha("kept"), "body_in_spool": False}
    waiting = shown("waiting")
    assert (waiting["state"], waiting["body_in_spool"]) == ("awaiting_confirmation", True)

    human = cli("show", "bounced")
    assert human.exit_code == 0
    assert ("discarded: never archived (send_failed: the send pipeline reported that its send"
            " failed)") in human.stderr
    assert "550 5.1.1 mailbox unavailable" in human.stdout
    silent = cli("show", "silent")
    assert "(never_confirmed: its send was never confirmed within confirm_timeout)" in \
        silent.stderr


def test_unknown_and_ambiguous_ids(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Spool.open(home=home, clock=FakeClock(T0)) as spool:
        spool.record(message("same"))
        spool.record({**message("same"), "project_id": 777})
    cli = cli_for(home)
    unknown = cli("--json", "show", "nope")
    assert (unknown.exit_code, unknown.stdout) == (1, "")
    assert ("Error: message nope is unknown to the spool and to the local index"
            in unknown.stderr)
    ambiguous = cli("show", "same")
    assert ambiguous.exit_code == 2
    assert "Error: message id same exists in projects 12345, 777" in ambiguous.stderr
    assert json.loads(cli("--json", "show", "same", "--project", "777").stdout)[
        "project_id"] == "777"


def test_a_configured_destination_gives_the_full_key_and_the_index_alone_suffices(
        tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [sms("s-1")])
    shown = json.loads(cli("--json", "show", "s-1").stdout)
    key = f"sms/12345/{sha256_hex(b'u-9')}/unassociated/s-1.json.gz"
    assert (shown["state"], shown["destination"], shown["key"], shown["attempts"]) == (
        "stored", target.url, key, 1)
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target)
    assert laptop("show", "s-1").exit_code == 1
    assert laptop("find", "--remote", "--recipient", "u-9").exit_code == 0
    remote = json.loads(laptop("--json", "show", "s-1").stdout)
    assert remote == {**shown, "recorded_at": None, "confirmed_at": None, "attempts": None,
                      "stored_at": remote["stored_at"]}
