"""Keeping the spool small and safe: prune settled bookkeeping, vacuum, online backup.

- `prune(spool, older_than)` deletes, in short batches (senders and `sm run` keep writing):
  `stored` message rows stored longer ago than `older_than` (their body already left at
  upload; the `archive_index` row with key and hashes stays, so `sm find`/`fetch`/audits keep
  working), `discarded` rows (a never-confirmed one only after `CONFIRM_GRACE`, so a late
  `sent` event can still revive it), rejected input lines, and rows of stopped daemons.
  It never touches an unsettled message (`awaiting_confirmation`, `queued`, `in_flight`,
  `retry_wait`), an `expired` or `failed` one (an operator must see and may replay them),
  an index row, or a message whose manifest entry is still open. The same on both backends.
- `vacuum(spool)` rewrites a spool.db file to give the freed pages back to the file system;
  on PostgreSQL it runs `VACUUM (ANALYZE)` on the spool's own tables (no exclusive lock:
  senders and workers carry on; the space is reused by the database, not given back).
- `backup(spool, path)` copies a spool.db with SQLite's online backup API: one consistent
  snapshot even while `sm run` and senders write. A PostgreSQL spool is backed up with the
  database (`pg_dump`, or the managed service's snapshots): `backup` says how.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SmError
from ..states import FinalReason, State
from .db import immediate_transaction
from .store import SpoolError

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


# The tables of a PostgreSQL spool (what the numbered migrations create), for `vacuum`;
# tests/test_operations.py checks the list against a freshly migrated database.
PG_TABLES = ("messages", "message_bodies", "destination_health", "rejected", "daemons",
             "manifest_segments", "manifest_entries", "index_coverage", "archive_locations",
             "archive_entries", "archive_recipient_hashes", "inbox", "schema_migrations")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    if not isinstance(conn, sqlite3.Connection):  # PostgreSQL
        return conn.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is not None
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _prunable_messages(conn: sqlite3.Connection) -> str:
    """SQL selecting the ids of message rows prune may delete; its numbered parameters are
    ?1 stored, ?2 discarded, ?3 never_confirmed, ?4 the cutoff, ?5 the grace cutoff."""
    open_entries = (" AND id NOT IN (SELECT message_row FROM manifest_entries)"
                    if _has_table(conn, "manifest_entries") else "")
    return (
        "SELECT id FROM messages WHERE ("
        "  (state = ?1 AND stored_at IS NOT NULL AND stored_at < ?4"
        "   AND EXISTS (SELECT 1 FROM archive_index a WHERE a.project_id = messages.project_id"
        "               AND a.message_id = messages.message_id))"
        "  OR (state = ?2 AND COALESCE(updated_at, created_at) < ?4"
        "      AND (final_reason IS NULL OR final_reason <> ?3"
        "           OR COALESCE(updated_at, created_at) < ?5))"
        f"){open_entries}")


def prune(spool: Spool, older_than: float, *, dry_run: bool = False) -> PruneReport:
    """Delete settled bookkeeping older than `older_than` seconds (see the module docstring)."""
    if older_than <= 0:
        raise SmError("--older-than must be more than zero")
    now = spool.clock.now()
    cutoff = now - older_than
    params = (State.STORED.value, State.DISCARDED.value, FinalReason.NEVER_CONFIRMED.value,
              cutoff, now - max(older_than, CONFIRM_GRACE))
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
                (cutoff,)).fetchone()[0]
            report.daemons = conn.execute(
                "SELECT COUNT(*) FROM daemons WHERE stopped_at < ?",
                (cutoff,)).fetchone()[0] if _has_table(conn, "daemons") else 0
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
                f" LIMIT {BATCH})", (cutoff,)).rowcount
        report.rejected_lines += deleted
        if deleted < BATCH:
            break
    with immediate_transaction(conn, spool.lock):
        if _has_table(conn, "daemons"):
            report.daemons = conn.execute("DELETE FROM daemons WHERE stopped_at < ?",
                                          (cutoff,)).rowcount
    if not spool.is_postgres:
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
    """Compact the spool; returns its bytes before and after.

    SQLite: the file is rewritten (file + WAL bytes); VACUUM holds the write lock while it
    runs, so senders wait (up to the 60 s busy timeout). PostgreSQL: `VACUUM (ANALYZE)` of
    each of the spool's tables, outside a transaction, with no lock that stops writers; the
    bytes are the tables' with their indexes and TOAST (space freed is reused, not given
    back: only VACUUM FULL does that, and it locks the tables, so sm never runs it).
    """
    if spool.is_postgres:
        return _vacuum_postgres(spool)
    before = file_bytes(spool.path)
    with spool.lock:
        spool.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        spool.conn.execute("VACUUM")
        spool.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"bytes_before": before, "bytes_after": file_bytes(spool.path)}


def _postgres_bytes(conn: Any, tables: list[str]) -> int:
    row = conn.execute("SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0)"
                       " FROM jsonb_array_elements_text(CAST(? AS jsonb)) AS t",
                       (json.dumps(tables),)).fetchone()
    return int(row[0])


def _vacuum_postgres(spool: Spool) -> dict[str, int]:
    conn = spool.conn
    with spool.lock:
        tables = [t for t in PG_TABLES if _has_table(conn, t)]
        before = _postgres_bytes(conn, tables)
        for table in tables:  # one statement per table: VACUUM cannot run in a transaction
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        return {"bytes_before": before, "bytes_after": _postgres_bytes(conn, tables)}


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
