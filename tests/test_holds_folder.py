"""Legal holds on a folder destination (SPEC 9.4): a held file is read-only for everyone
(`chmod a-w`), its owner's write bit comes back on the last release only; a later match is
held at upload; a hold undone behind the ledger's back is `hold_missing`; hostile case ids
and a planted symlink are refused."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.destinations.file import FileDestination, SymlinkRefused
from tests.support.fixtures.core import connected_folder, jsonl, mixed_messages

PROJECT = "12345"
Invoke = Callable[..., Any]


def mode(folder: Path, key: str) -> int:
    return stat.S_IMODE((folder / key).stat().st_mode)


@pytest.fixture
def archive(cli: Invoke, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Four messages in a folder: two of campaign spring, two of autumn; (folder, id -> key)."""
    folder = tmp_path / "archive"
    assert cli("connect", f"file://{folder}/", "--project", PROJECT).exit_code == 0
    made = mixed_messages(4, lambda i: f"f-{i}")
    for index, message in enumerate(made):
        message["campaign_id"] = "spring" if index < 2 else "autumn"
    assert cli("ingest", input=jsonl(*made)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    keys = {f["message_id"]: f["key"] for f in json.loads(cli("--json", "find").stdout)}
    return folder, keys


def test_held_files_are_read_only_until_the_last_case_releases_them(
        cli: Invoke, archive: tuple[Path, dict[str, str]]) -> None:
    folder, keys = archive
    assert {mode(folder, k) for k in keys.values()} == {0o600}
    assert cli("hold", "create", "spring", "--project", PROJECT, "--campaign", "spring"
               ).exit_code == 0
    assert cli("hold", "create", "one", "--project", PROJECT, "--message-id", "f-0"
               ).exit_code == 0
    assert {m: mode(folder, k) for m, k in keys.items()} == {
        "f-0": 0o400, "f-1": 0o400, "f-2": 0o600, "f-3": 0o600}
    if os.geteuid() != 0:  # root writes through any mode
        with pytest.raises(PermissionError):
            (folder / keys["f-1"]).open("ab")
    assert cli("hold", "release", "spring").exit_code == 0
    assert {m: mode(folder, k) for m, k in keys.items()} == {
        "f-0": 0o400, "f-1": 0o600, "f-2": 0o600, "f-3": 0o600}
    assert cli("hold", "release", "one").exit_code == 0
    assert {mode(folder, k) for k in keys.values()} == {0o600}
    audit = cli("--json", "audit")
    assert audit.exit_code == 0, audit.output
    project = json.loads(audit.stdout)["projects"][0]
    assert (project["holds"], project["releases"]) == (3, 3)


def test_a_later_match_is_held_at_upload_and_a_lifted_mode_is_hold_missing(
        cli: Invoke, archive: tuple[Path, dict[str, str]],
        make_message: Callable[..., dict[str, Any]]) -> None:
    folder, keys = archive
    assert cli("hold", "create", "autumn", "--project", PROJECT, "--campaign", "autumn",
               "--note", "dispute 7").exit_code == 0
    assert cli("ingest", input=jsonl(make_message(message_id="f-late", campaign_id="autumn"))
               ).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    late = json.loads(cli("--json", "find", "--message-id", "f-late").stdout)[0]["key"]
    assert mode(folder, late) == 0o400
    status = json.loads(cli("--json", "status").stdout)
    assert status["holds"] == {"open_cases": 1, "pending": 0, "failing": 0}
    os.chmod(folder / keys["f-3"], 0o600)  # undone behind the ledger's back
    audit = cli("--json", "audit")
    assert audit.exit_code == 1
    findings = json.loads(audit.stdout)["projects"][0]["findings"]
    assert [(f["type"], f["message_id"]) for f in findings] == [("hold_missing", "f-3")]
    exported = cli("export", "--project", PROJECT, "--format", "jsonl", "--output",
                   str(folder.parent / "out"))
    assert exported.exit_code == 0, exported.output
    rows = (folder.parent / "out" / "loadfile.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "holds" in header
    at = header.index("holds")
    held = {row.split(",")[0]: row.split(",")[at] for row in rows[1:]}
    assert held == {"f-0": "", "f-1": "", "f-2": "autumn", "f-3": "autumn",
                    "f-late": "autumn"}


@pytest.mark.parametrize("case_id", ["", "   ", "a\nb", "x" * 201])
def test_hostile_case_ids_are_usage_errors(cli: Invoke, archive: tuple[Path, dict[str, str]],
                                           case_id: str) -> None:
    refused = cli("hold", "create", case_id, "--project", PROJECT, "--campaign", "spring")
    assert refused.exit_code == 2
    assert json.loads(cli("--json", "hold", "list", "--all").stdout) == []


def test_a_symlink_planted_at_a_held_key_is_never_followed(tmp_path: Path) -> None:
    destination = connected_folder(f"file://{tmp_path / 'archive'}/")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the archive's")
    os.chmod(outside, 0o644)
    (tmp_path / "archive" / "email").mkdir()
    (tmp_path / "archive" / "email" / "m.json.gz").symlink_to(outside)
    with pytest.raises(SymlinkRefused):
        destination.set_legal_hold("email/m.json.gz", None, True, "c1")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert isinstance(destination, FileDestination)


def test_a_hold_that_keeps_failing_is_a_status_problem(
        cli: Invoke, archive: tuple[Path, dict[str, str]]) -> None:
    folder, keys = archive
    (folder / keys["f-0"]).unlink()  # gone from the folder, still in the index
    for _attempt in range(3):
        created = cli("hold", "create", "spring", "--project", PROJECT, "--campaign", "spring")
        assert created.exit_code == 1
        assert "not done yet" in created.output
    assert mode(folder, keys["f-1"]) == 0o400  # the others are held all the same
    shown = json.loads(cli("--json", "hold", "show", "spring").stdout)
    assert (shown["objects"], shown["pending"]) == (2, 1)
    check = cli("--json", "status", "--check")
    kinds = [p["kind"] for p in json.loads(check.stdout)["problems"]]
    assert "hold_failing" in kinds
