"""The destination-outage machine: one object owns what the archiver knows about each destination.

States per project's destination: unknown → `ok` ⇄ `rate_limited`, and → `unreachable`
(with a next probe slot) from any of them. While unreachable:

- every waiting message of the project is held behind the next slot (`spool.health.hold`);
- at the slot one message goes out as the probe (credentials re-resolved first);
- a failed probe moves the slot along the grid and expires messages whose own first failure
  is a whole retry window old; an answer (success, throttling, conflict) wakes them all.

The persistent half lives in the spool (`destination_health` rows and message holds); this
object keeps the in-memory schedule so the busy loop does not write to find out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from ..clock import Clock, to_rfc3339
from ..retry import RetryPolicy
from ..spool import Settled, Spool
from ..states import HealthState

log = logging.getLogger("sm.archiver")

CLEAN_RESPONSES_TO_CLEAR_THROTTLING = 20
RATE_LIMIT_LOG_EVERY = 900.0  # seconds: throttling comes and goes; say so at most this often


class _Target(Protocol):
    """What the outage machine needs of a destination: its URL and, maybe, fresh credentials."""

    url: str


class Outage:
    """Health, probes, holds, wakes and expiries for the archiver's projects."""

    def __init__(self, spool: Spool, destinations: dict[str, _Target], policy: RetryPolicy,
                 clock: Clock) -> None:
        self.spool = spool
        self.destinations = destinations
        self.policy = policy
        self.clock = clock
        self.probing: set[str] = set()  # projects whose probe is out
        self._known: dict[str, str | None] = {}  # last health written, to write only changes
        self._clean: dict[str, int] = {}
        self._parked_until: dict[str, float] = {}
        self._rate_limit_logged: dict[str, float] = {}
        self._next_expiry: dict[str, float] = {}

    def adopt(self) -> None:
        """A project connected to a new destination starts afresh: its waiting messages are due."""
        now = self.clock.now()
        for project_id, destination in self.destinations.items():
            health = self.spool.health.get(project_id)
            if health is not None and health.url != destination.url:
                self.spool.health.forget(project_id)
                woken = self.spool.health.wake(project_id, now)
                log.info("project %s has a new destination %s; %d waiting message(s) are due",
                         project_id, destination.url, woken)

    # ----------------------------------------------------------------------- claiming

    def claim_limit(self, project_id: str, limit: int,
                    on_expired: Callable[[list[Settled]], None]) -> tuple[int, bool]:
        """How many messages of a project may be claimed now, and whether that is a probe.

        `(0, False)` while parked or while its probe is out; `(1, True)` at a probe slot.
        Between slots it also expires messages whose window ends off the slot grid.
        """
        if project_id in self.probing:
            return 0, False  # one request per destination while it is down
        now = self.clock.now()
        health = self.spool.health.get(project_id)
        self._known[project_id] = health.health if health else None
        if health is None or health.health != HealthState.UNREACHABLE:
            self._parked_until.pop(project_id, None)
            return limit, False
        if health.next_probe_at is not None and health.next_probe_at > now:
            self._parked_until[project_id] = health.next_probe_at
            self._expire_between_slots(project_id, on_expired)
            return 0, False
        # Its slot has come (or another process, e.g. `sm replay`, made it due).
        self._parked_until.pop(project_id, None)
        refresh = getattr(self.destinations[project_id], "refresh_credentials", None)
        if refresh is not None:
            refresh()  # rotated keys and refreshed roles are picked up by the probe
        return 1, True

    def probe_sent(self, project_id: str) -> None:
        """The one probe of an unreachable destination is out."""
        self.probing.add(project_id)
        log.info("probing the unreachable destination of project %s", project_id)

    def answered_or_failed(self, project_id: str) -> None:
        """An attempt of this project finished: its probe, if any, is back."""
        self.probing.discard(project_id)

    def parked(self) -> dict[str, float]:
        """Projects whose destination is down now, with the slot they wait for."""
        now = self.clock.now()
        return {p: until for p, until in self._parked_until.items() if until > now}

    def hold(self, project_ids: Iterable[str]) -> None:
        """Park the waiting messages of these down destinations behind their next slot."""
        for project_id in project_ids:
            self.spool.health.hold(project_id, self._parked_until[project_id])
            self._next_expiry.pop(project_id, None)

    # ----------------------------------------------------------------------- outcomes

    def answered(self, project_id: str) -> None:
        """The destination answered cleanly: mark it healthy when it is, wake what waits."""
        streak = self._clean[project_id] = self._clean.get(project_id, 0) + 1
        known = self._known.get(project_id)
        if known == HealthState.OK or (known == HealthState.RATE_LIMITED
                                       and streak < CLEAN_RESPONSES_TO_CLEAR_THROTTLING):
            return
        url = self.destinations[project_id].url
        self.spool.health.set(project_id, url, HealthState.OK)
        self._known[project_id] = HealthState.OK
        if known == HealthState.UNREACHABLE:
            self._wake(project_id)
            log.info("destination %s of project %s is healthy again", url, project_id)
        elif known == HealthState.RATE_LIMITED:
            log.debug("destination %s of project %s no longer rate limiting", url, project_id)

    def throttled(self, project_id: str, detail: str, concurrency: int) -> None:
        """The destination is rate limiting: record it (it is reachable: wake what waits)."""
        self._clean[project_id] = 0
        known = self._known.get(project_id)
        if known == HealthState.RATE_LIMITED:
            return
        url = self.destinations[project_id].url
        self.spool.health.set(project_id, url, HealthState.RATE_LIMITED, last_error=detail)
        self._known[project_id] = HealthState.RATE_LIMITED
        if known == HealthState.UNREACHABLE:
            self._wake(project_id)
        now = self.clock.now()
        if now - self._rate_limit_logged.get(project_id, float("-inf")) >= RATE_LIMIT_LOG_EVERY:
            self._rate_limit_logged[project_id] = now
            log.warning("destination %s of project %s is rate limiting (%s); concurrency"
                        " lowered to %d, retrying with backoff", url, project_id, detail,
                        concurrency)

    def unreachable(self, project_id: str, detail: str) -> float:
        """Mark the destination unreachable and park its waiting messages behind the next slot.

        Returns the slot (the failed message's next attempt).
        """
        now = self.clock.now()
        health = self.spool.health.get(project_id)
        was_down = health is not None and health.health == HealthState.UNREACHABLE
        self._clean[project_id] = 0
        if was_down and health is not None and health.next_probe_at is not None \
                and health.next_probe_at > now:
            slot = health.next_probe_at  # a request sent before the outage was noticed
        else:
            previous = health.next_probe_at if was_down and health is not None else None
            slot = self.policy.next_slot(now, previous)
            url = self.destinations[project_id].url
            self.spool.health.set(project_id, url, HealthState.UNREACHABLE, next_probe_at=slot,
                                  last_error=detail)
            self.spool.health.hold(project_id, slot)
            if was_down:
                log.warning("destination %s of project %s is still unreachable (%s); next"
                            " probe at %s", url, project_id, detail, to_rfc3339(slot))
            else:
                log.error("destination %s of project %s is unreachable (%s); its messages"
                          " wait, one probe every %ss, next at %s", url, project_id, detail,
                          int(self.policy.retry_interval), to_rfc3339(slot))
        self._known[project_id] = HealthState.UNREACHABLE
        self._parked_until[project_id] = slot
        self._next_expiry.pop(project_id, None)
        return slot

    def expire(self, project_id: str) -> list[Settled]:
        """Expire the project's messages whose retry window is over."""
        self._next_expiry.pop(project_id, None)  # what waits, and since when, may have changed
        expired = self.spool.health.expire_overdue(project_id, self.policy.retry_window)
        if expired:
            log.error("%d message(s) of project %s expired: cannot be archived (destination"
                      " unreachable for %ss since their first failure)", len(expired),
                      project_id, int(self.policy.retry_window))
        return expired

    def _expire_between_slots(self, project_id: str,
                              on_expired: Callable[[list[Settled]], None]) -> None:
        """Expire messages whose window ends between two probes (a window off the slot grid)."""
        if project_id not in self._next_expiry:
            expiry = self.spool.health.next_expiry(project_id, self.policy.retry_window)
            self._next_expiry[project_id] = float("inf") if expiry is None else expiry
        if self.clock.now() >= self._next_expiry[project_id]:
            del self._next_expiry[project_id]
            on_expired(self.expire(project_id))

    def _wake(self, project_id: str) -> None:
        """Every message waiting on the destination is due now (it answered)."""
        self._parked_until.pop(project_id, None)
        woken = self.spool.health.wake(project_id, self.clock.now())
        if woken:
            log.info("%d message(s) of project %s waiting on its destination are due now",
                     woken, project_id)
