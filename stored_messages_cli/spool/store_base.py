"""What both stores' concern classes share: the open database (`SpoolDatabase`), its clock
and lock, and the transactions it opens. Each backend's base adds how it reads (`sqlite.base`,
`postgres.base`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..clock import Clock
from ..errors import SmError
from .lock import SpoolLock
from .store import Settled

if TYPE_CHECKING:  # a type only: psycopg is imported when a PostgreSQL spool opens
    from .postgres.session import PgSession


class SpoolDatabase(Protocol):
    """What the stores use of the spool's open database (`db.SpoolDB`), named here so that
    the stores never import the module that opens them (it imports their schema steps)."""

    clock: Clock
    lock: SpoolLock
    errors: tuple[type[BaseException], ...]
    path: Path
    conn: sqlite3.Connection  # a SQLite spool's connection
    session: PgSession  # a PostgreSQL spool's session

    def failure(self, exc: BaseException) -> SmError: ...

    def write(self, *, durable: bool = True) -> AbstractContextManager[None]: ...

    def claiming(self) -> AbstractContextManager[None]: ...

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...

    def settled(self, settled: list[Settled]) -> None: ...


class DbStore:
    """One spool's `SpoolDB` and the plumbing every concern of either store uses."""

    def __init__(self, db: SpoolDatabase) -> None:
        self.db = db
        self.clock: Clock = db.clock

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean the database failed."""
        return self.db.errors

    def lock_held_here(self) -> bool:
        """True when this thread holds the spool's lock."""
        return self.db.lock.held_here()

    @property
    def lock(self) -> SpoolLock:
        """The lock guarding the connection (SQLite) or the session (PostgreSQL)."""
        return self.db.lock

    def write(self, durable: bool = True) -> AbstractContextManager[Any]:
        """A write transaction holding the spool's write lock (`SpoolDB.write`)."""
        return self.db.write(durable=durable)

    def claiming(self) -> AbstractContextManager[Any]:
        """A claim's transaction (`SpoolDB.claiming`): on PostgreSQL, row locks only."""
        return self.db.claiming()

    def settled(self, settled: list[Settled]) -> None:
        """Run the `on_settled` hooks inside the current transaction."""
        self.db.settled(settled)
