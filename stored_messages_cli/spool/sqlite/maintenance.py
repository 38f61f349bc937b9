"""The SQLite store's maintenance verbs: what prune deletes, the file's compaction."""

from __future__ import annotations

import os
from pathlib import Path

from ...states import FinalReason, State
from ..archive import kept_identities
from .base import StoreBase

# The ids of message rows prune may delete (see `maintenance`): ?1 the cutoff, ?2 the
# never-confirmed grace cutoff. A message whose manifest entry is still open stays.
_PRUNABLE = (
    "SELECT id FROM messages WHERE ("
    f"  (state = '{State.STORED}' AND stored_at IS NOT NULL AND stored_at < ?1"
    "   AND EXISTS (SELECT 1 FROM archive_index a WHERE a.project_id = messages.project_id"
    "               AND a.message_id = messages.message_id))"
    f"  OR (state = '{State.DISCARDED}' AND COALESCE(updated_at, created_at) < ?1"
    f"      AND (final_reason IS NULL OR final_reason <> '{FinalReason.NEVER_CONFIRMED}'"
    "           OR COALESCE(updated_at, created_at) < ?2))"
    ") AND id NOT IN (SELECT message_row FROM manifest_entries)")

KEEP_CONTENT_SHA256 = (
    'UPDATE "archive_entries" SET "content_prefix" = ? WHERE "message_id" = ?'
    ' AND "project_id" = ? AND "payload_sha256" = ?')


def file_bytes(path: Path) -> int:
    """Bytes of the database file with its -wal (what the spool costs on disk)."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except FileNotFoundError:
            pass
    return total


class MaintenanceSql(StoreBase):
    """`MaintenanceStore` on SQLite."""

    def prunable_counts(self, cutoff: float, grace_cutoff: float) -> dict[str, int]:
        """How many message rows prune would delete, per state."""
        return {r[0]: int(r[1]) for r in self._rows(
            f"SELECT state, COUNT(*) FROM messages WHERE id IN ({_PRUNABLE}) GROUP BY state",
            (cutoff, grace_cutoff))}

    def old_rejected_count(self, cutoff: float) -> int:
        """Rejected lines kept since before `cutoff`."""
        return int(self._one("SELECT COUNT(*) FROM rejected WHERE rejected_at < ?", (cutoff,)))

    def old_daemons_count(self, cutoff: float) -> int:
        """Daemons stopped before `cutoff`."""
        return int(self._one("SELECT COUNT(*) FROM daemons WHERE stopped_at < ?", (cutoff,)))

    def prune_messages(self, cutoff: float, grace_cutoff: float, limit: int) -> list[str]:
        """Delete up to `limit` prunable message rows; their states. A stored message's
        content hash moves to its archive index entry (its identity: `spool/identity.py`)."""
        deleted = self.conn.execute(
            f"DELETE FROM messages WHERE id IN ({_PRUNABLE} LIMIT {int(limit)})"
            " RETURNING state, project_id, message_id, content_sha256, payload_sha256",
            (cutoff, grace_cutoff)).fetchall()
        self.conn.executemany(KEEP_CONTENT_SHA256, kept_identities(deleted))
        return [r[0] for r in deleted]

    def prune_rejected(self, cutoff: float, limit: int) -> int:
        """Delete up to `limit` rejected lines kept since before `cutoff`."""
        return int(self.conn.execute(
            "DELETE FROM rejected WHERE id IN (SELECT id FROM rejected WHERE rejected_at < ?"
            f" LIMIT {int(limit)})", (cutoff,)).rowcount)

    def prune_daemons(self, cutoff: float) -> int:
        """Delete the rows of daemons stopped before `cutoff`."""
        return int(self.conn.execute("DELETE FROM daemons WHERE stopped_at < ?",
                                     (cutoff,)).rowcount)

    def after_prune(self) -> None:
        """Let the WAL's pages be reused (a passive checkpoint: it never waits)."""
        with self.lock:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def vacuum(self) -> dict[str, int]:
        """Rewrite the file; its bytes (file + WAL) before and after. VACUUM holds the write
        lock while it runs, so senders wait (up to the 60 s busy timeout)."""
        before = file_bytes(self.db.path)
        with self.lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"bytes_before": before, "bytes_after": file_bytes(self.db.path)}
