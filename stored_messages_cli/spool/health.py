"""Destination health rows and the moves that apply to a whole project's waiting messages.

The third state machine's persistent half (the archiver's `Outage` owns its meaning):
a destination is `ok`, `rate_limited`, `unreachable` or `unsafe` (both with `next_probe_at`);
while it is unreachable or unsafe its messages are held in `retry_wait` behind the next probe,
woken when it answers (or passes the create-only proof), and expired when their retry window
is over. The rows are the store's
(`store.HealthStore`).
"""

from __future__ import annotations

from ..states import DOWN_HEALTH, HealthState
from .store import Health, Settled, SpoolStore

__all__ = ["EXPIRED_WORDS", "DestinationHealth", "Health"]

EXPIRED_WORDS = "cannot be archived: destination unreachable for the whole retry window"


class DestinationHealth:
    """The `destination_health` table, and holds, wakes and expiries of waiting messages."""

    def __init__(self, store: SpoolStore) -> None:
        self.store = store

    def get(self, project_id: str) -> Health | None:
        """The recorded health of a project's destination, if any."""
        return self.store.health_of(project_id)

    def all(self) -> dict[str, Health]:
        """Every recorded destination health, by project."""
        return self.store.all_health()

    def set(self, project_id: str, url: str, health: HealthState, *,
            next_probe_at: float | None = None, last_error: str | None = None,
            failed_probe: bool = False, since: float | None = None) -> bool:
        """Record a destination's health; returns True when it changed (worth a log line).

        `failed_probe` counts one more failed probe of an unreachable or unsafe destination
        (the count starts again whenever it is anything else). `since` backdates a new state
        (a store another project already found down).
        """
        now = self.store.clock.now()
        with self.store.write():
            return self.store.set_health(
                project_id, url, health, since=since if since is not None else now,
                next_probe_at=next_probe_at, last_error=last_error[:500] if last_error else None,
                failed_probes=1 if failed_probe and health in DOWN_HEALTH else 0,
                now=now)

    def take_probe(self, project_id: str, until: float) -> bool:
        """Become the one process probing this project's down destination, until `until`.

        False when another process (a daemon, `sm replay`) holds an unexpired probe lease;
        recording the probe's outcome (`set`) or `release_probe` ends the lease.
        """
        now = self.store.clock.now()
        with self.store.write():
            return self.store.take_probe(project_id, until, now)

    def release_probe(self, project_id: str) -> None:
        """Give up a probe lease without an answer from the destination."""
        with self.store.write():
            self.store.release_probe(project_id)

    def forget(self, project_id: str) -> None:
        """Drop what is known about a project's destination (after disconnect)."""
        with self.store.write():
            self.store.forget_health(project_id)

    # ----------------------------------------------------------------------- project-wide moves

    def hold(self, project_id: str, next_attempt_at: float) -> int:
        """Park every waiting message of a project behind its destination's next probe.

        Queued and rate-limited messages join the unreachable ones: the destination is down,
        so they wait on the same probe. Those held here for the first time count the hold as
        their first failure, so they expire on the same rule as the ones that were tried.
        """
        now = self.store.clock.now()
        with self.store.write():
            return self.store.hold(project_id, next_attempt_at, now)

    def wake(self, project_id: str, next_attempt_at: float) -> int:
        """Bring every message waiting on an unreachable destination forward to `next_attempt_at`.

        Only ever earlier: a message already due stays due (a `--once` pass started before
        the probe succeeded still takes it).
        """
        now = self.store.clock.now()
        with self.store.write():
            return self.store.wake(project_id, next_attempt_at, now)

    def expire_overdue(self, project_id: str, retry_window: float, min_failed_probes: int = 1
                       ) -> list[Settled]:
        """Expire unreachable messages whose retry window is over (SPEC 8, Time).

        Both must hold: the first failure is `retry_window` old or older, and the destination
        has failed at least `min_failed_probes` probes in a row (a clock that jumped forward
        alone never expires anything).
        """
        now = self.store.clock.now()
        with self.store.write():
            probes = self.store.failed_probes(project_id)
            if probes is None or probes < min_failed_probes:
                return []
            settled = self.store.expire(project_id, retry_window, EXPIRED_WORDS, now)
            self.store.settled(settled)
        return settled

    def next_expiry(self, project_id: str, retry_window: float) -> float | None:
        """When the next unreachable-waiting message of a project reaches its window's end."""
        first = self.store.first_unreachable_failure(project_id)
        return None if first is None else first + retry_window
