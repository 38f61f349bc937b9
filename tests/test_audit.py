"""`sm audit` as an attacker would test it: every tampering is found, with the right type and
id, on a folder and on S3 (moto); the four basic attacks (a deleted object, replaced bytes, a
stray object) and a clean archive also on a versioned moto bucket, on GCS
(gcp-storage-emulator) and on Azure (Azurite); verify.sh re-checks the evidence bundle without
sm and fails when one byte of it changes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.evidence import merkle
from stored_messages_cli.evidence.segments import parse_segment
from tests.support.fixtures.core import jsonl

PROJECT = "12345"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def message_key(message_id: str) -> str:
    return f"email/{PROJECT}/{sha('ann.lee@example.com')}/1234567/{message_id}.json.gz"


class Archive:
    """One connected destination, seen as a bucket: list, read, write, delete by key."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                 place: Path | str | None = None) -> None:
        """`place`: the folder (file) or the bucket (s3) to use instead of a new one."""
        self.kind = kind
        self.prefix = "archive/"
        self.connect_args: list[str] = ["--allow-insecure-endpoint"]
        if kind == "file":
            self.root = Path(place) if place is not None else tmp_path / "archive"
            self.url = f"file://{self.root}/"
            self.prefix = ""
            self.connect_args = []
        elif kind == "gcs":
            self.client = request.getfixturevalue("gcs_client")
            self.bucket = request.getfixturevalue("gcs_bucket")
            self.url = f"gs://{self.bucket}/archive/"
        elif kind == "azure":
            self.client = request.getfixturevalue("azure_service")
            self.bucket = request.getfixturevalue("azure_container")
            self.url = f"az://{self.bucket}/archive/"
        else:  # s3, s3-versioned
            self.client = request.getfixturevalue("s3_client")
            self.bucket = str(place) if place is not None else request.getfixturevalue(
                "s3_bucket")
            if kind == "s3-versioned":
                self.client.put_bucket_versioning(
                    Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            self.url = f"s3://{self.bucket}/archive/"
            self.connect_args = ["--endpoint-url", request.getfixturevalue("moto_endpoint"),
                                 "--allow-insecure-endpoint"]

    def keys(self, under: str = "") -> list[str]:
        if self.kind == "file":
            return sorted(p.relative_to(self.root).as_posix()
                          for p in (self.root / under).rglob("*") if p.is_file())
        if self.kind == "gcs":
            return sorted(b.name for b in self.client.list_blobs(
                self.bucket, prefix=self.prefix + under))
        if self.kind == "azure":
            container = self.client.get_container_client(self.bucket)
            return sorted(b.name for b in container.list_blobs(
                name_starts_with=self.prefix + under))
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + under)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.root / key).read_bytes()
        if self.kind == "gcs":
            return bytes(self.client.bucket(self.bucket).blob(key).download_as_bytes(
                raw_download=True))
        if self.kind == "azure":
            return bytes(self.client.get_blob_client(self.bucket, key).download_blob()
                         .readall())
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def write(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        """Create or replace an object behind sm's back, with the metadata given."""
        if self.kind == "file":
            (self.root / key).parent.mkdir(parents=True, exist_ok=True)
            (self.root / key).write_bytes(body)
        elif self.kind == "gcs":
            blob = self.client.bucket(self.bucket).blob(key)
            blob.metadata = metadata or None
            blob.upload_from_string(body, content_type="application/gzip")
        elif self.kind == "azure":
            self.client.get_blob_client(self.bucket, key).upload_blob(
                body, overwrite=True,
                metadata={k.replace("-", "_"): v for k, v in (metadata or {}).items()})
        else:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                   Metadata=metadata or {})

    def delete(self, key: str) -> None:
        if self.kind == "file":
            (self.root / key).unlink()
        elif self.kind == "gcs":
            self.client.bucket(self.bucket).blob(key).delete()
        elif self.kind == "azure":
            self.client.get_blob_client(self.bucket, key).delete_blob()
        else:  # on a versioned bucket: a delete marker, the old version stays
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def manifests(self) -> list[str]:
        return [k for k in self.keys("_sm/manifests/") if k.endswith(".jsonl.gz")]


# This worker's made archives, to restore instead of making them again (see `archived`).
_SNAPSHOTS: dict[str, Any] = {}


def _snapshot_place(kind: str, snapshots: dict[str, Any], request: pytest.FixtureRequest
                    ) -> Path | str:
    """The one folder or bucket the restored archives of `kind` live in, on this worker:
    the log's origin is the destination's URL, so a copy elsewhere would be another log."""
    if kind == "file":
        return Path(snapshots["base"]) / "live-folder"
    if "bucket" not in snapshots:
        from tests.support.fixtures.s3 import block_public_access

        client = request.getfixturevalue("s3_client")
        snapshots["bucket"] = f"sm-audit-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=snapshots["bucket"])
        block_public_access(client, snapshots["bucket"])
    return str(snapshots["bucket"])


def _take_snapshot(archive: Archive, home: Path, folder: Path) -> dict[str, Any]:
    """The home, and the archive's objects with what S3 keeps beside their bytes."""
    shutil.copytree(home, folder / "home", symlinks=True)
    if archive.kind == "file":
        shutil.copytree(archive.root, folder / "archive", symlinks=True)
        return {"folder": folder}
    objects = []
    for key in _every_key(archive):
        got = archive.client.get_object(Bucket=archive.bucket, Key=key, ChecksumMode="ENABLED")
        objects.append((key, got["Body"].read(), got.get("ContentType"),
                        got.get("Metadata") or {}, bool(got.get("ChecksumSHA256"))))
    return {"folder": folder, "objects": objects}


def _every_key(archive: Archive) -> list[str]:
    """Every key in the bucket, under the archive's prefix or not."""
    pages = archive.client.get_paginator("list_objects_v2").paginate(Bucket=archive.bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _restore_snapshot(archive: Archive, home: Path, snapshot: dict[str, Any]) -> None:
    """The home and the destination exactly as they were when the snapshot was taken."""
    folder = snapshot["folder"]
    shutil.copytree(folder / "home", home, symlinks=True)
    if archive.kind == "file":
        if archive.root.exists():
            shutil.rmtree(archive.root)
        shutil.copytree(folder / "archive", archive.root, symlinks=True)
        return
    for key in _every_key(archive):
        archive.client.delete_object(Bucket=archive.bucket, Key=key)
    for key, body, content_type, metadata, checksummed in snapshot["objects"]:
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if checksummed else {}
        if content_type:
            extra["ContentType"] = content_type
        archive.client.put_object(Bucket=archive.bucket, Key=key, Body=body,
                                  Metadata=metadata, **extra)


@pytest.fixture(params=["file", "s3"])
def archived(request: pytest.FixtureRequest, cli: Callable[..., Any], tmp_path: Path,
             make_message: Any, monkeypatch: pytest.MonkeyPatch, sm_home: Path) -> Archive:
    """Five messages archived in three manifest segments ([0, 1], [2, 3], [4])."""
    return five_messages_archived(request, cli, tmp_path, make_message, monkeypatch, sm_home)


def five_messages_archived(request: pytest.FixtureRequest, cli: Callable[..., Any],
                           tmp_path: Path, make_message: Any, monkeypatch: pytest.MonkeyPatch,
                           sm_home: Path) -> Archive:
    """Five messages archived in three manifest segments ([0, 1], [2, 3], [4]).

    On a folder and on S3 with a SQLite spool, the archive is made once per worker and each
    test gets a copy of it (the home copied, the folder or bucket emptied and filled again
    with the same bytes, content type, metadata and checksum), at the same URL: the tests
    alter what they get, never the snapshot."""
    monkeypatch.setenv("SM_MANIFEST_MAX_ENTRIES", "2")
    kind = request.param
    reusable = kind in ("file", "s3") and not os.environ.get("SM_SPOOL_URL")
    if not reusable:
        return _make_archive(Archive(kind, tmp_path, request), cli, make_message)
    snapshots = _SNAPSHOTS
    if "base" not in snapshots:
        snapshots["base"] = request.getfixturevalue("tmp_path_factory").mktemp("snapshots")
    archive = Archive(kind, tmp_path, request, _snapshot_place(kind, snapshots, request))
    if kind in snapshots:
        _restore_snapshot(archive, sm_home, snapshots[kind])
    else:
        if archive.kind == "file" and archive.root.exists():
            shutil.rmtree(archive.root)
        _make_archive(archive, cli, make_message)
        snapshots[kind] = _take_snapshot(archive, sm_home,
                                         Path(snapshots["base"]) / f"snapshot-{kind}")
    return archive


def _make_archive(archive: Archive, cli: Callable[..., Any], make_message: Any) -> Archive:
    connected = cli("connect", archive.url, "--project", PROJECT, *archive.connect_args)
    assert connected.exit_code == 0, connected.output
    batch = [make_message(message_id=f"m-{i:03d}") for i in range(5)]
    assert cli("ingest", input=jsonl(*batch)).exit_code == 0
    ran = cli("run", "--once", "--concurrency", "1")
    assert ran.exit_code == 0, ran.output
    assert len(archive.manifests()) == 3
    return archive


FILE_ONLY = pytest.mark.parametrize("archived", ["file"], indirect=True)
# the basic attacks on every destination; a deleted object also on a versioned S3 bucket,
# where the delete leaves a marker and the old version stays
EVERY_DESTINATION = pytest.mark.parametrize(
    "archived", ["file", "s3", "gcs", "azure"], indirect=True)


def audit(cli: Callable[..., Any], *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("--json", "audit", *args)
    return result.exit_code, json.loads(result.stdout)


def findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    [project] = document["projects"]
    return project["findings"]


@EVERY_DESTINATION
def test_a_clean_archive_has_no_finding(cli, archived: Archive) -> None:
    code, document = audit(cli, "--deep")
    [project] = document["projects"]
    assert project.pop("origin") == archived.url.rstrip("/") + "/#" + PROJECT
    root = project.pop("root")
    leaves = [line for key in archived.manifests()
              for line in parse_segment(archived.read(key)).lines]
    assert root == base64.b64encode(merkle.root([merkle.leaf_hash(x) for x in leaves])).decode()
    assert project.pop("complete_through") == max(
        parse_segment(archived.read(key)).header["sealed_at"] for key in archived.manifests())
    assert (code, document) == (0, {
        # on the sealing host the spool's own key is trusted: no warning
        "ok": True, "since": None, "until": None, "warnings": [],
        "projects": [{"project_id": PROJECT, "manifests": 3, "entries": 5, "stored": 5,
                      "expired": 0, "failed": 0, "pending": 0, "anchored": True,
                      "tree_size": 5, "unsealed": 0, "adopted": 0, "backfilled": 0,
                      "holds": 0, "releases": 0, "findings": []}]})


@pytest.mark.parametrize("archived", ["file", "s3", "s3-versioned", "gcs", "azure"],
                         indirect=True)
def test_a_deleted_object_is_missing(cli, archived: Archive) -> None:
    key = archived.prefix + message_key("m-001")
    archived.delete(key)
    code, document = audit(cli)
    assert code == 1 and document["ok"] is False
    assert findings(document) == [{
        "type": "missing_object", "message_id": "m-001", "key": key,
        "detail": "a stored message of the manifests is not in the bucket"}]


@EVERY_DESTINATION
def test_replaced_bytes_are_altered_with_deep(cli, archived: Archive) -> None:
    key = archived.prefix + message_key("m-002")
    original = archived.read(key)
    forged_payload = gzip.decompress(original).replace(b"Your order shipped",
                                                       b"Your order delayed")
    forged = gzip.compress(forged_payload, mtime=0)
    assert len(forged) == len(original)  # same size: only a re-hash can tell
    # the forger keeps the metadata (and could even forge sm-payload-sha256)
    archived.write(key, forged, {"sm-payload-sha256": hashlib.sha256(forged_payload).hexdigest()})
    assert audit(cli)[0] == 0  # a listing alone cannot see it
    code, document = audit(cli, "--deep")
    assert code == 1
    assert findings(document) == [{
        "type": "altered_object", "message_id": "m-002", "key": key,
        # Bytes that are not the manifest's are never decompressed (SPEC 9.2: a bomb).
        "detail": f"its sha256 is {hashlib.sha256(forged).hexdigest()}, the manifest says"
                  f" {hashlib.sha256(original).hexdigest()}"}]


@EVERY_DESTINATION
def test_a_stray_object_is_unexpected(cli, archived: Archive) -> None:
    key = archived.prefix + message_key("planted")
    archived.write(key, gzip.compress(b"{}", mtime=0))
    code, document = audit(cli)
    assert code == 1
    assert findings(document) == [{
        "type": "unexpected_object", "message_id": "planted", "key": key,
        "detail": "an object in the message layout that no manifest lists"}]


def test_a_deleted_manifest_segment_is_missing_and_its_messages_unaccounted(
        cli, archived: Archive) -> None:
    second = archived.manifests()[1]
    archived.delete(second)
    code, document = audit(cli)
    assert code == 1
    assert findings(document) == [
        {"type": "manifest_missing", "key": second, "seq": 2,
         "detail": "manifest segment 2 is not in the bucket (the spool sealed and wrote it)"},
        *[{"type": "unaccounted_message", "message_id": m, "key": archived.prefix
           + message_key(m), "detail": "the spool has it stored; no manifest lists it (a"
           " message archived before manifests existed: sm manifest backfill)"}
          for m in ("m-002", "m-003")],
        *[{"type": "unexpected_object", "message_id": m, "key": archived.prefix
           + message_key(m), "detail": "an object in the message layout that no manifest"
           " lists"} for m in ("m-002", "m-003")],
    ]
    [project] = document["projects"]
    assert (project["manifests"], project["entries"]) == (2, 3)


def test_an_edited_manifest_line_breaks_the_chain(cli, archived: Archive) -> None:
    first = archived.manifests()[0]
    body = archived.read(first)
    edited = gzip.compress(gzip.decompress(body).replace(b'"message_type":"blast"',
                                                         b'"message_type":"journey"', 1),
                           mtime=0)
    archived.delete(first)
    archived.write(first, edited)
    code, document = audit(cli)
    assert code == 1
    assert findings(document) == [{
        "type": "chain_broken", "key": first, "seq": 1,
        "detail": f"segment 1's bytes are not those sealed (sha256"
                  f" {hashlib.sha256(edited).hexdigest()}, sealed as"
                  f" {hashlib.sha256(body).hexdigest()})"}, {
        # on the sealing host the spool's own key is trusted: its checkpoint names the tree
        "type": "log_forked", "detail": "checkpoint 000000000002.txt in the bucket: its root"
        " is not the tree of the bucket's first 2 entries (the log was rewritten)"}]


@FILE_ONLY
def test_a_manifest_forged_consistently_is_still_caught_by_the_chain(
        cli, archived: Archive, sm_home: Path) -> None:
    """Without the spool's record (another machine audits), the next segment's prev_sha256
    still proves segment 1 was changed."""
    first = archived.manifests()[0]
    edited = gzip.compress(gzip.decompress(archived.read(first)).replace(
        b'"message_type":"blast"', b'"message_type":"journey"', 1), mtime=0)
    archived.delete(first)
    archived.write(first, edited)
    conn = sqlite3.connect(sm_home / "spool.db")
    conn.execute("DELETE FROM manifest_segments")
    conn.commit()
    conn.close()
    code, document = audit(cli)
    assert code == 1
    assert findings(document) == [{
        "type": "chain_broken", "key": archived.manifests()[1], "seq": 2,
        "detail": "segment 2: its prev_sha256 is not the hash of segment 1's bytes"}, {
        # its own header's tree is not that of its lines,
        "type": "chain_broken", "seq": 1, "detail": "segment 1: its header's tree (size 2) is"
        " not the tree of the log's 2 entries through it (later headers not compared)"}, {
        # and the checkpoint beside it (unverified: no trusted key here) names other lines
        "type": "log_forked", "detail": "checkpoint 000000000002.txt in the bucket: its root"
        " is not the tree of the bucket's first 2 entries (the log was rewritten)"}]


@FILE_ONLY
def test_a_stored_message_absent_from_the_manifests_is_unaccounted(
        cli, archived: Archive, sm_home: Path, make_message: Any) -> None:
    """A stored outcome whose entry was dropped from the spool's open segment."""
    assert cli("ingest", input=jsonl(make_message(message_id="m-100"))).exit_code == 0
    conn = sqlite3.connect(sm_home / "spool.db")
    conn.execute("DROP TRIGGER manifest_entry_on_settle")  # as an older sm would settle
    conn.commit()
    conn.close()
    assert cli("run", "--once").exit_code == 0
    code, document = audit(cli)
    assert code == 1
    key = archived.prefix + message_key("m-100")
    assert findings(document) == [
        {"type": "unaccounted_message", "message_id": "m-100", "key": key,
         "detail": "the spool has it stored; no manifest lists it (a message archived before"
                   " manifests existed: sm manifest backfill)"},
        {"type": "unexpected_object", "message_id": "m-100", "key": key,
         "detail": "an object in the message layout that no manifest lists"}]


@FILE_ONLY
def test_the_period_bounds_the_messages_checked(cli, archived: Archive) -> None:
    archived.delete(archived.prefix + message_key("m-001"))
    code, document = audit(cli, "--since", "2026-11-28", "--until", "2026-12-01")
    assert code == 0  # every message was sent 2026-11-27
    assert document["since"] == "2026-11-28T00:00:00Z"
    assert document["until"] == "2026-12-01T23:59:59Z"
    assert document["projects"][0]["entries"] == 0
    assert audit(cli, "--until", "2026-11-27")[0] == 1


@FILE_ONLY
def test_a_bad_time_is_a_usage_error(cli, archived: Archive) -> None:
    result = cli("audit", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "Error: invalid value for --since" in result.output


@pytest.mark.skipif(not shutil.which("jq"), reason="verify.sh needs jq")
def test_verify_sh_rechecks_the_bundle_and_fails_on_one_changed_byte(
        cli, archived: Archive, tmp_path: Path) -> None:
    report = tmp_path / "evidence"
    result = cli("audit", "--deep", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in report.iterdir()) == [
        "checkpoints", "findings.json", "listing.csv", "manifests", "manifests.sha256",
        "prefixes.json", "summary.json", "trusted_keys.txt", "verify.sh"]
    assert json.loads((report / "findings.json").read_text()) == []
    assert json.loads((report / "summary.json").read_text())["ok"] is True
    listing = (report / "listing.csv").read_text().splitlines()
    assert listing[0] == "key,size,sha256"
    assert len(listing) == 1 + 5 + 3
    checked = subprocess.run(["sh", str(report / "verify.sh")], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK (3 manifest segment(s) chained" in checked.stdout
    segment = sorted((report / "manifests" / PROJECT).iterdir())[1]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    tampered = subprocess.run(["sh", "verify.sh"], cwd=report, capture_output=True, text=True,
                              check=False)
    assert tampered.returncode == 1
    assert "FAIL:" in tampered.stdout and "verify.sh: FAILED" in tampered.stdout


@pytest.mark.skipif(not shutil.which("jq"), reason="verify.sh needs jq")
@FILE_ONLY
def test_verify_sh_fails_on_a_listing_that_lost_an_object(cli, archived: Archive,
                                                           tmp_path: Path) -> None:
    archived.delete(archived.prefix + message_key("m-004"))
    report = tmp_path / "evidence"
    assert cli("audit", "--report", str(report)).exit_code == 1
    checked = subprocess.run(["sh", str(report / "verify.sh")], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 1
    assert f"FAIL: object missing: {archived.prefix}{message_key('m-004')}" in checked.stdout


@FILE_ONLY
def test_manifest_segments_parse(archived: Archive) -> None:
    ids = [e["message_id"] for key in archived.manifests()
           for e in parse_segment(archived.read(key)).entries]
    assert ids == [f"m-{i:03d}" for i in range(5)]


@FILE_ONLY
def test_backfill_writes_manifests_for_messages_archived_before_them(
        cli, archived: Archive, sm_home: Path, make_message: Any) -> None:
    conn = sqlite3.connect(sm_home / "spool.db")
    conn.execute("DROP TRIGGER manifest_entry_on_settle")  # as before manifests existed
    conn.commit()
    conn.close()
    old = [make_message(message_id=f"old-{i}") for i in range(3)]
    assert cli("ingest", input=jsonl(*old)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    assert audit(cli)[0] == 1
    tampered = archived.prefix + message_key("old-2")
    archived.write(tampered, gzip.compress(b"{}", mtime=0))
    result = cli("--json", "manifest", "backfill")
    assert result.exit_code == 1  # the tampered object is reported, never vouched for
    assert json.loads(result.stdout) == {
        "projects": [{"project_id": PROJECT, "already_in_manifests": 5, "backfilled": 2,
                      "failed": 1, "failures": [{
                          "key": tampered, "reason": "the object's payload hash is not the"
                          " one the index recorded"}], "not_stored_here": []}],
        "backfilled": 2, "failed": 1}
    code, document = audit(cli)
    assert [(f["type"], f.get("message_id")) for f in findings(document)] == [
        ("unaccounted_message", "old-2"), ("unexpected_object", "old-2")]
    assert document["projects"][0]["manifests"] == 4
    assert document["projects"][0]["backfilled"] == 2  # marked in the log for ever
    again = cli("--json", "manifest", "backfill")
    assert json.loads(again.stdout)["backfilled"] == 0


def test_a_shortened_retention_is_found(cli, s3_client, moto_endpoint: str,
                                        make_message: Any) -> None:
    """On an object-lock bucket, an object whose retain-until date was cut short (governance
    mode, bypassed) is `retention_short`; the others, and the manifests' dates, hold."""
    import uuid
    from datetime import UTC, datetime, timedelta

    endpoint = ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"]
    bucket = f"sm-locked-{uuid.uuid4().hex[:10]}"
    made = cli("bucket", "create", f"s3://{bucket}/", "--object-lock", *endpoint)
    assert made.exit_code == 0, made.stderr
    connected = cli("connect", f"s3://{bucket}/", "--project", PROJECT, "--retention-days", "3",
                    "--retention-mode", "governance", *endpoint)
    assert connected.exit_code == 0, connected.stderr
    batch = [make_message(message_id=f"m-{i:03d}") for i in range(3)]
    assert cli("ingest", input=jsonl(*batch)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    code, document = audit(cli)
    assert (code, findings(document)) == (0, [])
    [manifest] = [item["Key"] for item in s3_client.list_objects_v2(
        Bucket=bucket, Prefix="_sm/manifests/")["Contents"]]
    segment = parse_segment(s3_client.get_object(Bucket=bucket, Key=manifest)["Body"].read())
    entry = segment.entries[1]
    settled = datetime.fromisoformat(entry["settled_at"])
    required = settled + timedelta(days=3)
    assert entry["retain_until"] == required.isoformat().replace("+00:00", "Z")

    key = message_key("m-001")
    short = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    s3_client.put_object_retention(
        Bucket=bucket, Key=key, BypassGovernanceRetention=True,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": short})
    assert s3_client.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"] == short
    for args in ((), ("--deep",)):
        code, document = audit(cli, *args)
        assert code == 1
        assert findings(document) == [{
            "type": "retention_short", "message_id": "m-001", "key": key,
            "detail": f"retained until {short.isoformat().replace('+00:00', 'Z')}; a retention"
                      f" of 3 days requires {entry['retain_until']}"}]


def test_the_progress_bar_draws_each_step_on_a_terminal_only() -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from stored_messages_cli.cli.audit import progress_for

    buffer = io.StringIO()
    terminal = SimpleNamespace(interactive=True, stderr=Console(
        file=buffer, force_terminal=True, width=120))
    with progress_for(terminal) as progress:
        progress.stage("project [12345]: downloading 5 object(s)", 5)
        progress.advance(2)
        progress.bar.refresh()
        drawn = buffer.getvalue()
    assert "project [12345]: downloading 5 object(s)" in drawn  # literally, never markup
    assert "2/5" in drawn
    with progress_for(SimpleNamespace(interactive=False)) as nothing:
        assert nothing is None  # a pipe, --json or -q: no progress at all


@FILE_ONLY
def test_an_audit_on_a_terminal_runs_with_the_progress_bar(
        cli, archived: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    from stored_messages_cli.cli.common import Output

    monkeypatch.setattr(Output, "interactive", property(lambda self: True))
    result = cli("audit", "--deep")
    assert result.exit_code == 0, result.output
    assert "ok: no finding" in result.stdout


def test_gcs_and_azure_report_the_retain_until_their_sdks_give() -> None:
    """The emulators keep no retention; the SDK objects are read as the real services fill
    them (GCS: bucket policy expiration and object retention, the later wins; Azure: the
    blob's immutability policy)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from google.cloud.storage import Blob, Bucket, Client
    from google.cloud.storage.client import AnonymousCredentials

    from stored_messages_cli.destinations import azure, gcs

    bucket = Bucket(Client(project="p", credentials=AnonymousCredentials()), "b")
    blob = Blob("k", bucket)
    blob._set_properties({"name": "k", "size": "3",
                          "retentionExpirationTime": "2031-01-02T03:04:05Z",
                          "retention": {"mode": "Locked",
                                        "retainUntilTime": "2030-01-01T00:00:00Z"}})
    assert gcs._info(blob).retain_until == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert gcs._info(Blob("k", bucket)).retain_until is None
    until = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    properties = SimpleNamespace(size=3, metadata={}, version_id=None,
                                 immutability_policy=SimpleNamespace(expiry_time=until))
    assert azure._info("k", properties).retain_until == until.timestamp()
    properties.immutability_policy = SimpleNamespace(expiry_time=None)
    assert azure._info("k", properties).retain_until is None
