"""The SQLite store's intake verbs: messages and send events in, discards, rejections, inbox."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...states import FinalReason, State
from .. import bodies
from ..archive import unpacked
from ..rows import ArchivedMessage, EventTarget, KnownMessage, MessageRow
from .base import StoreBase

INSERT_SQL = (
    "INSERT INTO messages (project_id, message_id, medium, message_type, campaign_id,"
    " recipient_hash, sent_at, key, state, content_sha256, payload_sha256,"
    " created_at, confirmed_at, updated_at, final_reason, recipient_hashes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project_id, message_id) DO NOTHING")
# A message id the archive index holds is taken even when prune deleted its row: intake
# looks first (one probe of the index's unique key per id; a probe inside the INSERT, as
# `INSERT … SELECT … WHERE NOT EXISTS`, costs SQLite twice the insert) and then reads
# `archived_message`.
_ARCHIVED = 'SELECT 1 FROM "archive_entries" WHERE "message_id" = ? AND "project_id" = ?'
_ANY_ARCHIVED = (
    'SELECT 1 FROM json_each(?2) j WHERE EXISTS (SELECT 1 FROM "archive_entries" e'
    ' WHERE e."message_id" = j.value AND e."project_id" = ?1) LIMIT 1')


class IntakeSql(StoreBase):
    """`IntakeStore` on SQLite."""

    def insert_new(self, rows: Sequence[MessageRow]) -> bool:
        """Insert message rows in one statement, then their bodies in another; True when
        every one went in. Otherwise nothing is kept (a savepoint) and the caller applies
        the messages one by one."""
        conn = self.conn
        if self._any_archived(rows):
            return False
        conn.execute("SAVEPOINT sm_new")
        last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
        if conn.executemany(INSERT_SQL, [r.without_body() for r in rows]).rowcount != len(rows):
            conn.execute("ROLLBACK TO sm_new")
            conn.execute("RELEASE sm_new")
            return False
        # Under the write lock, the rows above `last` are exactly these, in this order.
        ids = [r[0] for r in conn.execute("SELECT id FROM messages WHERE id > ? ORDER BY id",
                                          (last,))]
        bodies.put_many(conn, [(row_id, row.kept) for row_id, row in zip(ids, rows, strict=True)
                               if row.kept is not None])
        conn.execute("RELEASE sm_new")
        return True

    def insert_message(self, row: MessageRow) -> bool:
        """Insert one message row and its body; False when it was recorded before, or the
        archive index holds its id."""
        if self.conn.execute(_ARCHIVED, (row.message_id, row.project_id)).fetchone():
            return False
        inserted = self.conn.execute(INSERT_SQL, row.without_body())
        if not inserted.rowcount:
            return False
        if row.kept is not None:
            bodies.put(self.conn, int(inserted.lastrowid or 0), row.kept)
        return True

    def _any_archived(self, rows: Sequence[MessageRow]) -> bool:
        """True when the archive index holds the id of any of `rows`."""
        by_project: dict[str, list[str]] = {}
        for row in rows:
            by_project.setdefault(row.project_id, []).append(row.message_id)
        return any(self.conn.execute(_ANY_ARCHIVED, (project_id, json.dumps(ids))).fetchone()
                   for project_id, ids in by_project.items())

    def known_message(self, project_id: str, message_id: str) -> KnownMessage | None:
        """A recorded message, for a second `record` of it."""
        row = self.conn.execute(
            "SELECT id, state, content_sha256, payload_sha256, final_reason,"
            f" {bodies.HAS_BODY} FROM messages WHERE project_id = ? AND message_id = ?",
            (project_id, message_id)).fetchone()
        return None if row is None else KnownMessage(row[0], row[1], row[2], row[3], row[4],
                                                     bool(row[5]))

    def archived_message(self, project_id: str, message_id: str) -> ArchivedMessage | None:
        """The archive index's identity of a message with no row in `messages`."""
        row = self.conn.execute(
            'SELECT a."key", a."payload_sha256", e."content_prefix", a."sent_at"'
            ' FROM "archive_entries" e JOIN "archive_index" a ON a."entry" = e."id"'
            ' WHERE e."message_id" = ? AND e."project_id" = ?',
            (message_id, project_id)).fetchone()
        return None if row is None else ArchivedMessage(row[0], row[1], unpacked(row[2]),
                                                        row[3])

    def event_target(self, project_id: str, message_id: str) -> EventTarget | None:
        """A recorded message, for a send event naming it."""
        row = self.conn.execute(
            f"SELECT id, state, {bodies.BODY_OF}, sent_at, final_reason FROM messages"
            " WHERE project_id = ? AND message_id = ?", (project_id, message_id)).fetchone()
        if row is None:
            return None
        return EventTarget(row[0], row[1], None if row[2] is None else bytes(row[2]), row[3],
                           row[4])

    def confirm(self, row_id: int, payload_sha256: str, sent_at: str, kept: bytes,
                now: float) -> None:
        """The message was sent: `queued`, with its confirmed payload's body."""
        self.conn.execute(
            "UPDATE messages SET state = ?, payload_sha256 = ?, sent_at = ?,"
            " confirmed_at = ?, updated_at = ?, final_reason = NULL, last_error = NULL"
            " WHERE id = ?", (State.QUEUED, payload_sha256, sent_at, now, now, row_id))
        bodies.put(self.conn, row_id, kept)

    def discard_send_failed(self, row_id: int, error: str | None, now: float) -> None:
        """The send failed: `discarded` (`send_failed`), its body dropped."""
        self.conn.execute(
            "UPDATE messages SET state = ?, final_reason = ?,"
            " last_error = ?, updated_at = ? WHERE id = ?",
            (State.DISCARDED, FinalReason.SEND_FAILED, error, now, row_id))
        bodies.drop(self.conn, row_id)

    def discard_unconfirmed(self, created_before: float, drop_bodies_before: float,
                            now: float) -> int:
        """Discard messages awaiting confirmation since before `created_before`; drop the
        bodies of those discarded so before `drop_bodies_before`."""
        discarded = int(self.conn.execute(
            "UPDATE messages SET state = ?, final_reason = ?, updated_at = ?"
            " WHERE state = ? AND created_at <= ?",
            (State.DISCARDED, FinalReason.NEVER_CONFIRMED, now, State.AWAITING_CONFIRMATION,
             created_before)).rowcount)
        self.conn.execute(
            "DELETE FROM message_bodies WHERE id IN (SELECT id FROM messages"
            " WHERE state = ? AND final_reason = ? AND updated_at <= ?)",
            (State.DISCARDED, FinalReason.NEVER_CONFIRMED, drop_bodies_before))
        return discarded

    def reject_line(self, source: str, line: int, reason: str, raw: str, now: float) -> None:
        """Keep a rejected input line with its reason."""
        self.conn.execute("INSERT INTO rejected (source, line, reason, raw, rejected_at)"
                          " VALUES (?, ?, ?, ?, ?)", (source, line, reason, raw, now))

    def inbox_is_empty(self) -> bool:
        """True when no SQL sender left a line in the inbox (read without the write lock)."""
        return not self._rows('SELECT 1 FROM "inbox" LIMIT 1')

    def take_inbox(self, limit: int) -> list[tuple[int, str | None, str | None]]:
        """The oldest inbox lines `(id, line, source)` (the write lock keeps other workers
        out)."""
        rows = self.conn.execute(
            'SELECT "id", "line", "source" FROM "inbox" ORDER BY "id" LIMIT ?',
            (limit,)).fetchall()
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def drop_inbox(self, ids: Sequence[int]) -> None:
        """Delete inbox lines once recorded."""
        self.conn.execute('DELETE FROM "inbox" WHERE "id" IN (SELECT value FROM json_each(?))',
                          (json.dumps(list(ids)),))
