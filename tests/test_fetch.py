"""`sm fetch`: byte-exact parts, integrity on every read, fetch without an index, ambiguous
ids; on a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import gzip
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    canonical,
    cli_for,
    connect,
    email,
    gunzip,
    push,
    sha256_hex,
    sms,
    target_for,
)

# CRLF, tabs, emoji (with a ZWJ sequence), right-to-left text, U+2028 / U+2029, edge spaces.
TRICKY = ("Line one\r\nLine two\n\tTabbed\tcells\r\nEmoji 😀🎉 family 👩\u200d👩\u200d👧\r\n"
          "עברית: שלום עולם – العربية: مرحبا\u2028after LS\u2029after PS\r\n  edge spaces  ")
HTML = f"<html><body><p dir=\"auto\">{TRICKY}</p></body></html>\r\n"
TEXT = TRICKY + "\n"
ANN_HASH = sha256_hex(b"ann.lee@example.com")
MESSAGES = [
    email("mail-1", html=HTML, text=TEXT, subject="Tricky\tsubject 😀"),
    sms("sms-1", body=TRICKY),
    push("push-1", body="🔔 " + TRICKY),
]


def expected_document(message: dict[str, Any]) -> dict[str, Any]:
    """The payload SPEC 3 says is archived for `message`."""
    document = dict(message, project_id=str(message["project_id"]), schema_version=1)
    if document.get("campaign_id") is not None:
        document["campaign_id"] = str(document["campaign_id"])
    return document


@pytest.fixture(scope="module", params=["file", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Invoke, ArchiveTarget]:
    """The three messages above, stored once per backend; tests here only read them."""
    folder = tmp_path_factory.mktemp(f"fetch-{request.param}")
    archived = target_for(request, folder)
    invoke = cli_for(folder / "home")
    archive(invoke, archived, MESSAGES)
    return invoke, archived


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    """A fresh local folder or moto S3 bucket, for a test that alters what is stored."""
    return target_for(request, tmp_path)


def test_each_part_is_byte_exact(shared: tuple[Invoke, ArchiveTarget]) -> None:
    cli, archived = shared
    cases = [("mail-1", "html", HTML), ("mail-1", "text", TEXT), ("sms-1", "body", TRICKY),
             ("push-1", "body", "🔔 " + TRICKY)]
    for message_id, part, content in cases:
        result = cli("fetch", message_id, "--part", part)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == content.encode("utf-8"), (message_id, part)
    keys = {"mail-1": f"email/12345/{ANN_HASH}/111/mail-1.json.gz",
            "sms-1": f"sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz",
            "push-1": f"push/12345/{sha256_hex(b'abcdef0123')}/111/push-1.json.gz"}
    for message in MESSAGES:
        args = ["--part", "json"] if message["medium"] != "email" else []  # json by default
        result = cli("fetch", message["message_id"], *args)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == canonical(expected_document(message))
        key = archived.key_prefix + keys[message["message_id"]]
        assert result.stdout_bytes == gunzip(archived.read(key))


def test_output_saves_exactly_the_part_owner_only(shared: tuple[Invoke, ArchiveTarget],
                                                  tmp_path: Path) -> None:
    cli, _ = shared
    saved = tmp_path / "msg.html"
    saved.write_bytes(b"an older, longer file that must be replaced entirely")
    result = cli("fetch", "mail-1", "--part", "html", "--output", str(saved), "--force")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""
    assert saved.read_bytes() == HTML.encode("utf-8")
    assert f"Saved the html part ({len(HTML.encode('utf-8'))} bytes) to {saved}" in (
        result.stderr)
    fresh = tmp_path / "body.txt"
    assert cli("fetch", "sms-1", "--part", "body", "-o", str(fresh)).exit_code == 0
    assert fresh.read_bytes() == TRICKY.encode("utf-8")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_json_mode_describes_what_was_verified(shared: tuple[Invoke, ArchiveTarget],
                                               tmp_path: Path) -> None:
    cli, archived = shared
    result = cli("--json", "fetch", "sms-1", "--part", "body")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    key = f"{archived.key_prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"
    assert record | {"version_id": None} == {
        "message_id": "sms-1", "project_id": "12345", "medium": "sms",
        "message_type": "triggered", "campaign_id": None,
        "sent_at": "2026-11-20T08:30:00.500000Z", "key": key,
        "payload_sha256": sha256_hex(gunzip(archived.read(key))), "version_id": None,
        "verified": True, "part": "body", "bytes": len(TRICKY.encode("utf-8")),
        "output": None, "content": TRICKY}


def test_a_part_the_message_lacks_is_a_clear_error(shared: tuple[Invoke, ArchiveTarget]
                                                   ) -> None:
    cli, _ = shared
    result = cli("fetch", "mail-1", "--part", "body")
    assert result.exit_code == 1
    assert result.stdout_bytes == b""
    assert "Error: message mail-1 (email) has no body part" in result.stderr
    assert "parts: json, html, text" in result.stderr
    assert cli("fetch", "mail-1", "--part", "pdf").exit_code == 2


def test_unknown_id_is_not_found(shared: tuple[Invoke, ArchiveTarget]) -> None:
    cli, _ = shared
    result = cli("fetch", "no-such-id")
    assert result.exit_code == 1
    assert ("Error: message no-such-id is not in the local index nor in the bucket of"
            " project(s) 12345") in result.stderr
    assert cli("fetch", "bad/id").exit_code == 2


def test_fetch_on_a_fresh_home_lists_the_bucket_once(shared: tuple[Invoke, ArchiveTarget],
                                                     tmp_path: Path) -> None:
    _, archived = shared
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, archived, "12345")
    first = fresh("fetch", "push-1", "--part", "body")
    assert first.exit_code == 0, first.output
    assert first.stdout_bytes == ("🔔 " + TRICKY).encode("utf-8")
    assert "push-1 is not in the local index; listing the bucket" in first.stderr
    # The verified read was indexed: the next fetch goes straight to the key.
    again = fresh("fetch", "push-1", "--part", "body")
    assert again.stdout_bytes == first.stdout_bytes
    assert "listing the bucket" not in again.stderr
    assert [m["message_id"] for m in json.loads(
        fresh("--json", "find", "--message-id", "push-1").stdout)] == ["push-1"]


@pytest.mark.parametrize("home", ["original", "fresh"])
def test_an_altered_object_is_detected(target: ArchiveTarget, tmp_path: Path,
                                       home: str) -> None:
    original = cli_for(tmp_path / "home")
    archive(original, target, [MESSAGES[0]])
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/mail-1.json.gz"
    stored = target.read(key)
    forged = gunzip(stored).replace(b"Line one", b"Line 1!!")
    # Keep the metadata of the original, as a plain overwrite by another tool would.
    target.overwrite(key, gzip.compress(forged, mtime=0),
                     payload_sha256=sha256_hex(gunzip(stored)))
    cli = original
    if home == "fresh":
        cli = cli_for(tmp_path / "laptop")
        connect(cli, target, "12345")
    if target.kind == "file" and home == "fresh":
        # A folder keeps no metadata apart from the bytes and there is no index: an edit
        # that keeps sm's encoding cannot be told from the original. This is why archives
        # belong in a bucket with object lock (see docs/investigations.md).
        assert cli("fetch", "mail-1").exit_code == 0
        return
    result = cli("fetch", "mail-1", "--part", "html")
    assert result.exit_code == 1
    assert result.stdout_bytes == b""
    assert f"Error: checksum mismatch for {key}: payload SHA-256 is {sha256_hex(forged)}" in (
        result.stderr)
    why = ("the local index recorded" if target.kind == "file"
           else "the object's sm-payload-sha256 metadata says")
    assert why in result.stderr


@pytest.mark.parametrize("target", ["s3"], indirect=True)  # a folder has no separate metadata
def test_metadata_rewritten_to_match_is_caught_by_the_index(target: ArchiveTarget,
                                                           tmp_path: Path) -> None:
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [MESSAGES[1]])
    key = f"{target.key_prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"
    forged = gunzip(target.read(key)).replace(b"Line one", b"Line 1!!")
    target.overwrite(key, gzip.compress(forged, mtime=0), payload_sha256=sha256_hex(forged))
    result = cli("fetch", "sms-1", "--part", "body", "--output", str(tmp_path / "out.txt"))
    assert result.exit_code == 1
    assert "the local index recorded" in result.stderr
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("target", ["file"], indirect=True)  # the checks are the same on S3
def test_edits_that_break_the_encoding_or_the_key_are_caught_without_an_index(
        target: ArchiveTarget, tmp_path: Path) -> None:
    original = cli_for(tmp_path / "home")
    archive(original, target, [MESSAGES[0], email("mail-2", campaign=None)])
    key_1 = f"{target.key_prefix}email/12345/{ANN_HASH}/111/mail-1.json.gz"
    key_2 = f"{target.key_prefix}email/12345/{ANN_HASH}/unassociated/mail-2.json.gz"
    pretty = json.dumps(json.loads(gunzip(target.read(key_1))), indent=2).encode()
    target.overwrite(key_1, gzip.compress(pretty), payload_sha256=sha256_hex(pretty))
    # Put mail-1's original-looking payload where mail-2 should be.
    donor = canonical(expected_document(MESSAGES[0]))
    target.overwrite(key_2, gzip.compress(donor), payload_sha256=sha256_hex(donor))
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, target, "12345")
    edited = fresh("fetch", "mail-1")
    assert edited.exit_code == 1
    assert (f"Error: integrity check failed for {key_1}: the payload is not in the canonical"
            " encoding sm writes") in edited.stderr
    swapped = fresh("fetch", "mail-2")
    assert swapped.exit_code == 1
    assert (f"Error: integrity check failed for {key_2}: the key says campaign_id"
            ' "unassociated" but the payload says "111"') in swapped.stderr


def test_a_missing_object_is_reported(target: ArchiveTarget, tmp_path: Path) -> None:
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [MESSAGES[1]])
    key = f"{target.key_prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"
    if target.kind == "file":
        (target.root / key).unlink()
    else:
        target.s3_client.delete_object(Bucket=target.bucket, Key=key)
    result = cli("fetch", "sms-1")
    assert result.exit_code == 1
    assert (f"Error: message sms-1 of project 12345 is in the local index but its object {key}"
            " is missing") in result.stderr


@pytest.mark.parametrize("target", ["file"], indirect=True)  # bucket listing is tested above
def test_an_id_in_two_projects_needs_project(target: ArchiveTarget, tmp_path: Path) -> None:
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [email("same-id", html="<p>one</p>"),
                          email("same-id", project=777, html="<p>seven</p>")])
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, target, "12345")
    connect(fresh, target, "777")
    for invoke in (cli, fresh):  # from the index, and by listing the buckets
        result = invoke("fetch", "same-id", "--part", "html")
        assert result.exit_code == 2
        assert "Error: message id same-id exists in projects 12345, 777" in result.stderr
        assert "Try: sm fetch same-id --project 12345" in result.stderr
        chosen = invoke("fetch", "same-id", "--project", "777", "--part", "html")
        assert (chosen.exit_code, chosen.stdout_bytes) == (0, b"<p>seven</p>")


def test_a_forged_object_nested_a_thousand_deep_is_an_integrity_error(
        target: ArchiveTarget, tmp_path: Path) -> None:
    """A payload nested ~1000 deep (valid gzip, matching metadata) never crashes a reader
    with RecursionError: fetch, find --remote and index rebuild each report it and exit 1."""
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [MESSAGES[1]])
    key = f"{target.key_prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"
    forged = (b'{"content":' + b'[' * 1000 + b']' * 1000 + b',"message_id":"sms-1"}')
    target.overwrite(key, gzip.compress(forged, mtime=0), payload_sha256=sha256_hex(forged))
    expected = (f"Error: integrity check failed for {key}: the payload is not a stored"
                " message's JSON (nested more than 64 levels deep)")
    fresh = cli_for(tmp_path / "laptop")
    connect(fresh, target, "12345")
    fetched = fresh("fetch", "sms-1")
    assert fetched.exit_code == 1
    assert expected in fetched.stderr
    assert "Traceback" not in fetched.output
    found = fresh("--json", "find", "--remote", "--recipient", "u-9")
    assert (found.exit_code, json.loads(found.stdout)) == (1, [])
    assert expected in found.stderr
    rebuilt = fresh("--json", "index", "rebuild")
    assert rebuilt.exit_code == 1
    assert json.loads(rebuilt.stdout)["projects"][0]["failures"] == [
        {"key": key, "reason": expected.removeprefix("Error: ")}]
