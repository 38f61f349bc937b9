"""The SQLite store's archive index lookups and index writes (`Spool.index`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...states import State
from ..archive import EntryRow
from ..bodies import HAS_BODY
from ..identifiers import COMPLETE, PARTIAL
from ..index_filter import INDEX_COLUMNS, IndexFilter
from .base import StoreBase
from .index_writer import write_entries

_COLUMNS = ", ".join(INDEX_COLUMNS)


class IndexSql(StoreBase):
    """`IndexStore` on SQLite."""

    def find_entries(self, wanted: IndexFilter, limit: int | None) -> list[tuple[Any, ...]]:
        """`archive_index` rows matching `wanted`, newest `sent_at` first."""
        where, params = wanted.where()
        sql = (f"SELECT {_COLUMNS} FROM archive_index WHERE {where}"
               " ORDER BY sent_at DESC, project_id, message_id")
        if limit is not None:
            sql += " LIMIT ?"
            params = [*params, limit]
        return [tuple(row) for row in self._rows(sql, params)]

    def entries_of_message(self, message_id: str, project_id: str | None
                           ) -> list[tuple[Any, ...]]:
        """`archive_index` rows of a message id (of one project, or of each, by project)."""
        sql = f"SELECT {_COLUMNS} FROM archive_index WHERE message_id = ?"
        if project_id is None:
            return [tuple(r) for r in self._rows(sql + " ORDER BY project_id", (message_id,))]
        return [tuple(r) for r in self._rows(sql + " AND project_id = ?",
                                             (message_id, project_id))]

    def keys_of_project(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project."""
        return {r[0]: r[1] for r in self._rows(
            "SELECT message_id, key FROM archive_index WHERE project_id = ?", (project_id,))}

    def count_entries(self, project_id: str | None) -> int:
        """How many messages `archive_index` holds (of one project, or in all)."""
        if project_id is None:
            return int(self._one("SELECT COUNT(*) FROM archive_index"))
        return int(self._one("SELECT COUNT(*) FROM archive_index WHERE project_id = ?",
                             (project_id,)))

    def last_stored_at(self, project_id: str) -> float | None:
        """The latest `stored_at` of the project's indexed messages."""
        value = self._one("SELECT MAX(stored_at) FROM archive_index WHERE project_id = ?",
                          (project_id,))
        return None if value is None else float(value)

    def index_rows(self, rows: Sequence[EntryRow], replace: str) -> int:
        """Index `rows` (`archive.index_entries`) in the caller's transaction."""
        return write_entries(self.conn, rows, replace=replace)

    def add_partial_coverage(self, project_ids: Sequence[str], now: float) -> None:
        """Projects the index knew nothing of are now covered in part."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO index_coverage (project_id, coverage, source, since,"
            " updated_at) VALUES (?, ?, 'remote', ?, ?)",
            [(project_id, PARTIAL, now, now) for project_id in project_ids])

    def coverage_rows(self) -> list[tuple[Any, ...]]:
        """Every `index_coverage` row, by project."""
        return [tuple(row) for row in self._rows(
            "SELECT project_id, coverage, source, since, updated_at FROM index_coverage"
            " ORDER BY project_id")]

    def set_complete_coverage(self, project_id: str, source: str, now: float) -> None:
        """The project's coverage becomes `complete` (its `since` kept when recorded)."""
        self.conn.execute(
            "INSERT INTO index_coverage (project_id, coverage, source, since, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET"
            " coverage = excluded.coverage, source = excluded.source,"
            " updated_at = excluded.updated_at",
            (project_id, COMPLETE, source, now, now))

    def message_records(self, message_id: str, project_id: str | None
                        ) -> list[tuple[Any, ...]]:
        """The `messages` rows of a message id, by project."""
        where = "message_id = ?" + (" AND project_id = ?" if project_id is not None else "")
        params = [message_id] + ([project_id] if project_id is not None else [])
        return [tuple(row) for row in self._rows(
            "SELECT project_id, state, final_reason, last_error, created_at, confirmed_at,"
            " first_failure_at, next_attempt_at, stored_at, attempts, destination_url,"
            f" stored_key, key, payload_sha256, {HAS_BODY}"
            f" FROM messages WHERE {where} ORDER BY project_id", params)]

    def latest_stored(self, project_id: str, since: float) -> tuple[str, float] | None:
        """The project's newest stored message with a key, stored at `since` or later."""
        rows = self._rows(
            f"SELECT stored_key, stored_at FROM messages WHERE state = '{State.STORED}'"
            " AND project_id = ? AND stored_at >= ? AND stored_key IS NOT NULL"
            " ORDER BY stored_at DESC LIMIT 1",  # the literal state: a partial index serves it
            (str(project_id), since))
        return None if not rows else (rows[0][0], rows[0][1])
