"""The SQLite store's connection side: transactions, reads, the settled hooks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..store_base import DbStore


class StoreBase(DbStore):
    """The SQLite connection of one spool and how every concern reads through it."""

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (hold `lock`, or be inside `write()`, while using it)."""
        conn: sqlite3.Connection = self.db.conn
        return conn

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows of one read (under the lock; the database's errors become SpoolError)."""
        return self.db.read(sql, params)

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row of one read."""
        return self.db.read(sql, params)[0][0]


def marks(count: int) -> str:
    """`?, ?, …` for `count` parameters."""
    return ",".join("?" * count)
