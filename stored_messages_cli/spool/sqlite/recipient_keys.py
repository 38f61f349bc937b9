"""The SQLite store's `recipient_keys` verbs (SPEC 9.5) and their schema step."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..recipient_keys import ERASED_COLUMNS, KEY_COLUMNS, RecipientKey
from .base import StoreBase, marks

RECIPIENT_KEYS_TABLE = """
CREATE TABLE IF NOT EXISTS "recipient_keys" (
   "kid" TEXT PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "recipient" TEXT NOT NULL,
   "wrapped" BLOB,
   "wrapped_with" TEXT NOT NULL,
   "created_at" REAL NOT NULL,
   "erased_at" REAL,
   "erase_reason" TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS "idx_recipient_keys_live"
    ON "recipient_keys" ("project_id", "recipient") WHERE "erased_at" IS NULL;
CREATE INDEX IF NOT EXISTS "idx_recipient_keys_recipient"
    ON "recipient_keys" ("project_id", "recipient")
"""


def migrate_recipient_keys(conn: sqlite3.Connection) -> None:
    """Migration step: `recipient_keys`, the wrapped data key of each recipient of an
    encrypted project (SPEC 9.5, `spool/recipient_keys.py`). Safe to run twice."""
    for statement in RECIPIENT_KEYS_TABLE.split(";"):
        if statement.strip():
            conn.execute(statement)


class RecipientKeySql(StoreBase):
    """`RecipientKeyStore` on SQLite."""

    def add_recipient_key(self, key: RecipientKey) -> bool:
        """Insert `key` unless the recipient has a live key already (then nothing); True
        when it was inserted."""
        return 1 == self.conn.execute(
            f'INSERT INTO "recipient_keys" ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
            " ON CONFLICT DO NOTHING",
            (key.kid, key.project_id, key.recipient, key.wrapped, key.wrapped_with,
             key.created_at, key.erased_at, key.erase_reason)).rowcount

    def add_recipient_keys(self, keys: Sequence[RecipientKey]) -> set[str]:
        """`add_recipient_key` of each key: the ids of those inserted (500 a statement)."""
        inserted: set[str] = set()
        for first in range(0, len(keys), 500):
            chunk = keys[first:first + 500]
            inserted.update(str(row[0]) for row in self.conn.execute(
                f'INSERT INTO "recipient_keys" ({KEY_COLUMNS}) VALUES '
                + ",".join([f"({marks(8)})"] * len(chunk))
                + ' ON CONFLICT DO NOTHING RETURNING "kid"',
                [value for key in chunk for value in (
                    key.kid, key.project_id, key.recipient, key.wrapped, key.wrapped_with,
                    key.created_at, key.erased_at, key.erase_reason)]).fetchall())
        return inserted

    def recipient_key_live(self, kid: str) -> bool:
        """True when key `kid` exists and is not erased."""
        return bool(self._rows('SELECT 1 FROM "recipient_keys" WHERE "kid" = ?'
                               ' AND "erased_at" IS NULL', (kid,)))

    def live_recipient_key(self, project_id: str, recipient: str) -> RecipientKey | None:
        """The recipient's key not erased, if any."""
        rows = self._rows(f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "project_id" = ?'
                          ' AND "recipient" = ? AND "erased_at" IS NULL', (project_id, recipient))
        return RecipientKey.from_row(rows[0]) if rows else None

    def live_recipient_keys(self, project_id: str, recipients: Sequence[str]
                            ) -> list[RecipientKey]:
        """The keys not erased of those of `recipients` that have one."""
        found: list[RecipientKey] = []
        for first in range(0, len(recipients), 500):
            chunk = list(recipients[first:first + 500])
            found += [RecipientKey.from_row(row) for row in self._rows(
                f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "project_id" = ?'
                f' AND "recipient" IN ({marks(len(chunk))}) AND "erased_at" IS NULL',
                (project_id, *chunk))]
        return found

    def recipient_key(self, kid: str) -> RecipientKey | None:
        """The key with id `kid` (erased or not)."""
        rows = self._rows(f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE "kid" = ?', (kid,))
        return RecipientKey.from_row(rows[0]) if rows else None

    def erase_recipient_keys(self, project_id: str, recipients: Sequence[str], reason: str,
                             now: float) -> list[RecipientKey]:
        """Destroy the live keys of `recipients`: the wrapped bytes overwritten with zeros
        first, then set to NULL, with `secure_delete` on so SQLite zeroes the freed space."""
        if not recipients:
            return []
        where = (f'"project_id" = ? AND "recipient" IN ({marks(len(recipients))})'
                 ' AND "erased_at" IS NULL')
        params = (project_id, *recipients)
        rows = [RecipientKey.from_row(r) for r in self._rows(
            f'SELECT {KEY_COLUMNS} FROM "recipient_keys" WHERE {where}', params)]
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute('UPDATE "recipient_keys" SET "wrapped" = zeroblob(length("wrapped"))'
                          f' WHERE {where}', params)
        self.conn.execute('UPDATE "recipient_keys" SET "wrapped" = NULL, "erased_at" = ?,'
                          f' "erase_reason" = ? WHERE {where}', (now, reason, *params))
        return [RecipientKey(r.kid, r.project_id, r.recipient, None, r.wrapped_with,
                             r.created_at, now, reason) for r in rows]

    def erased_recipients(self, project_id: str, recipients: Sequence[str]
                          ) -> dict[str, float]:
        """recipient → the latest time one of its keys was erased."""
        found: dict[str, float] = {}
        for first in range(0, len(recipients), 500):
            chunk = list(recipients[first:first + 500])
            for recipient, erased in self._rows(
                    'SELECT "recipient", MAX("erased_at") FROM "recipient_keys"'
                    f' WHERE "project_id" = ? AND "recipient" IN ({marks(len(chunk))})'
                    ' AND "erased_at" IS NOT NULL GROUP BY "recipient"', (project_id, *chunk)):
                found[str(recipient)] = float(erased)
        return found

    def recipient_key_counts(self) -> tuple[int, int, float | None]:
        """(live keys, erased keys, when the newest key was made)."""
        live, erased, newest = self._rows(
            'SELECT COUNT(*) FILTER (WHERE "erased_at" IS NULL),'
            ' COUNT(*) FILTER (WHERE "erased_at" IS NOT NULL), MAX("created_at")'
            ' FROM "recipient_keys"')[0]
        return int(live or 0), int(erased or 0), None if newest is None else float(newest)

    def spool_meta_value(self, name: str) -> str | None:
        """A `spool_meta` value (None when unset)."""
        rows = self._rows('SELECT "value" FROM "spool_meta" WHERE "name" = ?', (name,))
        return None if not rows else str(rows[0][0])

    def set_spool_meta_value(self, name: str, value: str) -> None:
        """Set a `spool_meta` value."""
        self.conn.execute('INSERT INTO "spool_meta" ("name", "value") VALUES (?, ?)'
                          ' ON CONFLICT ("name") DO UPDATE SET "value" = excluded."value"',
                          (name, value))

    def add_erased_entry(self, values: Sequence[Any]) -> None:
        """A complete `erased` entry in the project's open manifest segment."""
        self.conn.execute(f'INSERT INTO "manifest_entries" ({ERASED_COLUMNS})'
                          f' VALUES ({", ".join(["?"] * 17)})', tuple(values))

    def sealed_as(self, project_id: str, message_id: str) -> tuple[str, str] | None:
        """(key without prefix, recipient hash) of a message row."""
        rows = self._rows('SELECT "key", "recipient_hash" FROM "messages" WHERE "project_id" = ?'
                          ' AND "message_id" = ?', (project_id, message_id))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def after_erasure(self) -> None:
        """Push the pages that held erased keys out of the WAL (a truncating checkpoint)."""
        with self.db.lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
