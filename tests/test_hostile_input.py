"""Hostile input never crashes ingest or the Python API, and never costs a good line.

Every line ends accepted, duplicate or rejected with its line number and an accurate reason;
the Python API raises InvalidMessage (or MessageConflict), never anything else, whatever it
is given; `sm find --since/--until` never prints a traceback; a compressed file given to
`sm ingest` is one clear error. (Issue 10, "Ingest never crashes and never loses a good line";
issue 17, a naive datetime is invalid; SPEC 8 "Input strictness".)

The tests marked WIRING below go through `Spool.ingest_lines`, so they pass once the spool
calls `message.parse_line` for every line and skips only lines that are exactly empty once
`\\r\\n` is removed.
"""

from __future__ import annotations

import copy
import gc
import gzip
import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.errors import InvalidMessage, MessageConflict
from stored_messages_cli.message import (
    MAX_DEPTH,
    Message,
    SendEvent,
    gzip_bodies,
    gzip_body,
    parse_event,
    parse_line,
    parse_lines,
    parse_message,
    parse_messages,
    parse_sent_at,
)
from stored_messages_cli.message import batch as message_batch
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import EMAIL_MESSAGE, PUSH_MESSAGE, SMS_MESSAGE

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def line_of(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def with_field(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    changed.update(fields)
    return changed


def nested(depth: int, leaf: Any = 1) -> Any:
    """A dict nested `depth` levels deep (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    """The JSON text of nested(depth) (json.dumps itself would recurse too deep)."""
    return '{"a": ' * depth + "1" + "}" * depth


def spool_rows(home: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home / "spool.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


GOOD = line_of(EMAIL_MESSAGE)
GOOD_HEAD = GOOD[:-1]  # the good message without its closing brace, to append a member

# (line, exact reason): each is rejected by parse_line, never raised.
HOSTILE_LINES = [
    ("   ", "blank line (whitespace only)"),
    ("\t", "blank line (whitespace only)"),
    ("\u00a0", "blank line (whitespace only)"),                   # NBSP
    ("\u2028", "blank line (whitespace only)"),                   # LINE SEPARATOR
    ("\x0c", "blank line (whitespace only)"),                     # form feed
    (" \u3000 \x0b ", "blank line (whitespace only)"),
    ('{"a": 1, "a": 2}', 'duplicate key "a" in a JSON object'),
    (GOOD_HEAD + ', "message_id": "other"}', 'duplicate key "message_id" in a JSON object'),
    (GOOD_HEAD.replace('"content": {', '"content": {"to": "x", ', 1) + "}",
     'duplicate key "to" in a JSON object'),
    (json.dumps(GOOD), "a message must be a JSON object, not a string holding JSON"
                       " (was it encoded twice?)"),
    ('"hello"', "a message must be a JSON object, not a string holding JSON"
                " (was it encoded twice?)"),
    ("[1, 2]", "a message must be a JSON object"),
    ("42", "a message must be a JSON object"),
    ("null", "a message must be a JSON object"),
    (line_of(with_field(EMAIL_MESSAGE, schema_version=True)),
     "schema_version must be 1 when given"),
    (line_of(with_field(EMAIL_MESSAGE, schema_version=1.0)),
     "schema_version must be 1 when given"),
    (line_of(with_field(EMAIL_MESSAGE, schema_version="1")),
     "schema_version must be 1 when given"),
    (line_of(with_field(EMAIL_MESSAGE, schema_version=2)),
     "schema_version must be 1 when given"),
    (GOOD_HEAD + ', "score": 1e400}',
     "number out of range (1e400 is too large for a 64-bit float)"),
    (GOOD_HEAD + ', "score": -2.5E+999}',
     "number out of range (-2.5E+999 is too large for a 64-bit float)"),
    (GOOD_HEAD + ', "score": 1e-400}',
     "number out of range (1e-400 is too small for a 64-bit float and would become 0)"),
    (GOOD_HEAD + ', "score": ' + "9" * 5000 + "}",
     "number out of range (more than 4300 digits)"),
    (GOOD_HEAD + ', "score": NaN}', "not valid JSON (NaN is not a JSON number)"),
    (GOOD_HEAD + ', "score": Infinity}', "not valid JSON (Infinity is not a JSON number)"),
    (GOOD_HEAD + ', "score": -Infinity}', "not valid JSON (-Infinity is not a JSON number)"),
    ("[" * 1000 + "]" * 1000, f"nested more than {MAX_DEPTH} levels deep"),
    (nested_text(5000), f"nested more than {MAX_DEPTH} levels deep"),
    (GOOD_HEAD + ', "x": ' + json.dumps(nested(MAX_DEPTH)) + "}",
     f"nested more than {MAX_DEPTH} levels deep"),
    ("[" * 100_000, f"nested more than {MAX_DEPTH} levels deep"),
    (line_of(with_field(EMAIL_MESSAGE, sent_at="0001-01-01T00:00:00+01:00")),
     "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    (line_of(with_field(EMAIL_MESSAGE, sent_at="9999-12-31T23:59:59-23:59")),
     "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    (line_of(with_field(EMAIL_MESSAGE, sent_at="\u0662\u0660\u0662\u0666-11-27T17:00:00Z")),
     "sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z"),
    (line_of(with_field(EMAIL_MESSAGE, project_id=10 ** 300)),
     "project_id must be 1-128 characters of A-Z a-z 0-9 _ -"),
    (json.dumps({"event": "sent", "message_id": "m", "project_id": 1,
                 "sent_at": "0001-01-01T00:00:00+00:01"}),
     "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    (json.dumps({"event": "sent", "message_id": "m", "project_id": 1,
                 "sent_at": "2026-11-27T17:00:00Z", "provider": {"name": 5}}),
     "provider.name must be a string"),
    (json.dumps({"event": "sent", "message_id": "m", "project_id": 1,
                 "sent_at": "2026-11-27T17:00:00Z", "provider": {"message_id": ["x"]}}),
     "provider.message_id must be a string"),
    (json.dumps({"event": "sent", "message_id": "m", "project_id": 1,
                 "sent_at": "2026-11-27T17:00:00Z", "provider": "ses"}),
     "provider must be an object"),
    (json.dumps({"event": "sent", "message_id": "m", "project_id": 1, "schema_version": 2,
                 "sent_at": "2026-11-27T17:00:00Z"}),
     "schema_version must be 1 when given"),
    ('{"event": "sent", "event": "send_failed", "message_id": "m", "project_id": 1}',
     'duplicate key "event" in a JSON object'),
    ('{"event": ["sent"], "message_id": "m", "project_id": 1}',
     "event must be sent or send_failed"),
    (GOOD_HEAD + ', "x": "\\ud800"}', "x contains a lone surrogate (not valid Unicode)"),
    ('{"k\\udfff": 1, "k\\udfff": 2}', 'duplicate key "k\\udfff" in a JSON object'),
    ("\ufeff" + GOOD, "not valid JSON (Expecting value)"),
    ('{"a": "\x01"}', "not valid JSON (Invalid control character)"),
    ("{not json", "not valid JSON (Expecting property name enclosed in double quotes)"),
]


@pytest.mark.parametrize(("line", "reason"), HOSTILE_LINES,
                         ids=[f"line{i}" for i in range(len(HOSTILE_LINES))])
def test_parse_line_rejects_hostile_lines_with_an_accurate_reason(line: str, reason: str) -> None:
    outcome = parse_line(line)
    assert isinstance(outcome, InvalidMessage)
    assert str(outcome) == reason


def test_parse_line_accepts_messages_events_and_the_edges_of_the_rules() -> None:
    assert isinstance(parse_line(GOOD), Message)
    assert isinstance(parse_line("  " + GOOD + " \t"), Message)  # JSON whitespace around it
    assert isinstance(parse_line(line_of(with_field(EMAIL_MESSAGE, schema_version=1))), Message)
    deepest = with_field(EMAIL_MESSAGE, x=nested(MAX_DEPTH - 1))  # the message is level 1
    assert isinstance(parse_line(line_of(deepest)), Message)
    assert isinstance(parse_line(GOOD_HEAD + ', "tiny": 0e-400, "neg": -0.0}'), Message)
    earliest = with_field(EMAIL_MESSAGE, sent_at="0001-01-01T00:00:00-01:00")
    assert parse_line(line_of(earliest)).sent_at == datetime(1, 1, 1, 1, tzinfo=UTC)
    latest = with_field(EMAIL_MESSAGE, sent_at="9999-12-31T23:59:59+23:59")
    assert parse_line(line_of(latest)).sent_at == datetime(9999, 12, 31, 0, 0, 59, tzinfo=UTC)
    # Braces and brackets inside strings do not count towards the depth.
    css = with_field(EMAIL_MESSAGE, content=dict(EMAIL_MESSAGE["content"],
                                                 html="{[" * 500 + '\\"' + "}]" * 500))
    assert isinstance(parse_line(line_of(css)), Message)
    event = parse_line(json.dumps({"event": "sent", "message_id": "m", "project_id": 1,
                                   "sent_at": "2026-11-27T17:00:00Z",
                                   "provider": {"name": "ses", "extra": [1]}}))
    assert isinstance(event, SendEvent)
    assert event.provider == {"name": "ses", "extra": [1]}


# --------------------------------------------------------------------------- Python API


def self_referential_dict() -> dict[str, Any]:
    message = copy.deepcopy(EMAIL_MESSAGE)
    message["content"]["loop"] = message
    return message


def self_referential_list() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return with_field(EMAIL_MESSAGE, x=loop)


def exponential_dag() -> dict[str, Any]:
    shared: list[Any] = []
    for _ in range(40):
        shared = [shared, shared]  # 2**40 values once expanded, 80 objects in memory
    return with_field(EMAIL_MESSAGE, x=shared)


class Opaque:
    pass


HOSTILE_OBJECTS = [
    (self_referential_dict, "content.loop contains itself (a circular reference)"),
    (self_referential_list, "x[0] contains itself (a circular reference)"),
    (lambda: nested(5000), "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a....."
                           "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nested more than 64 levels deep"),
    (lambda: with_field(EMAIL_MESSAGE, x=nested(MAX_DEPTH)),  # long paths: first 60 ... last 30
     ("x" + ".a" * 63)[:60] + "..." + ("x" + ".a" * 63)[-30:]
     + ": nested more than 64 levels deep"),
    (exponential_dag, "message holds more than 1,000,000 JSON values"),
    (lambda: with_field(EMAIL_MESSAGE, x={1, 2}),
     "x must be a JSON value (object, array, string, number, true, false or null), not a set"),
    (lambda: with_field(EMAIL_MESSAGE, x=Opaque()),
     "x must be a JSON value (object, array, string, number, true, false or null),"
     " not a Opaque"),
    (lambda: with_field(EMAIL_MESSAGE, x=b"bytes"),
     "x must be a JSON value (object, array, string, number, true, false or null),"
     " not a bytes"),
    (lambda: with_field(EMAIL_MESSAGE, content={**EMAIL_MESSAGE["content"], "h": {1: "x"}}),
     "content.h has a key that is not a string"),
    (lambda: {1: "x"}, "message has a key that is not a string"),
    (lambda: with_field(EMAIL_MESSAGE, x=10 ** 5000),
     "x: number out of range (more than 4300 digits)"),
    (lambda: with_field(EMAIL_MESSAGE, project_id=10 ** 5000),
     "project_id must be 1-128 characters of A-Z a-z 0-9 _ -"),
    (lambda: with_field(EMAIL_MESSAGE, x=["ok", float("nan")]),
     "x[1] must be a finite number (NaN and Infinity are not JSON)"),
    (lambda: with_field(EMAIL_MESSAGE, x="lone \ud800 surrogate"),
     "x contains a lone surrogate (not valid Unicode)"),
    (lambda: with_field(EMAIL_MESSAGE, message_id="\udc80"),
     "message_id must be 1-128 characters of A-Z a-z 0-9 . _ -"),
    (lambda: with_field(EMAIL_MESSAGE, sent_at=datetime(2026, 11, 27, 17)),
     "sent_at must be a timezone-aware datetime (a naive datetime has no UTC offset, so it"
     " would be read as this host's local time)"),
    (lambda: with_field(EMAIL_MESSAGE,
                        sent_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
     "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    (lambda: with_field(EMAIL_MESSAGE, schema_version=True), "schema_version must be 1 when given"),
    (lambda: with_field(EMAIL_MESSAGE, schema_version=1.0), "schema_version must be 1 when given"),
    (lambda: None, "a message must be a JSON object"),
    (lambda: 12, "a message must be a JSON object"),
    (lambda: ["x"], "a message must be a JSON object"),
    (lambda: Opaque(), "a message must be a JSON object"),
    (lambda: json.dumps(GOOD), "a message must be a JSON object, not a string holding JSON"
                               " (was it encoded twice?)"),
    (lambda: '{"a": 1, "a": 2}', 'duplicate key "a" in a JSON object'),
    (lambda: b"\xff{}", "not valid UTF-8 (bad byte at offset 0)"),
]


@pytest.mark.parametrize(("build", "reason"), HOSTILE_OBJECTS,
                         ids=[f"object{i}" for i in range(len(HOSTILE_OBJECTS))])
def test_parse_message_raises_only_invalid_message(build, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(build())
    assert str(caught.value) == reason


@pytest.mark.parametrize(("build", "reason"), HOSTILE_OBJECTS[:18],
                         ids=[f"object{i}" for i in range(18)])
def test_record_and_record_many_raise_only_invalid_message(spool: Spool, build,
                                                           reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        spool.record(build())
    assert str(caught.value) == reason
    with pytest.raises(InvalidMessage) as caught:
        spool.record_many([copy.deepcopy(SMS_MESSAGE), build()])
    assert str(caught.value) == f"message 1: {reason}"
    assert spool.record(copy.deepcopy(SMS_MESSAGE)) == "accepted"  # nothing went in before


def test_an_aware_datetime_sent_at_is_accepted_in_utc(spool: Spool) -> None:
    moment = datetime(2026, 11, 27, 19, tzinfo=timezone(timedelta(hours=2)))
    parsed = parse_message(with_field(EMAIL_MESSAGE, sent_at=moment))
    assert parsed.sent_at == datetime(2026, 11, 27, 17, tzinfo=UTC)
    assert json.loads(parsed.payload())["sent_at"] == "2026-11-27T17:00:00Z"


def test_parse_sent_at_never_raises_anything_but_invalid_message() -> None:
    for value in (datetime(2026, 1, 1), "0001-01-01T00:00:00+01:00", 5, None, ["x"],
                  "9999-12-31T23:59:59-23:59", datetime(9999, 12, 31, 23,
                                                        tzinfo=timezone(-timedelta(hours=2)))):
        with pytest.raises(InvalidMessage):
            parse_sent_at(value)


@pytest.mark.parametrize(("sent_at", "reason"), [
    (datetime(2026, 11, 27, 17, 0),
     "sent_at must be a timezone-aware datetime (a naive datetime has no UTC offset, so it"
     " would be read as this host's local time)"),
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
     "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    ("0001-01-01T00:00:00+01:00", "sent_at is out of range: it falls outside years 1-9999 in UTC"),
    (17, "sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z"),
])
def test_confirm_sent_rejects_naive_and_overflowing_times(spool: Spool, sent_at,
                                                          reason: str) -> None:
    message = with_field(EMAIL_MESSAGE)
    del message["sent_at"]
    assert spool.record(message) == "accepted"
    with pytest.raises(InvalidMessage) as caught:
        spool.confirm_sent(12345, EMAIL_MESSAGE["message_id"], sent_at=sent_at)
    assert str(caught.value) == reason
    aware = datetime(2026, 11, 27, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert spool.confirm_sent(12345, EMAIL_MESSAGE["message_id"], sent_at=aware) != "duplicate"


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"provider": {"name": 5}}, "provider.name must be a string"),
    ({"provider": "ses"}, "provider must be an object"),
    ({"provider": {"raw": "\ud800"}}, "provider.raw contains a lone surrogate"
                                      " (not valid Unicode)"),
    ({"provider": {"raw": float("inf")}}, "provider.raw must be a finite number"
                                          " (NaN and Infinity are not JSON)"),
])
def test_confirm_sent_validates_the_provider_like_a_message(spool: Spool, kwargs,
                                                            reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        spool.confirm_sent(12345, "m-1", sent_at="2026-11-27T17:00:00Z", **kwargs)
    assert str(caught.value) == reason


def test_confirm_sent_with_a_self_referential_provider(spool: Spool) -> None:
    provider: dict[str, Any] = {"name": "ses"}
    provider["self"] = provider
    with pytest.raises(InvalidMessage) as caught:
        spool.confirm_sent(12345, "m-1", sent_at="2026-11-27T17:00:00Z", provider=provider)
    assert str(caught.value) == "provider.self contains itself (a circular reference)"


@pytest.mark.parametrize(("project", "message_id", "reason"), [
    (10 ** 5000, "m", "project_id: number out of range (more than 4300 digits)"),
    (1.5, "m", "project_id must be an integer or a string"),
    (None, "m", "project_id is required"),
    (1, ["m"], "message_id must be a string"),
    (1, "a/b", "message_id must be 1-128 characters of A-Z a-z 0-9 . _ -"),
], ids=["huge-int", "float", "none", "list-id", "slash-id"])
def test_record_send_failure_raises_only_invalid_message(spool: Spool, project, message_id,
                                                         reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        spool.record_send_failure(project, message_id)
    assert str(caught.value) == reason


def test_parse_event_takes_any_input() -> None:
    for raw in (None, [], "sent", 5):
        with pytest.raises(InvalidMessage, match="an event must be a JSON object"):
            parse_event(raw)


# --------------------------------------------------------------------------- the CLI


def test_every_line_of_a_hostile_batch_is_accounted_for_and_good_lines_go_in(  # WIRING
        cli, sm_home: Path) -> None:
    lines = [
        line_of(EMAIL_MESSAGE),                                                       # 1
        "[" * 1000 + "]" * 1000,                                                      # 2
        line_of(with_field(SMS_MESSAGE, sent_at="0001-01-01T00:00:00+01:00")),        # 3
        line_of(with_field(SMS_MESSAGE, sent_at="9999-12-31T23:59:59-23:59")),        # 4
        "",                                                                           # 5 skipped
        "\u00a0",                                                                     # 6
        "\u2028",                                                                     # 7
        "\x0c",                                                                       # 8
        "  ",                                                                         # 9
        '{"a": 1, "a": 2}',                                                           # 10
        json.dumps(line_of(PUSH_MESSAGE)),                                            # 11
        line_of(with_field(PUSH_MESSAGE, schema_version=True)),                       # 12
        line_of(PUSH_MESSAGE)[:-1] + ', "score": 1e400}',                             # 13
        line_of(PUSH_MESSAGE)[:-1] + ', "score": NaN}',                               # 14
        json.dumps({"event": "sent", "message_id": "sms-1", "project_id": 12345,
                    "sent_at": "2026-11-27T17:00:00Z", "provider": {"name": 7}}),      # 15
        nested_text(5000),                                                     # 16
        line_of(SMS_MESSAGE),                                                         # 17
        line_of(EMAIL_MESSAGE),                                                       # 18 dup
        line_of(PUSH_MESSAGE),                                                        # 19
    ]
    result = cli("--json", "ingest", "-", input="\r\n".join(lines) + "\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    expected_errors = [
        (2, f"nested more than {MAX_DEPTH} levels deep"),
        (3, "sent_at is out of range: it falls outside years 1-9999 in UTC"),
        (4, "sent_at is out of range: it falls outside years 1-9999 in UTC"),
        (6, "blank line (whitespace only)"),
        (7, "blank line (whitespace only)"),
        (8, "blank line (whitespace only)"),
        (9, "blank line (whitespace only)"),
        (10, 'duplicate key "a" in a JSON object'),
        (11, "a message must be a JSON object, not a string holding JSON"
             " (was it encoded twice?)"),
        (12, "schema_version must be 1 when given"),
        (13, "number out of range (1e400 is too large for a 64-bit float)"),
        (14, "not valid JSON (NaN is not a JSON number)"),
        (15, "provider.name must be a string"),
        (16, f"nested more than {MAX_DEPTH} levels deep"),
    ]
    assert [(e["line"], e["reason"]) for e in report["errors"]] == expected_errors
    assert (report["accepted"], report["duplicate"], report["rejected"]) == (3, 1, 14)
    assert spool_rows(sm_home, "SELECT message_id FROM messages ORDER BY id") == [
        (EMAIL_MESSAGE["message_id"],), ("sms-1",), ("push-1",)]
    kept = spool_rows(sm_home, "SELECT line, reason, raw FROM rejected ORDER BY id")
    assert [(line, reason) for line, reason, _ in kept] == expected_errors
    assert [raw for _, _, raw in kept] == [lines[n - 1] for n, _ in expected_errors]


def test_a_hostile_line_in_a_large_batch_does_not_cost_its_neighbours(  # WIRING
        cli, sm_home: Path) -> None:
    messages = [with_field(SMS_MESSAGE, message_id=f"sms-{n}") for n in range(1, 1201)]
    lines = [line_of(m) for m in messages]
    lines[599] = "[" * 3000 + "]" * 3000               # line 600, inside a middle batch
    lines[1000] = line_of(with_field(SMS_MESSAGE, message_id="x",
                                     sent_at="0001-01-01T00:00:00+00:01"))  # line 1001
    result = cli("--json", "ingest", "-", input="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["accepted"], report["rejected"]) == (1198, 2)
    assert [e["line"] for e in report["errors"]] == [600, 1001]
    assert spool_rows(sm_home, "SELECT count(*) FROM messages") == [(1198,)]


def test_ingest_refuses_a_gzip_file_with_one_error(cli, sm_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "sent [2026].jsonl.gz"
    source.write_bytes(gzip.compress(("\n".join([GOOD] * 2000) + "\n").encode()))
    result = cli("ingest", str(source))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {source} looks gzip-compressed; use `zcat '{source}' | sm ingest -`"]
    plain = tmp_path / "plain.jsonl"
    plain.write_text(GOOD + "\n")
    both = cli("ingest", str(plain), str(source))  # checked before any file goes in
    assert both.exit_code == 1
    assert "looks gzip-compressed" in both.stderr
    assert not (sm_home / "spool.db").exists() or spool_rows(
        sm_home, "SELECT count(*) FROM messages") == [(0,)]


def test_ingest_refuses_gzip_on_standard_input(cli, sm_home: Path) -> None:
    result = cli("ingest", "-", input=gzip.compress((GOOD + "\n").encode()))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: standard input looks gzip-compressed; use `zcat FILE | sm ingest -`"]
    assert spool_rows(sm_home, "SELECT count(*) FROM rejected") == [(0,)]


@pytest.mark.parametrize("value", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "2026-11-27T17:00:00",
    "0000-01-01", "\u0662\u0660\u0662\u0666-01-01", "2026-02-30T00:00:00Z", "[red]x[/red]",
    "9" * 5000, "",
])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_find_time_bounds_are_one_line_usage_errors(cli, option: str, value: str) -> None:
    result = cli("find", "--recipient", "ann@example.com", option, value)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Error: invalid value for {option}: {value!r}")
    assert lines[1:] == [f"Try: sm find {option} 2026-11-27 (a UTC day), {option}"
                         f" 2026-11-27T17:00:00Z or {option} 7d"]


def test_find_overflowing_bound_names_the_range(cli) -> None:
    result = cli("find", "--recipient", "ann@example.com", "--since", "0001-01-01T00:00:00+01:00")
    assert result.stderr.splitlines()[0] == (
        "Error: invalid value for --since: '0001-01-01T00:00:00+01:00' is out of range: it"
        " falls outside years 1-9999 in UTC")


# --------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
MESSAGES = st.sampled_from([EMAIL_MESSAGE, SMS_MESSAGE, PUSH_MESSAGE])
FIELDS = st.sampled_from(["message_id", "project_id", "medium", "message_type", "campaign_id",
                          "recipient", "sent_at", "provider", "content", "schema_version",
                          "event", "template_id", "x"])


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with a few fields replaced by arbitrary JSON values."""
    message = copy.deepcopy(draw(MESSAGES))
    for _ in range(draw(st.integers(1, 3))):
        target = message
        if draw(st.booleans()) and isinstance(message.get("content"), dict):
            target = message["content"]
        target[draw(FIELDS)] = draw(json_values)
    return message


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | st.builds(lambda m: json.dumps(m).encode(), mutated_messages()))
def test_fuzz_parse_line_never_raises(raw: bytes) -> None:
    text = raw.decode("utf-8", "surrogateescape")
    outcome = parse_line(text)
    assert isinstance(outcome, Message | SendEvent | InvalidMessage)
    if isinstance(outcome, InvalidMessage):
        assert str(outcome) and "\n" not in str(outcome)
        str(outcome).encode("utf-8")  # storable and printable


@FUZZ
@given(json_values | mutated_messages())
def test_fuzz_parse_message_raises_only_invalid_message(value: Any) -> None:
    try:
        parse_message(value)
    except InvalidMessage as exc:
        assert str(exc) and "\n" not in str(exc)
    try:
        parse_message(json.dumps(value))
    except (InvalidMessage, ValueError) as exc:
        assert isinstance(exc, InvalidMessage)


@FUZZ
@given(mutated_messages() | json_values)
def test_fuzz_record_raises_only_invalid_message_or_conflict(spool: Spool, value: Any) -> None:
    try:
        spool.record(value)
    except (InvalidMessage, MessageConflict):
        pass


@FUZZ
@given(st.lists(st.binary(max_size=120).filter(lambda b: b"\n" not in b)
                | st.sampled_from([b"", b"\r", b" ", b"\t\r", b"\xc2\xa0", b"\xe2\x80\xa8",
                                   b"\x0c", b"\xef\xbb\xbf", b"[[[[", b"[" * 2000])
                | st.builds(lambda m: json.dumps(m, ensure_ascii=False).encode(),
                            mutated_messages()), min_size=1, max_size=8))
def test_fuzz_ingest_accounts_for_every_line(cli, raw_lines: list[bytes]) -> None:  # WIRING
    data = b"\n".join(raw_lines) + b"\n"
    if data[:2] == b"\x1f\x8b":
        data = b" " + data  # the compressed-input refusal is tested on its own
        raw_lines[0] = b" " + raw_lines[0]
    result = cli("--json", "ingest", "-", input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    assert result.exit_code in (0, 1)
    report = json.loads(result.stdout)
    counted = [n for n, line in enumerate(raw_lines, start=1) if line.rstrip(b"\r") != b""]
    assert report["accepted"] + report["duplicate"] + report["rejected"] == len(counted)
    assert [e["line"] for e in report["errors"]] == sorted(e["line"] for e in report["errors"])
    assert set(e["line"] for e in report["errors"]) <= set(counted)
    assert result.exit_code == (1 if report["rejected"] else 0)


# --------------------------------------------------------------------------- batches


def _one_by_one(value: Any) -> Message | InvalidMessage:
    try:
        return parse_message(value)
    except InvalidMessage as exc:
        return exc


def _same_outcome(batched: Any, alone: Any) -> None:
    """The batch gave what the single call gives: the same Message (every field, the gzip
    object's bytes included), or an InvalidMessage with the same reason."""
    assert type(batched) is type(alone)
    if isinstance(alone, InvalidMessage):
        assert str(batched) == str(alone)
    else:
        assert batched == alone


@pytest.mark.parametrize(("size", "chunk"), [(3, 1000), (70, 1000), (70, 9)])
def test_parse_messages_gives_each_message_what_parse_message_gives(
        size: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile objects between good ones, in one batch (below and above the two-thread
    compression; in one chunk and in many): each keeps its own reason, and the good ones
    beside them come out exactly as parse_message makes them."""
    monkeypatch.setattr(message_batch, "STAGE_CHUNK", chunk)
    good = [with_field(EMAIL_MESSAGE, message_id=f"m{i}") for i in range(size)]
    # each hostile kind once, after a good message (a kind repeated would cost its walk
    # again, some walk a million values, and check nothing more); the good ones that follow
    # keep the batch above the two-thread compression
    batch: list[Any] = []
    reasons: dict[int, str] = {}
    for index, message in enumerate(good):
        batch.append(message)
        if index < len(HOSTILE_OBJECTS):
            build, reason = HOSTILE_OBJECTS[index]
            reasons[len(batch)] = reason
            batch.append(build())
    assert len(reasons) == min(size, len(HOSTILE_OBJECTS))
    outcomes = parse_messages(batch)
    assert len(outcomes) == len(batch)
    for index, outcome in enumerate(outcomes):
        if index in reasons:
            assert str(outcome) == reasons[index]
        else:
            assert isinstance(outcome, Message)
        _same_outcome(outcome, _one_by_one(batch[index]))


@FUZZ
@given(st.lists(json_values | mutated_messages(), max_size=12))
def test_fuzz_parse_messages_matches_parse_message(values: list[Any]) -> None:
    for batched, value in zip(parse_messages(values), values, strict=True):
        _same_outcome(batched, _one_by_one(value))


@FUZZ
@given(st.lists(st.text(max_size=200) | st.sampled_from([line for line, _ in HOSTILE_LINES])
                | st.builds(lambda m: json.dumps(m, ensure_ascii=False), mutated_messages()),
                max_size=12))
def test_fuzz_parse_lines_matches_parse_line(texts: list[str]) -> None:
    outcomes = parse_lines(texts)
    assert len(outcomes) == len(texts)
    for batched, text in zip(outcomes, texts, strict=True):
        alone = parse_line(text)
        assert type(batched) is type(alone)
        if isinstance(alone, InvalidMessage):
            assert str(batched) == str(alone)
        else:
            assert batched == alone


def test_gzip_bodies_on_two_threads_gives_gzip_body_of_each_in_order() -> None:
    payloads = [f'{{"n":{i},"pad":"{"x" * (i % 97)}"}}'.encode() for i in range(301)]
    assert gzip_bodies(payloads) == [gzip_body(payload) for payload in payloads]
    assert gzip_bodies([]) == []


def test_parse_messages_leaves_the_garbage_collector_as_it_found_it() -> None:
    batch = [with_field(EMAIL_MESSAGE, message_id=f"gc{i}") for i in range(3)]
    assert gc.isenabled()
    parse_messages(batch)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_messages(batch)
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()
