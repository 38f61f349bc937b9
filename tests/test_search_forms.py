"""SPEC 9.2 search hashes: an email is also indexed NFC-normalised and a phone number in
E.164 (`phonenumbers`, setting `default_phone_region`), so `sm find --recipient` with the NFD
spelling of an NFC address (and back), or `+15550100000` for `+1 555 010 0000`, finds the
message; the object key (its recipient hash) is unchanged. Real folder destination, real
spool, the real CLI."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stored_messages_cli.message import recipient_hash_candidates, search_hashes
from tests.support.investigation_support import (
    archive,
    build_target,
    cli_for,
    connect,
    email,
    sha256_hex,
)

NFC = unicodedata.normalize("NFC", "josé.müller@example.com")
NFD = unicodedata.normalize("NFD", NFC)


def phone_message(message_id: str, number: str) -> dict[str, object]:
    """An SMS whose recipient is known by a phone number only."""
    return {"message_id": message_id, "project_id": 12345, "medium": "sms",
            "message_type": "triggered", "recipient": {"phone_number": number},
            "sent_at": "2026-11-20T08:30:00Z",
            "content": {"from": "+15555550199", "to": number, "body": "Code 1"}}


def found(cli, *args: str) -> list[str]:
    """Message ids `sm --json find ARGS` prints, sorted."""
    result = cli("--json", "find", *args)
    assert result.exit_code == 0, result.output
    return sorted(item["message_id"] for item in json.loads(result.stdout))


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An NFC address, an NFD address and a spaced phone number, archived to a folder."""
    monkeypatch.setenv("SM_DEFAULT_PHONE_REGION", "US")
    monkeypatch.setenv("SM_MANIFEST_MAX_ENTRIES", "1")  # `sm run` seals every entry at once
    target = build_target("file", tmp_path)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [email("nfc-1", to=NFC), email("nfd-2", to=NFD),
                          phone_message("tel-3", "+1 555 010 0000")])
    return cli, target


def test_nfd_and_nfc_spellings_find_each_other(stored) -> None:
    cli, _ = stored
    assert NFC != NFD
    assert found(cli, "--recipient", NFD) == ["nfc-1", "nfd-2"]
    assert found(cli, "--recipient", NFC) == ["nfc-1", "nfd-2"]
    assert found(cli, "--recipient", NFC.upper()) == ["nfc-1", "nfd-2"]


def test_e164_finds_a_spaced_number_and_back(stored) -> None:
    cli, _ = stored
    assert found(cli, "--recipient", "+15550100000") == ["tel-3"]
    assert found(cli, "--recipient", "+1 (555) 010-0000") == ["tel-3"]
    # the region setting reads a national number as the US one
    assert found(cli, "--recipient", "555 010 0000") == ["tel-3"]
    assert found(cli, "--recipient", "+445550100000") == []


def test_keys_keep_the_recipient_hash_of_the_stored_spelling(stored) -> None:
    _, target = stored
    keys = target.keys()
    for spelling in (NFC.lower(), NFD.lower(), "+1 555 010 0000"):
        digest = sha256_hex(spelling.encode("utf-8"))
        assert any(digest in key for key in keys), (spelling, keys)
    assert not any(sha256_hex(b"+15550100000") in key for key in keys)


def test_index_rebuild_on_a_new_home_back_fills_the_search_hashes(
        stored, tmp_path: Path) -> None:
    _, target = stored
    fresh = cli_for(tmp_path / "fresh")
    connect(fresh, target)
    rebuilt = fresh("index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert found(fresh, "--recipient", NFD) == ["nfc-1", "nfd-2"]
    assert found(fresh, "--recipient", NFC) == ["nfc-1", "nfd-2"]
    assert found(fresh, "--recipient", "+15550100000") == ["tel-3"]


def test_default_phone_region_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("SM_DEFAULT_PHONE_REGION", "USA")
    cli = cli_for(tmp_path / "home")
    result = cli("find", "--recipient", "+15550100000")
    assert result.exit_code == 1, result.output
    assert "SM_DEFAULT_PHONE_REGION" in result.output
    assert "two-letter region" in result.output


def test_a_number_that_does_not_parse_gets_no_e164_hash() -> None:
    hashes = search_hashes({"phone_number": "call me maybe 12"})
    assert set(hashes) == {"phone_number"}
    national = search_hashes({"phone_number": "555 010 0000"})  # no region: no E.164 form
    assert set(national) == {"phone_number"}
    assert set(search_hashes({"phone_number": "555 010 0000"}, "US")) == {
        "phone_number", "phone_number_e164"}


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != ""))
def test_nfc_and_nfd_spellings_find_the_same(text: str) -> None:
    """Whichever spelling was stored, either spelling searched for finds it."""
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    for stored_as in (nfc, nfd):
        indexed = set(search_hashes({"email": stored_as}).values())
        hits = [bool(indexed & set(recipient_hash_candidates(query))) for query in (nfc, nfd)]
        assert hits[0] == hits[1]


def test_remote_find_through_the_manifests_knows_the_search_forms(
        stored, tmp_path: Path) -> None:
    _, target = stored
    fresh = cli_for(tmp_path / "fresh")
    connect(fresh, target)
    for query, expected in ((NFD, ["nfc-1", "nfd-2"]), (NFC, ["nfc-1", "nfd-2"]),
                            ("+15550100000", ["tel-3"])):
        result = fresh("--json", "find", "--remote", "--recipient", query)
        assert result.exit_code == 0, result.output
        assert sorted(item["message_id"] for item in json.loads(result.stdout)) == expected
        assert "manifest" in result.stderr
