"""The PostgreSQL store's intake verbs: messages and send events in, discards, rejections,
the inbox."""

from __future__ import annotations

from collections.abc import Sequence

from ...states import FinalReason, State
from ..bodies import BODY_OF, HAS_BODY
from ..rows import ArchivedMessage, EventTarget, KnownMessage, MessageRow
from .base import PgStoreBase

_COLUMNS = ("project_id, message_id, medium, message_type, campaign_id, recipient_hash,"
            " sent_at, key, state, content_sha256, payload_sha256, created_at, confirmed_at,"
            " updated_at, final_reason, recipient_hashes")
INSERT_SQL = (f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join(['%s'] * 16)})"
              " ON CONFLICT (project_id, message_id) DO NOTHING")
# A message id the archive index holds is taken even when prune deleted its row. A batch
# looks first (one statement), then inserts as above; one message is inserted by a statement
# that probes the index itself (one round trip), then intake reads `archived_message`.
_SECONDS = "%s::double precision"  # typed: a NULL from VALUES would be text
INSERT_UNLESS_ARCHIVED = (
    f"INSERT INTO messages ({_COLUMNS}) SELECT v.* FROM (VALUES ("
    + ", ".join(["%s"] * 11 + [_SECONDS] * 3 + ["%s"] * 2) + f")) AS v ({_COLUMNS})"
    ' WHERE NOT EXISTS (SELECT 1 FROM "archive_entries" e'
    '                   WHERE e."message_id" = v.message_id AND e."project_id" = v.project_id)'
    " ON CONFLICT (project_id, message_id) DO NOTHING")
_ANY_ARCHIVED = ('SELECT 1 FROM "archive_entries" WHERE "project_id" = %s'
                 ' AND "message_id" = ANY(%s) LIMIT 1')
PUT_BODY = ('INSERT INTO "message_bodies" ("id", "payload") VALUES (%s, %s)'
            ' ON CONFLICT ("id") DO UPDATE SET "payload" = EXCLUDED."payload"')


class IntakePg(PgStoreBase):
    """`IntakeStore` on PostgreSQL."""

    def insert_new(self, rows: Sequence[MessageRow]) -> bool:
        """Insert message rows, then their bodies; True when every one went in. Otherwise
        nothing is kept (a savepoint) and the caller applies the messages one by one."""
        by_project: dict[str, list[str]] = {}
        for row in rows:
            by_project.setdefault(row.project_id, []).append(row.message_id)
        if any(self._all(_ANY_ARCHIVED, (project_id, ids))
               for project_id, ids in by_project.items()):
            return False
        self.pg.execute("SAVEPOINT sm_new")
        last = self._all("SELECT COALESCE(MAX(id), 0) FROM messages")[0][0]
        if self.pg.executemany(INSERT_SQL, [r.without_body() for r in rows]).rowcount != len(rows):
            self.pg.execute("ROLLBACK TO SAVEPOINT sm_new")
            self.pg.execute("RELEASE SAVEPOINT sm_new")
            return False
        # Under the spool's write lock, the rows above `last` are exactly these, in order.
        ids = [r[0] for r in self._all("SELECT id FROM messages WHERE id > %s ORDER BY id",
                                       (last,))]
        kept = [(row_id, row.kept) for row_id, row in zip(ids, rows, strict=True)
                if row.kept is not None]
        if kept:
            self.pg.executemany('INSERT INTO "message_bodies" ("id", "payload")'
                                " VALUES (%s, %s)", kept)
        self.pg.execute("RELEASE SAVEPOINT sm_new")
        return True

    def insert_message(self, row: MessageRow) -> bool:
        """Insert one message row and its body; False when it was recorded before, or the
        archive index holds its id."""
        inserted = self._all(f"{INSERT_UNLESS_ARCHIVED} RETURNING id", row.without_body())
        if not inserted:
            return False
        if row.kept is not None:
            self.pg.execute(PUT_BODY, (inserted[0][0], row.kept))
        return True

    def known_message(self, project_id: str, message_id: str) -> KnownMessage | None:
        """A recorded message, for a second `record` of it."""
        rows = self._all(
            "SELECT id, state, content_sha256, payload_sha256, final_reason,"
            f" {HAS_BODY} FROM messages WHERE project_id = %s AND message_id = %s",
            (project_id, message_id))
        return KnownMessage(*rows[0]) if rows else None

    def archived_message(self, project_id: str, message_id: str) -> ArchivedMessage | None:
        """The archive index's identity of a message with no row in `messages`."""
        rows = self._all(
            'SELECT a."key", a."payload_sha256", e."content_prefix", a."sent_at"'
            ' FROM "archive_entries" e JOIN "archive_index" a ON a."entry" = e."id"'
            ' WHERE e."message_id" = %s AND e."project_id" = %s', (message_id, project_id))
        if not rows:
            return None
        key, payload_sha256, content_prefix, sent_at = rows[0]
        return ArchivedMessage(key, payload_sha256,
                               None if content_prefix is None else bytes(content_prefix).hex(),
                               sent_at)

    def event_target(self, project_id: str, message_id: str) -> EventTarget | None:
        """A recorded message, for a send event naming it."""
        rows = self._all(
            f"SELECT id, state, {BODY_OF}, sent_at, final_reason FROM messages"
            " WHERE project_id = %s AND message_id = %s", (project_id, message_id))
        if not rows:
            return None
        row_id, state, kept, sent_at, final_reason = rows[0]
        return EventTarget(row_id, state, None if kept is None else bytes(kept), sent_at,
                           final_reason)

    def confirm(self, row_id: int, payload_sha256: str, sent_at: str, kept: bytes,
                now: float) -> None:
        """The message was sent: `queued`, with its confirmed payload's body."""
        self.pg.execute(
            "UPDATE messages SET state = %s, payload_sha256 = %s, sent_at = %s,"
            " confirmed_at = %s, updated_at = %s, final_reason = NULL, last_error = NULL"
            " WHERE id = %s", (State.QUEUED, payload_sha256, sent_at, now, now, row_id))
        self.pg.execute(PUT_BODY, (row_id, kept))

    def discard_send_failed(self, row_id: int, error: str | None, now: float) -> None:
        """The send failed: `discarded` (`send_failed`), its body dropped."""
        self.pg.execute(
            "UPDATE messages SET state = %s, final_reason = %s,"
            " last_error = %s, updated_at = %s WHERE id = %s",
            (State.DISCARDED, FinalReason.SEND_FAILED, error, now, row_id))
        self.pg.execute('DELETE FROM "message_bodies" WHERE "id" = %s', (row_id,))

    def discard_unconfirmed(self, created_before: float, drop_bodies_before: float,
                            now: float) -> int:
        """Discard messages awaiting confirmation since before `created_before`; drop the
        bodies of those discarded so before `drop_bodies_before`."""
        discarded = self._count(
            "UPDATE messages SET state = %s, final_reason = %s, updated_at = %s"
            " WHERE state = %s AND created_at <= %s",
            (State.DISCARDED, FinalReason.NEVER_CONFIRMED, now, State.AWAITING_CONFIRMATION,
             created_before))
        self.pg.execute(
            "DELETE FROM message_bodies WHERE id IN (SELECT id FROM messages"
            " WHERE state = %s AND final_reason = %s AND updated_at <= %s)",
            (State.DISCARDED, FinalReason.NEVER_CONFIRMED, drop_bodies_before))
        return discarded

    def reject_line(self, source: str, line: int, reason: str, raw: str, now: float) -> None:
        """Keep a rejected input line with its reason."""
        self.pg.execute("INSERT INTO rejected (source, line, reason, raw, rejected_at)"
                        " VALUES (%s, %s, %s, %s, %s)", (source, line, reason, raw, now))

    def inbox_is_empty(self) -> bool:
        """True when no SQL sender left a line in the inbox (read without the write lock)."""
        return not self._rows('SELECT 1 FROM "inbox" LIMIT 1')

    def take_inbox(self, limit: int) -> list[tuple[int, str | None, str | None]]:
        """The oldest inbox lines `(id, line, source)`; lines another worker drains are
        skipped."""
        return [(int(r[0]), r[1], r[2]) for r in self._all(
            'SELECT "id", "line", "source" FROM "inbox" ORDER BY "id" LIMIT %s'
            " FOR UPDATE SKIP LOCKED", (limit,))]

    def drop_inbox(self, ids: Sequence[int]) -> None:
        """Delete inbox lines once recorded."""
        self.pg.execute('DELETE FROM "inbox" WHERE "id" = ANY(%s)', (list(ids),))
