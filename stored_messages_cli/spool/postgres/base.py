"""The PostgreSQL store's connection side: transactions, reads, the settled hooks."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ...clock import Clock
from ..lock import SpoolLock
from ..store import Settled
from .session import PgSession

if TYPE_CHECKING:  # the connection's owner; it imports this package's schema steps
    from ..db import SpoolDB


class PgStoreBase:
    """The spool's PostgreSQL session (`SpoolDB.session`) and what every concern uses."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db
        self.clock: Clock = db.clock
        self.pg: PgSession = db.session

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean the database failed."""
        return self.db.errors

    def lock_held_here(self) -> bool:
        """True when this thread holds the spool's lock."""
        return self.db.lock.held_here()

    @property
    def lock(self) -> SpoolLock:
        """The lock guarding the session."""
        return self.db.lock

    def write(self, durable: bool = True) -> AbstractContextManager[Any]:
        """A write transaction holding the spool's write lock (`SpoolDB.write`)."""
        return self.db.write(durable=durable)

    def claiming(self) -> AbstractContextManager[Any]:
        """A claim's transaction: row locks only (`SpoolDB.claiming`)."""
        return self.db.claiming()

    def settled(self, settled: list[Settled]) -> None:
        """Run the `on_settled` hooks inside the current transaction."""
        self.db.settled(settled)

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
