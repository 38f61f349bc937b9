"""Keeping the spool small and safe: prune settled bookkeeping, vacuum, online backup.

- `prune(spool, older_than)` deletes, in short batches (senders and `sm run` keep writing):
  `stored` message rows stored longer ago than `older_than` (their body already left at
  upload; the `archive_index` row with key and hashes stays, so `sm find`/`fetch`/audits keep
  working, and keeps 8 bytes of the content hash: with them it is the message's identity,
  so recording it again is still a duplicate or a conflict, `identity.py`), `discarded` rows
  (a never-confirmed one only after `CONFIRM_GRACE`, so a late `sent` event can still revive
  it; nothing of a discarded message is in the bucket, so its identity goes with its row),
  rejected input lines, and rows of stopped daemons. It never touches an unsettled message
  (`awaiting_confirmation`, `queued`, `in_flight`, `retry_wait`), an `expired` or `failed`
  one (an operator must see and may replay them), an index row, or a message whose manifest
  entry is still open. The same on both backends.
- `vacuum(spool)` rewrites a spool.db file to give the freed pages back to the file system;
  on PostgreSQL it runs `VACUUM (ANALYZE)` on the spool's own tables (no exclusive lock:
  senders and workers carry on; the space is reused by the database, not given back).
- `backup(spool, path)` copies a spool.db with SQLite's online backup API: one consistent
  snapshot even while `sm run` and senders write. A PostgreSQL spool is backed up with the
  database (`pg_dump`, or the managed service's snapshots): `backup` says how.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SmError
from ..states import State
from .postgres.maintenance import PG_TABLES
from .sqlite.maintenance import file_bytes
from .store import SpoolError

if TYPE_CHECKING:
    from . import Spool

__all__ = ["BATCH", "CONFIRM_GRACE", "PG_TABLES", "PruneReport", "backup", "file_bytes", "prune",
           "spool_size", "vacuum"]

BATCH = 2000  # rows per delete transaction: a sender waits at most one batch
CONFIRM_GRACE = 7 * 86400.0  # a never-confirmed discard keeps its row this long at least


@dataclass
class PruneReport:
    """Rows removed (or, with `dry_run`, that would be)."""

    stored: int = 0
    discarded: int = 0
    rejected_lines: int = 0
    daemons: int = 0

    def as_dict(self) -> dict[str, int]:
        """The `--json` form."""
        return asdict(self)


def prune(spool: Spool, older_than: float, *, dry_run: bool = False) -> PruneReport:
    """Delete settled bookkeeping older than `older_than` seconds (see the module docstring)."""
    if older_than <= 0:
        raise SmError("--older-than must be more than zero")
    store = spool.store
    now = spool.clock.now()
    cutoff = now - older_than
    grace_cutoff = now - max(older_than, CONFIRM_GRACE)
    report = PruneReport()
    if dry_run:
        for state, count in store.prunable_counts(cutoff, grace_cutoff).items():
            setattr(report, "stored" if state == State.STORED else "discarded", count)
        report.rejected_lines = store.old_rejected_count(cutoff)
        report.daemons = store.old_daemons_count(cutoff)
        return report
    while True:  # short transactions: senders and `sm run` keep writing meanwhile
        with store.write():
            states = store.prune_messages(cutoff, grace_cutoff, BATCH)
        for state in states:
            if state == State.STORED:
                report.stored += 1
            else:
                report.discarded += 1
        if len(states) < BATCH:
            break
    while True:
        with store.write():
            deleted = store.prune_rejected(cutoff, BATCH)
        report.rejected_lines += deleted
        if deleted < BATCH:
            break
    with store.write():
        report.daemons = store.prune_daemons(cutoff)
        # the provider events and ids of the messages gone (SPEC 9.3, docs/providers.md)
        store.prune_provider_events(cutoff)
    store.after_prune()
    return report


def vacuum(spool: Spool) -> dict[str, int]:
    """Compact the spool; returns its bytes before and after.

    SQLite: the file is rewritten (file + WAL bytes); senders wait while it runs.
    PostgreSQL: `VACUUM (ANALYZE)` of each of the spool's tables, with no lock that stops
    writers (the space freed is reused by the database, not given back).
    """
    return spool.store.vacuum()


def backup(spool: Spool, path: str | os.PathLike[str], *, force: bool = False
           ) -> dict[str, Any]:
    """Copy the spool to `path` (0600) with SQLite's online backup API and check the copy.

    The copy is taken in one step (one read snapshot: consistent while others write) into a
    temporary file beside `path`, checked, then renamed into place.
    """
    if spool.is_postgres:
        # A file copy of one client's view is no backup of a shared database: the database's
        # own tools take a consistent one (and point-in-time recovery, with its WAL archive).
        raise SpoolError(
            f"sm spool backup copies a spool.db file; this spool is the PostgreSQL database"
            f" {spool.location}: back it up with the database",
            hint=f"pg_dump --format=custom --file={shlex.quote(os.fspath(path))}"
            f" --dbname={shlex.quote(spool.location)}  (or your managed service's snapshots;"
            " restore with pg_restore)")
    target = Path(path)
    if target.exists() and not force:
        raise SmError(f"{target} already exists", hint=f"sm spool backup {target} --force")
    if target.resolve() == spool.path.resolve():
        raise SmError("the backup cannot replace the spool itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    old_umask = os.umask(0o077)
    try:
        copy = sqlite3.connect(temporary)
        try:
            with spool.lock:
                spool.conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            messages = copy.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            version = copy.execute("PRAGMA user_version").fetchone()[0]
        finally:
            copy.close()
        if check != "ok":
            raise SmError(f"the backup copy failed its check: {check}")
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    finally:
        os.umask(old_umask)
        if temporary.exists():
            temporary.unlink()
    return {"path": str(target), "bytes": target.stat().st_size, "messages": messages,
            "schema_version": version}


def spool_size(spool: Spool) -> dict[str, Any]:
    """Bytes on disk and rows, for `sm spool vacuum` and the sizing notes in the docs."""
    with spool.lock:
        page_size = spool.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = spool.conn.execute("PRAGMA page_count").fetchone()[0]
        free = spool.conn.execute("PRAGMA freelist_count").fetchone()[0]
    return {"bytes": file_bytes(spool.path), "used_bytes": (pages - free) * page_size,
            "free_bytes": free * page_size}
