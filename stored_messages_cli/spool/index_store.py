"""What investigations ask of the spool's database: the archive index and stored messages.

One of `store.SpoolStore`'s concerns, kept in its own module as `anchors.AnchorStore`,
`holds.HoldStore` and `recipient_keys.RecipientKeyStore` are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .archive import EntryRow
from .index_filter import IndexFilter


class IndexStore(Protocol):
    """The archive index and stored messages, for investigations (`Spool.index`)."""

    def find_entries(self, wanted: IndexFilter, limit: int | None) -> list[tuple[Any, ...]]:
        """Indexed messages matching `wanted` (INDEX_COLUMNS), newest `sent_at` first."""
        ...

    def entries_of_message(self, message_id: str, project_id: str | None
                           ) -> list[tuple[Any, ...]]:
        """The indexed rows of a message id (of one project, or of each, by project)."""
        ...

    def keys_of_project(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project."""
        ...

    def count_entries(self, project_id: str | None) -> int:
        """How many messages the index holds (of one project, or in all)."""
        ...

    def last_stored_at(self, project_id: str) -> float | None:
        """When the project's latest indexed message was stored."""
        ...

    def index_rows(self, rows: Sequence[EntryRow], replace: str) -> int:
        """Index `rows` (`archive.index_entries`); how many were written."""
        ...

    def add_partial_coverage(self, project_ids: Sequence[str], now: float) -> None:
        """Projects the index knew nothing of are now covered in part."""
        ...

    def coverage_rows(self) -> list[tuple[Any, ...]]:
        """(project, coverage, source, since, updated_at) of each project, by project."""
        ...

    def set_complete_coverage(self, project_id: str, source: str, now: float) -> None:
        """The project's coverage becomes `complete`."""
        ...

    def message_records(self, message_id: str, project_id: str | None
                        ) -> list[tuple[Any, ...]]:
        """The `messages` rows of a message id, by project."""
        ...

    def latest_stored(self, project_id: str, since: float) -> tuple[str, float] | None:
        """(stored key, stored_at) of the project's newest message stored since `since`."""
        ...
