"""`sm prove` and `sm verify-proof` (SPEC 9.1): every archived message proves, on a folder and
on S3 (moto), and the proof is checked three ways: by `sm verify-proof` with the log's
verifier key and the object's real bytes, by an independent reading of RFC 6962
(`tests/support/rfc6962.py`) over the bucket's own segment bytes, and by Ed25519 with
`cryptography` straight from the checkpoint's text. Then the attacks: every edit of a proof,
a checkpoint of another key or another log, other object bytes, garbage and a huge file."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.cli.app import app
from stored_messages_cli.destinations.file import FileDestination
from stored_messages_cli.evidence.note import format_checkpoint, parse_checkpoint, sign_note
from stored_messages_cli.evidence.proof_check import check_proof
from stored_messages_cli.evidence.prove import PackedLeaves
from stored_messages_cli.evidence.signing import LogSigner, load_signing_key
from stored_messages_cli.evidence.timestamp import check_timestamp, request_timestamp
from stored_messages_cli.spool import Spool
from tests.support import rfc6962
from tests.support.fixtures.core import jsonl
from tests.test_audit import Archive, audit, findings, five_messages_archived, message_key

PROJECT = "12345"


@pytest.fixture(params=["file", "s3"])
def archived(request: pytest.FixtureRequest, cli: Callable[..., Any], tmp_path: Path,
             make_message: Any, monkeypatch: pytest.MonkeyPatch, sm_home: Path) -> Archive:
    """Five messages archived in three manifest segments ([0, 1], [2, 3], [4]): the audit
    tests' archive, made once per worker and restored for each test."""
    return five_messages_archived(request, cli, tmp_path, make_message, monkeypatch, sm_home)


FILE_ONLY = pytest.mark.parametrize("archived", ["file"], indirect=True)


def vkey(sm_home: Path) -> str:
    return load_signing_key(sm_home / "keys" / "signing.key").verifier_key()


def prove(cli: Callable[..., Any], message_id: str, *args: str) -> dict[str, Any]:
    result = cli("prove", message_id, "--project", PROJECT, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write(tmp_path: Path, name: str, proof: dict[str, Any] | str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(proof, dict):
        proof = json.dumps(proof)
    path.write_bytes(proof if isinstance(proof, bytes) else proof.encode())
    return path


def verify(cli: Callable[..., Any], path: Path, *args: str) -> Any:
    return cli("verify-proof", str(path), *args)


def bucket_leaves(archive: Archive) -> list[bytes]:
    """Every entry line of the log, in seq order, from the bucket's real bytes with gzip."""
    lines: list[bytes] = []
    for key in sorted(archive.manifests(), key=lambda k: k.rsplit("/", 1)[1]):
        raw = gzip.decompress(archive.read(key)).split(b"\n")
        lines += raw[1:-1]
    return lines


def independent_check(proof: dict[str, Any], verifier_key: str, leaves: list[bytes]) -> None:
    """The proof checked with no sm code: the Ed25519 signature from the checkpoint's text
    and the verifier key's bytes, and RFC 6962's PATH over the bucket's own lines."""
    text, _, signatures = proof["checkpoint"].partition("\n\n")
    body = (text + "\n").encode()
    origin, size, root_b64 = text.split("\n")
    name, key_id_hex, key_b64 = verifier_key.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 1 and len(key) == 33
    assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == key_id_hex
    [line] = signatures.rstrip("\n").split("\n")
    assert line.startswith(f"\u2014 {name} ")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4].hex() == key_id_hex
    Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], body)  # raises if forged
    # the tree: the entry is the bucket's line at leaf_index, the path is RFC 6962's PATH
    index, tree_size = proof["leaf_index"], proof["tree_size"]
    assert (origin, int(size)) == (proof["origin"], tree_size)
    assert leaves[index] == proof["entry"].encode()
    assert base64.b64decode(root_b64) == rfc6962.mth(leaves[:tree_size])
    path = [base64.b64decode(h) for h in proof["inclusion"]]
    assert path == rfc6962.path(index, leaves[:tree_size])
    assert rfc6962.verify_inclusion(rfc6962.leaf_hash(leaves[index]), index, tree_size, path,
                                    base64.b64decode(root_b64))
    entry = json.loads(proof["entry"])
    assert (entry["message_id"], entry["key"], entry["object_sha256"]) == (
        proof["message_id"], proof["object_key"], proof["object_sha256"])


def test_every_archived_message_proves_and_the_proof_checks_three_ways(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    leaves = bucket_leaves(archived)
    assert len(leaves) == 5
    for number in range(5):
        message_id = f"m-{number:03d}"
        proof = prove(cli, message_id)
        assert list(proof) == ["proof_version", "message_id", "project_id", "origin", "entry",
                               "leaf_index", "tree_size", "inclusion", "checkpoint",
                               "timestamps", "object_key", "object_sha256"]
        assert proof["proof_version"] == 1 and proof["tree_size"] == 5
        assert proof["origin"] == f"{archived.url.rstrip('/')}/#{PROJECT}"
        # the checkpoint is the bucket's file, byte for byte
        assert proof["checkpoint"].encode() == archived.read(
            f"{archived.prefix}_sm/checkpoints/{PROJECT}/000000000005.txt")
        object_key = archived.prefix + message_key(message_id)
        assert proof["object_key"] == object_key and proof["timestamps"] == []
        independent_check(proof, key, leaves)
        obj = write(tmp_path, f"{message_id}.json.gz", archived.read(object_key))
        result = verify(cli, write(tmp_path, "proof.json", proof), "--trust", key,
                        "--object", str(obj))
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and "ok  inclusion: the entry is leaf" in result.stdout


@FILE_ONLY
def test_prove_writes_the_proof_owner_only(cli: Callable[..., Any], archived: Archive,
                                          tmp_path: Path) -> None:
    target = tmp_path / "case" / "proof.json"
    result = cli("prove", "m-002", "--project", PROJECT, "--output", str(target))
    assert result.exit_code == 0, result.output
    assert target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text())["message_id"] == "m-002"
    assert result.stdout == ""
    # one connected project: --project may be left out
    assert json.loads(cli("prove", "m-002").stdout) == json.loads(target.read_text())
    unknown = cli("prove", "m-002", "--project", "999")
    assert unknown.exit_code == 1 and "project 999 has no destination" in unknown.stderr


@pytest.mark.parametrize("archived", ["file", "s3"], indirect=True)
def test_an_investigators_read_only_connection_proves_and_writes_nothing(
        archived: Archive, sm_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = vkey(sm_home)
    investigator = tmp_path / "investigator"
    monkeypatch.setenv("SM_HOME", str(investigator))
    runner = CliRunner()

    def sm(*args: str) -> Any:
        return runner.invoke(app, ["--home", str(investigator), *args])

    connected = sm("connect", archived.url, "--project", PROJECT, "--read-only",
                   *archived.connect_args)
    assert connected.exit_code == 0, connected.output
    before = {k: archived.read(k) for k in archived.keys()}
    no_key = sm("prove", "m-003", "--project", PROJECT)
    assert no_key.exit_code == 1 and "no trusted key" in no_key.stderr
    result = sm("prove", "m-003", "--project", PROJECT, "--trust", key)
    assert result.exit_code == 0, result.output
    proof = json.loads(result.stdout)
    independent_check(proof, key, bucket_leaves(archived))
    assert {k: archived.read(k) for k in archived.keys()} == before
    assert not (investigator / "keys").exists()  # no signing key made for a reader
    [logged] = [r for r in json.loads(sm("--json", "access-log").stdout)
                if r["command"] == "prove" and r["result"] == "ok"]
    assert logged["messages"] == [{"project_id": PROJECT, "message_id": "m-003",
                                   "key": proof["object_key"]}]
    # a checkpoint the investigator's key list does not trust is never used
    stranger = LogSigner.generate("sm-stranger").verifier_key()
    refused = sm("prove", "m-003", "--project", PROJECT, "--trust", stranger)
    assert refused.exit_code == 1 and "not signed by a trusted key" in refused.stderr
    # the setting trusted_keys, instead of --trust
    monkeypatch.setenv("SM_TRUSTED_KEYS", json.dumps([key]))
    assert json.loads(sm("prove", "m-003", "--project", PROJECT).stdout) == proof
    # sealing and adopting write: refused on a read-only connection
    for command in (["manifest", "seal"], ["manifest", "adopt",
                                           archived.prefix + message_key("x-1"), "--reason",
                                           "found it"]):
        writing = sm(*command, "--project", PROJECT)
        assert writing.exit_code == 1 and "connected read-only" in writing.stderr
    assert {k: archived.read(k) for k in archived.keys()} == before
    assert not (investigator / "keys").exists()


@FILE_ONLY
def test_verify_proof_needs_no_spool_and_no_bucket(cli: Callable[..., Any], archived: Archive,
                                                  sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    path = write(tmp_path, "proof.json", prove(cli, "m-001"))
    elsewhere = tmp_path / "court"
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(elsewhere), "--json", "verify-proof", "-",
                                 "--trust", key], input=path.read_text())
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["message_id"] == "m-001"
    assert [c["check"] for c in document["checks"]] == [
        "format", "signature", "checkpoint", "entry", "inclusion"]
    assert document["timestamps"] == []
    assert not elsewhere.exists()
    bad_key = runner.invoke(app, ["--home", str(elsewhere), "verify-proof", str(path),
                                  "--trust", "not-a-key"])
    assert bad_key.exit_code == 2 and "is not a verifier key" in bad_key.stderr
    unchecked = runner.invoke(app, ["--home", str(elsewhere), "verify-proof", str(path)])
    assert unchecked.exit_code == 1
    assert "signature: the signature could not be checked" in unchecked.stderr
    assert not elsewhere.exists()


# ----------------------------------------------------------------------------- attacks


def failed_checks(cli: Callable[..., Any], tmp_path: Path, proof: dict[str, Any] | bytes,
                  *args: str) -> list[str]:
    """The names of the checks that failed; the command exits 1 without a traceback."""
    path = write(tmp_path, "attack.json", proof)
    result = cli("--json", "verify-proof", str(path), *args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False
    human = cli("verify-proof", str(path), *args)
    failed = [c for c in document["checks"] if not c["ok"]]
    errors = [line for line in human.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {c['check']}: {c['detail']}" for c in failed]
    assert human.stderr.splitlines()[-1].startswith("Try: ")
    return [c["check"] for c in failed]


@FILE_ONLY
def test_an_edited_proof_fails_and_says_what(cli: Callable[..., Any], archived: Archive,
                                             sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    proof = prove(cli, "m-002")
    trust = ("--trust", key)

    edited = dict(proof, entry=proof["entry"].replace('"size":', '"size":1'))
    assert failed_checks(cli, tmp_path, edited, *trust) == ["inclusion"]

    moved = dict(proof, leaf_index=proof["leaf_index"] + 1)
    assert failed_checks(cli, tmp_path, moved, *trust) == ["inclusion"]

    swapped = dict(proof, inclusion=list(reversed(proof["inclusion"])))
    assert failed_checks(cli, tmp_path, swapped, *trust) == ["inclusion"]

    other_message = dict(proof, message_id="m-004")
    assert failed_checks(cli, tmp_path, other_message, *trust) == ["entry"]

    other_object = dict(proof, object_sha256="0" * 64)
    assert failed_checks(cli, tmp_path, other_object, *trust) == ["entry"]

    bigger = dict(proof, tree_size=proof["tree_size"] + 1)
    assert failed_checks(cli, tmp_path, bigger, *trust) == ["checkpoint"]

    extra = dict(proof, note="trust me")
    assert failed_checks(cli, tmp_path, extra, *trust) == ["format"]


@FILE_ONLY
def test_a_checkpoint_signed_by_another_key_or_of_another_log_fails(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    proof = prove(cli, "m-000")
    checkpoint = parse_checkpoint(proof["checkpoint"].partition("\n\n")[0] + "\n")
    text = format_checkpoint(checkpoint.origin, checkpoint.tree_size, checkpoint.root)
    # the bucket's writer forges an entry and its tree, and signs with a key of its own
    forger = LogSigner.generate("sm-vm")
    forged_entry = proof["entry"].replace("m-000", "m-999")
    forged_leaf = rfc6962.leaf_hash(forged_entry.encode())
    forged = dict(proof, entry=forged_entry, message_id="m-999", leaf_index=0, tree_size=1,
                  inclusion=[], object_key=proof["object_key"].replace("m-000", "m-999"),
                  checkpoint=sign_note(format_checkpoint(checkpoint.origin, 1, forged_leaf),
                                       forger))
    assert failed_checks(cli, tmp_path, forged, "--trust", key) == ["signature"]
    resigned = dict(proof, checkpoint=sign_note(text, forger))
    assert failed_checks(cli, tmp_path, resigned, "--trust", key) == ["signature"]
    # a genuine signature over another log's checkpoint (same key, same size and root)
    signer = load_signing_key(sm_home / "keys" / "signing.key")
    other_log = sign_note(format_checkpoint("s3://elsewhere/#12345", checkpoint.tree_size,
                                            checkpoint.root), signer)
    assert failed_checks(cli, tmp_path, dict(proof, checkpoint=other_log),
                         "--trust", key) == ["checkpoint"]


@FILE_ONLY
def test_an_object_with_one_byte_changed_fails(cli: Callable[..., Any], archived: Archive,
                                               sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    proof = prove(cli, "m-001")
    body = bytearray(archived.read(proof["object_key"]))
    body[len(body) // 2] ^= 0x01
    changed = write(tmp_path, "object.json.gz", bytes(body))
    assert failed_checks(cli, tmp_path, proof, "--trust", key,
                         "--object", str(changed)) == ["object"]
    longer = write(tmp_path, "longer.json.gz", archived.read(proof["object_key"]) + b"\0")
    assert failed_checks(cli, tmp_path, proof, "--trust", key,
                         "--object", str(longer)) == ["object"]


@FILE_ONLY
def test_garbage_and_a_huge_file_fail_with_one_clear_line(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    key = vkey(sm_home)
    for garbage, words in ((b"\xff\xfe", "not UTF-8"), (b"{", "not JSON"),
                           (b"[1, 2]", "not a JSON object"), (b'{"a": 1, "a": 2}', "not JSON"),
                           (b"[" * 100_000, "not JSON"), (b'{"proof_version": 1}', "missing")):
        result = verify(cli, write(tmp_path, "garbage.json", garbage), "--trust", key)
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        [line, _hint] = result.stderr.splitlines()
        assert line.startswith("Error: format: ") and words in line
        assert "Traceback" not in result.output
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.write(b'{"entry": "' + b"a" * (16 * 1024 * 1024) + b'"}')
    result = verify(cli, huge, "--trust", key)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "Error: format: the file is over 16777216 bytes: not a proof (not read)")


@FILE_ONLY
def test_a_proof_from_before_a_later_seal_still_verifies(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path,
        make_message: Any) -> None:
    key = vkey(sm_home)
    old = write(tmp_path, "old.json", prove(cli, "m-000"))
    batch = [make_message(message_id=f"n-{i:03d}") for i in range(4)]
    assert cli("ingest", input=jsonl(*batch)).exit_code == 0
    assert cli("run", "--once", "--concurrency", "1").exit_code == 0
    result = verify(cli, old, "--trust", key)
    assert result.exit_code == 0, result.output
    new = prove(cli, "m-000")
    assert new["tree_size"] == 9 and json.loads(old.read_text())["tree_size"] == 5
    independent_check(new, key, bucket_leaves(archived))
    assert verify(cli, write(tmp_path, "new.json", new), "--trust", key).exit_code == 0


# ----------------------------------------------------------------------------- property


@pytest.fixture
def genuine(cli: Callable[..., Any], archived: Archive, sm_home: Path
            ) -> tuple[str, dict[str, Any]]:
    return vkey(sm_home), prove(cli, "m-002")


@FILE_ONLY
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_flipped_byte_in_an_inclusion_hash_never_verifies(
        genuine: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    """Flip one byte of the proof file where a hash of the inclusion path is written (its
    base64): the proof never holds, and nothing raises."""
    from stored_messages_cli.evidence.note import NoteVerifier

    key, proof = genuine
    text = json.dumps(proof).encode()
    spans = []
    for encoded in proof["inclusion"]:
        start = text.index(encoded.encode())
        spans.extend(range(start, start + len(encoded)))
    position = data.draw(st.sampled_from(spans), label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    hostile = bytearray(text)
    hostile[position] ^= mask
    report = check_proof(bytes(hostile), [NoteVerifier.parse(key)])
    assert not report.ok
    assert [c.check for c in report.failures] in (["format"], ["inclusion"])


@pytest.fixture
def stamped(cli: Callable[..., Any], archived: Archive, sm_home: Path, tsa: Any
            ) -> tuple[str, dict[str, Any], bytes]:
    checkpoint = archived.read(f"_sm/checkpoints/{PROJECT}/000000000005.txt")
    token = request_timestamp(tsa.url, hashlib.sha256(checkpoint).digest())
    archived.write(f"_sm/checkpoints/{PROJECT}/000000000005.tsr", token)
    return vkey(sm_home), prove(cli, "m-001"), tsa.ca_file.read_bytes()


@FILE_ONLY
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_flipped_byte_in_a_time_stamp_never_changes_what_the_proof_says(
        stamped: tuple[str, dict[str, Any], bytes], data: st.DataObject) -> None:
    """Flip one byte where the time-stamp token is written (its base64): nothing raises, and
    the proof fails, except where the byte lies in the token's unsigned parts (see
    test_timestamp's flip test): then it still says exactly the same time and authority."""
    from stored_messages_cli.evidence.note import NoteVerifier

    key, proof, ca_pem = stamped
    verifiers = [NoteVerifier.parse(key)]
    text = json.dumps(proof).encode()
    reference = check_proof(text, verifiers, ca_pem=ca_pem)
    assert reference.ok and len(reference.timestamps) == 1
    start = text.index(proof["timestamps"][0].encode())
    position = data.draw(st.integers(start, start + len(proof["timestamps"][0]) - 1),
                         label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    hostile = bytearray(text)
    hostile[position] ^= mask
    report = check_proof(bytes(hostile), verifiers, ca_pem=ca_pem)
    if report.ok:
        assert report.timestamps == reference.timestamps
    else:
        assert [c.check for c in report.failures] in (["format"], ["timestamp"])


# ----------------------------------------------------------------------------- time-stamps


@FILE_ONLY
def test_a_time_stamp_beside_the_checkpoint_is_in_the_proof_and_its_time_is_printed(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path,
        tsa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = vkey(sm_home)
    checkpoint = archived.read(f"_sm/checkpoints/{PROJECT}/000000000005.txt")
    digest = hashlib.sha256(checkpoint).digest()
    token = request_timestamp(tsa.url, digest)
    archived.write(f"_sm/checkpoints/{PROJECT}/000000000005.tsr", token)
    proof = prove(cli, "m-003")
    assert proof["timestamps"] == [base64.b64encode(token).decode()]
    path = write(tmp_path, "proof.json", proof)
    stamped = check_timestamp(token, digest, ca_pem=tsa.ca_file.read_bytes())
    assert stamped.ok and stamped.time is not None
    when = stamped.time.isoformat().replace("+00:00", "Z")
    result = verify(cli, path, "--trust", key, "--tsa-ca", str(tsa.ca_file))
    assert result.exit_code == 0, result.output
    assert f"the checkpoint existed at {when}" in result.stdout
    monkeypatch.setenv("SM_TIMESTAMP_CA_FILE", str(tsa.ca_file))  # the setting, not --tsa-ca
    document = json.loads(cli("--json", "verify-proof", str(path), "--trust", key).stdout)
    assert document["ok"] is True
    assert document["timestamps"] == [{"time": when, "tsa": stamped.tsa, "ok": True}]
    # a genuine token of another digest does not stamp this checkpoint
    other = request_timestamp(tsa.url, hashlib.sha256(b"another checkpoint").digest())
    elsewhere = dict(proof, timestamps=[base64.b64encode(other).decode()])
    assert failed_checks(cli, tmp_path, elsewhere, "--trust", key,
                         "--tsa-ca", str(tsa.ca_file)) == ["timestamp"]
    # a token signed by an impostor authority with the same names
    with tsa.fault("other_ca"):
        impostor = request_timestamp(tsa.url, digest)
    forged = dict(proof, timestamps=[base64.b64encode(impostor).decode()])
    assert failed_checks(cli, tmp_path, forged, "--trust", key,
                         "--tsa-ca", str(tsa.ca_file)) == ["timestamp"]


# ----------------------------------------------------------------------------- seal, adopt


@FILE_ONLY
def test_a_message_not_sealed_yet_proves_after_sm_manifest_seal(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, make_message: Any) -> None:
    assert cli("ingest", input=jsonl(make_message(message_id="late-1"))).exit_code == 0
    with Spool.open(home=sm_home) as spool:  # archived by a loop that has not sealed yet
        destination = FileDestination(archived.url)
        Archiver(spool, [ProjectTarget(PROJECT, destination)], concurrency=1).run(once=True)
        destination.close()
    early = cli("prove", "late-1", "--project", PROJECT)
    assert early.exit_code == 1
    assert "not sealed yet: sm manifest seal, then prove again" in early.stderr
    sealed = cli("--json", "manifest", "seal")
    assert sealed.exit_code == 0, sealed.output
    assert json.loads(sealed.stdout) == {
        "projects": [{"project_id": PROJECT, "sealed": 1, "tree_size": 6}]}
    proof = prove(cli, "late-1")
    assert (proof["leaf_index"], proof["tree_size"]) == (5, 6)
    independent_check(proof, vkey(sm_home), bucket_leaves(archived))
    again = cli("manifest", "seal", "--project", PROJECT)
    assert again.exit_code == 0
    assert again.stdout == f"project {PROJECT}: sealed 0 segment(s), tree size 6\n"


def planted(archived: Archive, message_id: str) -> tuple[str, bytes]:
    """An object for `message_id` put in the bucket behind sm's back (a real message's
    payload with the id changed), at its key in the message layout."""
    source = gzip.decompress(archived.read(archived.prefix + message_key("m-000")))
    body = gzip.compress(source.replace(b'"m-000"', f'"{message_id}"'.encode()), mtime=0)
    key = archived.prefix + message_key(message_id)
    archived.write(key, body)
    return key, body


@pytest.mark.parametrize("archived", ["file", "s3"], indirect=True)
def test_an_adopted_object_is_in_the_log_marked_with_its_reason(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    key, body = planted(archived, "restored-1")
    assert [f["type"] for f in findings(audit(cli)[1])] == ["unexpected_object"]
    adopted = cli("--json", "manifest", "adopt", key, "--reason",
                  "restored from backup, case 42")
    assert adopted.exit_code == 0, adopted.output
    document = json.loads(adopted.stdout)
    assert document["message_id"] == "restored-1" and document["tree_size"] == 6
    assert document["adopted"]["reason"] == "restored from backup, case 42"
    # the bucket's newest segment carries the entry and its mark, for ever
    newest = sorted(archived.manifests(), key=lambda k: k.rsplit("/", 1)[1])[-1]
    [entry] = [json.loads(line) for line in
               gzip.decompress(archived.read(newest)).split(b"\n")[1:-1]]
    assert entry["message_id"] == "restored-1" and entry["key"] == key
    assert entry["object_sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["size"] == len(body) and "backfilled" not in entry
    assert entry["adopted"] == document["adopted"]
    assert "unexpected_object" not in [f["type"] for f in findings(audit(cli)[1])]
    proof = prove(cli, "restored-1")
    result = verify(cli, write(tmp_path, "proof.json", proof), "--trust", vkey(sm_home),
                    "--object", str(write(tmp_path, "object.json.gz", body)))
    assert result.exit_code == 0, result.output
    twice = cli("manifest", "adopt", key, "--reason", "again")
    assert twice.exit_code == 1 and "already lists message restored-1" in twice.stderr


@pytest.mark.parametrize("archived", ["file", "s3"], indirect=True)
def test_adopt_refuses_what_the_spool_stored_or_the_layout_does_not_hold(
        cli: Callable[..., Any], archived: Archive) -> None:
    listed = cli("manifest", "adopt", archived.prefix + message_key("m-001"), "--reason", "mine")
    assert listed.exit_code == 1 and "already lists message m-001" in listed.stderr
    outside = cli("manifest", "adopt", "notes/readme.json.gz", "--reason", "mine")
    assert outside.exit_code == 1 and "is not a message key of project" in outside.stderr
    missing = cli("manifest", "adopt", archived.prefix + message_key("nowhere"), "--reason",
                  "mine")
    assert missing.exit_code == 1 and "is not in the bucket" in missing.stderr
    # the segment listing m-004 is deleted from the bucket: the spool still knows it stored it
    newest = sorted(archived.manifests(), key=lambda k: k.rsplit("/", 1)[1])[-1]
    archived.delete(newest)
    stored = cli("manifest", "adopt", archived.prefix + message_key("m-004"), "--reason",
                 "looks lost")
    assert stored.exit_code == 1 and "this spool stored message m-004" in stored.stderr
    assert len(archived.manifests()) == 2  # nothing sealed nor written


@FILE_ONLY
def test_adopt_needs_a_reason(cli: Callable[..., Any], archived: Archive) -> None:
    key, _body = planted(archived, "restored-2")
    without = cli("manifest", "adopt", key)
    assert without.exit_code == 2 and "--reason" in without.output
    empty = cli("manifest", "adopt", key, "--reason", "  ")
    assert empty.exit_code == 2 and "the reason may not be empty" in empty.stderr
    assert len(archived.manifests()) == 3


# ----------------------------------------------------------------------------- by hand

PROOFS_DOC = Path(__file__).resolve().parent.parent / "docs" / "proofs.md"


@FILE_ONLY
def test_the_documented_python3_and_openssl_check_accepts_a_proof_and_refuses_an_edit(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path,
        tsa: Any) -> None:
    """docs/proofs.md's script, run with python3 and openssl only (no sm on its path)."""
    script = re.search(r"```python\n(.*?)```", PROOFS_DOC.read_text(encoding="utf-8"), re.S)
    assert script is not None
    (tmp_path / "check-proof.py").write_text(script.group(1))
    checkpoint = archived.read(f"_sm/checkpoints/{PROJECT}/000000000005.txt")
    archived.write(f"_sm/checkpoints/{PROJECT}/000000000005.tsr",
                   request_timestamp(tsa.url, hashlib.sha256(checkpoint).digest()))
    proof = prove(cli, "m-004")
    obj = write(tmp_path, "object.json.gz", archived.read(proof["object_key"]))

    def run(candidate: dict[str, Any], object_file: Path | str = obj) -> Any:
        path = write(tmp_path, "by-hand.json", candidate)
        return subprocess.run(
            [sys.executable, "-I", "check-proof.py", str(path), vkey(sm_home), str(object_file),
             str(tsa.ca_file)], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    ran = run(proof)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == (
        f"message m-004 is entry 4 of 5 of {proof['origin']}, signed by"
        f" {vkey(sm_home).split('+')[0]}")
    assert "Verification: OK" in ran.stdout and "Time stamp:" in ran.stdout
    assert run(dict(proof, entry=proof["entry"].replace('"size":', '"size":1'))).returncode
    assert run(dict(proof, leaf_index=3)).returncode
    assert run(proof, write(tmp_path, "other.json.gz", b"other bytes")).returncode
    other = request_timestamp(tsa.url, hashlib.sha256(b"another checkpoint").digest())
    assert run(dict(proof, timestamps=[base64.b64encode(other).decode()])).returncode
    forger = LogSigner.generate(vkey(sm_home).split("+")[0])
    text = proof["checkpoint"].partition("\n\n")[0] + "\n"
    assert run(dict(proof, checkpoint=sign_note(text, forger))).returncode


@FILE_ONLY
def test_prove_passes_over_a_checkpoint_the_bucket_does_not_back(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    """An oversized checkpoint is not read, and one whose root the segments do not give is
    not used: the proof falls back to the newest checkpoint that holds, or says none does."""
    newest = archived.root / "_sm" / "checkpoints" / PROJECT / "000000000005.txt"
    newest.chmod(0o600)
    newest.write_bytes(b"x" * (64 * 1024 + 1))
    proof = prove(cli, "m-001")
    assert proof["tree_size"] == 4
    independent_check(proof, vkey(sm_home), bucket_leaves(archived)[:4])
    uncovered = cli("prove", "m-004", "--project", PROJECT)
    assert uncovered.exit_code == 1
    assert "over 65536 bytes (not read)" in uncovered.stderr
    # the bucket's writer edits segment 2: checkpoints 4 and 5 no longer match the segments
    second = sorted(archived.manifests(), key=lambda k: k.rsplit("/", 1)[1])[1]
    path = archived.root / second
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    lines[1] = lines[1].replace(b'"size":', b'"size":1')
    path.chmod(0o600)
    path.write_bytes(gzip.compress(b"\n".join(lines), mtime=0))
    early = prove(cli, "m-000")
    assert early["tree_size"] == 2  # checkpoint 2 covers only segment 1, still intact
    refused = cli("prove", "m-002", "--project", PROJECT)
    assert refused.exit_code == 1
    assert "its root is not the root of the bucket's segments at its size" in refused.stderr


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=70), data=st.data())
def test_packed_leaves_give_rfc_6962s_roots_and_paths(size: int, data: st.DataObject) -> None:
    """The leaves `sm prove` keeps, checked against the independent naive RFC 6962."""
    lines = [f"line {i}".encode() for i in range(size)]
    packed = PackedLeaves()
    for line in lines:
        packed.append(rfc6962.leaf_hash(line))
    tree_size = data.draw(st.integers(min_value=1, max_value=size), label="tree_size")
    index = data.draw(st.integers(min_value=0, max_value=tree_size - 1), label="index")
    assert packed.root(0, tree_size) == rfc6962.mth(lines[:tree_size])
    assert packed.inclusion(index, tree_size) == rfc6962.path(index, lines[:tree_size])


@pytest.mark.parametrize("args", [["prove", "m-1"], ["prove", "m-1", "--project", "p1"],
                                  ["manifest", "seal"],
                                  ["manifest", "adopt", "k", "--reason", "r"]], ids=" ".join)
def test_without_a_spool_they_exit_1_and_create_nothing(tmp_path: Path, args: list[str],
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    home = tmp_path / "typo-home"
    monkeypatch.setenv("SM_HOME", str(home))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0] == f"Error: no spool at {home / 'spool.db'}"
    assert not home.exists()


@FILE_ONLY
def test_a_planted_second_copy_of_a_segment_is_named_not_guessed(
        cli: Callable[..., Any], archived: Archive, sm_home: Path, tmp_path: Path) -> None:
    """The archiver's spool names each segment's key; a reader with no spool rows refuses to
    choose between two segments of one number."""
    key = vkey(sm_home)
    second = sorted(archived.manifests(), key=lambda k: k.rsplit("/", 1)[1])[1]
    archived.write(f"_sm/manifests/{PROJECT}/1999/01/01/{second.rsplit('/', 1)[1]}",
                   archived.read(second))
    assert prove(cli, "m-003")["tree_size"] == 5
    investigator = tmp_path / "investigator"
    runner = CliRunner()
    connected = runner.invoke(app, ["--home", str(investigator), "connect", archived.url,
                                    "--project", PROJECT, "--read-only"])
    assert connected.exit_code == 0, connected.output
    result = runner.invoke(app, ["--home", str(investigator), "prove", "m-003", "--project",
                                 PROJECT, "--trust", key])
    assert result.exit_code == 1
    assert "segment 2 of project 12345's log exists 2 times in the bucket" in result.stderr


@FILE_ONLY
def test_adopt_seal_and_prove_on_either_spool_backend(
        spool_backend: str, cli: Callable[..., Any], archived: Archive, sm_home: Path,
        tmp_path: Path, make_message: Any) -> None:
    key, body = planted(archived, "restored-3")
    adopted = cli("--json", "manifest", "adopt", key, "--reason", "case 7")
    assert adopted.exit_code == 0, adopted.output
    assert json.loads(adopted.stdout)["tree_size"] == 6
    assert cli("ingest", input=jsonl(make_message(message_id="late-2"))).exit_code == 0
    assert cli("run", "--once", "--concurrency", "1").exit_code == 0
    sealed = json.loads(cli("--json", "manifest", "seal").stdout)
    assert sealed == {"projects": [{"project_id": PROJECT, "sealed": 0, "tree_size": 7}]}
    leaves = bucket_leaves(archived)
    for message_id in ("restored-3", "late-2", "m-000"):
        proof = prove(cli, message_id)
        independent_check(proof, vkey(sm_home), leaves)
        assert verify(cli, write(tmp_path, "proof.json", proof),
                      "--trust", vkey(sm_home)).exit_code == 0
    assert json.loads(leaves[5])["adopted"]["reason"] == "case 7"
