"""The PostgreSQL store's connection side: transactions, reads, the settled hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..store_base import DbStore, SpoolDatabase
from .session import PgSession


class PgStoreBase(DbStore):
    """The spool's PostgreSQL session (`SpoolDB.session`) and how every concern reads."""

    def __init__(self, db: SpoolDatabase) -> None:
        super().__init__(db)
        self.pg: PgSession = db.session

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement in the caller's transaction."""
        rows: list[tuple[Any, ...]] = self.pg.execute(sql, params).fetchall()
        return rows

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read (under the lock; the database's errors become SpoolError)."""
        with self.db.lock:
            try:
                return self._all(sql, params)
            except self.db.errors as exc:
                raise self.db.failure(exc) from None

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of one read as dicts by column name."""
        with self.db.lock:
            try:
                cursor = self.pg.execute(sql, params)
                names = [column.name for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            except self.db.errors as exc:
                raise self.db.failure(exc) from None

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of one read."""
        return self._rows(sql, params)[0][0]

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Rows one statement changed (in the caller's transaction)."""
        return int(self.pg.execute(sql, params).rowcount)
