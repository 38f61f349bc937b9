"""A folder destination whose root is moved away after `sm connect` is `unreachable`: sm
never re-creates a connected root (SPEC 9.2). Put back, the held messages are stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.fixtures.core import jsonl


def test_a_moved_root_is_unreachable_and_never_recreated(cli, tmp_path: Path,
                                                         make_message) -> None:
    root = tmp_path / "archive"
    assert cli("connect", f"file://{root}/", "--project", "12345").exit_code == 0
    assert cli("ingest", "-", input=jsonl(make_message())).exit_code == 0
    moved = tmp_path / "moved-away"
    root.rename(moved)

    ran = cli("run", "--once")
    assert ran.exit_code == 1  # the pass ended unreachable (SPEC 8)
    assert "Traceback" not in ran.stderr
    assert not root.exists()  # nothing was created where the archive was
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 0
    assert status["counts"]["retry_wait"] == 1
    [destination] = status["destinations"]
    assert destination["health"] == "unreachable"
    assert f"the archive folder {root} is missing" in destination["last_error"]
    assert [p for p in moved.rglob("*") if p.is_file()] == []  # nothing stored anywhere

    verify = cli("verify", "--project", "12345")
    assert verify.exit_code == 1
    assert f"the archive folder {root} is missing" in verify.stderr
    assert not root.exists()

    moved.rename(root)
    replayed = cli("replay")
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(cli("--json", "status").stdout)["counts"]["stored"] == 1
    stored = [p for p in root.rglob("*.json.gz") if ".sm-tmp" not in p.parts]
    assert len(stored) == 1
