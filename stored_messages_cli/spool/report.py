"""Read-only views of the spool for `sm status`, `sm replay` and tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..states import STATES, State
from .db import SpoolDB


class Report:
    """Counts, reasons, rejections and single messages, read without writing."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db

    def status(self) -> dict[str, Any]:
        """Counts per state and retry reason, oldest unarchived age, next retry, rejections,
        discarded messages per reason code."""
        now = self.db.clock.now()
        counts = {str(state): 0 for state in STATES}
        for state, count in self.db.read("SELECT state, COUNT(*) FROM messages GROUP BY state"):
            counts[state] = count
        reasons = {r[0]: r[1] for r in self.db.read(
            "SELECT retry_reason, COUNT(*) FROM messages WHERE state = ? GROUP BY retry_reason",
            (State.RETRY_WAIT,))}
        # One index seek per state (idx_messages_state_waiting_since), not a scan of the backlog.
        oldest = self.db.read(
            "SELECT MIN(since) FROM ("
            + " UNION ALL ".join(["SELECT MIN(COALESCE(confirmed_at, created_at)) AS since"
                                  " FROM messages WHERE state = ?"] * 3) + ") AS oldest",
            (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT))[0][0]
        next_retry = self.db.read(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?",
            (State.RETRY_WAIT,))[0][0]
        rejected = self.db.read("SELECT COUNT(*) FROM rejected")[0][0]
        discarded = {r[0]: r[1] for r in self.db.read(
            "SELECT COALESCE(final_reason, 'unknown'), COUNT(*) FROM messages WHERE state = ?"
            " GROUP BY 1 ORDER BY 1", (State.DISCARDED,))}
        return {
            "counts": counts,
            "retry_reasons": reasons,
            "oldest_unarchived_age_seconds": None if oldest is None else max(0.0, now - oldest),
            "next_retry_at": next_retry,
            "rejected_lines": rejected,
            "discarded_by_reason": discarded,
        }

    def final_reasons(self) -> dict[str, dict[str, int]]:
        """Why messages are `expired` or `failed`: counts per reason code, per state."""
        reasons: dict[str, dict[str, int]] = {}
        for state, reason, count in self.db.read(
                "SELECT state, final_reason, COUNT(*) FROM messages WHERE state IN (?, ?)"
                " GROUP BY state, final_reason", (State.EXPIRED, State.FAILED)):
            reasons.setdefault(state, {})[reason or state] = count
        return reasons

    def rejected_lines(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent rejected input lines (source, line number, reason)."""
        return [dict(r) for r in self.db.read(
            "SELECT source, line, reason, rejected_at FROM rejected ORDER BY id DESC LIMIT ?",
            (limit,))]

    def message_state(self, project_id: str | int, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body)."""
        rows = self.db.read(
            "SELECT project_id, message_id, state, attempts, first_failure_at, next_attempt_at,"
            " retry_reason, last_error, final_reason, stored_key, payload_sha256, version_id"
            " FROM messages WHERE project_id = ? AND message_id = ?",
            (str(project_id), message_id))
        return dict(rows[0]) if rows else None

    def outcomes_of(self, row_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Where the given messages stand now: ids, state, retry reason, final reason, error."""
        ids = json.dumps(sorted(set(row_ids)))
        return [dict(r) for r in self.db.read(
            "SELECT id, project_id, message_id, state, retry_reason, final_reason, last_error,"
            " next_attempt_at FROM messages WHERE id IN (SELECT value FROM json_each(?))"
            " ORDER BY id", (ids,))]
