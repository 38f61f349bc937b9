"""Read-only views of the spool for `sm status`, `sm replay` and tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..states import STATES
from .store import SpoolStore


class Report:
    """Counts, reasons, rejections and single messages, read without writing."""

    def __init__(self, store: SpoolStore) -> None:
        self.store = store

    def status(self) -> dict[str, Any]:
        """Counts per state and retry reason, oldest unarchived age, next retry, rejections,
        discarded messages per reason code."""
        now = self.store.clock.now()
        counts = {str(state): 0 for state in STATES}
        counts.update(self.store.state_counts())
        oldest = self.store.oldest_unarchived_since()
        return {
            "counts": counts,
            "retry_reasons": self.store.retry_reason_counts(),
            "oldest_unarchived_age_seconds": None if oldest is None else max(0.0, now - oldest),
            "next_retry_at": self.store.next_retry_at(),
            "rejected_lines": self.store.rejected_count(),
            "discarded_by_reason": self.store.discarded_by_reason(),
        }

    def final_reasons(self) -> dict[str, dict[str, int]]:
        """Why messages are `expired` or `failed`: counts per reason code, per state."""
        reasons: dict[str, dict[str, int]] = {}
        for state, reason, count in self.store.final_reason_counts():
            reasons.setdefault(state, {})[reason or state] = count
        return reasons

    def rejected_lines(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent rejected input lines (source, line number, reason)."""
        return self.store.rejected_lines(limit)

    def message_state(self, project_id: str | int, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body)."""
        return self.store.message_row(str(project_id), message_id)

    def outcomes_of(self, row_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Where the given messages stand now: ids, state, retry reason, final reason, error."""
        return self.store.outcomes_of(row_ids)

    def waiting(self) -> int:
        """Messages not yet settled (awaiting confirmation, queued, in flight, retry wait)."""
        return self.store.waiting_count()
