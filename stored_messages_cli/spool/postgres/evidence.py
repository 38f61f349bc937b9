"""The PostgreSQL store's manifest entries and segments, and what audits and backfills read."""

from __future__ import annotations

from typing import Any

from ...states import SETTLED_OUTCOMES, UNARCHIVED_STATES
from ..manifests import (
    ACCOUNT_COLUMNS,
    BACKFILL_COLUMNS,
    ENTRY_COLUMNS,
    SEGMENT_COLUMNS,
    BackfilledEntry,
    NewSegment,
    OpenEntries,
    backfilled_values,
    completed,
)
from .base import PgStoreBase


class EvidencePg(PgStoreBase):
    """`EvidenceStore` on PostgreSQL."""

    def complete_entries(self) -> int:
        """Complete the entries whose payload the settle trigger kept (caller's transaction)."""
        rows = self._all('SELECT "id", "outcome", "payload", "recipient_hash"'
                         ' FROM "manifest_entries" WHERE "payload" IS NOT NULL')
        if rows:
            self.pg.executemany(
                'UPDATE "manifest_entries" SET "object_sha256" = %s, "size" = %s,'
                ' "recipient_hashes" = %s, "payload" = NULL WHERE "id" = %s',
                [(*completed(outcome, column, fallback), row_id)
                 for row_id, outcome, column, fallback in rows])
        return len(rows)

    def open_entries(self, project_id: str) -> OpenEntries:
        """Count and oldest settled time, from the (project_id, id) index and one row."""
        count = int(self._one('SELECT COUNT(*) FROM "manifest_entries"'
                              ' WHERE "project_id" = %s', (project_id,)))
        if not count:
            return OpenEntries(0, None)
        first = self._rows('SELECT "settled_at" FROM "manifest_entries"'
                           ' WHERE "project_id" = %s ORDER BY "id" LIMIT 1', (project_id,))
        return OpenEntries(count, float(first[0][0]) if first else None)

    def take_entries(self, project_id: str, limit: int) -> list[dict[str, Any]]:
        """The oldest `limit` open entries of a project, completed first."""
        self.complete_entries()
        return self._dicts(f'SELECT {ENTRY_COLUMNS} FROM "manifest_entries"'
                           ' WHERE "project_id" = %s ORDER BY "id" LIMIT %s', (project_id, limit))

    def last_segment(self, project_id: str) -> tuple[int, str | None]:
        """The last sealed segment's number and hash."""
        rows = self._rows('SELECT "seq", "sha256" FROM "manifest_segments"'
                          ' WHERE "project_id" = %s ORDER BY "seq" DESC LIMIT 1', (project_id,))
        return (0, None) if not rows else (int(rows[0][0]), rows[0][1])

    def add_segment(self, segment: NewSegment) -> None:
        """Record a sealed segment; drop the entries it holds."""
        self.pg.execute(
            'INSERT INTO "manifest_segments" ("project_id", "seq", "key", "sealed_at", "count",'
            ' "prev_sha256", "sha256", "size", "body")'
            ' VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
            (segment.project_id, segment.seq, segment.key, segment.sealed_at, segment.count,
             segment.prev_sha256, segment.sha256, len(segment.body), segment.body))
        self.pg.execute('DELETE FROM "manifest_entries" WHERE "id" = ANY(%s)',
                        (list(segment.entry_ids),))

    def segment_rows(self, project_id: str | None, unwritten_only: bool
                     ) -> list[dict[str, Any]]:
        """Sealed segments (without bodies), by project and number."""
        where, params = [], []
        if project_id is not None:
            where.append('"project_id" = %s')
            params.append(project_id)
        if unwritten_only:
            where.append('"written_at" IS NULL')
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._dicts(f'SELECT {SEGMENT_COLUMNS} FROM "manifest_segments"{clause}'
                           ' ORDER BY "project_id", "seq"', params)

    def segment_body(self, project_id: str, seq: int) -> bytes | None:
        """A sealed segment's bytes, until written."""
        rows = self._rows('SELECT "body" FROM "manifest_segments" WHERE "project_id" = %s'
                          ' AND "seq" = %s', (project_id, seq))
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])

    def mark_written(self, project_id: str, seq: int, now: float) -> None:
        """Keep the segment's hash, drop its bytes."""
        self.pg.execute('UPDATE "manifest_segments" SET "written_at" = %s, "body" = NULL,'
                        ' "last_error" = NULL, "next_attempt_at" = NULL'
                        ' WHERE "project_id" = %s AND "seq" = %s', (now, project_id, seq))

    def mark_write_failed(self, project_id: str, seq: int, error: str,
                          next_attempt_at: float) -> None:
        """Count the failed upload; retry at `next_attempt_at`."""
        self.pg.execute('UPDATE "manifest_segments" SET "attempts" = "attempts" + 1,'
                        ' "last_error" = %s, "next_attempt_at" = %s'
                        ' WHERE "project_id" = %s AND "seq" = %s',
                        (error[:500], next_attempt_at, project_id, seq))

    def open_outcomes(self, project_id: str) -> list[tuple[str, str, str | None]]:
        """(message id, outcome, stored key) of the open entries."""
        return [(r[0], r[1], r[2]) for r in self._rows(
            'SELECT "message_id", "outcome", "stored_key" FROM "manifest_entries"'
            ' WHERE "project_id" = %s ORDER BY "id"', (project_id,))]

    def messages_to_account(self, project_id: str) -> list[dict[str, Any]]:
        """Settled and unarchived messages of a project."""
        states = [s.value for s in (*SETTLED_OUTCOMES, *UNARCHIVED_STATES)]
        return self._dicts(f"SELECT {ACCOUNT_COLUMNS} FROM messages"
                           " WHERE project_id = %s AND state = ANY(%s)", (project_id, states))

    def indexed_messages(self, project_id: str) -> list[tuple[Any, ...]]:
        """The index's rows of a project, with their `messages` row id."""
        return [tuple(row) for row in self._rows(
            "SELECT a.message_id, a.medium, a.message_type, a.campaign_id, a.recipient_hash,"
            " a.sent_at, a.key, a.payload_sha256, a.stored_at, m.id FROM archive_index a"
            " LEFT JOIN messages m ON m.project_id = a.project_id"
            " AND m.message_id = a.message_id WHERE a.project_id = %s"
            " ORDER BY a.stored_at, a.message_id", (project_id,))]

    def add_backfilled_entry(self, entry: BackfilledEntry) -> None:
        """One complete `stored` entry, as the trigger adds it."""
        self.pg.execute(f'INSERT INTO "manifest_entries" ({BACKFILL_COLUMNS})'
                        f' VALUES ({", ".join(["%s"] * 16)})', backfilled_values(entry))
