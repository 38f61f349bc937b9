"""The spool's side of investigations: lookups in the archive index and of stored messages
(`Spool.index`).

`investigate/` (find, fetch, show, rebuild), `setup/checks` (a recent write) and `ops/metrics`
(the last stored time) call these methods and never see a connection: each calls the store's
verbs (`index_store.IndexStore`), whose SQL each backend writes in its own dialect
(`sqlite/index.py`, `postgres/lookups.py`). The tables are `spool/archive.py`'s and
`spool/identifiers.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .archive import entry_row
from .index_filter import INDEX_COLUMNS, IndexFilter, LearntEntry
from .store import SpoolStore

__all__ = ["INDEX_COLUMNS", "IndexFilter", "IndexQueries", "LearntEntry"]


class IndexQueries:
    """Lookups in the archive index and of stored messages, as methods (`Spool.index`).

    Writes are short write transactions, like the spool's own, so they interleave with a
    running `sm run` instead of blocking it.
    """

    def __init__(self, store: SpoolStore) -> None:
        self.store = store

    def find(self, wanted: IndexFilter, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Indexed messages matching `wanted` (INDEX_COLUMNS), newest first, at most `limit`."""
        return self.store.find_entries(wanted, limit)

    def entries_for(self, message_id: str, project_id: str | None = None
                    ) -> list[tuple[Any, ...]]:
        """The indexed rows of one message id (one per project it occurs in)."""
        return self.store.entries_of_message(message_id, project_id)

    def keys_of(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project."""
        return self.store.keys_of_project(project_id)

    def count(self, project_id: str | None = None) -> int:
        """How many messages the index holds (of one project, or in all)."""
        return self.store.count_entries(project_id or None)

    def last_stored_at(self, project_id: str) -> float | None:
        """When the project's latest indexed message was stored (None before the first)."""
        return self.store.last_stored_at(project_id)

    def add_learnt(self, entries: Iterable[LearntEntry]) -> int:
        """Index messages read from the bucket in one transaction; returns how many changed.

        A row already indexed under the same key is kept as it is (the spool's row, written
        when the message was stored, stays authoritative); one under another key is replaced
        by what the bucket holds now. Their projects' coverage becomes at least `partial`.
        """
        now = self.store.clock.now()
        rows = [entry_row([*values[:-1], values[-1] or now], hashes)
                for values, hashes in entries]
        if not rows:
            return 0
        with self.store.write():
            changed = self.store.index_rows(rows, "other_key")
            self.store.add_partial_coverage(sorted({row.project_id for row in rows}), now)
        return changed

    def coverage(self) -> list[tuple[Any, ...]]:
        """(project, coverage, source, since, updated_at) of each project, by project."""
        return self.store.coverage_rows()

    def mark_complete(self, project_id: str, source: str) -> None:
        """The index now holds every message of the project (`source`: how it was filled)."""
        now = self.store.clock.now()
        with self.store.write():
            self.store.set_complete_coverage(project_id, source, now)

    def message_records(self, message_id: str, project_id: str | None = None
                        ) -> list[tuple[Any, ...]]:
        """The spool's rows of one message id, by project: project, state, final reason, last
        error, created, confirmed, first failure, next attempt, stored at, attempts,
        destination URL, stored key, relative key, payload hash, body still held."""
        return self.store.message_records(message_id, project_id)

    def latest_stored(self, project_id: str, since: float) -> tuple[str, float] | None:
        """(stored key, stored_at) of the project's newest message stored at `since` or later."""
        return self.store.latest_stored(project_id, since)
