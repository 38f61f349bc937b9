"""Destination health rows and the moves that apply to a whole project's waiting messages.

The third state machine's persistent half (the archiver's `Outage` owns its meaning):
a destination is `ok`, `rate_limited` or `unreachable` (with `next_probe_at`); while it is
unreachable its messages are held in `retry_wait` behind the next probe, woken when it
answers, and expired when their retry window is over.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..states import FinalReason, HealthState, RetryClass, State
from .db import Settled, SpoolDB


@dataclass(slots=True)
class Health:
    """What the archiver last learnt about a project's destination."""

    project_id: str
    url: str
    health: str
    since: float | None = None
    next_probe_at: float | None = None
    last_error: str | None = None
    failed_probes: int = 0  # probes failed since the destination became unreachable


_COLUMNS = "project_id, url, health, since, next_probe_at, last_error, failed_probes"
EXPIRED_WORDS = "cannot be archived: destination unreachable for the whole retry window"


class DestinationHealth:
    """The `destination_health` table, and holds, wakes and expiries of waiting messages."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db

    def get(self, project_id: str) -> Health | None:
        """The recorded health of a project's destination, if any."""
        rows = self.db.read(f"SELECT {_COLUMNS} FROM destination_health WHERE project_id = ?",
                            (project_id,))
        return Health(*rows[0]) if rows else None

    def all(self) -> dict[str, Health]:
        """Every recorded destination health, by project."""
        return {r[0]: Health(*r) for r in self.db.read(
            f"SELECT {_COLUMNS} FROM destination_health")}

    def set(self, project_id: str, url: str, health: HealthState, *,
            next_probe_at: float | None = None, last_error: str | None = None,
            failed_probe: bool = False, since: float | None = None) -> bool:
        """Record a destination's health; returns True when it changed (worth a log line).

        `failed_probe` counts one more failed probe of an unreachable destination (the count
        starts again whenever it is anything else). `since` backdates a new state (a store
        another project already found down).
        """
        now = self.db.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT health, url FROM destination_health WHERE project_id = ?",
                               (project_id,)).fetchone()
            changed = row is None or row[0] != health or row[1] != url
            conn.execute(
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
                (project_id, url, health, since if since is not None else now, next_probe_at,
                 last_error[:500] if last_error else None, now,
                 1 if failed_probe and health == HealthState.UNREACHABLE else 0))
        return changed

    def take_probe(self, project_id: str, until: float) -> bool:
        """Become the one process probing this project's down destination, until `until`.

        False when another process (a daemon, `sm replay`) holds an unexpired probe lease;
        recording the probe's outcome (`set`) or `release_probe` ends the lease.
        """
        now = self.db.clock.now()
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE destination_health SET probing_until = ? WHERE project_id = ?"
                " AND (probing_until IS NULL OR probing_until <= ? OR probing_until > ?)",
                (until, project_id, now, until)).rowcount == 1

    def release_probe(self, project_id: str) -> None:
        """Give up a probe lease without an answer from the destination."""
        with self.db.write() as conn:
            conn.execute("UPDATE destination_health SET probing_until = NULL"
                         " WHERE project_id = ?", (project_id,))

    def forget(self, project_id: str) -> None:
        """Drop what is known about a project's destination (after disconnect)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM destination_health WHERE project_id = ?", (project_id,))

    # ----------------------------------------------------------------------- project-wide moves

    def hold(self, project_id: str, next_attempt_at: float) -> int:
        """Park every waiting message of a project behind its destination's next probe.

        Queued and rate-limited messages join the unreachable ones: the destination is down,
        so they wait on the same probe. Those held here for the first time count the hold as
        their first failure, so they expire on the same rule as the ones that were tried.
        """
        now = self.db.clock.now()
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE messages SET state = ?, retry_reason = ?,"
                " first_failure_at = COALESCE(first_failure_at, ?), next_attempt_at = ?,"
                " updated_at = ? WHERE project_id = ? AND state IN (?, ?)",
                (State.RETRY_WAIT, RetryClass.UNREACHABLE, now, next_attempt_at, now, project_id,
                 State.QUEUED, State.RETRY_WAIT),
            ).rowcount

    def wake(self, project_id: str, next_attempt_at: float) -> int:
        """Bring every message waiting on an unreachable destination forward to `next_attempt_at`.

        Only ever earlier: a message already due stays due (a `--once` pass started before
        the probe succeeded still takes it).
        """
        now = self.db.clock.now()
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE messages SET next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?),"
                " updated_at = ? WHERE project_id = ? AND state = ? AND retry_reason = ?",
                (next_attempt_at, next_attempt_at, now, project_id, State.RETRY_WAIT,
                 RetryClass.UNREACHABLE)).rowcount

    def expire_overdue(self, project_id: str, retry_window: float, min_failed_probes: int = 1
                       ) -> list[Settled]:
        """Expire unreachable messages whose retry window is over (SPEC 8, Time).

        Both must hold: the first failure is `retry_window` old or older, and the destination
        has failed at least `min_failed_probes` probes in a row (a clock that jumped forward
        alone never expires anything).
        """
        now = self.db.clock.now()
        with self.db.write() as conn:
            probes = conn.execute(
                "SELECT failed_probes FROM destination_health WHERE project_id = ? AND health = ?",
                (project_id, HealthState.UNREACHABLE)).fetchone()
            if probes is None or probes[0] < min_failed_probes:
                return []
            rows = conn.execute(
                "UPDATE messages SET state = ?, final_reason = ?,"
                " last_error = COALESCE(last_error, ?), next_attempt_at = NULL, updated_at = ?"
                " WHERE project_id = ? AND state = ? AND retry_reason = ?"
                " AND first_failure_at + ? <= ? RETURNING id, project_id, message_id",
                (State.EXPIRED, FinalReason.EXPIRED_UNREACHABLE, EXPIRED_WORDS, now, project_id,
                 State.RETRY_WAIT, RetryClass.UNREACHABLE, retry_window, now)).fetchall()
            settled = [Settled(r[0], r[1], r[2], State.EXPIRED,
                               FinalReason.EXPIRED_UNREACHABLE, now) for r in rows]
            self.db.settled(conn, settled)
        return settled

    def next_expiry(self, project_id: str, retry_window: float) -> float | None:
        """When the next unreachable-waiting message of a project reaches its window's end."""
        rows = self.db.read(
            "SELECT MIN(first_failure_at) FROM messages WHERE project_id = ? AND state = ?"
            " AND retry_reason = ?", (project_id, State.RETRY_WAIT, RetryClass.UNREACHABLE))
        first = rows[0][0]
        return None if first is None else first + retry_window
