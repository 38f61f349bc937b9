"""The evidence bundle of `sm audit --report` and its `verify.sh`, run as an auditor runs it:
`sh verify.sh --trust VKEY` with nothing of sm. A real signed log (a v1 segment, then two
sealed by the log, each with its signed checkpoint and an RFC 3161 token from a real openssl
TSA) on a folder and on S3 (moto, under a prefix) checks out; then each attack on a copy of
the bundle fails it with its own line: an entry changed under a re-recorded hash, a middle
segment rewritten and re-chained with every root recomputed, checkpoints re-signed by another
key, a truncated log, a token for another digest or from another TSA, and an object hidden
under a folder merely named `…_sm/`. Keys under the destination's own `{prefix}_sm/` stay
out of the listing check."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.destinations import DestinationOptions
from stored_messages_cli.evidence.audit import audit
from stored_messages_cli.evidence.bundle import write_report
from stored_messages_cli.evidence.findings import AuditResult
from stored_messages_cli.evidence.log import LogOptions
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.evidence.note import format_checkpoint, sign_note
from stored_messages_cli.evidence.segments import (
    build_segment,
    checkpoint_key,
    log_origin,
    parse_segment,
    segment_header,
    segment_key,
)
from stored_messages_cli.evidence.signing import LogSigner, load_signing_key
from stored_messages_cli.evidence.timestamp import request_timestamp
from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.manifests import NewSegment
from tests.support import rfc6962
from tests.support.tsa import TimeStampAuthority

PROJECT = "12345"

pytestmark = pytest.mark.skipif(
    not (shutil.which("jq") and shutil.which("openssl") and shutil.which("python3")),
    reason="verify.sh needs jq, openssl and python3 on the machine")

V1_LINES = [json.dumps({"message_id": f"old-{i}", "outcome": "expired", "key": f"k{i}"},
                       separators=(",", ":")).encode() for i in range(5)]


@dataclass
class Bundle:
    """A written evidence bundle, the auditor's verifier key and the destination's prefix."""

    folder: Path
    vkey: str
    prefix: str
    tsa: TimeStampAuthority

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(self.folder / "verify.sh"), *args],
                              capture_output=True, text=True, check=False, timeout=120)

    def check(self) -> subprocess.CompletedProcess[str]:
        """verify.sh as the auditor runs it: with their own copy of the verifier key."""
        return self.verify("--trust", self.vkey)

    def segment(self, seq: int) -> Path:
        return self.folder / "manifests" / PROJECT / f"{seq:012d}.jsonl.gz"

    def checkpoint(self, size: int, suffix: str = ".txt") -> Path:
        return self.folder / "checkpoints" / PROJECT / f"{size:012d}{suffix}"

    def rewrite_segment(self, seq: int, body: bytes) -> None:
        """Replace a segment and re-record its hash, as a forger who holds the bundle would:
        in manifests.sha256 and in listing.csv."""
        path = self.segment(seq)
        old, new = sha256_hex(path.read_bytes()), sha256_hex(body)
        path.write_bytes(body)
        for name in ("manifests.sha256", "listing.csv"):
            file = self.folder / name
            file.write_text(file.read_text().replace(old, new))


def _v1_segment(spool: Spool, destination: Any, sealed_at: float) -> None:
    """A segment as sm sealed it before the signed log existed, recorded and written."""
    body = build_segment(segment_header(PROJECT, 1, None, sealed_at, len(V1_LINES)), V1_LINES)
    key = segment_key(PROJECT, 1, sealed_at)
    with spool.store.write():
        spool.store.add_segment(NewSegment(
            project_id=PROJECT, seq=1, key=key, sealed_at=sealed_at, count=len(V1_LINES),
            prev_sha256=None, body=body, entry_ids=[]))
    destination.put(destination.prefix + key, body, sha256_hex(gzip.decompress(body)))
    spool.evidence.mark_written(PROJECT, 1, sealed_at)


def _seal_archive(spool: Spool, destination: Any, clock: FakeClock, make_message: Any,
                  sm_home: Path) -> None:
    """A v1 segment, then six messages archived and sealed three by three: 5, 8, 11 leaves."""
    _v1_segment(spool, destination, clock.now())
    spool.record_many([make_message(message_id=f"m-{i:04d}") for i in range(6)])
    manifests = Manifests(spool, {PROJECT: destination}, 3, 900,
                          log_options=LogOptions(sm_home / "keys" / "signing.key"))
    archiver = Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock,
                        concurrency=1)
    archiver.on_tick(manifests.tick)
    archiver.run(once=True)
    manifests.close()


def _time_stamp_checkpoints(destination: Any, tsa: TimeStampAuthority) -> None:
    """What `timestamp_authorities` does after a seal: each checkpoint's SHA-256 stamped by
    the TSA, the token stored beside it."""
    folder = destination.prefix + checkpoint_key(PROJECT, 0)[: -len("000000000000.txt")]
    for info in list(destination.list(folder)):
        if info.key.endswith(".txt"):
            text = destination.get(info.key).body
            token = request_timestamp(tsa.url, hashlib.sha256(text).digest())
            destination.put(info.key[: -len(".txt")] + ".tsr", token, sha256_hex(token))


def _fill_log(result: AuditResult, destination: Any) -> None:
    """The checkpoints and tokens as read from the bucket, where the audit has not read
    them itself."""
    [project] = result.projects
    project.origin = project.origin or log_origin(destination.url, PROJECT)
    if project.checkpoints:
        return
    folder = destination.prefix + checkpoint_key(PROJECT, 0)[: -len("000000000000.txt")]
    for info in destination.list(folder):
        name = info.key.rsplit("/", 1)[-1]
        size = int(name[:12])
        if name.endswith(".txt"):
            project.checkpoints[size] = destination.get(info.key).body.decode("utf-8")
        elif name.endswith(".tsr"):
            project.timestamps.setdefault(size, []).append(destination.get(info.key).body)


@pytest.fixture(params=["file", "s3"])
def destination(request: pytest.FixtureRequest, file_destination: Any) -> Iterator[Any]:
    """The archive's destination: a folder (no prefix), or S3 on moto under `archive/`."""
    if request.param == "file":
        yield file_destination
        return
    from stored_messages_cli.destinations.s3 import S3Destination

    bucket = request.getfixturevalue("s3_bucket")
    opened = S3Destination(f"s3://{bucket}/archive/", DestinationOptions(
        endpoint_url=request.getfixturevalue("moto_endpoint"), allow_insecure_endpoint=True))
    yield opened
    opened.close()


def _make_bundle(spool: Spool, destination: Any, clock: FakeClock, make_message: Any,
                 sm_home: Path, tsa: TimeStampAuthority, folder: Path,
                 before_audit: Any = None) -> Bundle:
    _seal_archive(spool, destination, clock, make_message, sm_home)
    _time_stamp_checkpoints(destination, tsa)
    if before_audit is not None:
        before_audit(destination)
    result = audit(spool, {PROJECT: destination})
    _fill_log(result, destination)
    vkey = load_signing_key(sm_home / "keys" / "signing.key").verifier_key()
    write_report(result, folder, trusted_keys=[vkey], tsa_ca_pem=tsa.ca_file.read_bytes(),
                 prefixes={PROJECT: destination.prefix})
    return Bundle(folder, vkey, destination.prefix, tsa)


@pytest.fixture
def bundle(spool: Spool, destination: Any, clock: FakeClock, make_message: Any,
           sm_home: Path, tsa: TimeStampAuthority, tmp_path: Path) -> Bundle:
    """The evidence bundle of a clean, sealed, signed and time-stamped archive."""
    return _make_bundle(spool, destination, clock, make_message, sm_home, tsa,
                        tmp_path / "evidence")


@pytest.fixture
def file_bundle(spool: Spool, file_destination: Any, clock: FakeClock, make_message: Any,
                sm_home: Path, tsa: TimeStampAuthority, tmp_path: Path) -> Bundle:
    """The same bundle, of a folder archive only (for the attacks)."""
    return _make_bundle(spool, file_destination, clock, make_message, sm_home, tsa,
                        tmp_path / "evidence")


def _fails_with(checked: subprocess.CompletedProcess[str], line: str) -> None:
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"FAIL: {line}" in checked.stdout.splitlines(), checked.stdout
    assert checked.stdout.splitlines()[-1] == "verify.sh: FAILED"


# --------------------------------------------------------------------------- the clean bundle


def test_a_clean_bundle_checks_out_with_the_auditors_key(bundle: Bundle) -> None:
    folder = bundle.folder
    assert sorted(p.name for p in (folder / "checkpoints" / PROJECT).iterdir()) == [
        "000000000008.tsr", "000000000008.txt", "000000000011.tsr", "000000000011.txt"]
    assert (folder / "trusted_keys.txt").read_text() == bundle.vkey + "\n"
    assert (folder / "tsa_ca.pem").read_bytes() == bundle.tsa.ca_file.read_bytes()
    assert json.loads((folder / "prefixes.json").read_text()) == {PROJECT: bundle.prefix}
    ca = bundle.tsa.ca_file
    checked = bundle.verify("--trust", bundle.vkey, "--tsa-ca", str(ca))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("FAIL", "WARNING"))], lines
    name, key_id, _ = bundle.vkey.split("+", 2)
    assert (f"verify.sh: checkpoint signatures checked with the key(s) given with --trust:"
            f" {name}+{key_id}") in lines
    assert f"verify.sh: 2 time-stamp(s) checked against {ca}" in lines
    assert "verify.sh: Merkle roots recomputed; 2 of 2 checkpoint(s) hold" in lines
    assert lines[-1] == ("verify.sh: OK (3 manifest segment(s) chained, listing matches the"
                         " manifests)")
    # with the bundle's own roots: checked, and said to be the bundle's
    own = bundle.check()
    assert own.returncode == 0, own.stdout
    assert "verify.sh: 2 time-stamp(s) checked against tsa_ca.pem" in own.stdout.splitlines()
    assert "WARNING: only the bundle's own tsa_ca.pem was used" in own.stdout


def test_every_file_of_the_bundle_is_owner_only(bundle: Bundle) -> None:
    for path in [bundle.folder, *bundle.folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name == "verify.sh":
            assert mode == 0o700
        else:
            assert mode == 0o600, path


def test_the_bundles_own_key_file_alone_is_used_with_a_warning(file_bundle: Bundle) -> None:
    checked = file_bundle.verify()
    assert checked.returncode == 0, checked.stdout
    assert any(line.startswith("WARNING: only the bundle's own trusted_keys.txt was used")
               for line in checked.stdout.splitlines())


def test_without_any_key_or_roots_it_says_what_it_did_not_check(file_bundle: Bundle) -> None:
    (file_bundle.folder / "trusted_keys.txt").unlink()
    (file_bundle.folder / "tsa_ca.pem").unlink()
    checked = file_bundle.verify()
    assert checked.returncode == 0, checked.stdout
    lines = checked.stdout.splitlines()
    assert ("WARNING: no trusted key (no --trust, no trusted_keys.txt): checkpoint signatures"
            " were not checked") in lines
    assert ("WARNING: time-stamps were not checked: no tsa_ca.pem in the bundle and no"
            " --tsa-ca FILE") in lines


def test_the_auditors_own_roots_win_over_the_bundles(file_bundle: Bundle) -> None:
    impostor = file_bundle.verify("--trust", file_bundle.vkey, "--tsa-ca",
                                  str(file_bundle.tsa.other_ca_file))
    assert impostor.returncode == 1
    assert sum("does not verify against the time-stamp roots" in line
               for line in impostor.stdout.splitlines()) == 2


def test_a_bad_argument_is_a_usage_error(file_bundle: Bundle) -> None:
    checked = file_bundle.verify("--trsut", file_bundle.vkey)
    assert checked.returncode == 2
    assert "usage: sh verify.sh [--trust VKEY]... [--tsa-ca FILE]" in checked.stderr


# --------------------------------------------------------------------------- the attacks


def _entries(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    segment = parse_segment(body)
    return segment.header, list(segment.lines)


def _leaves(bundle: Bundle, upto: int) -> list[bytes]:
    return [line for seq in range(1, upto + 1)
            for line in _entries(bundle.segment(seq).read_bytes())[1]]


def test_one_changed_byte_of_an_entry_under_a_re_recorded_hash_breaks_the_root(
        file_bundle: Bundle) -> None:
    header, lines = _entries(file_bundle.segment(3).read_bytes())
    lines[1] = lines[1].replace(b'"m-0004"', b'"m-0005"', 1)
    file_bundle.rewrite_segment(3, build_segment(header, lines))
    assert file_bundle.verify("--trust", file_bundle.vkey).returncode == 1
    _fails_with(file_bundle.check(), f"project {PROJECT}: segment 3's root is not the Merkle"
                " root of the entry lines up to it")


def _rechain_from(bundle: Bundle, seq: int, lines: list[bytes]) -> dict[int, bytes]:
    """Rewrite segment `seq` with `lines`, then re-chain and re-root it and every later one
    as a forger would; the new roots by tree size."""
    roots: dict[int, bytes] = {}
    previous = sha256_hex(bundle.segment(seq - 1).read_bytes())
    last = len(list((bundle.folder / "manifests" / PROJECT).iterdir()))
    for number in range(seq, last + 1):
        header, old = _entries(bundle.segment(number).read_bytes())
        body_lines = lines if number == seq else old
        before = _leaves(bundle, number - 1)
        root = rfc6962.mth(before + body_lines)
        header = dict(header, prev_sha256=previous, root=base64.b64encode(root).decode())
        body = build_segment(header, body_lines)
        bundle.rewrite_segment(number, body)
        roots[int(header["tree_size"])] = root
        previous = sha256_hex(body)
    return roots


def _forged_middle(bundle: Bundle) -> dict[int, bytes]:
    _, lines = _entries(bundle.segment(2).read_bytes())
    entry = json.loads(lines[0])
    entry["sent_at"] = "2020-01-01T00:00:00Z"  # out of every period audited since
    return _rechain_from(bundle, 2, [json.dumps(entry, separators=(",", ":")).encode(),
                                     *lines[1:]])


def test_a_re_chained_middle_rewrite_with_new_roots_fails_the_checkpoints_signature(
        file_bundle: Bundle) -> None:
    roots = _forged_middle(file_bundle)
    for size, root in roots.items():  # the roots swapped in, the signature lines kept
        path = file_bundle.checkpoint(size)
        lines = path.read_text().split("\n")
        lines[2] = base64.b64encode(root).decode()
        path.write_text("\n".join(lines))
    checked = file_bundle.check()
    _fails_with(checked, f"project {PROJECT}: checkpoint 8: a signature by a trusted key does"
                " not verify")
    _fails_with(checked, f"project {PROJECT}: checkpoint 11: a signature by a trusted key does"
                " not verify")
    assert not any("Merkle root" in line for line in checked.stdout.splitlines()
                   if line.startswith("FAIL"))  # the forgery is consistent but for the keys


def test_a_re_chained_rewrite_without_new_checkpoints_fails_on_their_roots(
        file_bundle: Bundle) -> None:
    _forged_middle(file_bundle)
    _fails_with(file_bundle.check(), f"project {PROJECT}: checkpoint 8's root is not the"
                " Merkle root of the log's first 8 entry lines")


def test_checkpoints_re_signed_by_another_key_fail_with_the_auditors_key(
        file_bundle: Bundle) -> None:
    roots = _forged_middle(file_bundle)
    attacker = LogSigner.generate("sm-archiver-1")  # even under the real key's name
    origin = file_bundle.checkpoint(8).read_text().split("\n")[0]
    for size, root in roots.items():
        file_bundle.checkpoint(size).write_text(
            sign_note(format_checkpoint(origin, size, root), attacker))
    (file_bundle.folder / "trusted_keys.txt").write_text(attacker.verifier_key() + "\n")
    checked = file_bundle.check()
    _fails_with(checked, f"project {PROJECT}: checkpoint 11 is signed by no trusted key"
                " (signed by: sm-archiver-1)")
    # the time-stamps no longer match; without them, the bundle's own key file vouches for
    # the forgery: which is why using it alone is a warning
    alone = file_bundle.verify()
    assert alone.returncode == 1
    assert {line.split(": ", 2)[2].split(" does ")[0] for line in alone.stdout.splitlines()
            if line.startswith("FAIL")} == {"time-stamp 000000000008.tsr",
                                            "time-stamp 000000000011.tsr"}
    for token in (file_bundle.folder / "checkpoints" / PROJECT).glob("*.tsr"):
        token.unlink()
    alone = file_bundle.verify()
    assert alone.returncode == 0
    assert "WARNING: only the bundle's own trusted_keys.txt was used" in alone.stdout


def test_a_checkpoint_beyond_the_log_is_a_truncated_log(file_bundle: Bundle) -> None:
    last = file_bundle.segment(3)
    digest = sha256_hex(last.read_bytes())
    last.unlink()
    sums = file_bundle.folder / "manifests.sha256"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines()
                            if digest not in line))
    _fails_with(file_bundle.check(), f"project {PROJECT}: checkpoint 11 covers 11 entries;"
                " the log holds only 8: the log was truncated")


def test_a_checkpoint_of_another_origin_fails(file_bundle: Bundle) -> None:
    signer = load_signing_key(file_bundle.folder.parent / "home" / "keys" / "signing.key")
    text = file_bundle.checkpoint(11).read_text().split("\n")
    file_bundle.checkpoint(11).write_text(sign_note(format_checkpoint(
        "s3://elsewhere/#12345", 11, base64.b64decode(text[2])), signer))
    _fails_with(file_bundle.check(), f"project {PROJECT}: checkpoint 11 names the log"
                f" s3://elsewhere/#12345, not {text[0]}")


def test_a_time_stamp_of_another_digest_fails(file_bundle: Bundle) -> None:
    token = request_timestamp(file_bundle.tsa.url, hashlib.sha256(b"another text").digest())
    file_bundle.checkpoint(11, ".tsr").write_bytes(token)
    checked = file_bundle.check()
    assert checked.returncode == 1
    _fails_with(checked, f"project {PROJECT}: time-stamp 000000000011.tsr does not verify"
                " against the time-stamp roots: message imprint mismatch")


def test_a_time_stamp_from_another_tsa_fails(file_bundle: Bundle) -> None:
    text = file_bundle.checkpoint(8).read_bytes()
    with file_bundle.tsa.fault("other_ca"):
        token = request_timestamp(file_bundle.tsa.url, hashlib.sha256(text).digest())
    file_bundle.checkpoint(8, ".2.tsr").write_bytes(token)
    checked = file_bundle.check()
    assert checked.returncode == 1
    assert checked.returncode == 1
    assert any(line.startswith(f"FAIL: project {PROJECT}: time-stamp 000000000008.2.tsr does"
                               " not verify against the time-stamp roots: certificate verify"
                               " error") for line in checked.stdout.splitlines()), checked.stdout


def test_an_object_under_a_folder_merely_named_sm_is_checked_like_any_other(
        spool: Spool, destination: Any, clock: FakeClock, make_message: Any, sm_home: Path,
        tsa: TimeStampAuthority, tmp_path: Path) -> None:
    hidden = f"{{prefix}}email/{PROJECT}/evil_sm/x.json.gz"

    def plant(opened: Any) -> None:
        body = gzip.compress(b"{}")
        opened.put(hidden.format(prefix=opened.prefix), body, sha256_hex(b"{}"))

    made = _make_bundle(spool, destination, clock, make_message, sm_home, tsa,
                        tmp_path / "evidence", before_audit=plant)
    _fails_with(made.check(), "object in no manifest: "
                + hidden.format(prefix=destination.prefix))


def test_keys_under_the_destinations_own_sm_folder_stay_out_of_the_listing_check(
        bundle: Bundle) -> None:
    listing = bundle.folder / "listing.csv"
    own = f"{bundle.prefix}_sm/evidence/{PROJECT}/m-0001/e-1.json.gz"
    outside = f"elsewhere/{bundle.prefix}_sm/x.json.gz"
    listing.write_text(listing.read_text() + f"{own},10,\n")
    assert bundle.check().returncode == 0
    listing.write_text(listing.read_text() + f"{outside},10,\n")
    _fails_with(bundle.check(), f"object in no manifest: {outside}")


def test_a_bundle_written_without_prefixes_reads_them_from_the_segment_keys(
        spool: Spool, destination: Any, clock: FakeClock, make_message: Any,
        sm_home: Path, tmp_path: Path) -> None:
    _seal_archive(spool, destination, clock, make_message, sm_home)
    result = audit(spool, {PROJECT: destination})
    _fill_log(result, destination)
    write_report(result, tmp_path / "evidence")  # the arguments of before the signed log
    assert json.loads((tmp_path / "evidence" / "prefixes.json").read_text()) == {
        PROJECT: destination.prefix}
    assert not (tmp_path / "evidence" / "trusted_keys.txt").exists()
    vkey = load_signing_key(sm_home / "keys" / "signing.key").verifier_key()
    checked = subprocess.run(["sh", str(tmp_path / "evidence" / "verify.sh"), "--trust", vkey],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    assert os.stat(tmp_path / "evidence" / "prefixes.json").st_mode & 0o077 == 0


def test_sm_audit_report_writes_the_keys_roots_and_prefix_it_was_configured_with(
        cli: Any, make_message: Any, s3_bucket: str, moto_endpoint: str,
        tsa: TimeStampAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connected = cli("connect", f"s3://{s3_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", moto_endpoint, "--allow-insecure-endpoint")
    assert connected.exit_code == 0, connected.output
    assert cli("ingest", input="".join(json.dumps(make_message(message_id=f"m-{i}")) + "\n"
                                       for i in range(2))).exit_code == 0
    assert cli("run", "--once", "--concurrency", "1").exit_code == 0
    vkey = cli("--json", "key", "show")
    monkeypatch.setenv("SM_TRUSTED_KEYS", json.dumps([json.loads(vkey.stdout)["verifier_key"]]))
    monkeypatch.setenv("SM_TIMESTAMP_CA_FILE", str(tsa.ca_file))
    report = tmp_path / "evidence"
    cli("audit", "--report", str(report))
    assert json.loads((report / "prefixes.json").read_text()) == {PROJECT: "archive/"}
    assert (report / "trusted_keys.txt").read_text() == json.loads(vkey.stdout)[
        "verifier_key"] + "\n"
    assert (report / "tsa_ca.pem").read_bytes() == tsa.ca_file.read_bytes()


def test_a_log_sealed_before_signing_existed_keeps_its_checks_and_is_said_unsigned(
        spool: Spool, file_destination: Any, clock: FakeClock, tmp_path: Path) -> None:
    _v1_segment(spool, file_destination, clock.now())
    result = audit(spool, {PROJECT: file_destination})
    folder = tmp_path / "evidence"
    write_report(result, folder, prefixes={PROJECT: ""})
    checked = subprocess.run(["sh", str(folder / "verify.sh")], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    assert (f"WARNING: project {PROJECT}: no checkpoint covers its 5 entries (segments sealed"
            " before the signed log): nothing signed proves them") in checked.stdout
    segment = folder / "manifests" / PROJECT / "000000000001.jsonl.gz"
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    broken = subprocess.run(["sh", str(folder / "verify.sh")], capture_output=True,
                            text=True, check=False)
    _fails_with(broken, "a manifest segment differs from its recorded hash")


def test_a_signed_checkpoint_of_another_history_is_a_fork(file_bundle: Bundle) -> None:
    """A previous bundle's checkpoint copied in (docs/audit.md) is checked against this log:
    one the real key signed over other entries fails on its root."""
    signer = load_signing_key(file_bundle.folder.parent / "home" / "keys" / "signing.key")
    origin = file_bundle.checkpoint(8).read_text().split("\n")[0]
    other = rfc6962.mth([b'{"message_id":"x"}'] * 6)
    file_bundle.checkpoint(6).write_text(sign_note(format_checkpoint(origin, 6, other), signer))
    _fails_with(file_bundle.check(), f"project {PROJECT}: checkpoint 6's root is not the Merkle"
                " root of the log's first 6 entry lines")
    honest = rfc6962.mth(_leaves(file_bundle, 2)[:6])
    file_bundle.checkpoint(6).write_text(sign_note(format_checkpoint(origin, 6, honest), signer))
    checked = file_bundle.check()
    assert checked.returncode == 0, checked.stdout
    assert "verify.sh: Merkle roots recomputed; 3 of 3 checkpoint(s) hold" in checked.stdout
