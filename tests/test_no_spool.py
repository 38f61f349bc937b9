"""Read-only commands on an SM_HOME without a spool: `Error: no spool at PATH`, exit 1, nothing
created (SPEC 9.2: a typo in SM_HOME must not look like an empty archive)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app

READ_ONLY = [
    ["status"],
    ["status", "--check"],
    ["--json", "status"],
    ["find", "--recipient", "a@example.com"],
    ["show", "m-1"],
    ["fetch", "--project", "p1", "m-1"],
    ["audit"],
    ["export", "-o", "out", "--project", "p1"],
    ["access-log"],
    ["spool", "prune", "--older-than", "7d"],
    ["manifest", "backfill"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_read_only_command_without_a_spool_creates_nothing(tmp_path: Path, args: list[str],
                                                           exists: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    home = tmp_path / "typo-home"
    if exists:
        home.mkdir()
    monkeypatch.setenv("SM_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: no spool at {home / 'spool.db'}", result.output
    assert lines[1].startswith("Try: ")
    assert len(lines) == 2
    assert (list(home.iterdir()) == []) if exists else not home.exists()
    assert not (tmp_path / "out").exists()


def test_ingest_still_creates_the_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "new-home"
    monkeypatch.setenv("SM_HOME", str(home))
    result = CliRunner().invoke(app, ["ingest", "-"], input="")
    assert result.exit_code == 0, result.output
    assert (home / "spool.db").exists()
    assert CliRunner().invoke(app, ["status"]).exit_code == 0
