"""The PostgreSQL store's `recipient_keys` verbs (SPEC 9.5) and their schema step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..recipient_keys import ERASED_COLUMNS, KEY_COLUMNS, RecipientKey
from .base import PgStoreBase
from .session import PgSession

RECIPIENT_KEYS_TABLE = """
CREATE TABLE IF NOT EXISTS "recipient_keys" (
   "kid" TEXT PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "recipient" TEXT NOT NULL,
   "wrapped" BYTEA,
   "wrapped_with" TEXT NOT NULL,
   "created_at" DOUBLE PRECISION NOT NULL,
   "erased_at" DOUBLE PRECISION,
   "erase_reason" TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS "idx_recipient_keys_live"
    ON "recipient_keys" ("project_id", "recipient") WHERE "erased_at" IS NULL;
CREATE INDEX IF NOT EXISTS "idx_recipient_keys_recipient"
    ON "recipient_keys" ("project_id", "recipient")
"""


def recipient_keys(conn: PgSession) -> None:
    """Step: `recipient_keys`, the wrapped data key of each recipient of an encrypted
    project (SPEC 9.5, `spool/recipient_keys.py`)."""
    for statement in RECIPIENT_KEYS_TABLE.split(";"):
        if statement.strip():
            conn.execute(statement.strip())


class RecipientKeyPg(PgStoreBase):
    """`RecipientKeyStore` on PostgreSQL."""

    def add_recipient_key(self, key: RecipientKey) -> bool:
        """Insert `key` unless the recipient has a live key already (then nothing); True
        when it was inserted."""
        return 1 == int(self.pg.execute(
            f'INSERT INTO "recipient_keys" ({KEY_COLUMNS})'
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (key.kid, key.project_id, key.recipient, key.wrapped, key.wrapped_with,
             key.created_at, key.erased_at, key.erase_reason)).rowcount)

    def add_recipient_keys(self, keys: Sequence[RecipientKey]) -> set[str]:
        """`add_recipient_key` of each key: the ids of those inserted (500 a statement)."""
        inserted: set[str] = set()
        row = "(" + ", ".join(["%s"] * 8) + ")"
        for first in range(0, len(keys), 500):
            chunk = keys[first:first + 500]
            inserted.update(str(found[0]) for found in self._all(
                f'INSERT INTO "recipient_keys" ({KEY_COLUMNS}) VALUES '
                + ", ".join([row] * len(chunk)) + ' ON CONFLICT DO NOTHING RETURNING "kid"',
                [value for key in chunk for value in (
                    key.kid, key.project_id, key.recipient, key.wrapped, key.wrapped_with,
                    key.created_at, key.erased_at, key.erase_reason)]))
        return inserted

    def recipient_key_live(self, kid: str) -> bool:
        """True when key `kid` exists and is not erased."""
        return bool(self._rows('SELECT 1 FROM "recipient_keys" WHERE "kid" = %s'
                               ' AND "erased_at" IS NULL', (kid,)))

    def live_recipient_key(self, project_id: str, recipient: str) -> RecipientKey | None:
        """The recipient's key not erased, if any."""
        rows = self._rows(f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "project_id" = %s'
                          ' AND "recipient" = %s AND "erased_at" IS NULL',
                          (project_id, recipient))
        return RecipientKey.from_row(rows[0]) if rows else None

    def live_recipient_keys(self, project_id: str, recipients: Sequence[str]
                            ) -> list[RecipientKey]:
        """The keys not erased of those of `recipients` that have one."""
        return [RecipientKey.from_row(row) for row in self._rows(
            f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "project_id" = %s'
            ' AND "recipient" = ANY(%s) AND "erased_at" IS NULL',
            (project_id, list(recipients)))]

    def recipient_key(self, kid: str) -> RecipientKey | None:
        """The key with id `kid` (erased or not)."""
        rows = self._rows(f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "kid" = %s',
                          (kid,))
        return RecipientKey.from_row(rows[0]) if rows else None

    def erase_recipient_keys(self, project_id: str, recipients: Sequence[str], reason: str,
                             now: float) -> list[RecipientKey]:
        """Destroy the live keys of `recipients` (the wrapped bytes set to NULL; the old row
        versions stay until VACUUM: docs/privacy.md)."""
        if not recipients:
            return []
        rows = self._all(
            'UPDATE "recipient_keys" SET "wrapped" = NULL, "erased_at" = %s,'
            ' "erase_reason" = %s WHERE "project_id" = %s AND "recipient" = ANY(%s)'
            f' AND "erased_at" IS NULL RETURNING {KEY_COLUMNS}',
            (now, reason, project_id, list(recipients)))
        return [RecipientKey.from_row(r) for r in rows]

    def erased_recipients(self, project_id: str, recipients: Sequence[str]
                          ) -> dict[str, float]:
        """recipient → the latest time one of its keys was erased."""
        return {str(r): float(e) for r, e in self._rows(
            'SELECT "recipient", MAX("erased_at") FROM "recipient_keys"'
            ' WHERE "project_id" = %s AND "recipient" = ANY(%s) AND "erased_at" IS NOT NULL'
            ' GROUP BY "recipient"', (project_id, list(recipients)))}

    def recipient_key_counts(self) -> tuple[int, int, float | None]:
        """(live keys, erased keys, when the newest key was made)."""
        live, erased, newest = self._rows(
            'SELECT COUNT(*) FILTER (WHERE "erased_at" IS NULL),'
            ' COUNT(*) FILTER (WHERE "erased_at" IS NOT NULL), MAX("created_at")'
            ' FROM "recipient_keys"')[0]
        return int(live or 0), int(erased or 0), None if newest is None else float(newest)

    def spool_meta_value(self, name: str) -> str | None:
        """A `spool_meta` value (None when unset)."""
        rows = self._rows('SELECT "value" FROM "spool_meta" WHERE "name" = %s', (name,))
        return None if not rows else str(rows[0][0])

    def set_spool_meta_value(self, name: str, value: str) -> None:
        """Set a `spool_meta` value."""
        self.pg.execute('INSERT INTO "spool_meta" ("name", "value") VALUES (%s, %s)'
                        ' ON CONFLICT ("name") DO UPDATE SET "value" = excluded."value"',
                        (name, value))

    def add_erased_entry(self, values: Sequence[Any]) -> None:
        """A complete `erased` entry in the project's open manifest segment."""
        self.pg.execute(f'INSERT INTO "manifest_entries" ({ERASED_COLUMNS})'
                          f' VALUES ({", ".join(["%s"] * 17)})', tuple(values))

    def sealed_as(self, project_id: str, message_id: str) -> tuple[str, str] | None:
        """(key without prefix, recipient hash) of a message row."""
        rows = self._rows('SELECT "key", "recipient_hash" FROM "messages" WHERE "project_id" = %s'
                          ' AND "message_id" = %s', (project_id, message_id))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def after_erasure(self) -> None:
        """Nothing to push out: PostgreSQL reclaims old row versions at VACUUM."""
