"""The archive index's statements in SQLite's SQL (`archive.IndexWriter`), and the settle's
read of what to index."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..archive import MESSAGE_ENTRY_COLUMNS, EntryRow, index_entries, message_entry
from ..dialect import chunks

_INSERT_ENTRY = (
    'INSERT INTO "archive_entries" ("project_id", "message_id", "medium", "message_type",'
    ' "campaign_id", "recipient_hash", "sent_at", "key", "payload_sha256", "version_id",'
    ' "location", "stored_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')


class SqliteIndex:
    """`IndexWriter` in SQLite's spelling (odd hashes stay text: SQLite tells them apart by
    their type)."""

    text_as_bytes = False

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def location_id(self, url: str | None, prefix: str) -> int:
        """The `archive_locations` row of a destination URL and key prefix (made if new)."""
        found = self.conn.execute('SELECT "id" FROM "archive_locations" WHERE'
                                  ' "destination_url" IS ? AND "key_prefix" = ?',
                                  (url, prefix)).fetchone()
        if found:
            return int(found[0])
        cursor = self.conn.execute('INSERT INTO "archive_locations" ("destination_url",'
                                   ' "key_prefix") VALUES (?, ?)', (url, prefix))
        return int(cursor.lastrowid or 0)

    def indexed(self, project_id: str, message_ids: Sequence[str]) -> list[tuple[int, str]]:
        """`(entry, message_id)` of those of a project's messages already indexed."""
        return [(int(r[0]), r[1]) for r in self.conn.execute(
            'SELECT "id", "message_id" FROM "archive_entries" WHERE "project_id" = ?'
            f' AND "message_id" IN ({",".join("?" * len(message_ids))})',
            (project_id, *message_ids)).fetchall()]

    def entry_of(self, project_id: str, message_id: str) -> int | None:
        """The entry of one message, if indexed."""
        found = self.conn.execute('SELECT "id" FROM "archive_entries" WHERE "message_id" = ?'
                                  ' AND "project_id" = ?', (message_id, project_id)).fetchone()
        return None if found is None else int(found[0])

    def key_of(self, entry: int) -> str:
        """The full key an entry gives."""
        return str(self.conn.execute('SELECT "key" FROM "archive_index" WHERE "entry" = ?',
                                     (entry,)).fetchone()[0])

    def insert(self, values: Sequence[tuple[Any, ...]]) -> None:
        """Insert entries."""
        self.conn.executemany(_INSERT_ENTRY, values)

    def insert_one(self, values: tuple[Any, ...]) -> int:
        """Insert one entry; its id."""
        return int(self.conn.execute(_INSERT_ENTRY, values).lastrowid or 0)

    def replace(self, entry: int, values: tuple[Any, ...]) -> None:
        """Overwrite an entry and forget its identifier hashes (and the content prefix
        prune kept, unless the payload is the same)."""
        self.conn.execute(
            'UPDATE "archive_entries" SET "project_id" = ?, "message_id" = ?, "medium" = ?,'
            ' "message_type" = ?, "campaign_id" = ?, "recipient_hash" = ?, "sent_at" = ?,'
            ' "key" = ?, "payload_sha256" = ?, "version_id" = ?, "location" = ?,'
            ' "stored_at" = ?,'
            # the content prefix prune kept names the old payload's message: kept only with it
            ' "content_prefix" = CASE WHEN "payload_sha256" = ? THEN "content_prefix" END'
            ' WHERE "id" = ?', (*values, values[8], entry))
        self.conn.execute('DELETE FROM "archive_recipient_hashes" WHERE "entry" = ?', (entry,))

    def add_hashes(self, entry: int, hashes: Sequence[bytes | str | None]) -> None:
        """Add identifier hashes to an entry (those it has are kept)."""
        self.conn.executemany('INSERT OR IGNORE INTO "archive_recipient_hashes"'
                              ' ("recipient_hash", "entry") VALUES (?, ?)',
                              [(h, entry) for h in hashes])


def write_entries(conn: sqlite3.Connection, rows: Iterable[EntryRow], *,
                  replace: str = "always") -> int:
    """`index_entries` on a SQLite connection (`SqliteIndex`)."""
    return index_entries(SqliteIndex(conn), rows, replace=replace)


def entries_of_message_rows(conn: sqlite3.Connection, row_ids: Sequence[int]
                            ) -> list[EntryRow]:
    """What the settle of stored messages indexes: their rows in `messages`."""
    found = []
    for chunk in chunks(list(row_ids)):
        found += [message_entry(row) for row in conn.execute(
            f'SELECT {MESSAGE_ENTRY_COLUMNS} FROM "messages"'
            f' WHERE "id" IN ({",".join("?" * len(chunk))}) ORDER BY "id"', chunk).fetchall()]
    return found
