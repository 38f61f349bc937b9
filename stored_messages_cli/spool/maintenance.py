"""Keeping the spool small and safe: prune settled bookkeeping, vacuum, online backup.

- `prune(spool, older_than)` deletes, in short batches (senders and `sm run` keep writing):
  `stored` message rows stored longer ago than `older_than` (their body already left at
  upload; the `archive_index` row with key and hashes stays, so `sm find`/`fetch`/audits keep
  working), `discarded` rows (a never-confirmed one only after `CONFIRM_GRACE`, so a late
  `sent` event can still revive it), rejected input lines, and rows of stopped daemons.
  It never touches an unsettled message (`awaiting_confirmation`, `queued`, `in_flight`,
  `retry_wait`), an `expired` or `failed` one (an operator must see and may replay them),
  an index row, or a message whose manifest entry is still open.
- `vacuum(spool)` rewrites the file to give the freed pages back to the file system.
- `backup(spool, path)` copies the spool with SQLite's online backup API: one consistent
  snapshot even while `sm run` and senders write.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SmError
from ..states import FinalReason, State

if TYPE_CHECKING:
    from . import Spool

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


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _prunable_messages(conn: sqlite3.Connection) -> str:
    """SQL selecting the ids of message rows prune may delete (parameters: see `_params`)."""
    open_entries = (" AND id NOT IN (SELECT message_row FROM manifest_entries)"
                    if _has_table(conn, "manifest_entries") else "")
    return (
        "SELECT id FROM messages WHERE ("
        "  (state = :stored AND stored_at IS NOT NULL AND stored_at < :cutoff"
        "   AND EXISTS (SELECT 1 FROM archive_index a WHERE a.project_id = messages.project_id"
        "               AND a.message_id = messages.message_id))"
        "  OR (state = :discarded AND COALESCE(updated_at, created_at) < :cutoff"
        "      AND (final_reason IS NOT :never OR COALESCE(updated_at, created_at) < :grace))"
        f"){open_entries}")


def _sqlite_only(spool: Spool, command: str, instead: str) -> None:
    """Refuse a file-level maintenance step on a PostgreSQL spool, naming what to use."""
    if spool.is_postgres:
        from .db import SpoolError

        raise SpoolError(f"sm spool {command} works on a spool.db file; this spool is the"
                         f" PostgreSQL database {spool.location}", hint=instead)


def prune(spool: Spool, older_than: float, *, dry_run: bool = False) -> PruneReport:
    """Delete settled bookkeeping older than `older_than` seconds (see the module docstring)."""
    _sqlite_only(spool, "prune", "not yet available on PostgreSQL (docs/fleet.md)")
    if older_than <= 0:
        raise SmError("--older-than must be more than zero")
    from .db import immediate_transaction

    now = spool.clock.now()
    params = {"stored": State.STORED, "discarded": State.DISCARDED,
              "never": FinalReason.NEVER_CONFIRMED, "cutoff": now - older_than,
              "grace": now - max(older_than, CONFIRM_GRACE)}
    report = PruneReport()
    conn = spool.conn
    with spool.lock:
        select = _prunable_messages(conn)
        if dry_run:
            for state, count in conn.execute(
                    f"SELECT state, COUNT(*) FROM messages WHERE id IN ({select})"
                    " GROUP BY state", params):
                setattr(report, "stored" if state == State.STORED else "discarded", count)
            report.rejected_lines = conn.execute(
                "SELECT COUNT(*) FROM rejected WHERE rejected_at < ?",
                (params["cutoff"],)).fetchone()[0]
            report.daemons = conn.execute(
                "SELECT COUNT(*) FROM daemons WHERE stopped_at < ?",
                (params["cutoff"],)).fetchone()[0] if _has_table(conn, "daemons") else 0
            return report
    while True:
        with immediate_transaction(conn, spool.lock):
            rows = conn.execute(
                f"DELETE FROM messages WHERE id IN ({select} LIMIT {BATCH}) RETURNING state",
                params).fetchall()
        for (state,) in rows:
            if state == State.STORED:
                report.stored += 1
            else:
                report.discarded += 1
        if len(rows) < BATCH:
            break
    while True:
        with immediate_transaction(conn, spool.lock):
            deleted = conn.execute(
                "DELETE FROM rejected WHERE id IN (SELECT id FROM rejected WHERE rejected_at < ?"
                f" LIMIT {BATCH})", (params["cutoff"],)).rowcount
        report.rejected_lines += deleted
        if deleted < BATCH:
            break
    with immediate_transaction(conn, spool.lock):
        if _has_table(conn, "daemons"):
            report.daemons = conn.execute("DELETE FROM daemons WHERE stopped_at < ?",
                                          (params["cutoff"],)).rowcount
    with spool.lock:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return report


def file_bytes(path: Path) -> int:
    """Bytes of the database file with its -wal (what the spool costs on disk)."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except FileNotFoundError:
            pass
    return total


def vacuum(spool: Spool) -> dict[str, int]:
    """Rewrite the spool compactly; returns the bytes before and after (file + WAL).

    VACUUM holds the write lock while it runs: senders wait (up to the 60 s busy timeout).
    """
    _sqlite_only(spool, "vacuum", 'PostgreSQL vacuums itself (autovacuum)')
    before = file_bytes(spool.path)
    with spool.lock:
        spool.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        spool.conn.execute("VACUUM")
        spool.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"bytes_before": before, "bytes_after": file_bytes(spool.path)}


def backup(spool: Spool, path: str | os.PathLike[str], *, force: bool = False
           ) -> dict[str, Any]:
    """Copy the spool to `path` (0600) with SQLite's online backup API and check the copy.

    The copy is taken in one step (one read snapshot: consistent while others write) into a
    temporary file beside `path`, checked, then renamed into place.
    """
    _sqlite_only(spool, "backup", "use your database's backups (pg_dump, or the managed service's)")
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
