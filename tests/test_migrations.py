"""Numbered schema migrations: a spool made by release 0.1.0 upgrades to the fresh layout.

The fixture (tests/support/legacy/spool_v0_1_0.sql) was dumped from a spool built by the
0.1.0 code, with messages in every state; see build_legacy_spool.py beside it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from stored_messages_cli.spool import LATEST_VERSION, Spool, SpoolVersionError
from tests.support.fixtures.core import jsonl

LEGACY = Path(__file__).parent / "support" / "legacy" / "spool_v0_1_0.sql"


def legacy_spool(path: Path) -> Path:
    """Restore the 0.1.0 spool at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY.read_text())
    conn.close()
    return path


def read(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _sql(text: str | None) -> str:
    return " ".join((text or "").replace("IF NOT EXISTS ", "").split())


def schema_of(path: Path) -> dict[str, Any]:
    """Every table's columns and SQL, every index, view and trigger, read with sqlite-utils."""
    db = sqlite_utils.Database(path)
    try:
        return {
            "tables": {table.name: (table.columns_dict, _sql(table.schema))
                       for table in db.tables},
            "indexes": {(table.name, index.name): (index.columns, index.unique)
                        for table in db.tables for index in table.indexes},
            "views": {view.name: _sql(view.schema) for view in db.views},
            "triggers": {trigger.name: _sql(trigger.sql) for trigger in db.triggers},
        }
    finally:
        db.close()


def test_the_fixture_is_a_legacy_spool(tmp_path: Path) -> None:
    path = legacy_spool(tmp_path / "old.db")
    version = read(path, "PRAGMA user_version")[0][0]
    assert version > 1000  # 0.1.0 stored a bytecode fingerprint there
    assert dict(read(path, "SELECT state, COUNT(*) FROM messages GROUP BY state")) == {
        "discarded": 3, "expired": 1, "failed": 1, "queued": 1, "retry_wait": 1, "stored": 1}


def test_upgraded_schema_equals_a_fresh_one(tmp_path: Path) -> None:
    upgraded = legacy_spool(tmp_path / "old" / "spool.db")
    Spool(upgraded).close()
    Spool(tmp_path / "new" / "spool.db").close()
    fresh = schema_of(tmp_path / "new" / "spool.db")
    assert schema_of(upgraded) == fresh
    assert {"messages", "message_bodies", "archive_index"} <= set(fresh["tables"]) | set(
        fresh["views"])
    old_conn, new_conn = sqlite3.connect(upgraded), sqlite3.connect(tmp_path / "new/spool.db")
    try:
        assert old_conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert new_conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        old_conn.close()
        new_conn.close()


def test_upgrade_turns_final_reason_prose_into_codes(tmp_path: Path) -> None:
    path = legacy_spool(tmp_path / "spool.db")
    Spool(path).close()
    rows = {r[0]: r[1:] for r in read(
        path, "SELECT message_id, state, final_reason, last_error FROM messages")}
    assert rows["expired-1"] == ("expired", "expired_unreachable", "ConnectionRefused")
    assert rows["failed-1"] == (
        "failed", "conflict", "conflict: file:///archive/x already exists with other content")
    assert rows["bounced-1"] == ("discarded", "send_failed", "hard bounce")
    assert rows["late-1"] == ("discarded", "never_confirmed", None)
    assert rows["stored-1"] == ("stored", None, None)
    assert rows["retry-1"] == ("retry_wait", None, "SlowDown / HTTP 503")


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    path = legacy_spool(tmp_path / "spool.db")
    Spool(path).close()
    before = read(path, "SELECT * FROM messages ORDER BY id")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1961366724")  # 0.1.0 reopened it and stamped it again
    conn.commit()
    conn.close()
    Spool(path).close()
    assert read(path, "SELECT * FROM messages ORDER BY id") == before
    assert read(path, "PRAGMA user_version")[0][0] == LATEST_VERSION


def test_a_spool_from_a_newer_sm_is_refused_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SpoolVersionError, match="newer|knows up to"):
        Spool(path)
    assert read(path, "PRAGMA user_version")[0][0] == LATEST_VERSION + 1


def test_every_command_works_on_an_upgraded_spool(cli, sm_home: Path, tmp_path: Path,
                                                  make_message) -> None:
    legacy_spool(sm_home / "spool.db")
    archive = tmp_path / "archive"
    connected = cli("connect", f"file://{archive}/", "--project", "12345")
    assert connected.exit_code == 0, connected.output

    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"] == {"awaiting_confirmation": 0, "queued": 1, "in_flight": 0,
                                "retry_wait": 1, "stored": 1, "expired": 1, "failed": 1,
                                "discarded": 3}
    assert status["final_reasons"] == {"expired": {"expired_unreachable": 1},
                                       "failed": {"conflict": 1}}

    fresh = make_message(message_id="after-upgrade")
    assert cli("ingest", "-", input=jsonl(fresh)).exit_code == 0
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    replayed = cli("--json", "replay", "--expired", "--failed")
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["stored"] == 2  # expired-1 and failed-1

    counts = json.loads(cli("--json", "status").stdout)["counts"]
    assert counts["stored"] == 6 and counts["queued"] == counts["retry_wait"] == 0
    found = cli("--json", "find", "--message-id", "after-upgrade")
    assert [m["message_id"] for m in json.loads(found.stdout)] == ["after-upgrade"]
    fetched = cli("fetch", "after-upgrade", "--part", "json")
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.stdout)["message_id"] == "after-upgrade"
    rebuilt = cli("index", "rebuild", "--project", "12345")
    assert rebuilt.exit_code == 0, rebuilt.output


def test_every_kept_body_moves_out_of_its_row_intact(tmp_path: Path) -> None:
    path = legacy_spool(tmp_path / "spool.db")
    before = read(path, "SELECT id, payload FROM messages WHERE payload IS NOT NULL ORDER BY id")
    assert len(before) >= 3  # queued, waiting, expired and failed messages keep theirs
    Spool(path).close()
    assert read(path, "SELECT id, payload FROM message_bodies ORDER BY id") == before
    assert "payload" not in {r[1] for r in read(path, "PRAGMA table_info(messages)")}
    # a replay of the expired message still finds its body, and it uploads the same bytes
    spool = Spool(path)
    try:
        (expired,) = read(path, "SELECT message_id FROM messages WHERE state = 'expired'")
        assert spool.queue.make_due(message_id=expired[0], include_expired=True)
    finally:
        spool.close()


# ----------------------------------------------------------------------------- PostgreSQL


def test_every_step_has_a_body_for_each_backend() -> None:
    from stored_messages_cli.spool.migrations import LATEST_VERSION, STEPS

    assert len(STEPS) == LATEST_VERSION
    assert len({step.name for step in STEPS}) == len(STEPS)
    for number, step in enumerate(STEPS, 1):
        assert callable(step.sqlite), f"step {number} ({step.name}) lacks its SQLite body"
        assert callable(step.postgres), f"step {number} ({step.name}) lacks its PostgreSQL body"


def test_postgresql_migrates_once_and_records_each_step(postgres_url: str) -> None:
    from stored_messages_cli.spool import Spool, postgres
    from stored_messages_cli.spool.migrations import STEPS, postgres_steps
    from stored_messages_cli.spool.postgres import schema

    with Spool(postgres_url) as first:
        assert first.record_many([]) == []
    conn = postgres.PgSession(postgres_url)
    try:
        assert schema.migrate(conn, postgres_steps()) == 0  # already at the latest step
        steps = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in steps.fetchall()] == [
            (number, step.name) for number, step in enumerate(STEPS, 1)]
    finally:
        conn.close()


def test_a_postgresql_spool_from_a_newer_sm_is_refused(postgres_url: str) -> None:
    from stored_messages_cli.spool import LATEST_VERSION, Spool, SpoolVersionError, postgres

    Spool(postgres_url).close()
    conn = postgres.PgSession(postgres_url)
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                 (LATEST_VERSION + 1, "from the future"))
    conn.close()
    with pytest.raises(SpoolVersionError):
        Spool(postgres_url)
