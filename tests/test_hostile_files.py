"""Broken disks and hostile files give one-line errors and lose nothing: existing folders keep
their mode, `sm fetch --output` never follows a symlink nor overwrites without --force, the
folder destination never writes through a symlink, lists dotfiles and cleans its stale temp
files, and text from users is printed literally (Rich markup is neither run nor eaten)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.config import ensure_private_dir
from stored_messages_cli.destinations.file import FileDestination, SymlinkRefused
from tests.support.fixtures.core import connected_folder, jsonl


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def one_error_line(result: Any) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --------------------------------------------------------------------------- folder modes


def test_an_existing_home_keeps_its_mode(cli, tmp_path: Path, monkeypatch, make_message,
                                         caplog) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    monkeypatch.setenv("SM_HOME", str(shared))
    with caplog.at_level(logging.WARNING, logger="sm"):
        result = cli("--home", str(shared), "ingest", "-", input=jsonl(make_message()))
    assert result.exit_code == 0, result.output
    assert mode(shared) == 0o1777  # never chmod-ed
    assert mode(shared / "spool.db") == 0o600
    assert f"{shared} is open to other users" in result.stderr + caplog.text


def test_new_folders_are_created_owner_only(tmp_path: Path) -> None:
    os.umask(0o022)
    target = tmp_path / "a" / "b" / "home"
    ensure_private_dir(target)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3
    before = mode(tmp_path)
    ensure_private_dir(tmp_path)
    assert mode(tmp_path) == before


# --------------------------------------------------------------------------- fetch --output


@pytest.fixture
def stored(cli, tmp_path: Path, make_message) -> Any:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    message = make_message(medium="sms")
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    return message


def test_fetch_output_refuses_an_existing_file_without_force(cli, stored, tmp_path) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"precious")
    result = cli("fetch", stored["message_id"], "--output", str(target))
    assert result.exit_code == 1
    assert one_error_line(result) == f"Error: {target} already exists; it was not overwritten"
    assert f"Try: sm fetch {stored['message_id']} --output {target} --force" in result.stderr
    assert target.read_bytes() == b"precious"


def test_fetch_output_never_follows_a_symlink(cli, stored, tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "would-be-created.txt")
    for path in (link, dangling):
        result = cli("fetch", stored["message_id"], "--part", "body", "--output", str(path))
        assert result.exit_code == 1
        assert "already exists; it was not overwritten" in one_error_line(result)
    assert victim.read_bytes() == b"do not touch"
    assert not (tmp_path / "would-be-created.txt").exists()
    forced = cli("fetch", stored["message_id"], "--part", "body", "--output", str(link),
                 "--force")
    assert forced.exit_code == 0, forced.output
    assert victim.read_bytes() == b"do not touch"  # the link was replaced, not followed
    assert not link.is_symlink()
    assert link.read_bytes() == stored["content"]["body"].encode()
    assert mode(link) == 0o600


def test_fetch_output_is_0600_whatever_the_umask_or_the_old_files_mode(cli, stored,
                                                                       tmp_path) -> None:
    target = tmp_path / "shared.txt"
    target.write_bytes(b"an older, world-readable file")
    os.chmod(target, 0o644)
    old = os.umask(0)
    try:
        result = cli("fetch", stored["message_id"], "--part", "body", "-o", str(target),
                     "--force")
        fresh = tmp_path / "new.txt"
        made = cli("fetch", stored["message_id"], "--part", "body", "-o", str(fresh))
    finally:
        os.umask(old)
    assert (result.exit_code, made.exit_code) == (0, 0), result.output + made.output
    assert target.read_bytes() == stored["content"]["body"].encode()
    assert (mode(target), mode(fresh)) == (0o600, 0o600)
    assert [p.name for p in tmp_path.iterdir() if "sm-tmp" in p.name] == []


def test_fetch_output_dash_is_stdout(cli, stored, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("fetch", stored["message_id"], "--part", "body", "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == stored["content"]["body"].encode()
    assert not (tmp_path / "-").exists()


# --------------------------------------------------------------------------- folder destination


def body_of(document: dict[str, Any]) -> tuple[bytes, str]:
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(payload, mtime=0), hashlib.sha256(payload).hexdigest()


def test_the_folder_destination_never_writes_through_a_symlinked_folder(tmp_path) -> None:
    root = tmp_path / "archive"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "email").symlink_to(outside)
    destination = FileDestination(f"file://{root}/")
    body, sha = body_of({"message_id": "m"})
    with pytest.raises(SymlinkRefused, match="is a symlink inside the archive folder"):
        destination.put("email/1/abc/unassociated/m.json.gz", body, sha)
    assert list(outside.rglob("*")) == []  # nothing landed outside
    with pytest.raises(SymlinkRefused):
        destination.get("email/1/abc/unassociated/m.json.gz")
    assert list(destination.list("")) == []


def test_the_folder_destination_never_reads_a_symlinked_file(tmp_path) -> None:
    root = tmp_path / "archive"
    (root / "sms" / "1" / "abc" / "unassociated").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not an archive object")
    (root / "sms/1/abc/unassociated/x.json.gz").symlink_to(secret)
    destination = FileDestination(f"file://{root}/")
    with pytest.raises(SymlinkRefused):
        destination.get("sms/1/abc/unassociated/x.json.gz")
    body, sha = body_of({"message_id": "x"})
    with pytest.raises(SymlinkRefused):
        destination.put("sms/1/abc/unassociated/x.json.gz", body, sha)
    assert secret.read_bytes() == b"not an archive object"


def test_the_folder_destination_lists_names_starting_with_a_dot(tmp_path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    destination = FileDestination(f"file://{root}/")
    body, sha = body_of({"message_id": ".hidden"})
    keys = ["email/1/abc/unassociated/.hidden.json.gz", "email/1/abc/.camp/x.json.gz",
            "email/1/abc/unassociated/visible.json.gz"]
    for key in keys:
        assert destination.put(key, body, sha).created is True
    assert sorted(info.key for info in destination.list("")) == sorted(keys)
    assert not any(".sm-tmp" in info.key for info in destination.list(""))


def test_the_folder_destination_removes_its_stale_temp_files_at_start(tmp_path) -> None:
    root = tmp_path / "archive"
    connected_folder(f"file://{root}/").put("push/1/a/b/m.json.gz", *body_of({"m": 1}))
    temp = root / ".sm-tmp"
    stale = temp / "m.json.gz.0123456789abcdef0123456789abcdef.tmp"
    fresh = temp / "n.json.gz.fedcba9876543210fedcba9876543210.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    FileDestination(f"file://{root}/")
    assert not stale.exists()
    assert fresh.exists()  # may belong to a write in progress elsewhere


# --------------------------------------------------------------------------- literal text


@pytest.mark.parametrize("name", ["[/x]", "[bold]y[/bold]", "[link=file:///etc]z"])
def test_markup_in_a_file_name_is_printed_literally(cli, name: str) -> None:
    result = cli("ingest", name)
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: {name} does not exist or is not a file"


def test_markup_in_a_destination_path_is_printed_literally(cli, sm_home, tmp_path) -> None:
    folder = tmp_path / "[red]archive[/red]"
    result = cli("connect", f"file://{folder}/", "--project", "12345")
    assert result.exit_code == 0, result.output
    assert f"now archives email, sms, push to file://{folder}/" in result.stderr
    assert f"Checks for file://{folder}/" in result.stdout


def test_project_prefixes_survive_in_the_verify_table(cli, sm_home, tmp_path) -> None:
    for project in ("111", "222"):
        archive = tmp_path / f"archive-{project}"
        assert cli("connect", f"file://{archive}/", "--project", project).exit_code == 0
        os.chmod(archive, 0o700)
    result = cli("verify")
    assert "[project 111] " in result.stdout and "[project 222] " in result.stdout
