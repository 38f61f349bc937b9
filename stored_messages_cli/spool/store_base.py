"""What both stores' concern classes share: the spool's `SpoolDB`, its clock and lock, and the
transactions it opens. Each backend's base adds how it reads (`sqlite.base`, `postgres.base`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from .lock import SpoolLock
from .store import Settled

if TYPE_CHECKING:  # the connection's owner; it imports both stores' schema steps
    from .db import SpoolDB


class DbStore:
    """One spool's `SpoolDB` and the plumbing every concern of either store uses."""

    def __init__(self, db: SpoolDB) -> None:
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
