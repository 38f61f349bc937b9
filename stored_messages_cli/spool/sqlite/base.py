"""The SQLite store's connection side: transactions, reads, the settled hooks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ...clock import Clock
from ..lock import SpoolLock
from ..store import Settled

if TYPE_CHECKING:  # the connection's owner; it imports this package's schema steps
    from ..db import SpoolDB


class StoreBase:
    """The shared connection of one spool (`SpoolDB`) and the plumbing every concern uses."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db
        self.clock: Clock = db.clock

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (hold `lock`, or be inside `write()`, while using it)."""
        conn: sqlite3.Connection = self.db.conn
        return conn

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean the database failed."""
        return self.db.errors

    def lock_held_here(self) -> bool:
        """True when this thread holds the spool's lock."""
        return self.db.lock.held_here()

    @property
    def lock(self) -> SpoolLock:
        """The lock guarding `conn`."""
        return self.db.lock

    def write(self, durable: bool = True) -> AbstractContextManager[Any]:
        """A `BEGIN IMMEDIATE` transaction (`SpoolDB.write`)."""
        return self.db.write(durable=durable)

    def claiming(self) -> AbstractContextManager[Any]:
        """A claim's transaction (`SpoolDB.claiming`)."""
        return self.db.claiming()

    def settled(self, settled: list[Settled]) -> None:
        """Run the `on_settled` hooks inside the current transaction."""
        self.db.settled(settled)

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows of one read (under the lock; the database's errors become SpoolError)."""
        return self.db.read(sql, params)

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row of one read."""
        return self.db.read(sql, params)[0][0]


def marks(count: int) -> str:
    """`?, ?, …` for `count` parameters."""
    return ",".join("?" * count)
