"""Senders in other languages record with SQL: a line in `inbox`, in their own transaction.

The contract (docs/fleet.md): `INSERT INTO inbox (line, source) VALUES (…)`, where the line is
what `sm ingest` reads. `sm run` records it exactly as `sm ingest` would (same validation, same
bytes) and deletes it; a rolled-back sender transaction leaves nothing.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.message import parse_message
from stored_messages_cli.spool import Spool
from tests.support.spool_db import mark, raw_connection, rows


def test_lines_written_with_sql_are_recorded_and_archived_like_ingested_ones(
        cli, sm_home: Path, tmp_path: Path, make_message) -> None:
    archive = tmp_path / "archive"
    archive.mkdir(mode=0o700)
    save_projects(sm_home / "config.toml", {"12345": ProjectDestination(
        url=f"file://{archive}/")})
    with Spool.open(home=sm_home):
        pass  # creates and migrates the spool (read-only commands such as status do not)
    assert cli("status").exit_code == 0
    confirmed = make_message(message_id="sql-1", recipient={"email": "a@example.com"})
    later = make_message(message_id="sql-2", recipient={"email": "b@example.com"})
    sent_at = later.pop("sent_at")
    later.pop("provider")
    event = {"event": "sent", "project_id": 12345, "message_id": "sql-2", "sent_at": sent_at}
    lines = [json.dumps(confirmed, ensure_ascii=False), json.dumps(later), json.dumps(event),
             '{"message_id": "x", "message_id": "y"}']
    sender = raw_connection(sm_home)  # the sender's own connection and transaction
    p = mark(sender)
    sender.execute("BEGIN")
    for line in lines:
        sender.execute(f"INSERT INTO inbox (line, source) VALUES ({p}, {p})", (line, "crm"))
    sender.execute("COMMIT")
    sender.execute("BEGIN")
    sender.execute(f"INSERT INTO inbox (line, source) VALUES ({p}, {p})",
                   (json.dumps(make_message(message_id="rolled-back")), "crm"))
    sender.execute("ROLLBACK")
    sender.close()

    result = cli("--json", "run", "--once")
    assert result.exit_code == 0, result.output
    status = json.loads(cli("--json", "status").stdout)
    assert status["counts"]["stored"] == 2
    assert status["rejected_lines"] == 1
    assert [tuple(r) for r in rows(sm_home, "SELECT COUNT(*) FROM inbox")] == [(0,)]
    rejected = rows(sm_home, "SELECT source, reason FROM rejected")
    assert [r[0] for r in rejected] == ["inbox:crm"]
    assert "duplicate key" in rejected[0][1]
    assert not rows(sm_home, "SELECT 1 FROM messages WHERE message_id = 'rolled-back'")
    later["sent_at"] = sent_at
    for message in (confirmed, later):
        parsed = parse_message(message)
        assert gzip.decompress((archive / parsed.key).read_bytes()) == parsed.payload()
