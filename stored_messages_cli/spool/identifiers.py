"""Every recipient identifier of an indexed message, and how complete the index is per project.

Migration step (SPEC 8, "Investigations"):

- `messages.recipient_hashes`: JSON object of the hash of every identifier the message's
  recipient holds (`{"email": …, "user_id": …, "phone_number": …, "device_token": …}`),
  computed at ingest (`model.identifier_hashes`);
- `archive_recipients`: one row per (hash, message) for every indexed message, so
  `sm find --recipient` matches any identifier through an index (step 7, `archive.py`, moves
  these rows into `archive_recipient_hashes`);
- `index_coverage`: per project, whether the local index is `complete` (filled by `sm run`
  from the project's first message, or by a full `sm index rebuild`) or `partial` (filled by
  remote finds and fetches).

Safe to run twice.
"""

from __future__ import annotations

import json
import sqlite3

from ..message import identifier_hashes, identifier_hashes_json

COMPLETE = "complete"
PARTIAL = "partial"

_TABLES = """
CREATE TABLE IF NOT EXISTS "archive_recipients" (
   "recipient_hash" TEXT NOT NULL,
   "project_id" TEXT NOT NULL,
   "message_id" TEXT NOT NULL,
   PRIMARY KEY ("recipient_hash", "project_id", "message_id")
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "idx_archive_recipients_project_id_message_id"
    ON "archive_recipients" ("project_id", "message_id");
CREATE TABLE IF NOT EXISTS "index_coverage" (
   "project_id" TEXT PRIMARY KEY,
   "coverage" TEXT NOT NULL,
   "source" TEXT NOT NULL,
   "since" REAL NOT NULL,
   "updated_at" REAL NOT NULL
)
"""

# What `_settle_stored` runs after indexing a stored message: the project's index is complete
# when this spool stored its first message (a project first seen through remote finds stays
# partial).
COVERAGE_ON_SETTLE_SQL = (
    'INSERT OR IGNORE INTO "index_coverage" ("project_id", "coverage", "source", "since",'
    ' "updated_at") SELECT "project_id", \'complete\', \'run\', ?2, ?2 FROM "messages"'
    ' WHERE "id" = ?1'
)


def hashes_json(recipient: object) -> str:
    """`messages.recipient_hashes` for a recipient object (compact JSON)."""
    return identifier_hashes_json(identifier_hashes(recipient))


def migrate_identifiers(conn: sqlite3.Connection) -> None:
    """Migration step: identifier hashes, the identifier index and per-project coverage.

    Existing index rows keep their key's hash (the only one known without the payload);
    messages still holding their body get every identifier. A project whose index rows all
    came from this spool's own archiving is `complete`; one with rows learnt from the bucket
    is `partial` (whether by a rebuild or a remote find is not recorded before this step: a
    rebuild makes it complete again).
    """
    columns = {row[1] for row in conn.execute('PRAGMA table_info("messages")')}
    if "recipient_hashes" not in columns:
        conn.execute('ALTER TABLE "messages" ADD COLUMN "recipient_hashes" TEXT')
    for statement in _TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    # Bodies left `messages` in step 8 (a re-run of this step then finds none here).
    rows = conn.execute(
        'SELECT "id", "payload" FROM "messages" WHERE "payload" IS NOT NULL'
        ' AND "recipient_hashes" IS NULL').fetchall() if "payload" in columns else []
    for row_id, payload in rows:
        try:
            recipient = json.loads(bytes(payload)).get("recipient")
        except (ValueError, AttributeError, RecursionError):
            continue
        conn.execute('UPDATE "messages" SET "recipient_hashes" = ? WHERE "id" = ?',
                     (hashes_json(recipient), row_id))
    conn.execute(
        'INSERT OR IGNORE INTO "archive_recipients" ("recipient_hash", "project_id",'
        ' "message_id") SELECT "recipient_hash", "project_id", "message_id"'
        ' FROM "archive_index" WHERE "recipient_hash" IS NOT NULL')
    conn.execute(
        'INSERT OR IGNORE INTO "index_coverage" ("project_id", "coverage", "source", "since",'
        ' "updated_at")'
        ' SELECT a."project_id", CASE WHEN COUNT(m."id") = COUNT(*) THEN ? ELSE ? END,'
        ' CASE WHEN COUNT(m."id") = COUNT(*) THEN \'run\' ELSE \'unknown\' END,'
        ' MIN(COALESCE(a."stored_at", 0)), MAX(COALESCE(a."stored_at", 0))'
        ' FROM "archive_index" a LEFT JOIN "messages" m ON m."project_id" = a."project_id"'
        ' AND m."message_id" = a."message_id" AND m."state" = \'stored\''
        ' GROUP BY a."project_id"', (COMPLETE, PARTIAL))
