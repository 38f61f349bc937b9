"""The sender's Python API (SPEC 2, "Python API for senders")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

import stored_messages_cli
from stored_messages_cli import InvalidMessage, MessageConflict, Spool
from stored_messages_cli.spool.bodies import payload_of


def states(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT message_id, state FROM messages"))
    finally:
        conn.close()


def test_the_public_names_are_importable_from_the_package() -> None:
    assert set(stored_messages_cli.__all__) >= {"Spool", "InvalidMessage", "MessageConflict"}
    assert issubclass(InvalidMessage, ValueError)  # `except ValueError` also catches bad input


def test_open_uses_sm_home_like_the_cli(sm_home: Path, make_message, cli) -> None:
    with Spool.open() as spool:
        assert spool.path == sm_home / "spool.db"
        spool.record(make_message())
    assert states(sm_home / "spool.db") == {make_message()["message_id"]: "queued"}
    assert '"queued": 1' in cli("--json", "status").stdout


def test_open_with_a_path_uses_that_file(tmp_path: Path, make_message) -> None:
    target = tmp_path / "elsewhere" / "my.db"
    with Spool.open(target) as spool:
        spool.record(make_message())
    assert states(target) == {make_message()["message_id"]: "queued"}


def test_record_confirm_and_fail_from_python(sm_home: Path, make_message) -> None:
    rendered = {k: v for k, v in make_message().items() if k not in ("sent_at", "provider")}
    with Spool.open() as spool:
        assert spool.record(rendered) == "accepted"
        assert spool.record(dict(rendered, message_id="b")) == "accepted"
        assert spool.confirm_sent(12345, rendered["message_id"],
                                  sent_at="2026-11-27T17:00:00Z",
                                  provider={"name": "ses", "message_id": "x"}) == "accepted"
        assert spool.record_send_failure("12345", "b", reason="rejected by provider") == (
            "accepted")
    assert states(sm_home / "spool.db") == {rendered["message_id"]: "queued", "b": "discarded"}


def test_confirm_sent_takes_an_aware_datetime(sm_home: Path, make_message) -> None:
    from datetime import UTC, datetime

    rendered = {k: v for k, v in make_message().items() if k != "sent_at"}
    with Spool.open() as spool:
        spool.record(rendered)
        spool.confirm_sent(12345, rendered["message_id"],
                           sent_at=datetime(2026, 11, 27, 17, 0, 0, tzinfo=UTC))
        payload = payload_of(spool.conn.execute("SELECT payload FROM message_bodies").fetchone()[0])
    assert b'"sent_at":"2026-11-27T17:00:00Z"' in payload


def test_record_many_in_one_transaction(sm_home: Path, make_message) -> None:
    batch = [make_message(message_id=f"m-{i}") for i in range(50)]
    with Spool.open() as spool:
        assert spool.record_many(batch) == ["accepted"] * 50
        assert spool.record_many(batch[:2]) == ["duplicate", "duplicate"]
    assert len(states(sm_home / "spool.db")) == 50


def test_bad_input_raises_invalid_message_whose_text_is_the_reason(sm_home, make_message):
    with Spool.open() as spool, pytest.raises(InvalidMessage) as caught:
        spool.record(dict(make_message(), medium="fax"))
    assert str(caught.value) == "medium must be 'email', 'sms' or 'push'"


def test_other_content_raises_message_conflict(sm_home: Path, make_message) -> None:
    with Spool.open() as spool:
        spool.record(make_message())
        with pytest.raises(MessageConflict):
            spool.record(make_message(message_type="triggered"))


def test_a_pydantic_model_is_accepted(sm_home: Path, make_message) -> None:
    class Sent(BaseModel):
        model_config = ConfigDict(extra="allow")

    message = make_message()
    with Spool.open() as spool:
        assert spool.record(Sent(**message)) == "accepted"
        assert spool.record(message) == "duplicate"  # the same bytes as the plain dict
