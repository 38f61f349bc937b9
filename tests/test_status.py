"""`sm status`: the JSON document of SPEC 6 and the human view."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.spool import Retry, Spool
from stored_messages_cli.states import RetryClass
from tests.support.fixtures.core import jsonl

STATES = ["awaiting_confirmation", "queued", "in_flight", "retry_wait", "stored", "expired",
          "failed", "discarded"]
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def status(cli) -> dict:
    result = cli("--json", "status")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_empty_spool_has_every_key_of_the_spec(cli, spool) -> None:
    doc = status(cli)
    assert doc["counts"] == dict.fromkeys(STATES, 0)
    assert list(doc["counts"]) == STATES
    assert doc["oldest_unarchived_age_seconds"] is None
    assert doc["next_retry_at"] is None
    assert doc["rejected_lines"] == 0
    assert doc["destinations"] == []


def test_counts_health_and_age_after_a_run(cli, tmp_path: Path, make_message) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    pending = {k: v for k, v in make_message("push").items() if k != "sent_at"}
    cli("ingest", input=jsonl(make_message(), make_message("sms"), pending))
    before = status(cli)
    assert before["counts"]["queued"] == 2
    assert before["counts"]["awaiting_confirmation"] == 1
    assert isinstance(before["oldest_unarchived_age_seconds"], float)
    assert [(d["project_id"], d["url"], d["health"]) for d in before["destinations"]] == [
        ("12345", f"file://{archive}/", "unknown")]
    assert cli("run", "--once").exit_code == 0
    after = status(cli)
    assert after["counts"] == dict(dict.fromkeys(STATES, 0), stored=2,
                                   awaiting_confirmation=1)
    assert after["oldest_unarchived_age_seconds"] is None
    assert after["destinations"][0]["health"] == "ok"


def test_next_retry_is_rfc3339_utc(cli, sm_home: Path, make_message) -> None:
    clock = FakeClock(1_800_000_000.0)
    with Spool.open(clock=clock) as spool:
        spool.record(make_message())
        claimed = spool.queue.claim("me", "12345", 1, lease_seconds=60)[0]
        spool.queue.settle(
            "me", [Retry(claimed.row_id, RetryClass.RATE_LIMITED, 1_800_000_030.0, "SlowDown")])
    doc = status(cli)
    assert doc["counts"]["retry_wait"] == 1
    assert doc["next_retry_at"] == "2027-01-15T08:00:30Z"
    assert RFC3339.fullmatch(doc["next_retry_at"])
    assert doc["retry_reasons"] == {"rate_limited": 1}


def test_messages_of_a_project_without_destination_are_named(cli, make_message) -> None:
    cli("ingest", input=jsonl(make_message(project_id=777)))
    doc = status(cli)
    assert doc["projects_without_destination"] == ["777"]
    assert "Waiting for a destination: project(s) 777" in cli("status").stdout


def test_human_status_shows_every_state(cli, spool) -> None:
    out = cli("status").stdout
    for state in STATES:
        assert state in out


def test_recorded_health_of_the_current_destination_is_shown(cli, sm_home, tmp_path) -> None:
    url = f"file://{tmp_path}/a/"
    cli("connect", url, "--project", "12345")
    with Spool.open() as spool:
        spool.health.set("12345", url, "unreachable", next_probe_at=1_800_028_800.0,
                         last_error="ConnectionRefused")
        spool.health.set("999", "s3://old-bucket/", "rate_limited")  # not connected any more
    doc = status(cli)
    assert doc["destinations"] == [{
        "project_id": "12345", "url": url, "health": "unreachable", "reason": None,
        "since": doc["destinations"][0]["since"], "next_probe_at": "2027-01-15T16:00:00Z",
        "last_error": "ConnectionRefused"}]
    assert RFC3339.fullmatch(doc["destinations"][0]["since"])


def test_status_warns_when_messages_are_discarded_for_lack_of_confirmation(
        cli, sm_home, make_message) -> None:
    clock = FakeClock(1_800_000_000.0)
    unconfirmed = {k: v for k, v in make_message().items() if k not in ("sent_at", "provider")}
    with Spool.open(home=sm_home, clock=clock) as spool:
        spool.record(unconfirmed)
        clock.advance(25 * 3600)
        assert spool.intake.discard_unconfirmed(24 * 3600) == 1
    result = cli("status")
    assert result.exit_code == 0
    assert "Discarded: never_confirmed 1" in result.stdout
    assert ("Warning: 1 message(s) were discarded because no send confirmation arrived within"
            " confirm_timeout") in " ".join(result.stderr.split())
    assert json.loads(cli("--json", "status").stdout)["discarded_by_reason"] == {
        "never_confirmed": 1}


def test_check_names_a_project_whose_messages_wait_for_a_destination(cli, make_message
                                                                      ) -> None:
    cli("ingest", input=jsonl(make_message(project_id=777)))
    result = cli("status", "--check")
    assert result.exit_code == 1, result.output
    assert ("project_without_destination: project 777: messages wait for a destination;"
            " sm connect URL --project 777") in result.stdout.splitlines()
    doc = json.loads(cli("--json", "status", "--check").stdout)
    assert doc["ok"] is False
    assert {"kind": "project_without_destination",
            "detail": "project 777: messages wait for a destination; sm connect URL --project"
                      " 777"} in doc["problems"]
