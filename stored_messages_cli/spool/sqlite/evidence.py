"""The SQLite store's manifest entries and segments, and what audits and backfills read."""

from __future__ import annotations

import json
from typing import Any

from ...states import SETTLED_OUTCOMES, UNARCHIVED_STATES, State
from ..anchors import (
    ANCHOR_JOIN,
    ANCHOR_ORDER,
    ANCHOR_ROW_COLUMNS,
    FAILING_WRITE_COLUMNS,
    UNWRITTEN,
    AnchorRow,
)
from ..manifests import (
    ACCOUNT_COLUMNS,
    ANCHOR_COLUMNS,
    BACKFILL_COLUMNS,
    ENTRIES_TO_COMPLETE,
    ENTRY_COLUMNS,
    HEAD_COLUMNS,
    NEW_SEGMENT_COLUMNS,
    SEALER_NAME,
    SEGMENT_COLUMNS,
    BackfilledEntry,
    LogHead,
    NewSegment,
    OpenEntries,
    anchor_values,
    backfilled_values,
    completed,
    segment_values,
)
from .base import StoreBase, marks


class EvidenceSql(StoreBase):
    """`EvidenceStore` on SQLite."""

    def complete_entries(self) -> int:
        """Complete the entries whose payload the settle trigger kept (caller's transaction)."""
        rows = self.conn.execute(ENTRIES_TO_COMPLETE).fetchall()
        for row_id, outcome, column, fallback, known in rows:
            self.conn.execute(
                'UPDATE "manifest_entries" SET "object_sha256" = ?, "size" = ?,'
                ' "recipient_hashes" = ?, "payload" = NULL WHERE "id" = ?',
                (*completed(outcome, column, fallback, known), row_id))
        return len(rows)

    def open_entries(self, project_id: str) -> OpenEntries:
        """Count and oldest settled time, from the (project_id, id) index and one row."""
        count = int(self._one('SELECT COUNT(*) FROM "manifest_entries"'
                              ' WHERE "project_id" = ?', (project_id,)))
        if not count:
            return OpenEntries(0, None)
        first = self._rows('SELECT "settled_at" FROM "manifest_entries" WHERE "project_id" = ?'
                           ' ORDER BY "id" LIMIT 1', (project_id,))
        return OpenEntries(count, float(first[0][0]) if first else None)

    def take_entries(self, project_id: str, limit: int) -> list[dict[str, Any]]:
        """The oldest `limit` open entries of a project, completed first."""
        self.complete_entries()
        return [dict(row) for row in self._rows(
            f'SELECT {ENTRY_COLUMNS} FROM "manifest_entries" WHERE "project_id" = ?'
            ' ORDER BY "id" LIMIT ?', (project_id, limit))]

    def last_segment(self, project_id: str) -> LogHead | None:
        """The last sealed segment and its place in its log."""
        rows = self._rows(f'SELECT {HEAD_COLUMNS} FROM "manifest_segments"'
                          ' WHERE "project_id" = ? ORDER BY "seq" DESC LIMIT 1', (project_id,))
        if not rows:
            return None
        seq, log_seq, origin, sha, version, size, root, frontier = rows[0]
        return LogHead(int(seq), int(log_seq), str(origin), str(sha), int(version),
                       None if size is None else int(size), root, frontier)

    def add_segment(self, segment: NewSegment) -> None:
        """Record a sealed segment and its anchors; drop the entries it holds."""
        self.conn.execute(
            f'INSERT INTO "manifest_segments" ({NEW_SEGMENT_COLUMNS})'
            f' VALUES ({marks(16)})', segment_values(segment))
        if segment.anchors:
            self.conn.executemany(
                f'INSERT INTO "log_anchors" ({ANCHOR_COLUMNS}) VALUES ({marks(6)})',
                anchor_values(segment))
        self.conn.execute('DELETE FROM "manifest_entries" WHERE "id" IN'
                          ' (SELECT value FROM json_each(?))', (json.dumps(segment.entry_ids),))

    def adopt_unlogged_segments(self, project_id: str, origin: str) -> int:
        """Segments sealed before logs had an origin join the log `origin`."""
        cursor = self.conn.execute('UPDATE "manifest_segments" SET "origin" = ?'
                                   ' WHERE "project_id" = ? AND "origin" = \'\'',
                                   (origin, project_id))
        return max(0, cursor.rowcount or 0)

    def set_log_state(self, project_id: str, seq: int, tree_size: int, root: str,
                      frontier: str) -> None:
        """The tree after a segment sealed before logs had one."""
        self.conn.execute('UPDATE "manifest_segments" SET "tree_size" = ?, "root" = ?,'
                          ' "frontier" = ? WHERE "project_id" = ? AND "seq" = ?',
                          (tree_size, root, frontier, project_id, seq))

    def sealer_id(self, new_id: str) -> str:
        """The spool's sealer id, `new_id` when it had none."""
        self.conn.execute('INSERT OR IGNORE INTO "spool_meta" ("name", "value") VALUES (?, ?)',
                          (SEALER_NAME, new_id))
        return str(self._one('SELECT "value" FROM "spool_meta" WHERE "name" = ?',
                             (SEALER_NAME,)))

    def mark_checkpoint_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment's checkpoint is in the bucket."""
        self.conn.execute('UPDATE "manifest_segments" SET "checkpoint_written_at" = ?'
                          ' WHERE "project_id" = ? AND "seq" = ?', (now, project_id, seq))

    def segment_rows(self, project_id: str | None, unwritten_only: bool
                     ) -> list[dict[str, Any]]:
        """Sealed segments (without bodies), by project and number."""
        where, params = [], []
        if project_id is not None:
            where.append('"project_id" = ?')
            params.append(project_id)
        if unwritten_only:
            where.append('("written_at" IS NULL OR "checkpoint" IS NOT NULL'
                         ' AND "checkpoint_written_at" IS NULL)')
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return [dict(row) for row in self._rows(
            f'SELECT {SEGMENT_COLUMNS} FROM "manifest_segments"{clause}'
            ' ORDER BY "project_id", "seq"', params)]

    def segment_body(self, project_id: str, seq: int) -> bytes | None:
        """A sealed segment's bytes, until written."""
        rows = self._rows('SELECT "body" FROM "manifest_segments" WHERE "project_id" = ?'
                          ' AND "seq" = ?', (project_id, seq))
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])

    def mark_written(self, project_id: str, seq: int, now: float) -> None:
        """Keep the segment's hash, drop its bytes."""
        self.conn.execute('UPDATE "manifest_segments" SET "written_at" = ?, "body" = NULL,'
                          ' "last_error" = NULL, "next_attempt_at" = NULL'
                          ' WHERE "project_id" = ? AND "seq" = ?', (now, project_id, seq))

    def mark_write_failed(self, project_id: str, seq: int, error: str,
                          next_attempt_at: float) -> None:
        """Count the failed upload; retry at `next_attempt_at`."""
        self.conn.execute('UPDATE "manifest_segments" SET "attempts" = "attempts" + 1,'
                          ' "last_error" = ?, "next_attempt_at" = ?'
                          ' WHERE "project_id" = ? AND "seq" = ?',
                          (error[:500], next_attempt_at, project_id, seq))

    def open_outcomes(self, project_id: str) -> list[tuple[str, str, str | None]]:
        """(message id, outcome, stored key) of the open entries."""
        return [(r[0], r[1], r[2]) for r in self._rows(
            'SELECT "message_id", "outcome", "stored_key" FROM "manifest_entries"'
            ' WHERE "project_id" = ? ORDER BY "id"', (project_id,))]

    def messages_to_account(self, project_id: str) -> list[dict[str, Any]]:
        """Settled and unarchived messages of a project."""
        states = [s.value for s in (*SETTLED_OUTCOMES, *UNARCHIVED_STATES)]
        return [dict(row) for row in self._rows(
            f"SELECT {ACCOUNT_COLUMNS} FROM messages"
            f" WHERE project_id = ? AND state IN ({marks(len(states))})", (project_id, *states))]

    def indexed_messages(self, project_id: str) -> list[tuple[Any, ...]]:
        """The index's rows of a project, with the id of the `messages` row that stored
        exactly that payload (None when the spool did not store it: a planted object that
        `sm index rebuild` indexed, or a message pruned since)."""
        return [tuple(row) for row in self._rows(
            "SELECT a.message_id, a.medium, a.message_type, a.campaign_id, a.recipient_hash,"
            " a.sent_at, a.key, a.payload_sha256, a.stored_at, m.id FROM archive_index a"
            " LEFT JOIN messages m ON m.project_id = a.project_id"
            f" AND m.message_id = a.message_id AND m.state = '{State.STORED.value}'"
            " AND m.payload_sha256 = a.payload_sha256 WHERE a.project_id = ?"
            " ORDER BY a.stored_at, a.message_id", (project_id,))]

    def add_backfilled_entry(self, entry: BackfilledEntry) -> None:
        """One complete `stored` entry, as the trigger adds it."""
        self.conn.execute(
            f'INSERT INTO "manifest_entries" ({BACKFILL_COLUMNS}) VALUES'
            f' ({marks(17)})', backfilled_values(entry))

    # ----------------------------------------------------------------------- anchors

    def pending_anchors(self, now: float, limit: int, latest: float | None = None
                        ) -> list[AnchorRow]:
        """Anchors due by `now` (or set for after `latest`) whose checkpoint is written,
        with its text."""
        return [AnchorRow.from_row(row) for row in self._rows(
            f'SELECT {ANCHOR_ROW_COLUMNS} FROM {ANCHOR_JOIN} WHERE a."done_at" IS NULL'
            ' AND s."checkpoint_written_at" IS NOT NULL'
            ' AND (a."next_attempt_at" IS NULL OR a."next_attempt_at" <= ?'
            ' OR a."next_attempt_at" > ?)'
            f'{ANCHOR_ORDER} LIMIT ?', (now, float("inf") if latest is None else latest,
                                              limit))]

    def anchors_behind(self, now: float) -> list[AnchorRow]:
        """Every anchor not done, oldest first."""
        return [AnchorRow.from_row(row) for row in self._rows(
            f'SELECT {ANCHOR_ROW_COLUMNS} FROM {ANCHOR_JOIN} WHERE a."done_at" IS NULL'
            f'{ANCHOR_ORDER}')]

    def anchor_tokens(self, project_id: str, origin: str, tree_size: int
                      ) -> list[tuple[str, bytes]]:
        """(authority, token) of the time-stamp tokens kept for a checkpoint."""
        return [(str(target), bytes(token)) for target, token in self._rows(
            'SELECT "target", "token" FROM "log_anchors" WHERE "project_id" = ?'
            ' AND "origin" = ? AND "tree_size" = ? AND "token" IS NOT NULL'
            ' ORDER BY "target"', (project_id, origin, tree_size))]

    def keep_anchor_token(self, project_id: str, origin: str, tree_size: int, kind: str,
                          target: str, token: bytes) -> None:
        """Keep a checked token on its row."""
        self.conn.execute('UPDATE "log_anchors" SET "token" = ? WHERE "project_id" = ?'
                          ' AND "origin" = ? AND "tree_size" = ? AND "kind" = ?'
                          ' AND "target" = ?',
                          (token, project_id, origin, tree_size, kind, target))

    def mark_anchor_done(self, project_id: str, origin: str, tree_size: int, kind: str,
                         target: str, token: bytes | None, now: float) -> None:
        """The anchor is made."""
        self.conn.execute('UPDATE "log_anchors" SET "done_at" = ?,'
                          ' "token" = COALESCE(?, "token"), "last_error" = NULL,'
                          ' "next_attempt_at" = NULL WHERE "project_id" = ? AND "origin" = ?'
                          ' AND "tree_size" = ? AND "kind" = ? AND "target" = ?',
                          (now, token, project_id, origin, tree_size, kind, target))

    def mark_anchor_failed(self, project_id: str, origin: str, tree_size: int, kind: str,
                           target: str, error: str, next_attempt_at: float) -> None:
        """Count the failure; retry at `next_attempt_at`."""
        self.conn.execute('UPDATE "log_anchors" SET "attempts" = "attempts" + 1,'
                          ' "last_error" = ?, "next_attempt_at" = ? WHERE "project_id" = ?'
                          ' AND "origin" = ? AND "tree_size" = ? AND "kind" = ?'
                          ' AND "target" = ?', (error[:500], next_attempt_at, project_id,
                                                origin, tree_size, kind, target))

    def failing_manifest_writes(self, min_attempts: int) -> list[dict[str, Any]]:
        """Unwritten segments or checkpoints after `min_attempts` failed writes."""
        return [dict(row) for row in self._rows(
            f'SELECT {FAILING_WRITE_COLUMNS} FROM "manifest_segments" WHERE {UNWRITTEN}'
            ' AND "attempts" >= ? ORDER BY "project_id", "seq"', (min_attempts,))]
