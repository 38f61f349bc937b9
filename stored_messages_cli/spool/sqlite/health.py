"""The SQLite store's destination health verbs: health rows, hold, wake, expire."""

from __future__ import annotations

from ...states import FinalReason, HealthState, RetryClass, State
from ..store import Health, Settled
from .base import StoreBase

_COLUMNS = "project_id, url, health, since, next_probe_at, last_error, failed_probes"


class HealthSql(StoreBase):
    """`HealthStore` on SQLite."""

    def health_of(self, project_id: str) -> Health | None:
        """The recorded health of a project's destination."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM destination_health WHERE project_id = ?",
                          (project_id,))
        return Health(*rows[0]) if rows else None

    def all_health(self) -> dict[str, Health]:
        """Every recorded destination health, by project."""
        return {r[0]: Health(*r) for r in self._rows(
            f"SELECT {_COLUMNS} FROM destination_health")}

    def set_health(self, project_id: str, url: str, health: HealthState, *,
                   since: float, next_probe_at: float | None, last_error: str | None,
                   failed_probes: int, now: float) -> bool:
        """Record a destination's health (in the caller's transaction); True when it
        changed. `since` and the failed probe count carry over while the health stays."""
        row = self.conn.execute("SELECT health, url FROM destination_health"
                                " WHERE project_id = ?", (project_id,)).fetchone()
        self.conn.execute(
            "INSERT INTO destination_health (project_id, url, health, since, next_probe_at,"
            " last_error, updated_at, failed_probes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(project_id) DO UPDATE SET url = excluded.url,"
            " health = excluded.health, next_probe_at = excluded.next_probe_at,"
            " last_error = excluded.last_error, updated_at = excluded.updated_at,"
            " probing_until = NULL,"
            " since = CASE WHEN destination_health.health = excluded.health"
            "   THEN destination_health.since ELSE excluded.since END,"
            " failed_probes = CASE WHEN destination_health.health = excluded.health"
            "   THEN destination_health.failed_probes + excluded.failed_probes"
            "   ELSE excluded.failed_probes END",
            (project_id, url, health, since, next_probe_at, last_error, now, failed_probes))
        return row is None or row[0] != health or row[1] != url

    def take_probe(self, project_id: str, until: float, now: float) -> bool:
        """Take the probe lease of a down destination (False: another process holds an
        unexpired one)."""
        return bool(self.conn.execute(
            "UPDATE destination_health SET probing_until = ? WHERE project_id = ?"
            " AND (probing_until IS NULL OR probing_until <= ? OR probing_until > ?)",
            (until, project_id, now, until)).rowcount == 1)

    def release_probe(self, project_id: str) -> None:
        """Give up the probe lease."""
        self.conn.execute("UPDATE destination_health SET probing_until = NULL"
                          " WHERE project_id = ?", (project_id,))

    def forget_health(self, project_id: str) -> None:
        """Drop a project's destination health row."""
        self.conn.execute("DELETE FROM destination_health WHERE project_id = ?", (project_id,))

    def hold(self, project_id: str, next_attempt_at: float, now: float) -> int:
        """Park every queued or waiting message of a project behind the next probe; those
        held for the first time count the hold as their first failure."""
        return int(self.conn.execute(
            "UPDATE messages SET state = ?, retry_reason = ?,"
            " first_failure_at = COALESCE(first_failure_at, ?), next_attempt_at = ?,"
            " updated_at = ? WHERE project_id = ? AND state IN (?, ?)",
            (State.RETRY_WAIT, RetryClass.UNREACHABLE, now, next_attempt_at, now, project_id,
             State.QUEUED, State.RETRY_WAIT)).rowcount)

    def wake(self, project_id: str, next_attempt_at: float, now: float) -> int:
        """Bring messages waiting on an unreachable destination forward (only ever
        earlier)."""
        return int(self.conn.execute(
            "UPDATE messages SET next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?),"
            " updated_at = ? WHERE project_id = ? AND state = ? AND retry_reason = ?",
            (next_attempt_at, next_attempt_at, now, project_id, State.RETRY_WAIT,
             RetryClass.UNREACHABLE)).rowcount)

    def failed_probes(self, project_id: str) -> int | None:
        """Failed probes of an unreachable or unsafe destination (None: neither)."""
        row = self.conn.execute(
            "SELECT failed_probes FROM destination_health WHERE project_id = ?"
            " AND health IN (?, ?)",
            (project_id, HealthState.UNREACHABLE, HealthState.UNSAFE)).fetchone()
        return None if row is None else int(row[0])

    def expire(self, project_id: str, retry_window: float, words: str, now: float
               ) -> list[Settled]:
        """Expire unreachable-waiting messages whose first failure is `retry_window` old."""
        rows = self.conn.execute(
            "UPDATE messages SET state = ?, final_reason = ?,"
            " last_error = COALESCE(last_error, ?), next_attempt_at = NULL, updated_at = ?"
            " WHERE project_id = ? AND state = ? AND retry_reason = ?"
            " AND first_failure_at + ? <= ? RETURNING id, project_id, message_id",
            (State.EXPIRED, FinalReason.EXPIRED_UNREACHABLE, words, now, project_id,
             State.RETRY_WAIT, RetryClass.UNREACHABLE, retry_window, now)).fetchall()
        return [Settled(r[0], r[1], r[2], State.EXPIRED, FinalReason.EXPIRED_UNREACHABLE, now)
                for r in rows]

    def first_unreachable_failure(self, project_id: str) -> float | None:
        """The oldest first failure of a project's unreachable-waiting messages."""
        first = self._one(
            "SELECT MIN(first_failure_at) FROM messages WHERE project_id = ? AND state = ?"
            " AND retry_reason = ?", (project_id, State.RETRY_WAIT, RetryClass.UNREACHABLE))
        return None if first is None else float(first)
