"""The SQLite spool's schema steps (the numbered list is `db.MIGRATIONS`)."""

from __future__ import annotations

import sqlite3

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
