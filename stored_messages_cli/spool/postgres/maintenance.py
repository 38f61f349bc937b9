"""The PostgreSQL store's maintenance verbs: what prune deletes, VACUUM of its tables."""

from __future__ import annotations

from ...states import FinalReason, State
from ..archive import kept_identities
from .base import PgStoreBase

# The tables of a PostgreSQL spool (what the numbered migrations create), for `vacuum`;
# tests/test_operations.py checks the list against a freshly migrated database.
PG_TABLES: tuple[str, ...] = (
             "messages", "message_bodies", "destination_health", "rejected", "daemons",
             "manifest_segments", "manifest_entries", "index_coverage", "archive_locations",
             "archive_entries", "archive_recipient_hashes", "inbox", "schema_migrations",
             "spool_meta", "log_anchors",
             "provider_message_ids", "provider_events", "provider_tokens",
             "hold_cases", "hold_objects", "recipient_keys")

# The ids of message rows prune may delete (see `maintenance`). A message whose manifest
# entry is still open stays.
_PRUNABLE = (
    "SELECT id FROM messages WHERE ("
    f"  (state = '{State.STORED}' AND stored_at IS NOT NULL AND stored_at < %(cutoff)s"
    "   AND EXISTS (SELECT 1 FROM archive_index a WHERE a.project_id = messages.project_id"
    "               AND a.message_id = messages.message_id))"
    f"  OR (state = '{State.DISCARDED}' AND COALESCE(updated_at, created_at) < %(cutoff)s"
    f"      AND (final_reason IS NULL OR final_reason <> '{FinalReason.NEVER_CONFIRMED}'"
    "           OR COALESCE(updated_at, created_at) < %(grace)s))"
    ") AND id NOT IN (SELECT message_row FROM manifest_entries)")


class MaintenancePg(PgStoreBase):
    """`MaintenanceStore` on PostgreSQL."""

    def prunable_counts(self, cutoff: float, grace_cutoff: float) -> dict[str, int]:
        """How many message rows prune would delete, per state."""
        with self.lock:
            rows = self.pg.execute(
                f"SELECT state, COUNT(*) FROM messages WHERE id IN ({_PRUNABLE})"
                " GROUP BY state", {"cutoff": cutoff, "grace": grace_cutoff}).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def old_rejected_count(self, cutoff: float) -> int:
        """Rejected lines kept since before `cutoff`."""
        return int(self._one("SELECT COUNT(*) FROM rejected WHERE rejected_at < %s",
                             (cutoff,)))

    def old_daemons_count(self, cutoff: float) -> int:
        """Daemons stopped before `cutoff`."""
        return int(self._one("SELECT COUNT(*) FROM daemons WHERE stopped_at < %s", (cutoff,)))

    def prune_messages(self, cutoff: float, grace_cutoff: float, limit: int) -> list[str]:
        """Delete up to `limit` prunable message rows; their states. A stored message's
        content hash moves to its archive index entry (its identity: `spool/identity.py`)."""
        deleted = self.pg.execute(
            f"DELETE FROM messages WHERE id IN ({_PRUNABLE} LIMIT {int(limit)})"
            " RETURNING state, project_id, message_id, content_sha256, payload_sha256",
            {"cutoff": cutoff, "grace": grace_cutoff}).fetchall()
        kept = kept_identities(deleted, text_as_bytes=True)
        if kept:
            self.pg.executemany(
                'UPDATE "archive_entries" SET "content_prefix" = %s WHERE "message_id" = %s'
                ' AND "project_id" = %s AND "payload_sha256" = %s', kept)
        return [r[0] for r in deleted]

    def prune_rejected(self, cutoff: float, limit: int) -> int:
        """Delete up to `limit` rejected lines kept since before `cutoff`."""
        return self._count(
            "DELETE FROM rejected WHERE id IN (SELECT id FROM rejected WHERE rejected_at < %s"
            f" LIMIT {int(limit)})", (cutoff,))

    def prune_daemons(self, cutoff: float) -> int:
        """Delete the rows of daemons stopped before `cutoff`."""
        return self._count("DELETE FROM daemons WHERE stopped_at < %s", (cutoff,))

    def after_prune(self) -> None:
        """Nothing: PostgreSQL reuses the space (autovacuum)."""

    def vacuum(self) -> dict[str, int]:
        """`VACUUM (ANALYZE)` of each of the spool's tables, outside a transaction, with no
        lock that stops writers; the bytes are the tables' with their indexes and TOAST
        (space freed is reused, not given back: only VACUUM FULL does that, and it locks the
        tables, so sm never runs it)."""
        with self.lock:
            tables = [t for t in PG_TABLES
                      if self.pg.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]]
            before = self._bytes(tables)
            for table in tables:  # one statement per table: VACUUM cannot run in a transaction
                self.pg.execute(f'VACUUM (ANALYZE) "{table}"')
            return {"bytes_before": before, "bytes_after": self._bytes(tables)}

    def _bytes(self, tables: list[str]) -> int:
        return int(self.pg.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0)"
            " FROM unnest(%s::text[]) AS t", (tables,)).fetchone()[0])
