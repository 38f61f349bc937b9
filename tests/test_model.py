"""The message contract (SPEC 2-3): validation reasons, payload bytes, key and recipient hash.

Expected bytes and hashes are recomputed here independently from the SPEC's words, never by
calling the code under test.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import sqlite3
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.errors import InvalidMessage
from stored_messages_cli.message import (
    format_utc,
    gzip_body,
    identifier_hashes,
    identifier_hashes_json,
    key_pieces,
    object_key,
    parse_event,
    parse_key,
    parse_message,
    parse_sent_at,
)
from tests.support.fixtures.core import EMAIL_MESSAGE, PUSH_MESSAGE, SMS_MESSAGE


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def spec_payload(message: dict[str, Any]) -> bytes:
    """SPEC 3 in a few lines: ids as strings, schema_version 1, sorted compact UTF-8 JSON."""
    document = dict(message)
    for name in ("project_id", "campaign_id", "template_id", "journey_id"):
        if document.get(name) is not None:
            document[name] = str(document[name])
    document["schema_version"] = 1
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize(("message", "identity", "campaign"), [
    (EMAIL_MESSAGE, "ann.lee@example.com", "1234567"),
    (SMS_MESSAGE, "+15555550100", "unassociated"),
    (PUSH_MESSAGE, "abcdef", "spring"),
])
def test_key_per_medium_is_exactly_the_spec_layout(message, identity, campaign) -> None:
    parsed = parse_message(copy.deepcopy(message))
    expected = (f"{message['medium']}/12345/{sha(identity)}/{campaign}/"
                f"{message['message_id']}.json.gz")
    assert parsed.key == expected
    assert object_key(parsed.medium, parsed.project_id, parsed.recipient_hash,
                      parsed.campaign_id, parsed.message_id, prefix="archive/") == (
        "archive/" + expected)


@pytest.mark.parametrize(("recipient", "identity"), [
    ({"email": "  Ann.Lee@Example.COM ", "user_id": "u-1"}, "ann.lee@example.com"),
    ({"user_id": "  U-881 ", "phone_number": "+1555"}, "U-881"),  # stripped, case kept
    ({"user_id": 881}, "881"),
    ({"phone_number": " +44 20 7946 0000 ", "device_token": "X"}, "+44 20 7946 0000"),
    ({"device_token": "  AbCdEf0123 "}, "abcdef0123"),
    ({"email": "   ", "user_id": "u-2"}, "u-2"),  # a blank field is not present
    ({"email": None, "phone_number": "+1"}, "+1"),
])
def test_recipient_hash_uses_the_first_present_field_normalised(recipient, identity) -> None:
    message = copy.deepcopy(EMAIL_MESSAGE)
    message["recipient"] = recipient
    assert parse_message(message).recipient_hash == sha(identity)


@pytest.mark.parametrize("campaign", [None, "absent"])
def test_no_campaign_gives_unassociated(campaign) -> None:
    message = copy.deepcopy(EMAIL_MESSAGE)
    if campaign == "absent":
        del message["campaign_id"]
    else:
        message["campaign_id"] = None
    assert parse_message(message).key.split("/")[3] == "unassociated"


@pytest.mark.parametrize("campaign", ["spring-sale", None])
def test_the_layout_as_data_builds_the_same_key_in_sql(campaign) -> None:
    # What the spool's views do with `key_pieces`: the key column, spelled in SQL from it.
    def column(name: str, when_absent: str | None) -> str:
        return f'"{name}"' if when_absent is None else f"COALESCE(\"{name}\", '{when_absent}')"

    expression = " || ".join(["\"prefix\"", *key_pieces(column, lambda text: f"'{text}'")])
    db = sqlite3.connect(":memory:")
    db.execute('CREATE TABLE m ("prefix", "medium", "project_id", "recipient_hash",'
               ' "campaign_id", "message_id")')
    row = ("archive/", "sms", "12345", sha("+1555"), campaign, "m-1")
    db.execute("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?)", row)
    (in_sql,) = db.execute(f"SELECT {expression} FROM m").fetchone()
    db.close()
    assert in_sql == object_key("sms", "12345", sha("+1555"), campaign, "m-1", prefix="archive/")
    assert in_sql == f"archive/sms/12345/{sha('+1555')}/{campaign or 'unassociated'}/m-1.json.gz"
    assert parse_key(in_sql, "archive/") == {
        "medium": "sms", "project_id": "12345", "recipient_hash": sha("+1555"),
        "campaign_id": campaign, "message_id": "m-1"}


# ----------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("message", [EMAIL_MESSAGE, SMS_MESSAGE, PUSH_MESSAGE])
def test_payload_bytes_are_sorted_compact_utf8_json_with_schema_version(message) -> None:
    parsed = parse_message(copy.deepcopy(message))
    assert parsed.payload() == spec_payload(message)


def test_payload_of_the_spec_example_byte_for_byte() -> None:
    payload = parse_message(copy.deepcopy(EMAIL_MESSAGE)).payload()
    assert payload.startswith(
        b'{"campaign_id":"1234567","content":{"from":"News <news@shop.example>",'
        b'"headers":{"List-Unsubscribe":"<\xe2\x80\xa6>"},"html":"<html>\xe2\x80\xa6</html>",')
    assert b'"journey_id":null,' in payload
    assert payload.endswith(b'"schema_version":1,"sent_at":"2026-11-27T17:00:00Z",'
                            b'"template_id":"42"}')


def test_gzip_body_has_mtime_zero_and_no_file_name() -> None:
    payload = parse_message(copy.deepcopy(EMAIL_MESSAGE)).payload()
    body = gzip_body(payload)
    magic, method, flags, mtime = struct.unpack("<HBBI", body[:8])
    assert (magic, method) == (0x8B1F, 8)
    assert flags == 0  # no FNAME, FCOMMENT, FEXTRA or FHCRC
    assert mtime == 0
    assert gzip.decompress(body) == payload
    assert gzip_body(payload) == body  # the same message always gives the same bytes


def test_equal_messages_give_equal_bytes_whatever_the_key_order() -> None:
    forward = copy.deepcopy(EMAIL_MESSAGE)
    backward = json.loads(json.dumps(dict(reversed(list(forward.items())))))
    backward["content"] = dict(reversed(list(backward["content"].items())))
    assert parse_message(forward).payload() == parse_message(backward).payload()


TRICKY = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from([
    "line\r\nbreak", "\ttab\t", "emoji 🔐👍🏽", "RTL שלום مرحبا", "sep\u2028par\u2029",
    "nul\u0000x", '"quoted" \\ back', "  padded  ", "", "\ufeffbom", "é vs e\u0301",
])


@settings(max_examples=150, deadline=None)
@given(subject=TRICKY, text=TRICKY, header=TRICKY, user_id=TRICKY.filter(str.strip))
def test_strings_round_trip_byte_exactly(subject, text, header, user_id) -> None:
    message = copy.deepcopy(EMAIL_MESSAGE)
    message["content"].update(subject=subject, text=text, headers={header: header})
    message["recipient"] = {"user_id": user_id}
    payload = parse_message(message).payload()
    assert payload == spec_payload(message)
    back = json.loads(payload.decode("utf-8"))
    assert back["content"]["subject"] == subject
    assert back["content"]["text"] == text
    assert back["content"]["headers"] == {header: header}
    assert back["recipient"]["user_id"] == user_id
    assert parse_message(copy.deepcopy(message)).payload() == payload


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10 ** 40), 10 ** 40)
    | st.floats(allow_nan=False, allow_infinity=False) | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(extra=JSON_VALUES, nested=st.dictionaries(TRICKY, JSON_VALUES, max_size=4))
def test_any_json_kept_in_the_content_is_encoded_byte_exactly(extra, nested) -> None:
    """The content (any fields beyond the required ones, of any JSON type, keys in any
    order) gives the bytes SPEC 3 names, whichever encoder writes it."""
    message = copy.deepcopy(EMAIL_MESSAGE)
    message["content"].update(extra=extra, nested=nested, headers=dict(
        reversed(list(nested.items()))))
    assert parse_message(message).payload() == spec_payload(message)


# ----------------------------------------------------------------------------- validation


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with the field at dotted `path` set to `value` (or removed for `...`)."""
    message = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = message
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return message


@pytest.mark.parametrize(("base", "path", "value", "reason"), [
    (EMAIL_MESSAGE, "message_id", ..., "message_id is required"),
    (EMAIL_MESSAGE, "message_id", "a/b",
     "message_id must be 1-128 characters of A-Z a-z 0-9 . _ -"),
    (EMAIL_MESSAGE, "message_id", "x" * 129,
     "message_id must be 1-128 characters of A-Z a-z 0-9 . _ -"),
    (EMAIL_MESSAGE, "message_id", 7, "message_id must be a string"),
    (EMAIL_MESSAGE, "project_id", ..., "project_id is required"),
    (EMAIL_MESSAGE, "project_id", True, "project_id must be an integer or a string"),
    (EMAIL_MESSAGE, "project_id", "12 345",
     "project_id must be 1-128 characters of A-Z a-z 0-9 _ -"),
    (EMAIL_MESSAGE, "campaign_id", 1.5, "campaign_id must be an integer or a string"),
    (EMAIL_MESSAGE, "medium", "fax", "medium must be 'email', 'sms' or 'push'"),
    (EMAIL_MESSAGE, "message_type", "bulk",
     "message_type must be 'blast', 'triggered' or 'journey'"),
    (EMAIL_MESSAGE, "recipient", ..., "recipient is required"),
    (EMAIL_MESSAGE, "recipient", "ann@example.com", "recipient must be an object"),
    (EMAIL_MESSAGE, "recipient", {"name": "Ann"},
     "recipient needs at least one of email, user_id, phone_number, device_token"),
    (EMAIL_MESSAGE, "recipient", {"user_id": True},
     "recipient.user_id must be a string or an integer"),
    (EMAIL_MESSAGE, "recipient.email", 5, "recipient.email must be a string"),
    (EMAIL_MESSAGE, "sent_at", "yesterday",
     "sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z"),
    (EMAIL_MESSAGE, "sent_at", "2026-11-27T17:00:00",
     "sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z"),
    (EMAIL_MESSAGE, "sent_at", "2026-13-01T00:00:00Z",
     "sent_at is not a valid date/time (month must be in 1..12)"),
    (EMAIL_MESSAGE, "provider", "ses", "provider must be an object"),
    (EMAIL_MESSAGE, "content", ..., "content is required"),
    (EMAIL_MESSAGE, "content.subject", ..., "content.subject is required"),
    (EMAIL_MESSAGE, "content.from", 5, "content.from must be a string"),
    (EMAIL_MESSAGE, "content.headers", "x", "content.headers must be an object"),
    (changed(EMAIL_MESSAGE, "content.html", ...), "content.text", ...,
     "content needs at least one of html, text (email)"),
    (SMS_MESSAGE, "content.body", ..., "content.body is required"),
    (SMS_MESSAGE, "content.media_urls", "x", "content.media_urls must be an array"),
    (PUSH_MESSAGE, "content.platform", "bb", "content.platform must be 'ios', 'android' or 'web'"),
    (PUSH_MESSAGE, "content.title", ...,
     "content needs at least one of title, body, payload (push)"),
    (EMAIL_MESSAGE, "content.text", "bad \ud800 text",
     "content.text contains a lone surrogate (not valid Unicode)"),
    (EMAIL_MESSAGE, "content.headers", {"X-\udfff": "v"},
     "content.headers has a key with a lone surrogate (not valid Unicode)"),
    (EMAIL_MESSAGE, "score", float("nan"), "score must be a finite number (NaN and Infinity are"
     " not JSON)"),
    (EMAIL_MESSAGE, "content.data", [1, float("inf")],
     "content.data[1] must be a finite number (NaN and Infinity are not JSON)"),
])
def test_bad_input_gets_a_one_line_reason_naming_the_field(base, path, value, reason) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(changed(base, path, value))
    assert str(caught.value) == reason


@pytest.mark.parametrize("sent_at", [
    "2026-11-27T17:00:00Z", "2026-11-27T17:00:00.123Z", "2026-11-27T19:00:00+02:00",
    "2026-11-27t17:00:00z", "2026-11-27T17:00:00.123456789-05:30",
])
def test_rfc3339_sent_at_forms_are_accepted_and_kept_as_given(sent_at) -> None:
    parsed = parse_message(changed(EMAIL_MESSAGE, "sent_at", sent_at))
    assert parsed.confirmed
    assert json.loads(parsed.payload())["sent_at"] == sent_at


@pytest.mark.parametrize("sent_at", [
    "2026-11-27T17:00:00Z", "2026-11-27T17:00:00.123Z", "2026-11-27T19:00:00+02:00",
    "2026-11-27t17:00:00z", "2026-11-27 17:00:00Z", "2026-11-27T17:00:00.123456789-05:30",
    "2026-11-27T17:00:00+00:00", "2026-11-27T23:30:00-01:00",
])
def test_the_fields_taken_at_validation_are_what_their_rules_give(sent_at) -> None:
    """What the spool stores of a message, made once at validation (no field derived
    twice may drift): the UTC `Z` form of sent_at (the fast path for text already in it
    included), the payload's hash, the identifiers' JSON and the gzip object."""
    parsed = parse_message(changed(EMAIL_MESSAGE, "sent_at", sent_at))
    assert parsed.sent_at_text == format_utc(parse_sent_at(sent_at))
    assert parsed.sent_at_text.endswith("Z")
    assert parsed.payload_sha == hashlib.sha256(parsed.payload()).hexdigest()
    assert parsed.recipient_hashes == identifier_hashes_json(
        identifier_hashes(parsed.document["recipient"]))
    assert parsed.recipient_hashes == json.dumps(
        identifier_hashes(parsed.document["recipient"]), separators=(",", ":"), sort_keys=True)
    assert parsed.object_bytes == gzip_body(parsed.payload())


def test_no_sent_at_means_awaiting_confirmation() -> None:
    assert not parse_message(changed(EMAIL_MESSAGE, "sent_at", ...)).confirmed


def test_unknown_fields_are_kept_as_given() -> None:
    message = changed(EMAIL_MESSAGE, "content.x_tracking", {"pixel": True, "n": [1, 2.5]})
    message["locale"] = "fr-CA"
    back = json.loads(parse_message(message).payload())
    assert back["content"]["x_tracking"] == {"pixel": True, "n": [1, 2.5]}
    assert back["locale"] == "fr-CA"


@pytest.mark.parametrize(("event", "reason"), [
    ({"event": "delivered", "message_id": "m", "project_id": 1},
     "event must be sent or send_failed"),
    ({"event": "sent", "project_id": 1, "sent_at": "2026-11-27T17:00:00Z"},
     "message_id is required"),
    ({"event": "sent", "message_id": "m", "sent_at": "2026-11-27T17:00:00Z"},
     "project_id is required"),
    ({"event": "sent", "message_id": "m", "project_id": 1}, "sent_at is required on a sent event"),
    ({"event": "sent", "message_id": "m", "project_id": 1, "sent_at": "now"},
     "sent_at must be an RFC 3339 timestamp such as 2026-11-27T17:00:00Z"),
    ({"event": "send_failed", "message_id": "m", "project_id": 1, "reason": 5},
     "reason must be a string"),
])
def test_bad_events_get_a_one_line_reason(event, reason) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_event(event)
    assert str(caught.value) == reason


def test_the_models_accept_exactly_the_mediums_and_types_of_states() -> None:
    import typing

    from stored_messages_cli.message.models import CONTENT_MODELS, MESSAGE_MODELS, MessageFields
    from stored_messages_cli.states import Medium, MessageType

    fields = MessageFields.model_fields
    assert typing.get_args(fields["medium"].annotation) == tuple(Medium)
    assert typing.get_args(fields["message_type"].annotation) == tuple(MessageType)
    assert set(CONTENT_MODELS) == set(MESSAGE_MODELS) == set(Medium)
