"""`sm audit` against a bucket writer (SPEC 9.1): each attack that once passed is its own test,
on a folder and on S3 (moto), checked against the bucket's real bytes. "The host" audits with
the sealing spool; "an investigator" audits from another SM_HOME connected read-only, with no
record of the log but what they bring (`--trust`, `--anchor`)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app
from stored_messages_cli.evidence import merkle
from stored_messages_cli.evidence.audit import UNANCHORED_WARNING
from stored_messages_cli.evidence.note import format_checkpoint, sign_note
from stored_messages_cli.evidence.segments import (
    Segment,
    build_segment,
    copy_checkpoint_key,
    parse_segment,
)
from stored_messages_cli.evidence.signing import LogSigner, load_signing_key
from stored_messages_cli.evidence.timestamp import request_timestamp
from tests.support.fixtures.core import jsonl
from tests.test_audit import (  # noqa: F401 - `archived` is the fixture these tests share
    PROJECT,
    Archive,
    archived,
    audit,
    findings,
    message_key,
    sha,
)

Invoke = Callable[..., Any]
CHECKPOINTS = "_sm/checkpoints/12345/"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def segments(archive: Archive) -> list[tuple[str, Segment]]:
    return [(key, parse_segment(archive.read(key))) for key in archive.manifests()]


def checkpoint(archive: Archive, size: int) -> bytes:
    return archive.read(f"{archive.prefix}{CHECKPOINTS}{size:012d}.txt")


def replace(archive: Archive, key: str, body: bytes) -> None:
    if key in archive.keys():
        archive.delete(key)
    archive.write(key, body)


def rechain(archive: Archive, plan: list[tuple[str, dict[str, Any], list[bytes]]]) -> None:
    """What a bucket writer does after editing lines: every header's count, tree and
    prev_sha256 made consistent again, under the same keys."""
    frontier = merkle.Frontier()
    previous = None
    for key, header, lines in plan:
        frontier.extend(merkle.leaf_hash(line) for line in lines)
        fixed = {**header, "prev_sha256": previous, "count": len(lines),
                 "tree_size": frontier.size, "root": b64(frontier.root())}
        body = build_segment(fixed, lines)
        replace(archive, key, body)
        previous = hashlib.sha256(body).hexdigest()


def own_vkey(sm_home: Path) -> str:
    return load_signing_key(sm_home / "keys" / "signing.key").verifier_key()


@pytest.fixture
def investigator(tmp_path: Path, archived: Archive) -> Invoke:  # noqa: F811
    """`sm` on another machine, connected read-only to the archive: no record of the log."""
    home = tmp_path / "investigator"
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["--home", str(home), *args])

    connected = invoke("connect", archived.url, "--project", PROJECT, "--read-only",
                       *archived.connect_args)
    assert connected.exit_code == 0, connected.output
    return invoke


def forge_next_segment(archive: Archive, signer: LogSigner | None) -> str:
    """Segment 4 with the right prev_sha256 and tree, one fabricated `stored` entry, its
    planted object and (with `signer`) a checkpoint signed by the forger's own key."""
    [*_, (last_key, last)] = segments(archive)
    leaves = [line for _, s in segments(archive) for line in s.lines]
    payload = b'{"message_id":"forged"}'
    planted = gzip.compress(payload, mtime=0)
    object_key = archive.prefix + message_key("forged")
    archive.write(object_key, planted)
    entry = {**json.loads(last.lines[0]), "message_id": "forged", "key": object_key,
             "payload_sha256": hashlib.sha256(payload).hexdigest(),
             "object_sha256": hashlib.sha256(planted).hexdigest(), "size": len(planted)}
    line = json.dumps(entry, separators=(",", ":")).encode()
    root = merkle.root([merkle.leaf_hash(x) for x in [*leaves, line]])
    header = {**last.header, "seq": 4, "prev_sha256": last.sha256, "count": 1,
              "tree_size": len(leaves) + 1, "root": b64(root)}
    key = last_key.replace("000000000003.jsonl.gz", "000000000004.jsonl.gz")
    archive.write(key, build_segment(header, [line]))
    if signer is not None:
        note = sign_note(format_checkpoint(str(last.header["origin"]), len(leaves) + 1, root),
                         signer)
        archive.write(f"{archive.prefix}{CHECKPOINTS}{len(leaves) + 1:012d}.txt",
                      note.encode())
    return key


# --------------------------------------------------------------------------- forged segment


def test_a_forged_next_segment_is_unsigned_on_the_sealing_host(
        cli: Invoke, archived: Archive, sm_home: Path) -> None:  # noqa: F811
    name = load_signing_key(sm_home / "keys" / "signing.key").name
    forge_next_segment(archived, LogSigner.generate(name))  # the same name, another key
    code, document = audit(cli, "--deep")
    assert code == 1
    assert findings(document) == [
        {"type": "signature_invalid", "detail": "checkpoint 000000000006.txt in the bucket:"
         f" no signature by a trusted key (signed by {name})"},
        {"type": "unsigned_segment", "seq": 4, "detail": "segment 4 is beyond the last"
         " segment the spool sealed in this log (3)"}]


def test_a_forged_next_segment_is_unsigned_for_an_investigator_with_the_key(
        cli: Invoke, archived: Archive, investigator: Invoke,  # noqa: F811
        sm_home: Path) -> None:
    forge_next_segment(archived, LogSigner.generate("forger"))
    code, document = audit(investigator, "--trust", own_vkey(sm_home), "--deep")
    assert code == 1
    assert findings(document) == [
        {"type": "signature_invalid", "detail": "checkpoint 000000000006.txt in the bucket:"
         " no signature by a trusted key (signed by forger)"},
        {"type": "unsigned_segment", "seq": 4, "detail": "no valid checkpoint covers segment"
         " 4 (tree size 6; the largest signed one is 5)"}]
    assert document["projects"][0]["anchored"] is True


def test_without_a_trusted_key_an_investigator_is_warned_what_is_not_proven(
        archived: Archive, investigator: Invoke) -> None:  # noqa: F811
    code, document = audit(investigator)
    assert (code, document["warnings"]) == (0, [UNANCHORED_WARNING.format(projects=PROJECT)])
    assert document["projects"][0]["anchored"] is False
    text = investigator("audit")
    assert text.exit_code == 0
    assert [line for line in text.stderr.splitlines() if "Warning:" in line] == [
        "Warning: " + UNANCHORED_WARNING.format(projects=PROJECT)]


# --------------------------------------------------------------------------- truncation


def truncate(archive: Archive) -> None:
    """Delete the newest segment, its message and its checkpoint."""
    archive.delete(archive.manifests()[-1])
    archive.delete(archive.prefix + message_key("m-004"))
    archive.delete(f"{archive.prefix}{CHECKPOINTS}{5:012d}.txt")


def test_a_truncated_log_is_caught_only_against_an_anchor(
        archived: Archive, investigator: Invoke, sm_home: Path,  # noqa: F811
        tmp_path: Path) -> None:
    saved = tmp_path / "anchor.txt"
    saved.write_bytes(checkpoint(archived, 5))
    truncate(archived)
    vkey = own_vkey(sm_home)
    # the limit: a signed shorter log is a valid log (docs/audit.md)
    assert audit(investigator, "--trust", vkey)[0] == 0
    code, document = audit(investigator, "--trust", vkey, "--anchor", str(saved))
    assert code == 1
    assert findings(document) == [{
        "type": "log_truncated", "detail": f"the anchor {saved}: signed a tree of 5 entries;"
        " the bucket's log holds 4"}]


def test_a_truncated_log_is_caught_against_a_checkpoint_copy_location(
        archived: Archive, investigator: Invoke, tmp_path: Path) -> None:  # noqa: F811
    copies = tmp_path / "copies"
    copies.mkdir(mode=0o700)
    origin = str(segments(archived)[0][1].header["origin"])
    for key in archived.keys("_sm/checkpoints/"):  # as `checkpoint_copies` keeps them
        target = copies / copy_checkpoint_key(PROJECT, origin, 0).rsplit("/", 1)[0] / \
            key.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archived.read(key))
    truncate(archived)
    code, document = audit(investigator, "--anchor", f"file://{copies}/")
    assert code == 1
    assert findings(document) == [{
        "type": "log_truncated", "detail": f"checkpoint 000000000005.txt in the copy at"
        f" file://{copies}/: signed a tree of 5 entries; the bucket's log holds 4"}]
    assert (document["warnings"], document["projects"][0]["anchored"]) == ([], True)


# --------------------------------------------------------------------------- rewriting


def rewrite_middle(archive: Archive) -> None:
    """Change segment 2's first entry and re-chain segments 2 and 3 (the forger has no key:
    the old checkpoints stay)."""
    plan = []
    for seq, (key, segment) in enumerate(segments(archive), 1):
        lines = list(segment.lines)
        if seq == 2:
            lines[0] = lines[0].replace(b'"message_type":"blast"', b'"message_type":"journey"')
            assert lines[0] != segment.lines[0]
        plan.append((key, segment.header, lines))
    rechain(archive, plan)


def test_a_rewritten_middle_segment_re_chained_is_a_fork_against_the_signed_checkpoints(
        archived: Archive, investigator: Invoke, sm_home: Path) -> None:  # noqa: F811
    rewrite_middle(archived)
    assert audit(investigator)[0] == 1  # even unverified, the checkpoints disagree
    code, document = audit(investigator, "--trust", own_vkey(sm_home))
    assert code == 1
    assert findings(document) == [{
        "type": "log_forked", "detail": "checkpoint 000000000004.txt in the bucket: its root"
        " is not the tree of the bucket's first 4 entries (the log was rewritten)"}]


def test_a_rewrite_that_deletes_the_checkpoints_leaves_the_log_unsigned(
        archived: Archive, investigator: Invoke, sm_home: Path,  # noqa: F811
        tmp_path: Path) -> None:
    saved = tmp_path / "anchor.txt"
    saved.write_bytes(checkpoint(archived, 5))
    rewrite_middle(archived)
    for key in archived.keys("_sm/checkpoints/"):
        archived.delete(key)
    code, document = audit(investigator, "--trust", own_vkey(sm_home))
    assert code == 1
    assert [(f["type"], f.get("seq")) for f in findings(document)] == [
        ("unsigned_segment", 1), ("unsigned_segment", 2), ("unsigned_segment", 3)]
    code, document = audit(investigator, "--anchor", str(saved))
    assert code == 1
    assert findings(document) == [{
        "type": "log_forked", "detail": f"the anchor {saved}: its root is not the tree of the"
        " bucket's first 5 entries (the log was rewritten)"}]


def test_a_second_sealer_in_one_log_is_a_finding(
        archived: Archive, investigator: Invoke, sm_home: Path) -> None:  # noqa: F811
    key, last = segments(archived)[-1]
    first = last.header["sealer"]
    replace(archived, key, build_segment({**last.header, "sealer": "0123456789abcdef"},
                                         list(last.lines)))
    code, document = audit(investigator, "--trust", own_vkey(sm_home))
    assert code == 1
    assert findings(document) == [{
        "type": "chain_broken", "seq": 3, "detail": "segment 3: a second sealer"
        f" (0123456789abcdef) writes this log, sealed by {first} before it (two spools"
        " sealing one project's log)"}]


# --------------------------------------------------------------------------- denial, hostile bytes


def test_a_planted_huge_segment_number_is_one_finding_at_once(
        cli: Invoke, archived: Archive) -> None:  # noqa: F811
    key, _ = segments(archived)[-1]
    archived.write(key.replace("000000000003", "999999999999"), archived.read(key))
    started = time.monotonic()
    code, document = audit(cli)
    assert time.monotonic() - started < 30
    assert code == 1
    missing = [f for f in findings(document) if f["type"] == "manifest_missing"]
    assert missing == [{"type": "manifest_missing", "seq": 4, "detail": "segments"
                        " 4..999999999998 missing: not in the bucket (segments up to"
                        " 999999999999 exist)"}]


@pytest.mark.parametrize("body", [b"x" * 70_000, b"\xff\xfe not text", b"hello\n",
                                  b"origin\n5\nnot base64\n\n\xe2\x80\x94 k AAAA\n"])
def test_a_hostile_checkpoint_is_a_finding_never_a_crash(
        cli: Invoke, archived: Archive, body: bytes) -> None:  # noqa: F811
    archived.write(f"{archived.prefix}{CHECKPOINTS}000000000009.txt", body)
    code, document = audit(cli)
    assert code == 1
    assert [f["type"] for f in findings(document)] == ["signature_invalid"]


def test_two_objects_for_one_message_are_a_duplicate(
        cli: Invoke, archived: Archive) -> None:  # noqa: F811
    original = archived.prefix + message_key("m-001")
    second = (f"{archived.prefix}email/{PROJECT}/{sha('other@example.com')}/1234567/"
              "m-001.json.gz")
    archived.write(second, archived.read(original))
    code, document = audit(cli)
    assert code == 1
    assert findings(document) == [
        {"type": "unexpected_object", "message_id": "m-001", "key": second,
         "detail": "an object in the message layout that no manifest lists"},
        {"type": "duplicate_message", "message_id": "m-001", "key": min(original, second),
         "detail": f"2 objects in the message layout for one message"
                   f" ({', '.join(sorted([original, second]))})"}]


# --------------------------------------------------------------------------- time-stamps


@pytest.mark.parametrize("attack", ["another_digest", "garbage", "untrusted_ca"])
def test_a_time_stamp_that_does_not_stamp_its_checkpoint_is_invalid(
        cli: Invoke, archived: Archive, tsa: Any, attack: str) -> None:  # noqa: F811
    digest = hashlib.sha256(checkpoint(archived, 5)).digest()
    token_key = f"{archived.prefix}{CHECKPOINTS}000000000005.tsr"
    archived.write(token_key, request_timestamp(tsa.url, digest))
    assert audit(cli, "--tsa-ca", str(tsa.ca_file))[0] == 0
    ca = tsa.ca_file
    if attack == "another_digest":
        other = hashlib.sha256(checkpoint(archived, 4)).digest()
        replace(archived, token_key, request_timestamp(tsa.url, other))
    elif attack == "garbage":
        replace(archived, token_key, b"\x30\x03\x02\x01\x00")
    else:
        ca = tsa.other_ca_file
    code, document = audit(cli, "--tsa-ca", str(ca))
    assert code == 1
    [finding] = findings(document)
    assert finding["type"] == "timestamp_invalid"
    assert finding["detail"].startswith("000000000005.tsr in the bucket: ")


# --------------------------------------------------------------------------- the spool's side


@pytest.mark.parametrize("archived", ["file"], indirect=True)
def test_stored_messages_not_yet_sealed_are_unsealed_and_report_seals_them(
        cli: Invoke, archived: Archive, sm_home: Path, make_message: Any,  # noqa: F811
        tmp_path: Path) -> None:
    from stored_messages_cli.archiver import Archiver, ProjectTarget
    from stored_messages_cli.destinations.file import FileDestination
    from stored_messages_cli.spool import Spool

    assert cli("ingest", input=jsonl(*[make_message(message_id=f"m-1{i:02d}")
                                      for i in range(2)])).exit_code == 0
    with Spool.open(home=sm_home) as spool:  # archived, not sealed: as a daemon mid-way
        destination = FileDestination(archived.url)
        Archiver(spool, [ProjectTarget(PROJECT, destination)], concurrency=1).run(once=True)
        destination.close()
    code, document = audit(cli)
    [project] = document["projects"]
    assert (code, project["unsealed"], project["manifests"]) == (0, 2, 3)
    assert "2 stored message(s) not yet in a sealed segment" in cli("audit").stdout
    code, document = audit(cli, "--report", str(tmp_path / "bundle"))
    [project] = document["projects"]
    assert (project["unsealed"], project["manifests"], project["tree_size"]) == (0, 4, 7)
    assert len(archived.manifests()) == 4


@pytest.mark.parametrize("archived", ["file"], indirect=True)
def test_a_reconnected_project_audits_its_new_log_and_its_earlier_one_on_demand(
        cli: Invoke, archived: Archive, tmp_path: Path, make_message: Any) -> None:  # noqa: F811
    new_root = tmp_path / "archive2"
    new_root.mkdir(mode=0o700)
    connected = cli("connect", f"file://{new_root}/", "--project", PROJECT)
    assert connected.exit_code == 0, connected.output
    assert cli("ingest", input=jsonl(make_message(message_id="m-200"))).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    code, document = audit(cli)
    assert (code, findings(document)) == (0, [])
    [project] = document["projects"]
    assert (project["origin"], project["manifests"], project["tree_size"]) == (
        f"file://{new_root}/#{PROJECT}", 1, 1)
    code, document = audit(cli, "--destination", archived.url)
    assert (code, findings(document)) == (0, [])
    [project] = document["projects"]
    assert (project["origin"], project["manifests"], project["tree_size"]) == (
        f"file://{archived.root}/#{PROJECT}", 3, 5)


def test_marked_entries_are_counted(archived: Archive, investigator: Invoke) -> None:  # noqa: F811
    (key, first), *rest = segments(archived)
    marked = [first.lines[0][:-1] + b',"backfilled":true}',
              first.lines[1][:-1] + b',"adopted":{"reason":"found","at":"2026-12-01T00:00:00Z"}}']
    rechain(archived, [(key, first.header, marked),
                       *[(k, s.header, list(s.lines)) for k, s in rest]])
    [project] = audit(investigator)[1]["projects"]
    assert (project["adopted"], project["backfilled"]) == (1, 1)


def test_a_bad_trusted_key_is_a_usage_error(cli: Invoke, archived: Archive) -> None:  # noqa: F811
    assert cli("audit", "--trust", "not-a-key").exit_code == 2


@pytest.mark.parametrize("archived", ["file"], indirect=True)
def test_the_audit_keeps_every_checkpoint_and_token_as_read_for_the_bundle(
        archived: Archive, sm_home: Path, tsa: Any) -> None:  # noqa: F811
    from stored_messages_cli.destinations.file import FileDestination
    from stored_messages_cli.evidence.audit import audit as run_audit
    from stored_messages_cli.spool import Spool

    token = request_timestamp(tsa.url, hashlib.sha256(checkpoint(archived, 4)).digest())
    archived.write(f"{CHECKPOINTS}000000000004.tsr", token)
    destination = FileDestination(archived.url)
    with Spool.open(home=sm_home) as spool:
        result = run_audit(spool, {PROJECT: destination})
    destination.close()
    [project] = result.projects
    assert project.checkpoints == {size: checkpoint(archived, size).decode()
                                   for size in (2, 4, 5)}
    assert project.timestamps == {4: [token]}
    assert project.segments == {seq: archived.read(key)
                                for seq, key in enumerate(archived.manifests(), 1)}


@pytest.mark.parametrize("archived", ["file"], indirect=True)
def test_a_new_log_that_misnames_the_log_before_it_is_a_finding(
        cli: Invoke, archived: Archive, tmp_path: Path, make_message: Any) -> None:  # noqa: F811
    new_root = tmp_path / "archive2"
    new_root.mkdir(mode=0o700)
    assert cli("connect", f"file://{new_root}/", "--project", PROJECT).exit_code == 0
    assert cli("ingest", input=jsonl(make_message(message_id="m-200"))).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    [key] = [str(p) for p in new_root.rglob("*.jsonl.gz")]
    segment = parse_segment(Path(key).read_bytes())
    named = segment.header["previous_log"]
    assert named["tree_size"] == 5
    forged = {**named, "tree_size": 3}
    Path(key).unlink()
    Path(key).write_bytes(build_segment({**segment.header, "previous_log": forged},
                                        list(segment.lines)))
    code, document = audit(cli)
    assert code == 1
    assert {"type": "chain_broken", "seq": 1, "detail": "segment 1: its previous_log is not the"
            f" log this spool sealed at {named['origin']} (tree size 5, root {named['root']})"
            } in findings(document)


# --------------------------------------------------------------------------- swap, laundering


def test_two_segments_swapped_under_each_others_names_are_caught(
        archived: Archive, investigator: Invoke, sm_home: Path) -> None:  # noqa: F811
    (first_key, _), (second_key, _), *_ = segments(archived)
    first, second = archived.read(first_key), archived.read(second_key)
    replace(archived, first_key, second)
    replace(archived, second_key, first)
    code, document = audit(investigator, "--trust", own_vkey(sm_home))
    assert code == 1
    assert [(f["type"], f.get("seq")) for f in findings(document)][:2] == [
        ("chain_broken", 1), ("chain_broken", 2)]


def test_a_planted_object_is_not_laundered_by_rebuild_and_backfill_only_adopted_with_a_mark(
        cli: Invoke, archived: Archive) -> None:  # noqa: F811
    genuine = json.loads(gzip.decompress(archived.read(archived.prefix + message_key("m-000"))))
    payload = json.dumps({**genuine, "message_id": "planted"}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False).encode()
    planted = archived.prefix + message_key("planted")
    archived.write(planted, gzip.compress(payload, mtime=0),  # as sm itself would write it
                   {"sm-payload-sha256": hashlib.sha256(payload).hexdigest()})
    rebuilt = cli("index", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output  # the index now knows the planted object
    result = cli("--json", "manifest", "backfill")
    assert result.exit_code == 0, result.output
    [project] = json.loads(result.stdout)["projects"]
    assert (project["backfilled"], project["not_stored_here"]) == (0, [planted])
    assert all(b"planted" not in archived.read(key) for key in archived.manifests())
    code, document = audit(cli)
    assert code == 1 and [(f["type"], f.get("key")) for f in findings(document)] == [
        ("unexpected_object", planted)]
    # an operator who decides it belongs takes it in, marked with the reason for ever
    adopted = cli("manifest", "adopt", planted, "--reason", "found during case 17")
    assert adopted.exit_code == 0, adopted.output
    lines = [json.loads(line) for key in archived.manifests()
             for line in parse_segment(archived.read(key)).lines]
    [entry] = [e for e in lines if e["message_id"] == "planted"]
    assert entry["adopted"]["reason"] == "found during case 17"
    code, document = audit(cli)
    assert code == 0, findings(document)
    assert document["projects"][0]["adopted"] == 1
