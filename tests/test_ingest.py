"""`sm ingest`: line-numbered rejections, good lines still accepted, rejected lines kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from stored_messages_cli.spool.bodies import payload_of
from tests.support.fixtures.core import jsonl


def spool_rows(home: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home / "spool.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_bad_lines_are_rejected_by_number_and_good_lines_go_in(cli, sm_home, make_message):
    lines = [
        json.dumps(make_message()),                                   # 1 accepted
        "{not json",                                                  # 2
        "",                                                           # 3 blank: skipped
        json.dumps(dict(make_message("sms"), medium="fax")),          # 4
        json.dumps(make_message("push")),                             # 5 accepted
        json.dumps({k: v for k, v in make_message("sms").items() if k != "recipient"}),  # 6
        "[1, 2]",                                                     # 7
    ]
    result = cli("--json", "ingest", "-", input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "accepted": 2, "duplicate": 0, "rejected": 4, "discarded": 0,
        "lines": 6, "messages": 2, "events": 0,
        "errors": [
            {"line": 2, "reason": "not valid JSON (Expecting property name enclosed in double"
                                  " quotes)"},
            {"line": 4, "reason": "medium must be 'email', 'sms' or 'push'"},
            {"line": 6, "reason": "recipient is required"},
            {"line": 7, "reason": "a message must be a JSON object"},
        ],
    }
    assert spool_rows(sm_home, "SELECT message_id, state FROM messages ORDER BY id") == [
        ("9c438a20d26e4e9f8ad4edea23f811cd", "queued"), ("push-1", "queued")]
    assert spool_rows(sm_home, "SELECT source, line, reason, raw FROM rejected ORDER BY id") == [
        ("stdin", 2, "not valid JSON (Expecting property name enclosed in double quotes)",
         "{not json"),
        ("stdin", 4, "medium must be 'email', 'sms' or 'push'", lines[3]),
        ("stdin", 6, "recipient is required", lines[5]),
        ("stdin", 7, "a message must be a JSON object", "[1, 2]"),
    ]


def test_human_summary_lists_each_rejected_line(cli, make_message) -> None:
    result = cli("ingest", input=jsonl(make_message()) + "oops\n")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "line 2: not valid JSON (Expecting value)",
        "2 lines: 1 message, 1 rejected; accepted 1, duplicate 0, rejected 1",
    ]


def test_rejections_are_shown_by_status(cli, make_message) -> None:
    cli("ingest", input="nope\n" + jsonl(make_message()))
    status = json.loads(cli("--json", "status").stdout)
    assert status["rejected_lines"] == 1
    assert [(r["source"], r["line"], r["reason"]) for r in status["recent_rejections"]] == [
        ("stdin", 1, "not valid JSON (Expecting value)")]
    human = cli("status").stdout
    assert "Rejected lines: 1" in human
    assert "stdin:1: not valid JSON (Expecting value)" in human


def test_ingesting_a_file_twice_is_idempotent(cli, tmp_path, make_message) -> None:
    source = tmp_path / "sent.jsonl"
    source.write_text(jsonl(make_message(), make_message("sms"), make_message("push")))
    first = cli("--json", "ingest", str(source))
    assert (first.exit_code, json.loads(first.stdout)["accepted"]) == (0, 3)
    again = cli("--json", "ingest", str(source))
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {"accepted": 0, "duplicate": 3, "rejected": 0,
                                        "discarded": 0, "errors": [],
                                        "lines": 3, "messages": 3, "events": 0}


def test_conflicting_line_is_rejected_and_the_first_copy_kept(cli, sm_home, make_message):
    first = make_message()
    other = make_message()
    other["content"]["subject"] = "Something else"
    result = cli("--json", "ingest", input=jsonl(first, other))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == [{
        "line": 2,
        "reason": "conflict: message 9c438a20d26e4e9f8ad4edea23f811cd of project 12345 was"
                  " recorded before with other content; the first copy is kept"}]
    kept = spool_rows(sm_home, "SELECT payload FROM message_bodies")[0][0]
    payload = json.loads(payload_of(kept))
    assert payload["content"]["subject"] == "Your order shipped"


def test_events_confirm_and_fail_earlier_lines(cli, sm_home, make_message) -> None:
    pending = {k: v for k, v in make_message().items() if k not in ("sent_at", "provider")}
    failing = dict(pending, message_id="will-fail")
    events = [
        {"event": "sent", "message_id": pending["message_id"], "project_id": 12345,
         "sent_at": "2026-11-27T17:00:09Z", "provider": {"name": "ses"}},
        {"event": "send_failed", "message_id": "will-fail", "project_id": "12345",
         "reason": "hard bounce"},
        {"event": "sent", "message_id": "never-recorded", "project_id": 12345,
         "sent_at": "2026-11-27T17:00:09Z"},
    ]
    result = cli("--json", "ingest", input=jsonl(pending, failing, *events))
    assert json.loads(result.stdout)["errors"] == [{
        "line": 5,
        "reason": "no message never-recorded of project 12345 was recorded before this event"}]
    assert spool_rows(sm_home, "SELECT message_id, state, final_reason, last_error"
                               " FROM messages ORDER BY id") == [
        (pending["message_id"], "queued", None, None),
        ("will-fail", "discarded", "send_failed", "hard bounce"),
    ]


def test_messages_between_events_go_in_together_or_line_by_line_with_the_same_outcomes(
        cli, sm_home, make_message) -> None:
    """Runs of new messages are written together; a run holding one seen before (here the
    first file's message, and a message repeated within the run) is applied line by line:
    either way each line keeps its own outcome, its rejection and its place."""
    seen = make_message(message_id="seen-before")
    assert cli("ingest", input=jsonl(seen)).exit_code == 0
    pending = {k: v for k, v in make_message(message_id="pending").items()
               if k not in ("sent_at", "provider")}
    fresh = [make_message(message_id=f"fresh-{i}") for i in range(3)]
    lines = [json.dumps(m) for m in (fresh[0], pending, fresh[1])] + [
        "{bad",
        json.dumps({"event": "sent", "message_id": "pending", "project_id": 12345,
                    "sent_at": "2026-11-27T17:00:09Z"}),
        json.dumps(fresh[2]), json.dumps(seen), json.dumps(fresh[2]), "[]"]
    result = cli("--json", "ingest", input="\n".join(lines) + "\n")
    report = json.loads(result.stdout)
    assert (report["accepted"], report["duplicate"], report["rejected"]) == (5, 2, 2)
    assert report["errors"] == [
        {"line": 4, "reason": "not valid JSON (Expecting property name enclosed in double"
                              " quotes)"},
        {"line": 9, "reason": "a message must be a JSON object"}]
    assert spool_rows(sm_home, "SELECT message_id, state FROM messages ORDER BY id") == [
        ("seen-before", "queued"), ("fresh-0", "queued"), ("pending", "queued"),
        ("fresh-1", "queued"), ("fresh-2", "queued")]
    assert spool_rows(sm_home, "SELECT line FROM rejected ORDER BY id") == [(4,), (9,)]


def test_line_that_is_not_utf8_is_rejected_with_its_number(cli, tmp_path, make_message):
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(jsonl(make_message()).encode() + b'{"message_id": "\xff"}\n')
    result = cli("--json", "ingest", str(source))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == [
        {"line": 2, "reason": "not valid UTF-8 (bad byte at column 17)"}]
    assert spool_rows(tmp_path / "home", "SELECT raw FROM rejected") == [
        ('{"message_id": "\\xff"}',)]


def test_several_files_name_the_file_of_each_rejection(cli, tmp_path, make_message) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(jsonl(make_message()))
    b.write_text("\n" + "x\n")
    result = cli("--json", "ingest", str(a), str(b))
    doc = json.loads(result.stdout)
    assert (doc["accepted"], doc["rejected"]) == (1, 1)
    assert doc["errors"] == [{"line": 2, "reason": "not valid JSON (Expecting value)",
                              "file": str(b)}]


def test_missing_file_is_a_usage_error(cli, tmp_path) -> None:
    result = cli("ingest", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_a_line_over_max_payload_bytes_is_rejected_by_number(cli, sm_home, make_message,
                                                              monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", "2048")
    big = dict(make_message("sms"), message_id="big-1")
    big["content"] = dict(big["content"], body="x" * 3000)
    lines = [json.dumps(make_message()), json.dumps(big), json.dumps(make_message("push"))]
    size = len(lines[1].encode())
    expected = {"accepted": 2, "duplicate": 0, "rejected": 1, "discarded": 0, "lines": 3,
                "messages": 2, "events": 0, "errors": [
                    {"line": 2, "reason": f"the line is {size} bytes, over max_payload_bytes"
                                          " (2048)"}]}
    result = cli("--json", "ingest", "-", input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == expected
    # From a file too, and a last line without its newline; the big one never goes in.
    sent = tmp_path / "sent.jsonl"
    sent.write_text("\n".join([lines[0], "", lines[1]]))
    result = cli("--json", "ingest", str(sent))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == [
        {"line": 3, "reason": f"the line is {size} bytes, over max_payload_bytes (2048)"}]
    assert spool_rows(sm_home, "SELECT message_id FROM messages WHERE message_id = 'big-1'") \
        == []


def test_a_line_of_exactly_max_payload_bytes_goes_in(cli, make_message, monkeypatch) -> None:
    line = json.dumps(make_message())
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(len(line.encode())))
    result = cli("--json", "ingest", "-", input=line + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 1
