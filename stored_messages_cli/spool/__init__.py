"""The durable local spool: every message's state, its retry schedule and the archive index.

`Spool` is the small public facade (docs/python-api.md). Behind it, one module per concern:

- `db`: the connection, `BEGIN IMMEDIATE` transactions and numbered schema migrations;
- `store`: the storage seam (`SpoolStore`) the state machines call; `sqlite/` implements it;
- `intake`: messages and send events in, discards (`spool.intake`);
- `queue`: claim, release and settle under leases (`spool.queue`);
- `health`: destination health rows and project-wide hold / wake / expire (`spool.health`);
- `report`: read-only views for `sm status` (`spool.report`).

A message accepted here survives a crash; it ends in exactly one final state (SPEC 4).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock
from ..config import Paths, spool_location
from ..config.last_good import LastGoodMediums
from ..config.privacy import ProjectProtections
from ..states import FinalReason
from .db import (
    LATEST_VERSION,
    SpoolDB,
    SpoolError,
    SpoolFull,
    SpoolVersionError,
    immediate_transaction,
)
from .deliveries import Deliveries
from .evidence_queries import EvidenceQueries
from .health import DestinationHealth
from .index_queries import IndexQueries
from .intake import IngestReport, Intake, MediumsLookup, RegionLookup
from .lock import SpoolLock
from .postgres import check_spool_url, is_postgres_url
from .postgres.store import PostgresStore
from .queue import ClaimedMessage, Queue, lease_owner_name
from .report import Report
from .sealing import ProtectionLookup
from .sqlite import SqliteStore
from .store import Failed, Health, Outcome, Retry, Settled, SettledHook, SpoolStore, Stored

__all__ = [
    "LATEST_VERSION", "ClaimedMessage", "DestinationHealth", "Failed", "Health", "IngestReport",
    "Outcome", "Retry", "Settled", "SettledHook", "Spool", "SpoolError", "SpoolFull",
    "SpoolVersionError", "Stored",
    "immediate_transaction", "lease_owner_name",
]


class Spool:
    """The spool: a SQLite file (the default), or a PostgreSQL database a fleet shares.

    Use `Spool.open()` (config home), `Spool.open(path)` or `Spool.open("postgresql://…")`.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 mediums_for: MediumsLookup | None = None,
                 phone_region: RegionLookup | None = None,
                 protection_for: ProtectionLookup | None = None) -> None:
        self._db = SpoolDB(path, clock or SystemClock())  # a file, or a postgresql:// URL
        self.store: SpoolStore = (PostgresStore(self._db) if self._db.is_postgres
                                  else SqliteStore(self._db))
        self.intake = Intake(self.store, mediums_for, phone_region, protection_for)
        self.queue = Queue(self.store)
        self.health = DestinationHealth(self.store)
        self.report = Report(self.store)
        self.deliveries = Deliveries(self.store, self.intake)  # provider events (SPEC 9.3)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *,
             home: str | os.PathLike[str] | None = None, clock: Clock | None = None) -> Spool:
        """Open the spool of `home` (default `$SM_HOME` or the platform folders), or `path`.

        `path` is a file path or a `postgresql://` URL; without it, `SM_SPOOL_URL`, then
        config.toml's `spool_url`, then the home's `spool.db` (docs/fleet.md). A PostgreSQL
        URL must require TLS to a database on another host. The project's archived mediums
        are read from that home's `config.toml` so messages of a medium the project does not
        archive are discarded at ingest; while config.toml does not load, from the last good
        copy of it (none: every medium is kept), so a broken file never stops a sender.
        The setting `default_phone_region` comes the same way: a national phone number is
        then also indexed in E.164 (SPEC 9.2).
        """
        paths = Paths.resolve(home)
        where = spool_location(paths, path)
        if is_postgres_url(where.target):
            check_spool_url(where.target, source=where.source,
                            allow_insecure=where.allow_insecure)
            target: str | Path = where.target
        else:
            target = Path(where.target)
        lookup = LastGoodMediums(paths.config_file)
        return cls(target, clock=clock, mediums_for=lookup, phone_region=lookup.phone_region,
                   protection_for=ProjectProtections(paths.config_file))

    # ----------------------------------------------------------------------- plumbing

    @property
    def path(self) -> Path:
        """The database file (for a PostgreSQL spool, its URL without secrets)."""
        return self._db.path

    @property
    def location(self) -> str:
        """Where the spool is, for people: the file path or the URL without secrets."""
        return self._db.location

    @property
    def url(self) -> str | None:
        """The PostgreSQL URL as given (it may hold a password); None for a SQLite spool."""
        return self._db.url

    @property
    def is_postgres(self) -> bool:
        """True for a shared PostgreSQL spool."""
        return self._db.is_postgres

    @property
    def clock(self) -> Clock:
        """The clock every part of the spool reads."""
        return self._db.clock

    @property
    def conn(self) -> sqlite3.Connection:
        """The SQLite spool's connection, for SQLite's own file operations (backup, sizes;
        hold `lock` while using it). A PostgreSQL spool has none: use `store`."""
        if self._db.is_postgres:
            raise SpoolError(f"{self.location} is a PostgreSQL spool: it has no SQLite"
                             " connection", hint="use the spool's store (`Spool.store`)")
        return self._db.conn

    @property
    def lock(self) -> SpoolLock:
        """The lock guarding `conn`; anything else using `conn` must hold it too."""
        return self._db.lock

    def on_settled(self, hook: SettledHook) -> None:
        """Call `hook(settled)` inside every transaction that settles messages.

        `settled` lists the messages that reached `stored`, `failed` or `expired`; what the hook
        writes through `spool.store`'s verbs commits (or rolls back) with them.
        """
        self._db.settled_hooks.append(hook)

    def check_file(self) -> None:
        """Raise SpoolError when the spool file was deleted or replaced under this process."""
        self._db.check_file()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- sender API

    def record(self, message: Any) -> str:
        """Record one rendered message; durable when this returns.

        Returns `accepted`, `duplicate` or `discarded` (medium not archived). Raises
        InvalidMessage for bad input and MessageConflict for the same id with other content.
        """
        return self.intake.record(message)

    def record_many(self, messages: Iterable[Any]) -> list[str]:
        """Record a batch in one transaction: all of it is durable, or none of it."""
        return self.intake.record_many(messages)

    def confirm_sent(self, project_id: str | int, message_id: str, *, sent_at: str | datetime,
                     provider: dict[str, Any] | None = None) -> str:
        """Mark a recorded message as accepted by the provider; it becomes due for upload."""
        return self.intake.confirm_sent(project_id, message_id, sent_at=sent_at,
                                        provider=provider)

    def record_send_failure(self, project_id: str | int, message_id: str, *,
                            reason: str = FinalReason.SEND_FAILED) -> str:
        """Mark a recorded message as not sent; it is discarded and never archived."""
        return self.intake.record_send_failure(project_id, message_id, reason=reason)

    def ingest_lines(self, lines: Iterable[str | bytes], source: str = "-",
                     progress: Callable[[int], None] | None = None, *,
                     flush_after: float | None = None) -> IngestReport:
        """Read JSON Lines (messages and events); bad lines are kept with their reason.

        With `flush_after`, lines are also committed within that many seconds of arriving.
        """
        return self.intake.ingest_lines(lines, source, progress, flush_after=flush_after)

    # ----------------------------------------------------------------------- reading

    def status(self) -> dict[str, Any]:
        """Counts per state and retry reason, oldest unarchived age, next retry, rejections."""
        return self.report.status()

    def message_state(self, project_id: str | int, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body)."""
        return self.report.message_state(project_id, message_id)

    # ----------------------------------------------------------------------- evidence, index

    @cached_property
    def evidence(self) -> EvidenceQueries:
        """Manifest segments to seal and write, and what an audit or a backfill reads."""
        return EvidenceQueries(self.store, self._db.settled_hooks)

    @cached_property
    def index(self) -> IndexQueries:
        """Lookups in the archive index and of stored messages (find, fetch, show, checks)."""
        return IndexQueries(self.store)
