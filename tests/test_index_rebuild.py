"""`sm index rebuild`: a fresh home answers like the original, resumes after an interruption,
reports altered objects, and works while `sm run` archives into the same spool."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.destinations.file import FileDestination
from stored_messages_cli.investigate import rebuild
from stored_messages_cli.investigate.index import ArchiveIndex
from stored_messages_cli.investigate.rebuild import rebuild_index
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    ArchiveTarget,
    archive,
    build_target,
    cli_for,
    connect,
    email,
    push,
    sha256_hex,
    sms,
    target_for,
)

MESSAGES = [
    email("a-1", sent_at="2026-11-01T09:00:00Z"),
    email("b-2", to="ann.lee@example.com", campaign=222, message_type="triggered",
          sent_at="2026-11-15T12:00:00Z"),
    email("c-3", project=777, sent_at="2026-11-10T00:00:00Z"),
    sms("d-4"),
    push("e-5"),
    email("f-6", to="bo@example.org", campaign=None, sent_at="2026-11-02T10:00:00Z"),
]
QUERIES = [
    [],
    ["--recipient", "  Ann.Lee@EXAMPLE.com "],
    ["--campaign", "111"],
    ["--project", "12345", "--medium", "email"],
    ["--since", "2026-11-10", "--until", "2026-11-20"],
    ["--message-id", "d-4"],
]


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    """A fresh local folder or moto S3 bucket."""
    return target_for(request, tmp_path)


def rebuilt(cli, *args: str) -> dict:
    """`sm --json index rebuild ARGS`, expected to succeed."""
    result = cli("--json", "index", "rebuild", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_fresh_home_rebuilt_from_the_bucket_answers_like_the_original(
        target: ArchiveTarget, tmp_path: Path) -> None:
    original = cli_for(tmp_path / "home")
    archive(original, target, MESSAGES)
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target, "12345")
    connect(laptop, target, "777")
    assert json.loads(laptop("--json", "find").stdout) == []
    report = rebuilt(laptop)
    assert [(p["project_id"], p["listed"], p["indexed"], p["failed"])
            for p in report["projects"]] == [("12345", 5, 5, 0), ("777", 1, 1, 0)]
    assert report["projects"][0]["destination"] == target.url
    for query in QUERIES:
        want = json.loads(original("--json", "find", *query).stdout)
        assert want, query
        assert json.loads(laptop("--json", "find", *query).stdout) == want, query
    # Fetch from the rebuilt index goes straight to the key, verified against what was read.
    fetched = laptop("fetch", "d-4", "--part", "body")
    assert (fetched.exit_code, fetched.stdout) == (0, "Code 123456")
    assert "listing the bucket" not in fetched.stderr
    again = rebuilt(laptop, "--project", "777")
    assert [(p["project_id"], p["listed"], p["already_indexed"], p["indexed"])
            for p in again["projects"]] == [("777", 1, 1, 0)]


def test_rebuild_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    target = build_target("file", tmp_path)
    original = cli_for(tmp_path / "home")
    archive(original, target, [email(f"m-{n}", sent_at=f"2026-11-0{n}T10:00:00Z")
                               for n in range(1, 8)])
    laptop_home = tmp_path / "laptop"
    connect(cli_for(laptop_home), target, "12345")
    monkeypatch.setattr(rebuild, "INDEX_BATCH", 2)
    reads = []

    def interrupt_after_three(count: int) -> None:
        reads.append(count)
        if len(reads) == 3:
            raise KeyboardInterrupt

    destination = FileDestination(target.url)
    with Spool.open(home=laptop_home) as spool, pytest.raises(KeyboardInterrupt):
        rebuild_index(ArchiveIndex.of(spool), destination, "12345",
                      on_read=interrupt_after_three)
    with Spool.open(home=laptop_home) as spool:
        assert ArchiveIndex.of(spool).count() == 2  # one committed batch survived
    report = rebuilt(cli_for(laptop_home))["projects"][0]
    assert (report["listed"], report["already_indexed"], report["indexed"]) == (7, 2, 5)
    assert json.loads(cli_for(laptop_home)("--json", "find").stdout) == json.loads(
        original("--json", "find").stdout)


def test_a_row_under_another_key_is_replaced_by_what_the_bucket_holds(tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [email("a-1")])
    conn = sqlite3.connect(tmp_path / "home" / "spool.db")
    with conn:
        conn.execute("UPDATE archive_entries SET key = 'email/12345/x/111/a-1.json.gz',"
                     " payload_sha256 = 'stale'")
    conn.close()
    report = rebuilt(cli)["projects"][0]
    assert (report["listed"], report["already_indexed"], report["indexed"]) == (1, 0, 1)
    found = json.loads(cli("--json", "find", "--message-id", "a-1").stdout)[0]
    assert found["key"] == f"email/12345/{sha256_hex(b'ann.lee@example.com')}/111/a-1.json.gz"
    assert found["payload_sha256"] == sha256_hex(gzip.decompress(target.read(found["key"])))


def test_altered_objects_are_reported_and_not_indexed(target: ArchiveTarget,
                                                      tmp_path: Path) -> None:
    original = cli_for(tmp_path / "home")
    archive(original, target, MESSAGES[:2])
    key = f"{target.key_prefix}email/12345/{sha256_hex(b'ann.lee@example.com')}/111/a-1.json.gz"
    target.overwrite(key, b"not gzip at all", payload_sha256="0" * 64)
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target, "12345")
    result = laptop("--json", "index", "rebuild")
    assert result.exit_code == 1
    report = json.loads(result.stdout)["projects"][0]
    assert (report["listed"], report["indexed"], report["failed"]) == (2, 1, 1)
    assert report["failures"] == [{"key": key, "reason": f"checksum mismatch for {key}: the"
                                   " object is not valid gzip"}]
    assert "Error: 1 object(s) failed verification and were not indexed" in result.stderr
    assert [m["message_id"] for m in json.loads(laptop("--json", "find").stdout)] == ["b-2"]


def test_rebuild_while_sm_run_archives_into_the_same_spool(tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    home = tmp_path / "home"
    cli = cli_for(home)
    connect(cli, target, "12345")
    count = 150
    messages = [email(f"m-{n:03d}", to=f"user{n % 7}@example.com",
                      sent_at=f"2026-11-01T10:{n // 60:02d}:{n % 60:02d}Z")
                for n in range(count)]
    assert cli("ingest", "-", input=jsonl(*messages)).exit_code == 0
    done = threading.Event()
    failures: list[BaseException] = []

    def run_archiver() -> None:
        try:
            with Spool.open(home=home) as spool:
                destination = FileDestination(target.url)
                Archiver(spool, [ProjectTarget("12345", destination)], concurrency=4
                         ).run(once=True)
        except BaseException as exc:  # surfaced below
            failures.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run_archiver)
    worker.start()
    passes = 0
    with Spool.open(home=home) as spool:
        index = ArchiveIndex.of(spool)
        while not done.is_set() or passes == 0:
            rebuild_index(index, FileDestination(target.url), "12345", workers=2)
            passes += 1
    worker.join()
    assert failures == []
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == count
    conn = sqlite3.connect(home / "spool.db")
    stored = dict(conn.execute("SELECT message_id, stored_key FROM messages").fetchall())
    indexed = dict(conn.execute("SELECT message_id, key FROM archive_index").fetchall())
    conn.close()
    assert indexed == stored
    final = rebuilt(cli)["projects"][0]
    assert (final["listed"], final["already_indexed"], final["indexed"]) == (count, count, 0)


def test_rebuild_needs_a_connected_project(tmp_path: Path) -> None:
    empty = cli_for(tmp_path / "empty")
    result = empty("index", "rebuild")
    assert result.exit_code == 2
    assert "Error: no project has a destination to rebuild from" in result.stderr
    unknown = empty("index", "rebuild", "--project", "42")
    assert unknown.exit_code == 1
    assert "Try: sm connect URL --project 42" in unknown.stderr
