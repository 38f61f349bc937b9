"""SPEC 9.2: `max_payload_bytes` caps every decompression of a stored payload, `sm audit --deep`
and `sm export` included (fetch, find --remote and index rebuild: tests/test_gzip_bombs.py).

The cap may be lowered after messages were archived. `sm export` then reports a message whose
payload is over it as a failure (exit 1; the others are written). `sm audit --deep` decides by
the manifest: an object whose bytes are the ones its manifest entry recorded (size and
SHA-256, checked before anything is decompressed) is the archive's own, so a payload over the
cap in it is not `altered_object` (it is not decompressed past the cap, and its payload hash
is not re-taken: the object's hash already is the manifest's). Bytes nothing vouches for (an
entry without an object SHA-256) whose payload passes the cap are `altered_object`.
Real folder destination, real spool, the real CLI.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from stored_messages_cli.destinations import open_destination
from stored_messages_cli.evidence.audit_bucket import check_objects
from stored_messages_cli.evidence.findings import ProjectAudit, SilentProgress
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    archive,
    build_target,
    cli_for,
    connect,
    email,
    gunzip,
    sha256_hex,
)

CAP = 1000
ANN_HASH = sha256_hex(b"ann.lee@example.com")


@pytest.fixture
def archived(tmp_path: Path):
    """A 5 KB email (`big-1`) and a small one (`small-2`), archived under the default cap."""
    target = build_target("file", tmp_path)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [email("big-1", text="x" * 5000),
                          email("small-2", sent_at="2026-11-02T09:00:00Z")])
    big = f"email/12345/{ANN_HASH}/111/big-1.json.gz"
    small = f"email/12345/{ANN_HASH}/111/small-2.json.gz"
    assert len(gunzip(target.read(big))) > 5000 > CAP > len(gunzip(target.read(small)))
    return cli, target, big


def test_export_reports_a_payload_over_the_cap_and_writes_the_others(
        archived, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli, _, big = archived
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(CAP))
    out = tmp_path / "case"
    result = cli("--json", "export", "--format", "jsonl", "--output", str(out))
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["exported"], report["failed"]) == (1, 1)
    [failure] = report["failures"]
    assert failure["message_id"] == "big-1"
    assert failure["reason"] == (f"integrity check failed for {big}: the payload is over"
                                 f" max_payload_bytes ({CAP} bytes); not decompressed further")
    lines = (out / "messages.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["message_id"] for line in lines] == ["small-2"]
    streamed = cli("export", "--format", "jsonl", "--output", "-")
    assert streamed.exit_code == 1
    assert [json.loads(line)["message_id"] for line in streamed.stdout.splitlines()] == [
        "small-2"]


def test_deep_audit_does_not_call_the_archives_own_object_altered_under_a_lower_cap(
        archived, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest vouches for the 5 KB object (its size and SHA-256 match): no finding."""
    cli, _, _ = archived
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(CAP))
    result = cli("--json", "audit", "--deep")
    assert result.exit_code == 0, result.output
    assert [f for p in json.loads(result.stdout)["projects"] for f in p["findings"]] == []


def test_deep_check_decompresses_at_most_the_cap(archived) -> None:
    """The cap reaches the deep check: an entry without the object's SHA-256 (nothing vouches
    for the bytes) whose payload passes the cap is `altered_object`; the same entry with the
    manifest's SHA-256 is not; under the default cap neither is."""
    _, target, big = archived
    assert target.root is not None
    destination = open_destination(f"file://{target.root}/")
    body = target.read(big)
    payload_sha = sha256_hex(gunzip(body))
    listing = {info.key: info for info in destination.list("email/")}

    def findings(entry: dict[str, object], **cap: int) -> list[tuple[str, str]]:
        result = ProjectAudit("12345")
        check_objects(destination, [entry], listing, result, deep=True,
                      progress=SilentProgress(), **cap)
        return [(f.type, f.detail) for f in result.findings]

    unvouched = {"message_id": "big-1", "key": big, "size": len(body),
                 "payload_sha256": payload_sha}
    vouched = {**unvouched, "object_sha256": sha256_hex(body)}
    try:
        assert findings(unvouched, max_payload_bytes=CAP) == [(
            "altered_object",
            f"the payload is over max_payload_bytes ({CAP} bytes); not decompressed further")]
        assert findings(vouched, max_payload_bytes=CAP) == []
        assert findings(unvouched) == findings(vouched) == []
    finally:
        destination.close()


def test_backfill_reports_a_payload_over_the_cap(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`sm manifest backfill` reads each object back: a payload over the cap is its failure
    (exit 1), never an entry; the others are backfilled."""
    target = build_target("file", tmp_path)
    cli = cli_for(tmp_path / "home")
    connect(cli, target)
    assert cli("ingest", "-", input=jsonl(email("big-1", text="x" * 5000))).exit_code == 0
    conn = sqlite3.connect(tmp_path / "home" / "spool.db")
    conn.execute("DROP TRIGGER manifest_entry_on_settle")  # as before manifests existed
    conn.commit()
    conn.close()
    assert cli("ingest", "-", input=jsonl(email("small-2"))).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(CAP))
    result = cli("--json", "manifest", "backfill")
    assert result.exit_code == 1, result.output
    [report] = json.loads(result.stdout)["projects"]
    big = f"email/12345/{ANN_HASH}/111/big-1.json.gz"
    assert (report["backfilled"], report["failures"]) == (1, [{
        "key": big, "reason": f"cannot read {big}: the payload is over max_payload_bytes"
                              f" ({CAP} bytes); not decompressed further"}])
