"""The manifests as a signed Merkle log (SPEC 9.1): every segment's header carries the tree
over every entry line of its log, each seal writes a signed checkpoint beside the manifests,
segments sealed before the log existed are its v1 prefix, and a reconnect starts a new log
that names the one before. Checked against the folder's real bytes and an independent reading
of RFC 6962 (`tests/support/rfc6962.py`)."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.archiver import Archiver, ProjectTarget
from stored_messages_cli.clock import FakeClock
from stored_messages_cli.destinations.file import FileDestination
from stored_messages_cli.errors import DestinationError
from stored_messages_cli.evidence.log import LogOptions
from stored_messages_cli.evidence.manifest import Manifests
from stored_messages_cli.evidence.note import NoteVerifier, open_note, parse_checkpoint
from stored_messages_cli.evidence.segments import (
    build_segment,
    parse_segment,
    segment_header,
    segment_key,
)
from stored_messages_cli.evidence.signing import load_signing_key
from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.manifests import NewSegment
from tests.support import rfc6962

PROJECT = "12345"


def options(home: Path, **extra: Any) -> LogOptions:
    return LogOptions(home / "keys" / "signing.key", **extra)


def archive(spool: Spool, destination: Any, clock: FakeClock, manifests: Manifests) -> None:
    archiver = Archiver(spool, [ProjectTarget(PROJECT, destination)], clock=clock,
                        concurrency=1)
    archiver.on_tick(manifests.tick)
    archiver.run(once=True)


def record(spool: Spool, make_message: Any, first: int, count: int) -> None:
    spool.record_many([make_message(message_id=f"m-{i:04d}") for i in range(first,
                                                                             first + count)])


def segments_in(root: Path) -> list[Path]:
    return sorted((root / "_sm" / "manifests" / PROJECT).rglob("*.jsonl.gz"),
                  key=lambda p: p.name)


def leaves_of(paths: list[Path]) -> list[bytes]:
    """Every entry line of the segments, read with nothing but gzip (the log's leaves)."""
    lines: list[bytes] = []
    for path in paths:
        raw = gzip.decompress(path.read_bytes()).split(b"\n")
        assert raw[-1] == b""
        lines += raw[1:-1]
    return lines


def verifier(home: Path) -> NoteVerifier:
    return NoteVerifier.parse(load_signing_key(home / "keys" / "signing.key").verifier_key())


def test_each_seal_extends_one_tree_over_every_entry_line_and_signs_a_checkpoint(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 3, 900,
                          log_options=options(sm_home))
    record(spool, make_message, 0, 8)
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    root = Path(file_destination.root)
    paths = segments_in(root)
    assert len(paths) == 3  # 3 + 3 + 2
    origin = f"file://{root}/#{PROJECT}"
    key = verifier(sm_home)
    previous = None
    for number, path in enumerate(paths, start=1):
        segment = parse_segment(path.read_bytes())
        header = segment.header
        leaves = leaves_of(paths[:number])
        assert header["manifest_version"] == 2 and header["seq"] == number
        assert header["prev_sha256"] == previous
        assert header["origin"] == origin and len(header["sealer"]) == 16
        assert header["tree_size"] == len(leaves)
        assert base64.b64decode(header["root"]) == rfc6962.mth(leaves)
        # the checkpoint at that size, beside the manifests, signed by the spool's key
        text = (root / "_sm" / "checkpoints" / PROJECT /
                f"{header['tree_size']:012d}.txt").read_text("utf-8")
        opened = open_note(text, [key])
        assert opened.verified_by == [key.name]
        checkpoint = parse_checkpoint(opened.text)
        assert (checkpoint.origin, checkpoint.tree_size) == (origin, len(leaves))
        assert checkpoint.root == rfc6962.mth(leaves)
        previous = sha256_hex(path.read_bytes())
    # the spool keeps what the next seal extends, not the leaves
    [row] = spool.conn.execute("SELECT tree_size, root, checkpoint_written_at IS NOT NULL"
                               " FROM manifest_segments WHERE seq = 3").fetchall()
    assert row[0] == 8 and row[2] == 1


def test_a_checkpoint_that_cannot_be_written_is_written_later_after_its_segment(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path) -> None:
    class NoCheckpoints:
        """A destination whose checkpoint writes fail while `down` is set."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.url, self.prefix, self.down = inner, inner.url, inner.prefix, True

        def put(self, key: str, body: bytes, payload_sha256: str) -> Any:
            if "_sm/checkpoints/" in key and self.down:
                raise DestinationError("connection reset")
            return self.inner.put(key, body, payload_sha256)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    flaky = NoCheckpoints(file_destination)
    manifests = Manifests(spool, {PROJECT: flaky}, 100, 900, log_options=options(sm_home))
    record(spool, make_message, 0, 2)
    archive(spool, flaky, clock, manifests)
    manifests.close()
    root = Path(file_destination.root)
    assert len(segments_in(root)) == 1
    assert not (root / "_sm" / "checkpoints").exists()
    flaky.down = False
    clock.advance(600)
    assert manifests.write_pending() == 0  # the segment was written already
    assert (root / "_sm" / "checkpoints" / PROJECT / "000000000002.txt").is_file()
    assert spool.conn.execute("SELECT COUNT(*) FROM manifest_segments"
                              " WHERE checkpoint_written_at IS NULL").fetchone()[0] == 0


def _v1_segment(spool: Spool, destination: Any, lines: list[bytes], sealed_at: float) -> bytes:
    """A segment as the code before the signed log sealed it, recorded and written."""
    header = segment_header(PROJECT, 1, None, sealed_at, len(lines))
    body = build_segment(header, lines)
    key = segment_key(PROJECT, 1, sealed_at)
    with spool.store.write():
        spool.store.add_segment(NewSegment(
            project_id=PROJECT, seq=1, key=key, sealed_at=sealed_at, count=len(lines),
            prev_sha256=None, body=body, entry_ids=[]))
    destination.put(destination.prefix + key, body, sha256_hex(gzip.decompress(body)))
    spool.evidence.mark_written(PROJECT, 1, sealed_at)
    return body


V1_LINES = [json.dumps({"message_id": f"old-{i}", "outcome": "expired", "key": f"k{i}"},
                       separators=(",", ":")).encode() for i in range(5)]


def test_segments_sealed_before_the_log_are_its_v1_prefix(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path) -> None:
    old = _v1_segment(spool, file_destination, V1_LINES, clock.now())
    record(spool, make_message, 0, 3)
    manifests = Manifests(spool, {PROJECT: file_destination}, 100, 900,
                          log_options=options(sm_home))
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    root = Path(file_destination.root)
    first, second = segments_in(root)
    header = parse_segment(second.read_bytes()).header
    assert parse_segment(first.read_bytes()).header["manifest_version"] == 1
    assert header["seq"] == 2 and header["prev_sha256"] == sha256_hex(old)
    leaves = leaves_of([first, second])
    assert header["tree_size"] == 8 and leaves[:5] == V1_LINES
    assert base64.b64decode(header["root"]) == rfc6962.mth(leaves)
    assert "previous_log" not in header


def test_an_altered_v1_segment_holds_sealing_back_and_loses_nothing(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    _v1_segment(spool, file_destination, V1_LINES, clock.now())
    root = Path(file_destination.root)
    [path] = segments_in(root)
    path.chmod(0o600)
    path.write_bytes(build_segment(segment_header(PROJECT, 1, None, clock.now(), 1),
                                   V1_LINES[:1]))
    record(spool, make_message, 0, 2)
    manifests = Manifests(spool, {PROJECT: file_destination}, 100, 900,
                          log_options=options(sm_home))
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    assert segments_in(root) == [path]  # nothing sealed on a prefix it cannot count
    assert spool.conn.execute("SELECT COUNT(*) FROM manifest_entries").fetchone()[0] == 2
    assert "cannot be read" in caplog.text


def test_a_reconnect_starts_a_new_log_that_names_the_one_before(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path, tmp_path: Path) -> None:
    manifests = Manifests(spool, {PROJECT: file_destination}, 100, 900,
                          log_options=options(sm_home))
    record(spool, make_message, 0, 2)
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    old_header = parse_segment(segments_in(Path(file_destination.root))[0].read_bytes()).header
    folder = tmp_path / "new-destination"
    folder.mkdir(mode=0o700)
    new = FileDestination(f"file://{folder}/")
    manifests = Manifests(spool, {PROJECT: new}, 100, 900, log_options=options(sm_home))
    record(spool, make_message, 10, 3)
    archive(spool, new, clock, manifests)
    manifests.close()
    [path] = segments_in(folder)
    header = parse_segment(path.read_bytes()).header
    assert header["seq"] == 1 and header["prev_sha256"] is None
    assert header["origin"] == f"file://{folder}/#{PROJECT}" and header["tree_size"] == 3
    assert header["previous_log"] == {"origin": old_header["origin"], "tree_size": 2,
                                      "root": old_header["root"]}
    assert (folder / "_sm" / "checkpoints" / PROJECT / "000000000003.txt").is_file()
    assert len(segments_in(Path(file_destination.root))) == 1  # the old log is left alone


def test_the_signing_key_is_created_on_the_first_seal_owner_only(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path) -> None:
    key_file = sm_home / "keys" / "signing.key"
    assert not key_file.exists()
    manifests = Manifests(spool, {PROJECT: file_destination}, 100, 900,
                          log_options=options(sm_home))
    record(spool, make_message, 0, 1)
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    assert b"PRIVATE" not in b"".join(
        p.read_bytes() for p in Path(file_destination.root).rglob("*") if p.is_file())


def test_anchors_are_owed_for_every_checkpoint(
        spool: Spool, clock: FakeClock, file_destination: Any, make_message: Any,
        sm_home: Path) -> None:
    log_options = options(sm_home, copies=("file:///nowhere/copy/",),
                          timestamp_authorities=("http://127.0.0.1:9/tsa",))
    manifests = Manifests(spool, {PROJECT: file_destination}, 1, 900, log_options=log_options)
    record(spool, make_message, 0, 2)
    archive(spool, file_destination, clock, manifests)
    manifests.close()
    rows = spool.conn.execute("SELECT tree_size, kind, target FROM log_anchors"
                              " ORDER BY tree_size, kind").fetchall()
    assert rows == [(1, "copy", "file:///nowhere/copy/"),
                    (1, "timestamp", "http://127.0.0.1:9/tsa"),
                    (2, "copy", "file:///nowhere/copy/"),
                    (2, "timestamp", "http://127.0.0.1:9/tsa")]
