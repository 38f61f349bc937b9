"""Erasure that coexists with WORM (SPEC 9.5), end to end through the CLI on a folder and on
S3 (moto): the bucket never holds the plaintext, fetch returns the exact payload, `sm forget`
leaves objects no key sm holds opens, the log says `erased`, the audit stays clean, and a
spool backup restores reading. Checked against the bucket's real bytes."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.evidence.segments import parse_segment
from stored_messages_cli.message.envelope import DataKey, EnvelopeError, parse_envelope
from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    build_target,
    canonical,
    cli_for,
    email,
    sms,
    target_for,
)
from tests.support.spool_db import rows

SECRET = "Refund 8812 approved for your account"
MESSAGES = [email("mail-1", html=f"<p>{SECRET}</p>", text=SECRET),
            email("mail-2", to="bob@example.com", html="<p>for bob</p>"),
            sms("sms-1", body=f"Code {SECRET}")]


def expected(message: dict[str, Any]) -> bytes:
    """The exact payload SPEC 3 archives, written out here."""
    document = dict(message, project_id=str(message["project_id"]), schema_version=1)
    if document.get("campaign_id") is not None:
        document["campaign_id"] = str(document["campaign_id"])
    return canonical(document)


def encrypted_home(home: Path, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'encryption = "per-recipient"\n{extra}')


@pytest.fixture(params=["file", "s3"])
def archived(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Invoke, ArchiveTarget]:
    target = target_for(request, tmp_path)
    encrypted_home(tmp_path / "home")
    cli = cli_for(tmp_path / "home")
    archive(cli, target, MESSAGES)
    return cli, target


def object_bytes(target: ArchiveTarget) -> dict[str, bytes]:
    return {key: target.read(key) for key in target.keys()}


def test_the_bucket_never_holds_the_plaintext_and_fetch_returns_the_exact_payload(
        archived: tuple[Invoke, ArchiveTarget]) -> None:
    cli, target = archived
    objects = object_bytes(target)
    assert len(objects) == 3
    for key, body in objects.items():
        inner = gzip.decompress(body)
        for needle in (SECRET.encode(), b"Ann.Lee", b"ann.lee", b"bob@example.com",
                       b"u-9", b"mail-1\"", b"recipient"):
            assert needle not in inner and needle not in body, (key, needle)
        parse_envelope(inner)  # each object is exactly an envelope
        assert body[:10] == bytes.fromhex("1f8b0800000000000003")  # the pinned header
    for message in MESSAGES:
        result = cli("fetch", message["message_id"], "--part", "json")
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == expected(message)
    html = cli("fetch", "mail-1", "--part", "html")
    assert html.stdout_bytes == f"<p>{SECRET}</p>".encode()


def test_an_envelope_copied_over_another_object_is_refused(
        archived: tuple[Invoke, ArchiveTarget]) -> None:
    cli, target = archived
    [one] = [k for k in target.keys() if k.endswith("mail-1.json.gz")]
    [two] = [k for k in target.keys() if k.endswith("mail-2.json.gz")]
    body = target.read(two)
    import hashlib

    target.overwrite(one, body, payload_sha256=hashlib.sha256(gzip.decompress(body)).hexdigest())
    result = cli("fetch", "mail-1")
    assert result.exit_code == 1
    assert "mail-1" in result.output and SECRET not in result.output
    assert "for bob" not in result.output


def test_forget_leaves_every_object_unreadable_by_any_key_the_audit_clean_and_logs_it(
        archived: tuple[Invoke, ArchiveTarget], tmp_path: Path) -> None:
    cli, target = archived
    before = object_bytes(target)
    result = cli("--json", "forget", "--project", "12345", "--recipient",
                 " ANN.LEE@example.com ", "--reason", "GDPR art. 17 #118")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["messages"] == ["mail-1"] and report["keys_destroyed"] == 1
    fetched = cli("fetch", "mail-1")
    assert fetched.exit_code == 1
    assert "erased on 20" in fetched.output and SECRET not in fetched.output
    assert cli("fetch", "mail-2").exit_code == 0  # another recipient is untouched
    # no key sm holds opens the object: every live key in the spool is tried on it
    [key_one] = [k for k in before if k.endswith("mail-1.json.gz")]
    envelope = parse_envelope(gzip.decompress(before[key_one]))
    home = tmp_path / "home"
    master = base64.b64decode((home / "keys" / "master.key").read_text())
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    live = rows(home / "spool.db", "SELECT kid, project_id, wrapped FROM recipient_keys"
                " WHERE wrapped IS NOT NULL")
    assert live  # bob's key and the SMS recipient's
    for row in live:
        wrapped = bytes(row["wrapped"])
        context = (b"sm-recipient-key-v1\x00" + row["kid"].encode() + b"\x00"
                   + row["project_id"].encode())
        secret = AESGCM(master).decrypt(wrapped[:12], wrapped[12:], context)
        with pytest.raises(EnvelopeError):
            DataKey(envelope.kid, secret).open(envelope, key_one[len(target.key_prefix):])
    assert rows(home / "spool.db", "SELECT wrapped FROM recipient_keys WHERE kid = ?",
                (envelope.kid,))[0]["wrapped"] is None
    # the bucket's bytes are unchanged; the log says erased; the audit is clean
    assert object_bytes(target) == before
    assert cli("manifest", "seal").exit_code == 0
    audit = cli("--json", "audit")
    assert audit.exit_code == 0, audit.output
    [project] = [p for p in json.loads(audit.stdout)["projects"] if p["project_id"] == "12345"]
    assert project["findings"] == [] and project["stored"] == 3
    deep = cli("--json", "audit", "--deep")  # every object's bytes read and hashed again
    assert deep.exit_code == 0 and all(p["findings"] == []
                                       for p in json.loads(deep.stdout)["projects"])
    segments = [k for k in _all_keys(target) if "/manifests/" in k or "_sm/manifests" in k]
    entries = [e for k in segments for e in parse_segment(_read_any(target, k)).entries]
    [erased] = [e for e in entries if e["outcome"] == "erased"]
    assert erased["message_id"] == "mail-1" and erased["reason"] == "GDPR art. 17 #118"
    assert erased["key"] == key_one
    # prove still proves the (encrypted) object was archived
    proof = cli("--json", "prove", "mail-1")
    assert proof.exit_code == 0, proof.output
    assert json.loads(proof.stdout)["object_key"] == key_one
    # find says when
    found = cli("--json", "find", "--recipient", "ann.lee@example.com")
    [row] = json.loads(found.stdout)
    assert row["message_id"] == "mail-1" and row["erased_at"].startswith("20")
    assert "erased_at" not in json.loads(cli("--json", "find", "--recipient",
                                             "bob@example.com").stdout)[0]
    # export of the erased message names it and exits 1
    exported = cli("export", "--recipient", "ann.lee@example.com", "--format", "jsonl",
                   "--output", str(tmp_path / "out.jsonl"))
    assert exported.exit_code == 1
    assert "erased on" in exported.output
    readable = cli("export", "--recipient", "bob@example.com", "--format", "jsonl",
                   "--output", "-")
    assert readable.exit_code == 0, readable.output
    assert "<p>for bob</p>" in readable.stdout  # decrypted transparently


def _all_keys(target: ArchiveTarget) -> list[str]:
    if target.kind == "file":
        assert target.root is not None
        return [p.relative_to(target.root).as_posix() for p in target.root.rglob("*")
                if p.is_file()]
    pages = target.s3_client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _read_any(target: ArchiveTarget, key: str) -> bytes:
    if target.kind == "file":
        assert target.root is not None
        return (target.root / key).read_bytes()
    return target.s3_client.get_object(Bucket=target.bucket, Key=key)["Body"].read()


def test_a_spool_backup_restores_reading(archived: tuple[Invoke, ArchiveTarget],
                                         tmp_path: Path) -> None:
    cli, _ = archived
    status = json.loads(cli("--json", "status").stdout)
    assert status["recipient_keys"]["live"] == 3 and status["recipient_keys"]["backup_stale"]
    checked = cli("status", "--check")
    assert checked.exit_code == 1 and "recipient_keys_not_backed_up" in checked.output
    assert "only in the spool" in cli("status").output
    backup = tmp_path / "backup.db"
    assert cli("spool", "backup", str(backup)).exit_code == 0
    status = json.loads(cli("--json", "status").stdout)
    assert not status["recipient_keys"]["backup_stale"]
    assert status["recipient_keys"]["last_backup_at"] is not None
    home = tmp_path / "home"
    for path in home.glob("spool.db*"):
        path.unlink()  # the spool is lost
    lost = cli("fetch", "mail-1", "--project", "12345")
    assert lost.exit_code == 1 and SECRET not in lost.output
    shutil.copyfile(backup, home / "spool.db")
    restored = cli("fetch", "mail-1", "--part", "json")
    assert restored.exit_code == 0, restored.output
    assert restored.stdout_bytes == expected(MESSAGES[0])


def test_forget_is_refused_under_a_real_hold(tmp_path: Path) -> None:
    """A legal hold case on the recipient (the holds ledger, SPEC 9.4) stops the erasure;
    once the case is released the same request erases."""
    target = target_for(type("R", (), {"param": "file"})(), tmp_path)  # type: ignore[arg-type]
    encrypted_home(tmp_path / "home")
    cli = cli_for(tmp_path / "home")
    archive(cli, target, MESSAGES)
    held = cli("hold", "create", "case-42", "--project", "12345", "--recipient",
               "ann.lee@example.com", "--note", "litigation")
    assert held.exit_code == 0, held.output
    result = cli("forget", "--project", "12345", "--recipient", "ANN.LEE@example.com ",
                 "--reason", "GDPR")
    assert result.exit_code == 1 and "case-42" in result.output, result.output
    assert cli("fetch", "mail-1").exit_code == 0  # nothing was erased
    released = cli("hold", "release", "case-42")
    assert released.exit_code == 0, released.output
    erased = cli("forget", "--project", "12345", "--recipient", "ann.lee@example.com",
                 "--reason", "GDPR")
    assert erased.exit_code == 0, erased.output
    assert cli("fetch", "mail-1").exit_code == 1


def test_forget_on_a_project_without_encryption_says_so(tmp_path: Path) -> None:
    cli = cli_for(tmp_path / "home")
    target = target_for(type("R", (), {"param": "file"})(), tmp_path)  # type: ignore[arg-type]
    archive(cli, target, [email("plain-1")])
    result = cli("forget", "--project", "12345", "--recipient", "ann.lee@example.com",
                 "--reason", "GDPR")
    assert result.exit_code == 1 and "per-recipient" in result.output
    assert cli("fetch", "plain-1").exit_code == 0


def test_an_investigator_without_the_keys_lists_proves_and_cannot_read(
        archived: tuple[Invoke, ArchiveTarget], tmp_path: Path) -> None:
    cli, target = archived
    investigator = cli_for(tmp_path / "investigator")
    connected = investigator("connect", target.url, "--project", "12345", "--read-only",
                             *target.connect_options)
    assert connected.exit_code == 0, connected.output
    found = investigator("--json", "find", "--remote", "--recipient", "bob@example.com")
    assert SECRET not in found.output
    fetched = investigator("fetch", "mail-1", "--project", "12345")
    assert fetched.exit_code == 1 and SECRET not in fetched.output
    assert "key" in fetched.output
    verifier = json.loads(cli("--json", "key", "show").stdout)["verifier_key"]
    proved = investigator("--json", "prove", "mail-1", "--project", "12345", "--trust",
                          verifier)
    assert proved.exit_code == 0, proved.output
    assert json.loads(proved.stdout)["message_id"] == "mail-1"


def test_planted_and_altered_envelopes_are_integrity_failures(
        archived: tuple[Invoke, ArchiveTarget], tmp_path: Path) -> None:
    import hashlib

    cli, target = archived
    [one] = [k for k in target.keys() if k.endswith("mail-1.json.gz")]
    envelope = json.loads(gzip.decompress(target.read(one)))
    sealed = bytearray(base64.b64decode(envelope["ciphertext"]))
    sealed[5] ^= 1  # one bit of the ciphertext, metadata recomputed: only the tag can tell
    altered = dict(envelope, ciphertext=base64.b64encode(bytes(sealed)).decode())
    raw = json.dumps(altered, sort_keys=True, separators=(",", ":")).encode()
    target.overwrite(one, gzip.compress(raw), payload_sha256=hashlib.sha256(raw).hexdigest())
    result = cli("fetch", "mail-1", "--project", "12345")
    assert result.exit_code == 1 and "altered" in result.output
    # a planted envelope naming a key this spool never had
    planted = dict(envelope, kid="f" * 32)
    raw = json.dumps(planted, sort_keys=True, separators=(",", ":")).encode()
    target.overwrite(one, gzip.compress(raw), payload_sha256=hashlib.sha256(raw).hexdigest())
    result = cli("fetch", "mail-1", "--project", "12345")
    assert result.exit_code == 1 and "altered" in result.output and SECRET not in result.output
    # the same bytes, the index set aside (an object of the bucket's own, re-indexed): the
    # envelope's own checks speak
    from stored_messages_cli.investigate.sealed import opened, use_keys_of
    from stored_messages_cli.spool import Spool

    use_keys_of(lambda: Spool.open(home=tmp_path / "home"))
    try:
        with pytest.raises(Exception, match="does not hold"):
            opened(one, one[len(target.key_prefix):], raw)
        with pytest.raises(Exception, match="does not open"):
            opened(one, one[len(target.key_prefix):], json.dumps(
                altered, sort_keys=True, separators=(",", ":")).encode())
    finally:
        use_keys_of(None)


def test_another_master_key_cannot_read_and_says_which_it_needs(
        archived: tuple[Invoke, ArchiveTarget], tmp_path: Path) -> None:
    cli, _ = archived
    master = tmp_path / "home" / "keys" / "master.key"
    master.unlink()  # a new master key is made on the next use: the old keys stay wrapped
    result = cli("fetch", "mail-1", "--project", "12345")
    assert result.exit_code == 1 and SECRET not in result.output
    assert "master:" in result.output and "master_key_file" in result.output


@pytest.mark.parametrize("spool_backend", ["postgresql"], indirect=True)
def test_on_a_postgresql_spool(spool_backend: str, tmp_path: Path) -> None:
    """The same life on a fleet's PostgreSQL spool: sealed at ingest, read, forgotten, audited;
    its backup is the database's (the status never calls it stale)."""
    home = tmp_path / "home"
    encrypted_home(home)
    target = build_target("file", tmp_path)
    cli = cli_for(home)
    archive(cli, target, MESSAGES[:2])
    for key in target.keys():
        assert SECRET.encode() not in gzip.decompress(target.read(key))
    assert cli("fetch", "mail-1", "--part", "json").stdout_bytes == expected(MESSAGES[0])
    forgot = cli("--json", "forget", "--project", "12345", "--recipient",
                 "ann.lee@example.com", "--reason", "GDPR")
    assert json.loads(forgot.stdout)["messages"] == ["mail-1"]
    gone = cli("fetch", "mail-1")
    assert gone.exit_code == 1 and "erased on" in gone.output
    assert cli("manifest", "seal").exit_code == 0
    audit = cli("--json", "audit")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["projects"][0]["findings"] == []
    keys = json.loads(cli("--json", "status").stdout)["recipient_keys"]
    assert keys["live"] == 1 and keys["erased"] == 1 and keys["backup_stale"] is False
