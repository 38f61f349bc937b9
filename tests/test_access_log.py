"""The access log (chain of custody, SPEC 8): every fetch, show, export and find --remote
appends one exact JSON line to SM_HOME/access.log (0600); with `--case ID` the same bytes go
create-only to `{prefix}_sm/access/{case}/` (a local folder and S3 through moto); `sm
access-log` lists them; no line ever holds a raw recipient address."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence import access_log
from tests.support.investigation_support import (
    ArchiveTarget,
    Invoke,
    archive,
    cli_for,
    gunzip,
    sha256_hex,
    sms,
    target_for,
)
from tests.support.investigation_support import email as email_message

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WHEN = "2027-01-15T08:00:00Z"
STAMP = "20270115T080000Z"
SUFFIX = "0123456789abcdef"
ANN = "Ann.Lee@Example.com"
ANN_HASH = sha256_hex(b"ann.lee@example.com")
PHONE = "+15555550100"
RAW_ADDRESSES = (ANN.lower(), "ann.lee", PHONE, "5555550100")
MESSAGES = [email_message("mail-1", to=ANN), sms("sms-1")]


def mail_key(prefix: str) -> str:
    return f"{prefix}email/12345/{ANN_HASH}/111/mail-1.json.gz"


def sms_key(prefix: str) -> str:
    return f"{prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"


@pytest.fixture(autouse=True)
def who_and_when(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fixed user, host, time and random suffix, so every line can be compared exactly."""
    clock = FakeClock(T0)
    monkeypatch.setattr(access_log, "current_user", lambda: "ann")
    monkeypatch.setattr(access_log, "current_host", lambda: "laptop-7")
    monkeypatch.setattr(access_log, "random_suffix", lambda: SUFFIX)
    monkeypatch.setattr(access_log, "SystemClock", lambda: clock)
    return clock


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    return target_for(request, tmp_path)


def log_path(home: Path) -> Path:
    return home / "access.log"


def lines(home: Path) -> list[bytes]:
    return log_path(home).read_bytes().splitlines(keepends=True)


def records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(home)]


def line(document: dict[str, Any]) -> bytes:
    """The exact line the spec describes: compact JSON, UTF-8, newline."""
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def base(command: str, **fields: Any) -> dict[str, Any]:
    document = {"time": WHEN, "user": "ann", "host": "laptop-7", "command": command,
                "case_id": None, "filters": {}, "messages": [], "count": 0, "result": "ok",
                "error": None}
    document.update(fields)
    return document


def read_object(target: ArchiveTarget, key: str) -> bytes:
    if target.kind == "file":
        assert target.root is not None
        return (target.root / key).read_bytes()
    return target.s3_client.get_object(Bucket=target.bucket, Key=key)["Body"].read()


def access_keys(target: ArchiveTarget) -> list[str]:
    folder = f"{target.key_prefix}_sm/access/"
    if target.kind == "file":
        assert target.root is not None
        root = target.root
        return sorted(p.relative_to(root).as_posix() for p in (root / "_sm/access").rglob("*")
                      if p.is_file())
    listed = target.s3_client.list_objects_v2(Bucket=target.bucket, Prefix=folder)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def assert_no_raw_address(home: Path) -> None:
    text = log_path(home).read_text(encoding="utf-8").lower()
    for raw in RAW_ADDRESSES:
        assert raw not in text, raw


@pytest.fixture
def archived(tmp_path: Path, target: ArchiveTarget) -> tuple[Invoke, Path, ArchiveTarget]:
    home = tmp_path / "home"
    cli = cli_for(home)
    archive(cli, target, MESSAGES)
    assert not log_path(home).exists()  # connect, ingest, run read no message: no access
    return cli, home, target


def test_fetch_show_export_and_remote_find_append_exact_lines(
        archived: tuple[Invoke, Path, ArchiveTarget], tmp_path: Path,
        who_and_when: FakeClock) -> None:
    cli, home, target = archived
    prefix = target.key_prefix
    payload = gunzip(read_object(target, mail_key(prefix)))

    fetched = cli("fetch", "mail-1", "--part", "html")
    assert fetched.exit_code == 0, fetched.output
    who_and_when.advance(61)
    shown = cli("--json", "show", "sms-1")
    assert shown.exit_code == 0, shown.output
    local = cli("find", "--recipient", ANN)  # the local index only: not an access
    assert local.exit_code == 0, local.output
    out = tmp_path / "export"
    exported = cli("export", "--recipient", f"  {ANN} ", "--since", "2026-11-01",
                   "--format", "jsonl", "--output", str(out))
    assert exported.exit_code == 0, exported.output
    remote = cli("find", "--remote", "--recipient", ANN, "--medium", "email")
    assert remote.exit_code == 0, remote.output

    mail = {"project_id": "12345", "message_id": "mail-1", "key": mail_key(prefix)}
    sums = (out / "SHA256SUMS").read_bytes()
    expected = [
        base("fetch", filters={"message_id": "mail-1"}, messages=[mail], count=1,
             part="html", output=None, bytes=len(b"<p>mail-1</p>")),
        base("show", time="2027-01-15T08:01:01Z", filters={"message_id": "sms-1"},
             messages=[{"project_id": "12345", "message_id": "sms-1",
                        "key": sms_key(prefix)}], count=1, state="stored"),
        base("export", time="2027-01-15T08:01:01Z",
             filters={"recipient_hashes": [sha256_hex(ANN.encode()), ANN_HASH],
                      "since": "2026-11-01"},
             messages=[mail], count=1, format="jsonl", zip=False, output=str(out),
             exported=1, failed=0,
             checksums={"file": "SHA256SUMS", "sha256": sha256_hex(sums)}),
        base("find", time="2027-01-15T08:01:01Z",
             filters={"recipient_hashes": [sha256_hex(ANN.encode()), ANN_HASH],
                      "medium": "email", "remote": True},
             messages=[mail], count=1),
    ]
    assert lines(home) == [line(document) for document in expected]
    assert stat.S_IMODE(os.stat(log_path(home)).st_mode) == 0o600
    assert_no_raw_address(home)
    assert payload  # the object the lines name is the one stored
    assert access_keys(target) == []  # no case: nothing written to the bucket


def test_case_writes_the_same_bytes_create_only_to_the_bucket(
        archived: tuple[Invoke, Path, ArchiveTarget], tmp_path: Path,
        who_and_when: FakeClock) -> None:
    cli, home, target = archived
    prefix = target.key_prefix
    fetched = cli("fetch", "sms-1", "--part", "body", "--case", "DISPUTE-88",
                  "--output", str(tmp_path / "body.txt"))
    assert fetched.exit_code == 0, fetched.output
    folder = f"{prefix}_sm/access/DISPUTE-88/"
    record_key = f"{folder}{STAMP}-{SUFFIX}.json"
    assert access_keys(target) == [record_key]
    assert read_object(target, record_key) == lines(home)[0]
    assert json.loads(lines(home)[0]) == base(
        "fetch", case_id="DISPUTE-88", filters={"message_id": "sms-1"},
        messages=[{"project_id": "12345", "message_id": "sms-1", "key": sms_key(prefix)}],
        count=1, part="body", output=str(tmp_path / "body.txt"), bytes=len(b"Code 123456"))

    # the same second and the same random suffix again: create-only, so a new key is needed
    # and none can be found; the record stays local and the command says so (exit 1)
    again = cli("show", "sms-1", "--case", "DISPUTE-88")
    assert again.exit_code == 1
    assert "could not be written" in again.stderr
    assert read_object(target, record_key) == lines(home)[0]  # never overwritten
    assert [r["command"] for r in records(home)] == ["fetch", "show"]

    who_and_when.advance(3600)
    out = tmp_path / "export"
    exported = cli("export", "--medium", "email", "--format", "eml", "--zip", "--case",
                   "DISPUTE-88", "--output", str(out))
    assert exported.exit_code == 0, exported.output
    stem = f"{folder}20270115T090000Z-{SUFFIX}"
    assert access_keys(target) == sorted([record_key, f"{stem}.json", f"{stem}.SHA256SUMS"])
    listing = (out / "DISPUTE-88.zip.sha256").read_bytes()
    assert read_object(target, f"{stem}.SHA256SUMS") == listing
    assert read_object(target, f"{stem}.json") == lines(home)[2]
    record = json.loads(lines(home)[2])
    assert record["checksums"] == {"file": "DISPUTE-88.zip.sha256",
                                   "sha256": sha256_hex(listing)}
    assert (record["case_id"], record["zip"], record["count"]) == ("DISPUTE-88", True, 1)
    if target.kind == "s3":
        head = target.s3_client.head_object(Bucket=target.bucket, Key=f"{stem}.json")
        assert head["Metadata"] == {"sm-payload-sha256": sha256_hex(lines(home)[2])}


def test_access_log_lists_filters_and_prints_json(
        archived: tuple[Invoke, Path, ArchiveTarget], who_and_when: FakeClock) -> None:
    cli, home, _ = archived
    assert cli("fetch", "mail-1").exit_code == 0
    who_and_when.advance(86400)
    assert cli("show", "mail-1", "--case", "C-1").exit_code == 0
    who_and_when.advance(1)  # the fixed random suffix: a new second gives a new key
    assert cli("find", "--recipient", ANN, "--case", "C-1").exit_code == 0

    everything = cli("--json", "access-log")
    assert everything.exit_code == 0, everything.output
    assert json.loads(everything.stdout) == records(home)
    case = json.loads(cli("access-log", "--json", "--case", "C-1").stdout)
    assert [(r["command"], r["case_id"]) for r in case] == [("show", "C-1"), ("find", "C-1")]
    assert case[1]["filters"] == {"recipient_hashes": [sha256_hex(ANN.encode()), ANN_HASH]}
    recent = json.loads(cli("--json", "access-log", "--since", "2027-01-16").stdout)
    assert [r["command"] for r in recent] == ["show", "find"]
    assert json.loads(cli("--json", "access-log", "--case", "NONE").stdout) == []

    table = cli("access-log")
    assert table.exit_code == 0, table.output
    assert "2027-01-15T08:00:00Z" in table.stdout and "C-1" in table.stdout
    assert "3 access(es)" in table.stderr
    assert cli("access-log", "--case", "../x").exit_code == 2
    assert cli("access-log", "--since", "yesterday").exit_code == 2
    assert_no_raw_address(home)


@pytest.mark.parametrize("target", ["file"], indirect=True)
def test_a_bad_log_line_is_skipped_with_a_warning(
        archived: tuple[Invoke, Path, ArchiveTarget]) -> None:
    cli, home, _ = archived
    assert cli("fetch", "mail-1").exit_code == 0
    with log_path(home).open("ab") as fh:
        fh.write(b'{"truncated by a crash\n')
    assert cli("fetch", "sms-1").exit_code == 0
    listed = cli("--json", "access-log")
    assert listed.exit_code == 0
    assert [r["messages"][0]["message_id"] for r in json.loads(listed.stdout)] == [
        "mail-1", "sms-1"]
    assert "line 2 is not a JSON object" in listed.stderr


def test_a_failed_fetch_is_logged_with_its_result(
        archived: tuple[Invoke, Path, ArchiveTarget], tmp_path: Path) -> None:
    cli, home, target = archived
    key = mail_key(target.key_prefix)
    stored = gunzip(read_object(target, key))
    forged = stored.replace(b"mail-1</p>", b"mail-X</p>")
    target.overwrite(key, gzip.compress(forged, mtime=0), payload_sha256=sha256_hex(stored))

    result = cli("fetch", "mail-1", "--case", "TAMPER-1", "-o", str(tmp_path / "m.json"))
    assert result.exit_code == 1
    assert "checksum mismatch" in result.stderr
    assert not (tmp_path / "m.json").exists()
    [record] = records(home)
    assert record["result"] == "failed"
    assert record["error"].startswith(f"checksum mismatch for {key}")
    assert record["messages"] == [{"project_id": "12345", "message_id": "mail-1",
                                   "key": key}]
    assert record["case_id"] == "TAMPER-1"
    # the failed access is in the case folder too
    [copy] = access_keys(target)
    assert read_object(target, copy) == lines(home)[0]

    exported = cli("--json", "export", "--recipient", ANN, "--output", str(tmp_path / "x"))
    assert exported.exit_code == 1
    last = records(home)[-1]
    assert (last["command"], last["result"], last["exported"], last["failed"]) == (
        "export", "failed", 0, 1)
    assert last["failures"][0]["message_id"] == "mail-1"
    assert_no_raw_address(home)


@pytest.mark.parametrize("target", ["file"], indirect=True)
def test_unknown_and_ambiguous_ids_are_logged(
        archived: tuple[Invoke, Path, ArchiveTarget]) -> None:
    cli, home, _ = archived
    assert cli("show", "nobody").exit_code == 1
    missing = cli("fetch", "nobody", "--project", "12345")
    assert missing.exit_code == 1
    assert [(r["command"], r["result"]) for r in records(home)] == [
        ("show", "not_found"), ("fetch", "not_found")]
    assert records(home)[0]["messages"] == [{"project_id": None, "message_id": "nobody",
                                            "key": None}]


@pytest.mark.parametrize("target", ["file"], indirect=True)
def test_an_open_log_file_is_made_owner_only(
        archived: tuple[Invoke, Path, ArchiveTarget]) -> None:
    cli, home, _ = archived
    log_path(home).write_bytes(b"")
    log_path(home).chmod(0o644)
    assert cli("fetch", "mail-1").exit_code == 0
    assert stat.S_IMODE(os.stat(log_path(home)).st_mode) == 0o600
    assert len(lines(home)) == 1
