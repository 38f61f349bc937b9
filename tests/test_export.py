"""`sm export`: 300 mixed messages as eml, mbox and jsonl parse with Python's `email` and
`mailbox`, `sha256sum -c SHA256SUMS` passes, a second export (and zip) is byte-identical; a
tampered object is reported and left out; on a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import csv
import email
import gzip
import json
import mailbox
import subprocess
import zipfile
from email import policy
from pathlib import Path
from typing import Any

import pytest

from tests.support.investigation_support import (
    ArchiveTarget,
    archive,
    build_target,
    cli_for,
    gunzip,
    push,
    sha256_hex,
    sms,
    target_for,
)
from tests.support.investigation_support import (
    email as email_message,
)

LOADFILE_HEADER = ["message_id", "project_id", "medium", "message_type", "campaign_id",
                   "sent_at", "key", "payload_sha256", "file", "file_sha256", "holds",
                   "evidence_files"]


def mixed(count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for n in range(count):
        sent_at = f"2026-11-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
        if n % 5 < 3:
            messages.append(email_message(
                f"m-{n:04d}", to=f"user{n % 37}@example.com", sent_at=sent_at,
                campaign=None if n % 7 == 0 else 100 + n % 3,
                subject=f"Über {n} 😀", html=f"<p>From here\nFrom {n}</p>",
                text=f"From the shop\n>From {n}\n",
                headers={"List-Unsubscribe": f"<mailto:u{n}@shop.example>"}))
        elif n % 5 == 3:
            messages.append(sms(f"s-{n:04d}", user_id=f"u-{n % 11}", sent_at=sent_at,
                                body=f"Code {n}"))
        else:
            messages.append(push(f"p-{n:04d}", token=f"TOKEN{n % 13}", sent_at=sent_at))
    return messages


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def loadfile(folder: Path) -> list[dict[str, str]]:
    with (folder / "loadfile.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == LOADFILE_HEADER
        return list(reader)


def sha256sum_check(folder: Path, listing: str = "SHA256SUMS") -> None:
    checked = subprocess.run(["sha256sum", "-c", "--strict", listing], cwd=folder,
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_three_hundred_mixed_messages_in_every_format(tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    messages = mixed(300)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, messages)
    stored = {m["message_id"]: m for m in messages}

    first = cli("--json", "export", "--format", "eml", "--output", str(tmp_path / "eml-1"))
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["exported"] == 300
    second = cli("export", "--format", "eml", "--output", str(tmp_path / "eml-2"))
    assert second.exit_code == 0, second.output
    assert "Exported 300 message(s)" in second.stderr
    files = tree(tmp_path / "eml-1")
    assert files == tree(tmp_path / "eml-2")  # byte for byte
    sha256sum_check(tmp_path / "eml-1")
    rows = loadfile(tmp_path / "eml-1")
    assert len(rows) == 300
    assert [r["sent_at"] for r in rows] == sorted(r["sent_at"] for r in rows)
    for row in rows:
        data = files[row["file"]]
        assert sha256_hex(data) == row["file_sha256"]
        original = stored[row["message_id"]]
        if row["medium"] != "email":
            assert sha256_hex(data) == row["payload_sha256"]  # the exact payload
            assert json.loads(data)["message_id"] == row["message_id"]
            continue
        parsed = email.message_from_bytes(data, policy=policy.default)
        assert not parsed.defects
        assert parsed["X-SM-Payload-SHA256"] == row["payload_sha256"]
        assert parsed["Subject"] == original["content"]["subject"]
        assert parsed["To"] == original["recipient"]["email"]
        assert parsed["List-Unsubscribe"] == original["content"]["headers"]["List-Unsubscribe"]
        assert parsed.get_content_type() == "multipart/alternative"
        text = parsed.get_body(("plain",))
        html = parsed.get_body(("html",))
        assert text is not None and html is not None
        assert text.get_content().replace("\r\n", "\n") == original["content"]["text"]
        assert html.get_content().replace("\r\n", "\n") == original["content"]["html"] + "\n"
        assert row["campaign_id"] == ("" if original.get("campaign_id") is None
                                      else str(original["campaign_id"]))

    mbox_dir = tmp_path / "mbox"
    assert cli("export", "--format", "mbox", "--output", str(mbox_dir)).exit_code == 0
    sha256sum_check(mbox_dir)
    box = mailbox.mbox(mbox_dir / "messages.mbox", create=False)
    subjects = [m["Subject"] for m in box]
    emails = [r for r in loadfile(mbox_dir) if r["medium"] == "email"]
    assert len(subjects) == len(emails) == 180  # 60 % of the 300 are emails
    first_mail = email.message_from_bytes(box.get_bytes(0), policy=policy.default)
    assert first_mail["Message-ID"] == (f"<{emails[0]['message_id']}.12345"
                                        "@stored-messages.invalid>")
    assert box.get_message(0).get_payload()[0].get_payload(decode=True).decode(
        "utf-8") == stored[emails[0]["message_id"]]["content"]["text"]

    jsonl_dir = tmp_path / "jsonl"
    assert cli("export", "--format", "jsonl", "--output", str(jsonl_dir)).exit_code == 0
    sha256sum_check(jsonl_dir)
    lines = (jsonl_dir / "messages.jsonl").read_bytes().splitlines()
    assert [sha256_hex(line) for line in lines] == [
        r["payload_sha256"] for r in loadfile(jsonl_dir)]

    zips = []
    for n in (1, 2):
        out = tmp_path / f"zip-{n}"
        zipped = cli("export", "--format", "eml", "--zip", "--case", "CASE-7", "--output",
                     str(out))
        assert zipped.exit_code == 0, zipped.output
        assert sorted(tree(out)) == ["CASE-7.zip", "CASE-7.zip.sha256"]
        sha256sum_check(out, "CASE-7.zip.sha256")
        zips.append((out / "CASE-7.zip").read_bytes())
    assert zips[0] == zips[1]
    with zipfile.ZipFile(tmp_path / "zip-1" / "CASE-7.zip") as archive_zip:
        assert {i.filename: archive_zip.read(i) for i in archive_zip.infolist()} == files
        assert {i.date_time for i in archive_zip.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    return target_for(request, tmp_path)


def test_a_tampered_object_is_reported_and_left_out(target: ArchiveTarget,
                                                    tmp_path: Path) -> None:
    messages = [email_message("a-1", sent_at="2026-11-01T09:00:00Z"),
                sms("b-2", sent_at="2026-11-02T09:00:00Z"),
                email_message("c-3", sent_at="2026-11-03T09:00:00Z", campaign=None)]
    cli = cli_for(tmp_path / "home")
    archive(cli, target, messages)
    ann = sha256_hex(b"ann.lee@example.com")
    key_a = f"{target.key_prefix}email/12345/{ann}/111/a-1.json.gz"
    key_b = f"{target.key_prefix}sms/12345/{sha256_hex(b'u-9')}/unassociated/b-2.json.gz"
    key_c = f"{target.key_prefix}email/12345/{ann}/unassociated/c-3.json.gz"
    payload_b = gunzip(target.read(key_b))
    payload_c = gunzip(target.read(key_c))
    forged = gunzip(target.read(key_a)).replace(b"About a-1", b"About a-2")
    target.overwrite(key_a, gzip.compress(forged, mtime=0), payload_sha256=sha256_hex(forged))
    out = tmp_path / "case"
    result = cli("--json", "export", "--format", "eml", "--output", str(out))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["exported"], report["failed"]) == (2, 1)
    reason = (f"checksum mismatch for {key_a}: payload SHA-256 is {sha256_hex(forged)} but"
              " the local index recorded")
    assert reason in report["failures"][0]["reason"]
    assert f"Error: {reason}" in result.stderr
    assert ("Error: 1 message(s) failed verification and were not exported (listed in"
            " exceptions.csv)") in result.stderr
    files = tree(out)
    eml_c = files["messages/12345/email/c-3.eml"]
    assert sorted(files) == ["SHA256SUMS", "exceptions.csv", "loadfile.csv",
                             "messages/12345/email/c-3.eml", "messages/12345/sms/b-2.json"]
    assert files["messages/12345/sms/b-2.json"] == payload_b
    assert files["loadfile.csv"].decode() == (
        ",".join(LOADFILE_HEADER) + "\r\n"
        f"b-2,12345,sms,triggered,,2026-11-02T09:00:00Z,{key_b},{sha256_hex(payload_b)},"
        f"messages/12345/sms/b-2.json,{sha256_hex(payload_b)},,\r\n"
        f"c-3,12345,email,blast,,2026-11-03T09:00:00Z,{key_c},{sha256_hex(payload_c)},"
        f"messages/12345/email/c-3.eml,{sha256_hex(eml_c)},,\r\n")
    assert files["exceptions.csv"].decode().startswith(
        f"message_id,project_id,key,reason\r\na-1,12345,{key_a},checksum mismatch for")
    assert files["SHA256SUMS"].decode() == "".join(
        f"{sha256_hex(files[p])}  {p}\n" for p in sorted(files) if p != "SHA256SUMS")
    sha256sum_check(out)
    again = cli("export", "--format", "eml", "--output", str(out))
    assert again.exit_code == 1
    assert "exists and is not an empty folder; nothing was written" in again.stderr


def test_eml_headers_are_sm_s_first_and_a_sender_s_forged_ones_are_kept_renamed(
        tmp_path: Path) -> None:
    target = build_target("file", tmp_path)
    forged = "0000forged"
    headers = {"X-SM-Payload-SHA256": forged, "x-sm-key": "elsewhere/forged.json.gz",
               "Content-Type": "text/plain; charset=iso-8859-1",
               "Content-Transfer-Encoding": "8bit", "List-Id": "<news.shop.example>"}
    message = email_message("forger-1", headers=headers)
    cli = cli_for(tmp_path / "home")
    archive(cli, target, [message])
    out = tmp_path / "case"
    assert cli("export", "--format", "eml", "--output", str(out)).exit_code == 0
    raw = (out / "messages/12345/email/forger-1.eml").read_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    [row] = loadfile(out)
    assert parsed["X-SM-Payload-SHA256"] == row["payload_sha256"] != forged
    assert parsed.get_all("X-SM-Payload-SHA256") == [row["payload_sha256"]]
    assert parsed["X-SM-Key"] == row["key"]
    assert parsed["X-Original-SM-Payload-SHA256"] == forged
    assert parsed["X-Original-SM-key"] == "elsewhere/forged.json.gz"
    assert [name for name in parsed.keys() if name.lower().startswith("x-sm-")] == [
        "X-SM-Project-ID", "X-SM-Key", "X-SM-Payload-SHA256", "X-SM-Note"]
    assert parsed.keys()[:4] == ["X-SM-Project-ID", "X-SM-Key", "X-SM-Payload-SHA256",
                                 "X-SM-Note"]
    # the archived MIME headers are kept, and the rebuilt body still parses as sm wrote it
    assert parsed["X-Original-Content-Type"] == "text/plain; charset=iso-8859-1"
    assert parsed["X-Original-Content-Transfer-Encoding"] == "8bit"
    assert parsed["List-Id"] == "<news.shop.example>"
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.defects == []
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().rstrip() == "forger-1"
