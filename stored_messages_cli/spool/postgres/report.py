"""The PostgreSQL store's read-only figures: status counts, reasons, rejections, single rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...states import State
from .base import PgStoreBase


class ReportPg(PgStoreBase):
    """`ReportStore` on PostgreSQL."""

    def state_counts(self) -> dict[str, int]:
        """Messages per state."""
        return {r[0]: int(r[1]) for r in self._rows(
            "SELECT state, COUNT(*) FROM messages GROUP BY state")}

    def retry_reason_counts(self) -> dict[str | None, int]:
        """`retry_wait` messages per retry reason."""
        return {r[0]: int(r[1]) for r in self._rows(
            "SELECT retry_reason, COUNT(*) FROM messages WHERE state = %s GROUP BY retry_reason",
            (State.RETRY_WAIT,))}

    def oldest_unarchived_since(self) -> float | None:
        """When the oldest message not yet archived started waiting: one index seek per
        state (idx_messages_state_waiting_since), not a scan of the backlog."""
        since = self._one(
            "SELECT MIN(since) FROM ("
            + " UNION ALL ".join(["SELECT MIN(COALESCE(confirmed_at, created_at)) AS since"
                                  " FROM messages WHERE state = %s"] * 3) + ") AS oldest",
            (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT))
        return None if since is None else float(since)

    def next_retry_at(self) -> float | None:
        """The soonest scheduled retry."""
        first = self._one("SELECT MIN(next_attempt_at) FROM messages WHERE state = %s",
                          (State.RETRY_WAIT,))
        return None if first is None else float(first)

    def rejected_count(self) -> int:
        """Rejected input lines kept."""
        return int(self._one("SELECT COUNT(*) FROM rejected"))

    def final_reason_counts(self) -> list[tuple[str, str | None, int]]:
        """`(state, final_reason, count)` of expired and failed messages."""
        return [(r[0], r[1], int(r[2])) for r in self._rows(
            "SELECT state, final_reason, COUNT(*) FROM messages WHERE state IN (%s, %s)"
            " GROUP BY state, final_reason", (State.EXPIRED, State.FAILED))]

    def rejected_lines(self, limit: int) -> list[dict[str, Any]]:
        """The most recent rejected input lines (source, line number, reason)."""
        return self._dicts(
            "SELECT source, line, reason, rejected_at FROM rejected ORDER BY id DESC LIMIT %s",
            (limit,))

    def message_row(self, project_id: str, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body)."""
        rows = self._dicts(
            "SELECT project_id, message_id, state, attempts, first_failure_at, next_attempt_at,"
            " retry_reason, last_error, final_reason, stored_key, payload_sha256, version_id"
            " FROM messages WHERE project_id = %s AND message_id = %s", (project_id, message_id))
        return rows[0] if rows else None

    def outcomes_of(self, row_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Where the given messages stand now: ids, state, retry reason, final reason, error."""
        return self._dicts(
            "SELECT id, project_id, message_id, state, retry_reason, final_reason, last_error,"
            " next_attempt_at FROM messages WHERE id = ANY(%s) ORDER BY id",
            (sorted(set(row_ids)),))

    def discarded_by_reason(self) -> dict[str, int]:
        """Discarded messages counted per reason code."""
        return {r[0]: int(r[1]) for r in self._rows(
            "SELECT COALESCE(final_reason, 'unknown'), COUNT(*) FROM messages WHERE state = %s"
            " GROUP BY 1 ORDER BY 1", (State.DISCARDED,))}

    def in_flight_by_owner(self) -> dict[str, int]:
        """How many `in_flight` messages each lease owner holds."""
        return {r[0] or "": int(r[1]) for r in self._rows(
            "SELECT lease_owner, COUNT(*) FROM messages WHERE state = %s GROUP BY lease_owner",
            (State.IN_FLIGHT,))}

    def waiting_count(self) -> int:
        """Messages not yet settled (`sm serve`'s back-pressure): one index range per state,
        never the archived history."""
        return int(self._one(
            "SELECT COUNT(*) FROM messages WHERE state IN (%s, %s, %s, %s)",
            (State.AWAITING_CONFIRMATION, State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT)))
