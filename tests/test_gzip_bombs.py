"""Gzip bombs in the bucket (issue 24, SPEC 9.2): every read is bounded by `max_payload_bytes`.

A 4 MB object that expands to 4 GiB is planted at a stored message's key (fetch, audit --deep,
find --remote, index rebuild each give one line naming it, exit 1, no traceback) and at the key
of a message not yet uploaded (`sm run --once` settles it as a conflict; the destination stays
`ok`). Each command runs as its own process under an address-space limit, so a read that
expands the bomb fails the test with a MemoryError instead of swapping the machine.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.support.daemon import sm_env
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    ArchiveTarget,
    archive,
    cli_for,
    connect,
    email,
    gunzip,
    sha256_hex,
    target_for,
)

ADDRESS_SPACE = 3 << 29  # 1.5 GiB: a 4 GiB expansion cannot fit, sm's own work easily does
BOMB_EXPANDS_TO = 4 << 30
ANN_HASH = sha256_hex(b"ann.lee@example.com")


def gzip_bomb(expanded: int = BOMB_EXPANDS_TO, chunk: int = 1 << 24) -> bytes:
    """One valid gzip member of `expanded` zero bytes, about 1/1000 of that size.

    Blocks ending in a full flush refer to nothing before them, so one compressed block of
    `chunk` zeros is repeated instead of compressing 4 GiB (1 s instead of 15)."""
    zeros = bytes(chunk)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    last = deflate.flush()
    count = expanded // chunk
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"
    return (header + first + block * (count - 1) + last
            + struct.pack("<II", crc, expanded & 0xFFFFFFFF))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The 4 MB bomb, checked to be one intact member that really expands to 4 GiB."""
    body = gzip_bomb()
    assert len(body) < 5_000_000
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert len(inflater.decompress(body[:65536], 1 << 20)) == 1 << 20  # it does inflate
    return body


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def limited_sm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`sm ARGS…` on `home` in a child process that cannot map more than 1.5 GiB."""
    return subprocess.run(
        [sys.executable, "-m", "stored_messages_cli.cli.app", *args],
        env=sm_env(home), preexec_fn=_limit_address_space, capture_output=True, text=True,
        timeout=180)


def one_error_line(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The `Error:` lines of a run that must not have crashed."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "MemoryError" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]



@pytest.fixture(scope="module", params=["file", "s3"])
def planted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            bomb: bytes) -> tuple[Path, ArchiveTarget, str]:
    """Two messages archived, then the bomb put in place of a-1 (the forger even sets the
    metadata to the original payload's hash)."""
    folder = tmp_path_factory.mktemp(f"bomb-{request.param}")
    target = target_for(request, folder)
    archive(cli_for(folder / "home"), target, [email("a-1"), email("b-2")])
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    target.overwrite(key, bomb, payload_sha256=sha256_hex(gunzip(target.read(key))))
    return folder, target, key


def test_fetch_of_a_bomb_is_one_error_line(planted: tuple[Path, ArchiveTarget, str]) -> None:
    folder, target, key = planted
    result = limited_sm(folder / "home", "fetch", "a-1")
    assert result.returncode == 1
    assert one_error_line(result) == [
        f"Error: integrity check failed for {key}: the payload is over max_payload_bytes"
        " (33554432 bytes); not decompressed further"]
    assert result.stdout == ""


def test_deep_audit_reports_the_bomb_without_expanding_it(
        planted: tuple[Path, ArchiveTarget, str]) -> None:
    folder, target, key = planted
    result = limited_sm(folder / "home", "--json", "audit", "--deep")
    assert result.returncode == 1
    one_error_line(result)
    findings = [f for p in json.loads(result.stdout)["projects"] for f in p["findings"]]
    assert [(f["type"], f["key"]) for f in findings] == [("altered_object", key)]
    # The manifest recorded the object's size and SHA-256: the bomb is refused uninflated.
    assert findings[0]["detail"].startswith(f"{len(target.read(key))} bytes, the manifest says")


def test_remote_find_and_index_rebuild_skip_the_bomb(
        planted: tuple[Path, ArchiveTarget, str]) -> None:
    folder, target, key = planted
    laptop = folder / "laptop"
    connect(cli_for(laptop), target, "12345")
    rebuilt = limited_sm(laptop, "--json", "index", "rebuild")
    assert rebuilt.returncode == 1
    one_error_line(rebuilt)
    report = json.loads(rebuilt.stdout)["projects"][0]
    assert (report["indexed"], report["failed"]) == (1, 1)
    assert [f["key"] for f in report["failures"]] == [key]
    found = limited_sm(laptop, "--json", "find", "--remote", "--recipient",
                       "ann.lee@example.com")
    assert found.returncode == 1
    assert [m["message_id"] for m in json.loads(found.stdout)] == ["b-2"]
    assert f"Error: integrity check failed for {key}: the payload is over max_payload_bytes" \
        " (33554432 bytes); not decompressed further" in one_error_line(found)


@pytest.mark.parametrize("target", ["file", "s3"], indirect=True)
def test_a_bomb_at_an_unsent_key_is_a_conflict_not_an_outage(
        target: ArchiveTarget, tmp_path: Path, bomb: bytes) -> None:
    home = tmp_path / "home"
    cli = cli_for(home)
    connect(cli, target, "12345")
    assert cli("ingest", "-", input=jsonl(email("c-3"), email("d-4"))).exit_code == 0
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/c-3.json.gz"
    if target.kind == "file":
        path = Path(target.url.removeprefix("file://")) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bomb)
    else:
        target.overwrite(key, bomb, payload_sha256=None)
    ran = limited_sm(home, "--json", "run", "--once")
    one_error_line(ran)
    assert json.loads(ran.stdout) == {
        "stored": 1, "already_stored": 0, "rate_limited": 0, "unreachable": 0, "failed": 1,
        "expired": 0}
    # status and show read the spool, not the bomb: in-process
    status = json.loads(cli("--json", "status").stdout)
    assert [d["health"] for d in status["destinations"]] == ["ok"]
    shown = json.loads(cli("--json", "show", "c-3").stdout)
    assert (shown["state"], shown["final_reason"]) == ("failed", "conflict")
    assert target.read(key) == bomb  # left as it was found


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    """A fresh local folder or moto S3 bucket."""
    return target_for(request, tmp_path)


def test_ingest_of_a_40_mb_line_is_rejected_in_bounded_memory(tmp_path: Path) -> None:
    """The default `max_payload_bytes` (32 MiB): the line is read past, never held whole."""
    good = jsonl(email("a-1"))
    huge = json.dumps(email("huge-1", text="x" * 40_000_000)) + "\n"
    sent = tmp_path / "sent.jsonl"
    sent.write_text(good + huge + good.replace("a-1", "b-2"))
    result = limited_sm(tmp_path / "home", "--json", "ingest", str(sent))
    assert result.returncode == 1
    one_error_line(result)
    assert json.loads(result.stdout) == {
        "accepted": 2, "duplicate": 0, "rejected": 1, "discarded": 0, "lines": 3,
        "messages": 2, "events": 0, "errors": [
            {"line": 2, "reason": f"the line is {len(huge) - 1} bytes, over max_payload_bytes"
                                  " (33554432)"}]}


@pytest.mark.parametrize("target", ["file", "s3"], indirect=True)
def test_max_payload_bytes_is_the_cap_of_every_read(
        target: ArchiveTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [email("a-1")])
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    size = len(gunzip(target.read(key)))
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(size - 1))
    refused = (f"Error: integrity check failed for {key}: the payload is over"
               f" max_payload_bytes ({size - 1} bytes); not decompressed further")
    fetched = cli("fetch", "a-1")
    assert (fetched.exit_code, fetched.stderr.splitlines()[0]) == (1, refused)
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target, "12345")
    rebuilt = laptop("--json", "index", "rebuild")
    assert rebuilt.exit_code == 1
    assert json.loads(rebuilt.stdout)["projects"][0]["failures"] == [
        {"key": key, "reason": refused.removeprefix("Error: ")}]
    found = laptop("find", "--remote", "--recipient", "ann.lee@example.com")
    assert found.exit_code == 1 and refused in found.stderr.splitlines()
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", str(size))
    assert cli("fetch", "a-1").exit_code == 0


@pytest.mark.parametrize("target", ["file", "s3"], indirect=True)
def test_an_object_too_big_for_any_payload_is_refused_by_its_listed_size(
        target: ArchiveTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object bigger than any sm writes under the cap is never downloaded by a remote find
    or a rebuild: the listing's size is enough."""
    archive(cli_for(tmp_path / "home"), target, [email("a-1"), email("b-2")])
    key = f"{target.key_prefix}email/12345/{ANN_HASH}/111/a-1.json.gz"
    target.overwrite(key, os.urandom(200_000), payload_sha256=None)
    monkeypatch.setenv("SM_MAX_PAYLOAD_BYTES", "100000")
    refused = (f"cannot read {key}: the object is 200000 bytes, more than a payload of at most"
               " max_payload_bytes (100000 bytes) makes; not read")
    laptop = cli_for(tmp_path / "laptop")
    connect(laptop, target, "12345")
    rebuilt = laptop("--json", "index", "rebuild")
    assert rebuilt.exit_code == 1
    report = json.loads(rebuilt.stdout)["projects"][0]
    assert (report["indexed"], report["failures"]) == (1, [{"key": key, "reason": refused}])
    found = laptop("--json", "find", "--remote", "--recipient", "ann.lee@example.com")
    assert found.exit_code == 1
    assert [m["message_id"] for m in json.loads(found.stdout)] == ["b-2"]
    assert f"Error: {refused}" in found.stderr.splitlines()
