"""The archive index's statements in PostgreSQL's SQL (`archive.IndexWriter`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..archive import MESSAGE_ENTRY_COLUMNS, EntryRow, message_entry
from .session import PgSession

_INSERT_ENTRY = (
    'INSERT INTO "archive_entries" ("project_id", "message_id", "medium", "message_type",'
    ' "campaign_id", "recipient_hash", "sent_at", "key", "payload_sha256", "version_id",'
    ' "location", "stored_at") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)')


class PgIndex:
    """`archive.IndexWriter` on a PostgreSQL session: hashes in BYTEA columns, so a hash
    that is not hex is kept as its bytes (`archive.packed`)."""

    text_as_bytes = True

    def __init__(self, session: PgSession) -> None:
        self.pg = session

    def location_id(self, url: str | None, prefix: str) -> int:
        """The `archive_locations` row of a destination URL and key prefix (made if new)."""
        found = self.pg.execute('SELECT "id" FROM "archive_locations" WHERE'
                                ' "destination_url" IS NOT DISTINCT FROM %s'
                                ' AND "key_prefix" = %s', (url, prefix)).fetchone()
        if found is None:
            found = self.pg.execute('INSERT INTO "archive_locations" ("destination_url",'
                                    ' "key_prefix") VALUES (%s, %s) RETURNING "id"',
                                    (url, prefix)).fetchone()
        return int(found[0])

    def indexed(self, project_id: str, message_ids: Sequence[str]) -> list[tuple[int, str]]:
        """`(entry, message_id)` of those of a project's messages already indexed."""
        return [(int(r[0]), r[1]) for r in self.pg.execute(
            'SELECT "id", "message_id" FROM "archive_entries" WHERE "project_id" = %s'
            ' AND "message_id" = ANY(%s)', (project_id, list(message_ids))).fetchall()]

    def entry_of(self, project_id: str, message_id: str) -> int | None:
        """The entry of one message, if indexed."""
        found = self.pg.execute('SELECT "id" FROM "archive_entries" WHERE "message_id" = %s'
                                ' AND "project_id" = %s', (message_id, project_id)).fetchone()
        return None if found is None else int(found[0])

    def key_of(self, entry: int) -> str:
        """The full key an entry gives."""
        return str(self.pg.execute('SELECT "key" FROM "archive_index" WHERE "entry" = %s',
                                   (entry,)).fetchone()[0])

    def insert(self, values: Sequence[tuple[Any, ...]]) -> None:
        """Insert entries."""
        self.pg.executemany(_INSERT_ENTRY, values)

    def insert_one(self, values: tuple[Any, ...]) -> int:
        """Insert one entry; its id."""
        return int(self.pg.execute(f'{_INSERT_ENTRY} RETURNING "id"', values).fetchone()[0])

    def replace(self, entry: int, values: tuple[Any, ...]) -> None:
        """Overwrite an entry and forget its identifier hashes (and the content prefix
        prune kept, unless the payload is the same)."""
        self.pg.execute(
            'UPDATE "archive_entries" SET "project_id" = %s, "message_id" = %s, "medium" = %s,'
            ' "message_type" = %s, "campaign_id" = %s, "recipient_hash" = %s, "sent_at" = %s,'
            ' "key" = %s, "payload_sha256" = %s, "version_id" = %s, "location" = %s,'
            ' "stored_at" = %s,'
            # the content prefix prune kept names the old payload's message: kept only with it
            ' "content_prefix" = CASE WHEN "payload_sha256" = %s THEN "content_prefix" END'
            ' WHERE "id" = %s', (*values, values[8], entry))
        self.pg.execute('DELETE FROM "archive_recipient_hashes" WHERE "entry" = %s', (entry,))

    def add_hashes(self, entry: int, hashes: Sequence[bytes | str | None]) -> None:
        """Add identifier hashes to an entry (those it has are kept)."""
        if hashes:
            self.pg.executemany('INSERT INTO "archive_recipient_hashes" ("recipient_hash",'
                                ' "entry") VALUES (%s, %s) ON CONFLICT DO NOTHING',
                                [(h, entry) for h in hashes])

    def entries_of_messages(self, row_ids: Sequence[int]) -> list[EntryRow]:
        """What the settle of stored messages indexes: their rows in `messages`."""
        return [message_entry(row) for row in self.pg.execute(
            f'SELECT {MESSAGE_ENTRY_COLUMNS} FROM "messages" WHERE "id" = ANY(%s)'
            ' ORDER BY "id"', (list(row_ids),)).fetchall()]
