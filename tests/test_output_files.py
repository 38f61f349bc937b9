"""What `sm audit --report` and `sm export` leave on disk is owner-only (files 0600, the
folders sm makes 0700) whatever the umask; `--output -` is standard output for one stream
(`export --format jsonl|mbox`) and a usage error (exit 2) elsewhere (SPEC 9.2)."""

from __future__ import annotations

import email
import json
import mailbox
import os
import stat
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from tests.support.investigation_support import archive, build_target, cli_for
from tests.support.investigation_support import email as email_message
from tests.support.investigation_support import sms as sms_message

MESSAGES = [email_message("e-1", sent_at="2026-11-01T09:00:00Z"),
            email_message("e-2", sent_at="2026-11-02T09:00:00Z", text="From the shop\n"),
            sms_message("s-3", sent_at="2026-11-03T09:00:00Z")]


@pytest.fixture
def cli(tmp_path: Path):
    invoke = cli_for(tmp_path / "home")
    archive(invoke, build_target("file", tmp_path), MESSAGES)
    return invoke


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: files 0644 unless sm says otherwise
    yield
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def test_an_audit_report_in_an_existing_folder_is_owner_only(cli, tmp_path: Path,
                                                             open_umask) -> None:
    report = tmp_path / "evidence"
    report.mkdir(mode=0o755)
    (report / "listing.csv").write_text("left from before\n")  # 0644 under this umask
    result = cli("audit", "--report", str(report))
    assert result.exit_code == 0, result.output
    found = modes(report)
    assert {p for p, m in found.items() if (report / p).is_dir()} == {
        "checkpoints", "checkpoints/12345", "manifests", "manifests/12345"}
    assert all(m == 0o700 for p, m in found.items() if (report / p).is_dir())
    assert {m for p, m in found.items() if (report / p).is_file() and p != "verify.sh"} == {
        0o600}
    assert found["verify.sh"] == 0o700
    assert (report / "listing.csv").read_text().startswith("key,size,sha256\n")


def test_an_export_is_owner_only(cli, tmp_path: Path, open_umask) -> None:
    out = tmp_path / "case" / "export"
    result = cli("export", "--format", "eml", "--output", str(out))
    assert result.exit_code == 0, result.output
    found = modes(tmp_path / "case")
    assert found["export"] == 0o700 and found["export/messages/12345/email"] == 0o700
    assert stat.S_IMODE((tmp_path / "case").stat().st_mode) == 0o700
    assert {m for p, m in found.items() if (tmp_path / "case" / p).is_file()} == {0o600}


def test_jsonl_to_standard_output_is_the_exact_payloads(cli, tmp_path: Path) -> None:
    result = cli("export", "--format", "jsonl", "--output", "-")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout_bytes.splitlines()
    assert [json.loads(line)["message_id"] for line in lines] == ["e-1", "e-2", "s-3"]
    assert "Exported 3 message(s) to standard output (jsonl)" in result.stderr
    assert not (Path.cwd() / "-").exists()
    assert not (tmp_path / "-").exists()


def test_mbox_to_standard_output_parses_with_mailbox(cli, tmp_path: Path) -> None:
    result = cli("export", "--format", "mbox", "--medium", "email", "--output", "-")
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "out.mbox"
    saved.write_bytes(result.stdout_bytes)
    box = mailbox.mbox(saved, factory=lambda f: email.message_from_binary_file(
        f, policy=policy.default), create=False)
    assert [m["Message-ID"] for m in box] == [
        "<e-1.12345@stored-messages.invalid>", "<e-2.12345@stored-messages.invalid>"]
    # an SMS cannot go in an mbox stream: said in one line, nothing written
    mixed = cli("export", "--format", "mbox", "--output", "-")
    assert mixed.exit_code == 1
    assert mixed.stdout_bytes == b""
    assert ("Error: 1 matching message(s) are not emails and cannot go in an mbox stream;"
            " nothing was written") in mixed.stderr


@pytest.mark.parametrize("args", [
    ("export", "--format", "eml", "--output", "-"),
    ("export", "--format", "jsonl", "--zip", "--output", "-"),
    ("--json", "export", "--format", "jsonl", "--output", "-"),
    ("audit", "--report", "-"),
])
def test_standard_output_where_no_stream_makes_sense_is_a_usage_error(cli, args) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stdout_bytes == b""
    assert "Traceback" not in result.stderr
    assert not Path("-").exists()
