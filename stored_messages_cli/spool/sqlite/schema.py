"""The SQLite spool's schema: the body of each numbered step for SQLite (`migrations.STEPS`).

Append-only: never edit a released step, add the next one. Each step must be safe to run
again on a spool it already changed (0.1.0, opening a newer spool, would reset user_version
to its fingerprint).
"""

from __future__ import annotations

import json
import sqlite3

from ...message.keys import key_pieces
from ...states import FinalReason, State
from ..archive import entry_row
from ..bodies import BODY_OF
from ..identifiers import COMPLETE, PARTIAL, hashes_json
from ..manifests import SETTLED_OUTCOMES, entry_insert_sql
from .index_writer import write_entries

V1_LAYOUT = """
CREATE TABLE IF NOT EXISTS "messages" (
   "id" INTEGER PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "message_id" TEXT NOT NULL,
   "medium" TEXT NOT NULL,
   "message_type" TEXT NOT NULL,
   "campaign_id" TEXT,
   "recipient_hash" TEXT NOT NULL,
   "sent_at" TEXT,
   "key" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "payload" BLOB,
   "content_sha256" TEXT NOT NULL,
   "payload_sha256" TEXT,
   "created_at" REAL NOT NULL,
   "confirmed_at" REAL,
   "updated_at" REAL,
   "attempts" INTEGER DEFAULT 0,
   "first_failure_at" REAL,
   "next_attempt_at" REAL,
   "retry_reason" TEXT,
   "last_error" TEXT,
   "lease_owner" TEXT,
   "lease_expires_at" REAL,
   "final_reason" TEXT,
   "stored_at" REAL,
   "stored_key" TEXT,
   "destination_url" TEXT,
   "version_id" TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS "idx_messages_project_id_message_id"
    ON "messages" ("project_id", "message_id");
CREATE INDEX IF NOT EXISTS "idx_messages_state_project_id_next_attempt_at"
    ON "messages" ("state", "project_id", "next_attempt_at");
CREATE TABLE IF NOT EXISTS "rejected" (
   "id" INTEGER PRIMARY KEY,
   "source" TEXT,
   "line" INTEGER,
   "reason" TEXT,
   "raw" TEXT,
   "rejected_at" REAL
);
CREATE TABLE IF NOT EXISTS "destination_health" (
   "project_id" TEXT PRIMARY KEY,
   "url" TEXT,
   "health" TEXT,
   "since" REAL,
   "next_probe_at" REAL,
   "last_error" TEXT,
   "updated_at" REAL
);
CREATE TABLE IF NOT EXISTS "archive_index" (
   "project_id" TEXT,
   "message_id" TEXT,
   "medium" TEXT,
   "message_type" TEXT,
   "campaign_id" TEXT,
   "recipient_hash" TEXT,
   "sent_at" TEXT,
   "key" TEXT,
   "payload_sha256" TEXT,
   "version_id" TEXT,
   "destination_url" TEXT,
   "stored_at" REAL,
   PRIMARY KEY ("project_id", "message_id")
);
CREATE INDEX IF NOT EXISTS "idx_archive_index_recipient_hash_sent_at"
    ON "archive_index" ("recipient_hash", "sent_at");
CREATE INDEX IF NOT EXISTS "idx_archive_index_message_id"
    ON "archive_index" ("message_id");
CREATE INDEX IF NOT EXISTS "idx_archive_index_campaign_id_sent_at"
    ON "archive_index" ("campaign_id", "sent_at");
CREATE INDEX IF NOT EXISTS "idx_archive_index_sent_at"
    ON "archive_index" ("sent_at");
"""


def v1_layout(conn: sqlite3.Connection) -> None:
    """The layout 0.1.0 created (its tables exactly, so an upgraded spool equals a fresh one)."""
    for statement in V1_LAYOUT.split(";"):
        if statement.strip():
            conn.execute(statement)


def v2_reason_codes(conn: sqlite3.Connection) -> None:
    """`final_reason` holds a code; the prose it held moves to `last_error` (SPEC 8)."""
    conn.execute(
        "UPDATE messages SET final_reason = ?,"
        " last_error = COALESCE(last_error, final_reason) WHERE state = ?"
        " AND final_reason IS NOT NULL AND final_reason NOT IN (SELECT value FROM json_each(?))",
        (FinalReason.EXPIRED_UNREACHABLE, State.EXPIRED, _codes()))
    conn.execute(
        "UPDATE messages SET final_reason = ?,"
        " last_error = COALESCE(last_error, SUBSTR(final_reason, 11)) WHERE state = ?"
        " AND final_reason NOT IN (SELECT value FROM json_each(?))",
        (FinalReason.CONFLICT, State.FAILED, _codes()))
    conn.execute(
        "UPDATE messages SET final_reason = ?, last_error = SUBSTR(final_reason, ?)"
        " WHERE state = ? AND final_reason LIKE ?",
        (FinalReason.SEND_FAILED, len(FinalReason.SEND_FAILED) + 3, State.DISCARDED,
         f"{FinalReason.SEND_FAILED}: %"))


def _codes() -> str:
    return "[" + ",".join(f'"{code}"' for code in FinalReason) + "]"


def v2_claim_indexes(conn: sqlite3.Connection) -> None:
    """Claims and `sm status` read through indexes; destinations count their failed probes.

    Claims read queued rows of a project in id order, and status the oldest unarchived
    message of each state, without visiting the archived history. `failed_probes` lets a
    message expire only after its destination really failed the window's probes;
    `probing_until` is the lease of the one process probing a down destination.
    """
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_state_project_id_id"'
                 ' ON "messages" ("state", "project_id", "id")')
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_state_waiting_since"'
                 ' ON "messages" ("state", COALESCE("confirmed_at", "created_at"))')
    # `sm verify` proves writing from a project's most recent stored message.
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_state_project_id_stored_at"'
                 ' ON "messages" ("state", "project_id", "stored_at")')
    columns = {row[1] for row in conn.execute('PRAGMA table_info("destination_health")')}
    if "failed_probes" not in columns:
        conn.execute('ALTER TABLE "destination_health"'
                     ' ADD COLUMN "failed_probes" INTEGER NOT NULL DEFAULT 0')
    if "probing_until" not in columns:  # one probe at a time across processes (run, replay)
        conn.execute('ALTER TABLE "destination_health" ADD COLUMN "probing_until" REAL')


def v9_partial_indexes(conn: sqlite3.Connection) -> None:
    """The claim order and the recent-stored lookup read partial indexes.

    `(project_id, id) WHERE state = 'queued'` and `(project_id, stored_at) WHERE state =
    'stored'` replace the full `(state, …)` indexes step 3 made: a lease then removes one
    entry instead of moving four, and the stored history never enters the claim index. The
    queries name the state literally (`state = 'queued'`), so the planner can use them.
    """
    conn.execute('DROP INDEX IF EXISTS "idx_messages_state_project_id_id"')
    conn.execute('DROP INDEX IF EXISTS "idx_messages_state_project_id_stored_at"')
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_queued_project_id_id"'
                 f' ON "messages" ("project_id", "id") WHERE "state" = \'{State.QUEUED}\'')
    conn.execute('CREATE INDEX IF NOT EXISTS "idx_messages_stored_project_id_stored_at"'
                 ' ON "messages" ("project_id", "stored_at")'
                 f' WHERE "state" = \'{State.STORED}\'')


DAEMONS_LAYOUT = """
CREATE TABLE IF NOT EXISTS "daemons" (
   "id" INTEGER PRIMARY KEY,
   "host" TEXT NOT NULL,
   "pid" INTEGER NOT NULL,
   "version" TEXT,
   "lease_owner" TEXT,
   "projects" TEXT,
   "heartbeat_interval" REAL NOT NULL,
   "started_at" REAL NOT NULL,
   "last_heartbeat" REAL NOT NULL,
   "stopped_at" REAL
);
CREATE INDEX IF NOT EXISTS "idx_daemons_stopped_at_last_heartbeat"
    ON "daemons" ("stopped_at", "last_heartbeat");
"""


def migrate_daemons(conn: sqlite3.Connection) -> None:
    """Schema step: the `daemons` heartbeat table (idempotent)."""
    for statement in DAEMONS_LAYOUT.split(";"):
        if statement.strip():
            conn.execute(statement)


MANIFEST_TABLES = """
CREATE TABLE IF NOT EXISTS "manifest_entries" (
   "id" INTEGER PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "message_row" INTEGER NOT NULL,
   "message_id" TEXT NOT NULL,
   "outcome" TEXT NOT NULL,
   "stored_key" TEXT,
   "relative_key" TEXT NOT NULL,
   "payload_sha256" TEXT,
   "object_sha256" TEXT,
   "size" INTEGER,
   "medium" TEXT NOT NULL,
   "message_type" TEXT NOT NULL,
   "campaign_id" TEXT,
   "sent_at" TEXT,
   "recipient_hash" TEXT NOT NULL,
   "recipient_hashes" TEXT,
   "settled_at" REAL NOT NULL,
   "reason" TEXT,
   "payload" BLOB
);
CREATE INDEX IF NOT EXISTS "idx_manifest_entries_project_id_id"
    ON "manifest_entries" ("project_id", "id");
CREATE INDEX IF NOT EXISTS "idx_manifest_entries_unhashed"
    ON "manifest_entries" ("id") WHERE "payload" IS NOT NULL;
CREATE TABLE IF NOT EXISTS "manifest_segments" (
   "project_id" TEXT NOT NULL,
   "seq" INTEGER NOT NULL,
   "key" TEXT NOT NULL,
   "sealed_at" REAL NOT NULL,
   "count" INTEGER NOT NULL,
   "prev_sha256" TEXT,
   "sha256" TEXT NOT NULL,
   "size" INTEGER NOT NULL,
   "body" BLOB,
   "written_at" REAL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   PRIMARY KEY ("project_id", "seq")
);
"""


def trigger_sql(body: str = 'COALESCE(NEW."payload", OLD."payload")', *,
                complete: bool = False, compared: bool = False) -> str:
    """The trigger adding a settled message's entry; `body` is SQL for its payload (a column of
    `messages` up to step 7, a read of `message_bodies` from step 8); `complete` from step 11;
    `compared` from step 12 (`migrate_settle_condition`)."""
    if compared:
        settled = " OR ".join(f"NEW.\"state\" = '{state.value}'" for state in SETTLED_OUTCOMES)
        settled = f"({settled})"
    else:
        outcomes = ", ".join(f"'{state.value}'" for state in SETTLED_OUTCOMES)
        settled = f'NEW."state" IN ({outcomes})'
    return f"""
CREATE TRIGGER IF NOT EXISTS "manifest_entry_on_settle"
AFTER UPDATE OF "state" ON "messages"
WHEN {settled} AND OLD."state" IS NOT NEW."state"
BEGIN
   {entry_insert_sql(body, complete=complete)};
END
"""


def migrate_manifests(conn: sqlite3.Connection) -> None:
    """Migration step: the manifest tables and the trigger that fills the open segments."""
    for statement in MANIFEST_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(trigger_sql())


def migrate_complete_entries(conn: sqlite3.Connection) -> None:
    """Migration step 11: the settle of a stored message writes the object's SHA-256 and size
    on its row, and the trigger makes the complete entry from them (no payload copied into the
    entry, no second statement to complete it). Safe to run twice."""
    columns = {row[1] for row in conn.execute('PRAGMA table_info("messages")')}
    if "object_sha256" not in columns:
        conn.execute('ALTER TABLE "messages" ADD COLUMN "object_sha256" TEXT')
    if "object_size" not in columns:
        conn.execute('ALTER TABLE "messages" ADD COLUMN "object_size" INTEGER')
    _replace_trigger(conn, complete=True)


def migrate_settle_condition(conn: sqlite3.Connection) -> None:
    """Migration step 12: the trigger compares the new state with each outcome in turn.

    Its condition runs for every row an UPDATE of `state` touches (a claim's 64 leases, each
    release and retry), and SQLite builds the table of an `IN (…)` list of three anew for
    each of them: ~7 µs a row, a third of a claim's UPDATE. Safe to run twice.
    """
    _replace_trigger(conn, complete=True, compared=True)


def _replace_trigger(conn: sqlite3.Connection, **form: bool) -> None:
    """The settle trigger made again in the `form` a step gives it (`trigger_sql`), reading
    the body from `message_bodies` (step 8 on)."""

    conn.execute('DROP TRIGGER IF EXISTS "manifest_entry_on_settle"')
    conn.execute(trigger_sql(BODY_OF.replace('"messages"."id"', 'NEW."id"'), **form))


IDENTIFIER_TABLES = """
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
    for statement in IDENTIFIER_TABLES.split(";"):
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


def _key_column(name: str, when_absent: str | None) -> str:
    """One field of the key layout as a column of the view's `e` (archive_entries) row."""
    column = 'lower(hex(e."recipient_hash"))' if name == "recipient_hash" else f'e."{name}"'
    return column if when_absent is None else f"COALESCE({column}, '{when_absent}')"


# The layout key, built from the one definition of the layout (`message.keys`).
_LAYOUT_KEY = 'l."key_prefix" || ' + " || ".join(
    key_pieces(_key_column, lambda literal: f"'{literal}'"))

ARCHIVE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "archive_locations" (
   "id" INTEGER PRIMARY KEY,
   "destination_url" TEXT,
   "key_prefix" TEXT NOT NULL,
   UNIQUE ("destination_url", "key_prefix")
);
CREATE TABLE IF NOT EXISTS "archive_entries" (
   "id" INTEGER PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "message_id" TEXT NOT NULL,
   "medium" TEXT,
   "message_type" TEXT,
   "campaign_id" TEXT,
   "recipient_hash" BLOB,
   "sent_at" TEXT,
   "key" TEXT,
   "payload_sha256" BLOB,
   "version_id" TEXT,
   "location" INTEGER,
   "stored_at" REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS "idx_archive_entries_message_id_project_id"
    ON "archive_entries" ("message_id", "project_id");
CREATE INDEX IF NOT EXISTS "idx_archive_entries_recipient_hash"
    ON "archive_entries" ("recipient_hash");
CREATE INDEX IF NOT EXISTS "idx_archive_entries_campaign_id_sent_at"
    ON "archive_entries" ("campaign_id", "sent_at");
CREATE INDEX IF NOT EXISTS "idx_archive_entries_sent_at"
    ON "archive_entries" ("sent_at");
CREATE TABLE IF NOT EXISTS "archive_recipient_hashes" (
   "recipient_hash" BLOB NOT NULL,
   "entry" INTEGER NOT NULL,
   PRIMARY KEY ("recipient_hash", "entry")
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS "archive_index" AS
SELECT e."id" AS "entry", e."project_id", e."message_id", e."medium", e."message_type",
   e."campaign_id",
   CASE WHEN typeof(e."recipient_hash") = 'blob' THEN lower(hex(e."recipient_hash"))
        ELSE e."recipient_hash" END AS "recipient_hash",
   e."sent_at",
   CASE WHEN e."key" IS NOT NULL THEN e."key" ELSE {_LAYOUT_KEY} END AS "key",
   CASE WHEN typeof(e."payload_sha256") = 'blob' THEN lower(hex(e."payload_sha256"))
        ELSE e."payload_sha256" END AS "payload_sha256",
   e."version_id", l."destination_url", e."stored_at"
FROM "archive_entries" e LEFT JOIN "archive_locations" l ON l."id" = e."location"
"""


def migrate_archive(conn: sqlite3.Connection) -> None:
    """Migration step: move `archive_index` and `archive_recipients` into the lean layout.

    Every row keeps its values exactly (the view returns what the table held); identifier
    hashes other than the key's own move to `archive_recipient_hashes`. Safe to run twice.
    """
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'archive_index'"
                        ).fetchone()
    for statement in ARCHIVE_SCHEMA.split(";\n"):
        if statement.strip() and not (kind and kind[0] == "table"
                                      and "CREATE VIEW" in statement):
            conn.execute(statement)
    if not kind or kind[0] != "table":
        return
    extra: dict[tuple[str, str], list[str]] = {}
    for rhash, project_id, message_id in conn.execute(
            'SELECT "recipient_hash", "project_id", "message_id" FROM "archive_recipients"'):
        extra.setdefault((project_id, message_id), []).append(rhash)
    rows = [entry_row(row, extra.get((row[0], row[1]), []))
            for row in conn.execute(
                'SELECT "project_id", "message_id", "medium", "message_type", "campaign_id",'
                ' "recipient_hash", "sent_at", "key", "payload_sha256", "version_id",'
                ' "destination_url", "stored_at" FROM "archive_index" ORDER BY "stored_at",'
                ' "project_id", "message_id"')]
    write_entries(conn, rows)
    for name in ("idx_archive_index_recipient_hash_sent_at", "idx_archive_index_message_id",
                 "idx_archive_index_campaign_id_sent_at", "idx_archive_index_sent_at",
                 "idx_archive_recipients_project_id_message_id"):
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')
    conn.execute('DROP TABLE "archive_index"')
    conn.execute('DROP TABLE IF EXISTS "archive_recipients"')
    view = ARCHIVE_SCHEMA[ARCHIVE_SCHEMA.index("CREATE VIEW"):]
    conn.execute(view)


BODIES_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS "message_bodies" (
   "id" INTEGER PRIMARY KEY,
   "payload" BLOB NOT NULL
)""", """
CREATE TRIGGER IF NOT EXISTS "message_body_on_delete" AFTER DELETE ON "messages"
BEGIN
   DELETE FROM "message_bodies" WHERE "id" = OLD."id";
END""")


def migrate_bodies(conn: sqlite3.Connection) -> None:
    """Migration step: move every kept payload out of `messages` into `message_bodies`.

    The manifest trigger, which keeps a settled message's body for its entry, reads it from
    the new table. Safe to run twice.
    """
    for statement in BODIES_SCHEMA:
        conn.execute(statement)
    columns = {row[1] for row in conn.execute('PRAGMA table_info("messages")')}
    if "payload" not in columns:
        return
    conn.execute('INSERT OR IGNORE INTO "message_bodies" ("id", "payload")'
                 ' SELECT "id", "payload" FROM "messages" WHERE "payload" IS NOT NULL')
    conn.execute('DROP TRIGGER IF EXISTS "manifest_entry_on_settle"')
    conn.execute('ALTER TABLE "messages" DROP COLUMN "payload"')
    conn.execute(trigger_sql(BODY_OF.replace('"messages"."id"', 'NEW."id"')))


INBOX_LAYOUT = """
CREATE TABLE IF NOT EXISTS "inbox" (
   "id" INTEGER PRIMARY KEY,
   "line" TEXT NOT NULL,
   "source" TEXT
)
"""


def migrate_inbox(conn: sqlite3.Connection) -> None:
    """Migration step: the `inbox` table (idempotent)."""
    conn.execute(INBOX_LAYOUT)


# Step 13: the manifests become a signed Merkle log per project and destination (SPEC 9.1).
LOG_SEGMENT_COLUMNS = (
    ('"origin"', "TEXT NOT NULL DEFAULT ''"),  # '' for a segment sealed before logs had one
    ('"log_seq"', "INTEGER"),  # its number in its log (NULL: `seq`, a segment before logs)
    ('"version"', "INTEGER NOT NULL DEFAULT 1"),
    ('"tree_size"', "INTEGER"),
    ('"root"', "TEXT"),
    ('"frontier"', "TEXT"),
    ('"checkpoint"', "TEXT"),
    ('"checkpoint_written_at"', "REAL"),
)
LOG_TABLES = """
CREATE TABLE IF NOT EXISTS "spool_meta" (
   "name" TEXT PRIMARY KEY,
   "value" TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS "log_anchors" (
   "project_id" TEXT NOT NULL,
   "origin" TEXT NOT NULL,
   "tree_size" INTEGER NOT NULL,
   "kind" TEXT NOT NULL,
   "target" TEXT NOT NULL,
   "created_at" REAL NOT NULL,
   "done_at" REAL,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   "token" BLOB,
   PRIMARY KEY ("project_id", "origin", "tree_size", "kind", "target")
);
CREATE INDEX IF NOT EXISTS "idx_log_anchors_pending" ON "log_anchors" ("created_at")
    WHERE "done_at" IS NULL
"""


def migrate_manifest_log(conn: sqlite3.Connection) -> None:
    """Migration step 13: each segment's log (origin, number in it, tree size, root, the
    compact range the next seal extends, its signed checkpoint), an entry's marks
    (backfilled, adopted), the spool's sealer id and the anchors still to make. Safe to run
    twice."""
    columns = {row[1] for row in conn.execute('PRAGMA table_info("manifest_segments")')}
    for name, kind in LOG_SEGMENT_COLUMNS:
        if name.strip('"') not in columns:
            conn.execute(f'ALTER TABLE "manifest_segments" ADD COLUMN {name} {kind}')
    entry_columns = {row[1] for row in conn.execute('PRAGMA table_info("manifest_entries")')}
    if "marks" not in entry_columns:
        conn.execute('ALTER TABLE "manifest_entries" ADD COLUMN "marks" TEXT')
    for statement in LOG_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


def migrate_pruned_identity(conn: sqlite3.Connection) -> None:
    """Migration step: `archive_entries.content_prefix`, the first 8 bytes of the rendered
    content's hash that `sm spool prune` keeps from a stored message's row, so that recording
    it again unconfirmed after a prune is still told apart as a duplicate or a conflict
    (`spool/identity.py`). Safe to run twice."""
    columns = {row[1] for row in conn.execute('PRAGMA table_info("archive_entries")')}
    if "content_prefix" not in columns:
        conn.execute('ALTER TABLE "archive_entries" ADD COLUMN "content_prefix" BLOB')
