"""Property: every valid message, however close to the edges of the rules, round-trips.

For generated messages that push each field to its edges (ids of 1 and 128 characters, ids
made only of `.`/`-`/`_`, every medium and recipient form, campaign and project ids that are
words the code itself uses, unicode everywhere), the real pipeline — `sm connect` to a
folder, `sm ingest`, `sm run --once` — stores an object whose gunzipped bytes are the
canonical payload (computed here, independently), and `sm fetch` (with and without a local
index), `sm find --remote` and `sm index rebuild` + `sm find` all find it and verify it clean.
(Issue 10, "property-based round-trip test".)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import string
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stored_messages_cli.message import parse_message
from tests.support.investigation_support import cli_for

ROUNDTRIP = settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ID_CHARS = string.ascii_letters + string.digits + "._-"
REF_CHARS = string.ascii_letters + string.digits + "_-"
# Words the code itself uses in keys, folders, options and JSON.
CODE_WORDS = ["unassociated", "email", "sms", "push", "_sm", "json", "gz", "manifests",
              "access", "null", "None", "true", "-", "_", "--", "-1", "0", "stored",
              "queued", "index", "tmp", "_sm-tmp"]
# No control characters (argv and terminals), no surrogates (not Unicode).
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
TEXT_ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)

message_ids = st.one_of(
    st.text(ID_CHARS, min_size=1, max_size=128),
    st.text("._-", min_size=1, max_size=128),
    st.sampled_from([".", "..", "...", "-", "_", "-v", "--help", ".json", "x.json.gz",
                     "a" * 128, "." * 128, "-" * 128, "_" * 128, *CODE_WORDS]),
)
references = st.one_of(
    st.integers(-(10 ** 20), 10 ** 20),
    st.text(REF_CHARS, min_size=1, max_size=128),
    st.sampled_from([w for w in CODE_WORDS if all(c in REF_CHARS for c in w)]),
)
json_scalars = (st.none() | st.booleans() | st.integers(-(10 ** 30), 10 ** 30)
                | st.floats(allow_nan=False, allow_infinity=False) | TEXT_ANY)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT_ANY, inner, max_size=3),
    max_leaves=8)


def non_blank(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return strategy.filter(lambda s: s.strip() != "")


@st.composite
def sent_ats(draw: st.DrawFn) -> str:
    """RFC 3339 in every accepted spelling, with offsets that stay in range in UTC."""
    year = draw(st.integers(2, 9998))
    stamp = (f"{year:04d}-{draw(st.integers(1, 12)):02d}-{draw(st.integers(1, 28)):02d}"
             f"{draw(st.sampled_from('Tt '))}{draw(st.integers(0, 23)):02d}:"
             f"{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}")
    digits = draw(st.integers(0, 9))
    if digits:
        stamp += "." + "".join(draw(st.lists(st.sampled_from(string.digits), min_size=digits,
                                             max_size=digits)))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-23:59",
                                   "+23:59", "+14:00", "-12:00"]))
    return stamp + offset


@st.composite
def recipients(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A recipient, the term a user would search for, and the identity the hash is of."""
    forms = draw(st.lists(st.sampled_from(["email", "user_id", "phone_number", "device_token"]),
                          min_size=1, max_size=4, unique=True))
    recipient: dict[str, Any] = {}
    for form in forms:
        if form == "user_id" and draw(st.booleans()):
            recipient[form] = draw(st.integers(-(10 ** 12), 10 ** 12))
        elif form == "email":
            recipient[form] = draw(st.sampled_from([" ", ""])) + draw(non_blank(TEXT)) + "@" + (
                draw(non_blank(TEXT))) + draw(st.sampled_from(["", " ", "\t"]))
        else:
            recipient[form] = draw(non_blank(TEXT))
    if draw(st.booleans()):  # a blank earlier field is skipped by the hash rule
        blank_form = draw(st.sampled_from(["email", "user_id", "phone_number"]))
        if blank_form not in recipient:
            recipient[blank_form] = "  "
    for form in ("email", "user_id", "phone_number", "device_token"):
        value = recipient.get(form)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        text = str(value).strip()
        identity = text.lower() if form in ("email", "device_token") else text
        return recipient, str(value), identity
    raise AssertionError("a recipient always has a non-blank field")


@st.composite
def messages(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    medium = draw(st.sampled_from(["email", "sms", "push"]))
    recipient, term, identity = draw(recipients())
    if medium == "email":
        content: dict[str, Any] = {"from": draw(TEXT_ANY), "to": draw(TEXT_ANY),
                                   "subject": draw(TEXT_ANY)}
        for part in draw(st.lists(st.sampled_from(["html", "text"]), min_size=1, max_size=2,
                                  unique=True)):
            content[part] = draw(TEXT_ANY)
        if draw(st.booleans()):
            content["headers"] = draw(st.dictionaries(TEXT_ANY, TEXT_ANY, max_size=3))
    elif medium == "sms":
        content = {"from": draw(TEXT_ANY), "to": draw(TEXT_ANY), "body": draw(TEXT_ANY)}
        if draw(st.booleans()):
            content["media_urls"] = draw(st.lists(TEXT_ANY, max_size=3))
    else:
        content = {"platform": draw(st.sampled_from(["ios", "android", "web"])),
                   "device_token": draw(TEXT_ANY)}
        for part in draw(st.lists(st.sampled_from(["title", "body", "payload"]), min_size=1,
                                  max_size=3, unique=True)):
            content[part] = (draw(st.dictionaries(TEXT_ANY, json_values, max_size=3))
                             if part == "payload" else draw(TEXT_ANY))
    content.update(draw(st.dictionaries(TEXT_ANY, json_values, max_size=2)))
    message: dict[str, Any] = {
        "message_id": draw(message_ids), "project_id": draw(references), "medium": medium,
        "message_type": draw(st.sampled_from(["blast", "triggered", "journey"])),
        "recipient": recipient, "sent_at": draw(sent_ats()), "content": content}
    campaign = draw(st.one_of(st.just("absent"), st.none(), references))
    if campaign != "absent":
        message["campaign_id"] = campaign
    for name in ("template_id", "journey_id"):
        if draw(st.booleans()):
            message[name] = draw(st.none() | references)
    if draw(st.booleans()):
        message["provider"] = {"name": draw(TEXT_ANY), "message_id": draw(TEXT_ANY)}
    if draw(st.booleans()):
        message["schema_version"] = 1
    extra = draw(st.dictionaries(TEXT_ANY, json_values, max_size=2))
    message.update({k: v for k, v in extra.items() if k not in message and k != "event"})
    return message, term, identity


def expected_payload(message: dict[str, Any]) -> bytes:
    """SPEC 3's payload, written out here: ids as strings, plus schema_version, canonical."""
    document = dict(message)
    for name in ("project_id", "campaign_id", "template_id", "journey_id"):
        if document.get(name) is not None:
            document[name] = str(document[name])
    document["schema_version"] = 1
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def expected_key(message: dict[str, Any], identity: str) -> str:
    campaign = message.get("campaign_id")
    return (f"{message['medium']}/{message['project_id']}/"
            f"{hashlib.sha256(identity.encode('utf-8')).hexdigest()}/"
            f"{'unassociated' if campaign is None else campaign}/"
            f"{message['message_id']}.json.gz")


def unique_per_project(items: list[tuple[dict[str, Any], str, str]]) -> bool:
    ids = [(str(m["project_id"]), m["message_id"]) for m, _, _ in items]
    return len(set(ids)) == len(ids)


BATCHES = st.lists(messages(), min_size=1, max_size=4).filter(unique_per_project)


def check_roundtrip(batch: list[tuple[dict[str, Any], str, str]]) -> None:
    """The whole pipeline for one batch, in fresh homes and a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="sm-roundtrip-") as scratch:
        root = Path(scratch)
        folder = root / "archive"
        url = f"file://{folder}/"
        original, laptop = cli_for(root / "home"), cli_for(root / "laptop")
        projects = sorted({str(m["project_id"]) for m, _, _ in batch})
        for cli in (original, laptop):
            for project in projects:
                connected = cli("connect", url, f"--project={project}")
                assert connected.exit_code == 0, connected.output
        lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m, _, _ in batch)
        ingested = original("--json", "ingest", "-", input=lines)
        assert ingested.exit_code == 0, ingested.output
        assert json.loads(ingested.stdout)["accepted"] == len(batch)
        ran = original("--json", "run", "--once")
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.stdout)["stored"] == len(batch)

        for message, _, identity in batch:
            key = expected_key(message, identity)
            payload = expected_payload(message)
            assert parse_message(message).payload() == payload
            assert gzip.decompress((folder / key).read_bytes()) == payload, key
            project = str(message["project_id"])
            for cli in (original, laptop):  # with the index the run wrote; with no index
                fetched = cli("fetch", "--part=json", f"--project={project}", "--",
                              message["message_id"])
                assert fetched.exit_code == 0, (key, fetched.output)
                assert fetched.stdout_bytes == payload

        for message, term, identity in batch:
            project = str(message["project_id"])
            found = laptop("--json", "find", "--remote", f"--recipient={term}",
                           f"--project={project}", "--limit=1000")
            assert found.exit_code == 0, (term, found.output)
            hits = {(r["message_id"], r["key"]) for r in json.loads(found.stdout)}
            assert (message["message_id"], expected_key(message, identity)) in hits, term

        rebuilt = laptop("--json", "index", "rebuild")
        assert rebuilt.exit_code == 0, rebuilt.output
        per_project = {p["project_id"]: p for p in json.loads(rebuilt.stdout)["projects"]}
        for project in projects:
            count = sum(1 for m, _, _ in batch if str(m["project_id"]) == project)
            report = per_project[project]  # the fetches above may have indexed some already
            assert (report["listed"], report["indexed"] + report["already_indexed"],
                    report["failed"]) == (count, count, 0), report
        for message, _, identity in batch:
            found = laptop("--json", "find", f"--message-id={message['message_id']}",
                           f"--project={message['project_id']}")
            assert found.exit_code == 0, found.output
            [row] = json.loads(found.stdout)
            campaign = message.get("campaign_id")
            assert row["key"] == expected_key(message, identity)
            assert row["campaign_id"] == (None if campaign is None else str(campaign))
            assert row["payload_sha256"] == hashlib.sha256(expected_payload(message)).hexdigest()


@ROUNDTRIP
@given(BATCHES)
@example([({"message_id": "." * 128, "project_id": "_sm", "medium": "push",
            "message_type": "journey", "recipient": {"device_token": " Ünïcødé "},
            "sent_at": "0002-01-01T00:00:00+23:59",
            "content": {"platform": "web", "device_token": "t", "payload": {"a": [1, 2.5]}},
            "campaign_id": "email"}, " Ünïcødé ", "ünïcødé"),
          ({"message_id": "-", "project_id": -7, "medium": "sms", "message_type": "blast",
            "recipient": {"user_id": "Bob@Corp", "phone_number": "+1"},
            "sent_at": "9998-12-31 23:59:59.123456789z",
            "content": {"from": "\u2028", "to": "\r\n", "body": "🔔 ‮"}}, "Bob@Corp",
           "Bob@Corp")])
def test_valid_messages_round_trip_through_the_bucket(batch) -> None:
    check_roundtrip(batch)


def test_a_campaign_named_unassociated_round_trips() -> None:
    message = {"message_id": "m-1", "project_id": 1, "medium": "sms", "message_type": "blast",
               "recipient": {"user_id": "u-1"}, "sent_at": "2026-11-27T17:00:00Z",
               "campaign_id": "unassociated", "content": {"from": "a", "to": "b", "body": "c"}}
    check_roundtrip([(message, "u-1", "u-1")])
