"""The destination-outage machine: one object owns what the archiver knows about each destination.

States per project's destination: unknown → `ok` ⇄ `rate_limited`, and → `unreachable`
(with a next probe slot) from any of them; → `unsafe` from any of them when the store fails the
create-only proof (`proof.CreateOnlyProofs`), and back to `ok` only when a proof passes.
While unreachable (and alike while unsafe, where the probe is the proof, not a message):

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
PROBE_LEASE = 300.0  # seconds a probe may take before another process may send its own
RATE_LIMIT_LOG_EVERY = 900.0  # seconds: throttling comes and goes; say so at most this often


class _Target(Protocol):
    """What the outage machine needs of a destination: its URL and, maybe, fresh credentials."""

    url: str


StoreIdentity = tuple[str | None, ...]


def store_identity(destination: _Target) -> StoreIdentity:
    """What makes two destinations the same store: scheme, endpoint, bucket or container, and
    the credentials used (profile, role, account URL). Prefixes do not matter."""
    from ..destinations.base import split_url

    scheme, bucket, _ = split_url(destination.url)
    options = getattr(destination, "options", None)
    return (scheme, bucket or destination.url,
            getattr(destination, "endpoint_url", None) or getattr(options, "endpoint_url", None),
            getattr(options, "region", None), getattr(options, "profile", None),
            getattr(options, "role_arn", None), getattr(options, "account_url", None),
            getattr(options, "expected_owner", None))


class Outage:
    """Health, probes, holds, wakes and expiries for the archiver's projects."""

    def __init__(self, spool: Spool, destinations: dict[str, _Target], policy: RetryPolicy,
                 clock: Clock) -> None:
        self.spool = spool
        self.policy = policy
        self.clock = clock
        self._probing: set[StoreIdentity] = set()  # stores whose one probe is out
        self.set_destinations(destinations)
        self._known: dict[str, str | None] = {}  # last health written, to write only changes
        self._clean: dict[str, int] = {}
        self._parked_until: dict[str, float] = {}
        self._rate_limit_logged: dict[str, float] = {}
        self._next_expiry: dict[str, float] = {}
        self._unsafe_held: dict[str, float] = {}  # the slot each unsafe project was held for

    def set_destinations(self, destinations: dict[str, _Target]) -> None:
        """The projects' destinations (again, after a reload): which share a store."""
        self.destinations = dict(destinations)
        self._store = {p: store_identity(d) for p, d in self.destinations.items()}
        self._sharing: dict[StoreIdentity, list[str]] = {}
        for project_id, identity in self._store.items():
            self._sharing.setdefault(identity, []).append(project_id)

    def adopt(self) -> None:
        """A project connected to a new destination starts afresh: its waiting messages are due."""
        now = self.clock.now()
        for project_id, destination in self.destinations.items():
            health = self.spool.health.get(project_id)
            if health is not None and health.url != destination.url:
                self.spool.health.forget(project_id)
                woken = self.spool.health.wake(project_id, now)
                log.info("project %s has a new destination %s; %d waiting message(s) are due",
                         project_id, destination.url, woken,
                         extra={"event": "destination_changed", "project_id": project_id,
                                "destination": destination.url, "count": woken})

    # ----------------------------------------------------------------------- claiming

    def claim_limit(self, project_id: str, limit: int,
                    on_expired: Callable[[list[Settled]], None]) -> tuple[int, bool]:
        """How many messages of a project may be claimed now, and whether that is a probe.

        `(0, False)` while parked or while its probe is out; `(1, True)` at a probe slot.
        Between slots it also expires messages whose window ends off the slot grid.
        """
        if self._store[project_id] in self._probing:
            return 0, False  # one request per store while it is down
        now = self.clock.now()
        health = self.spool.health.get(project_id)
        self._known[project_id] = health.health if health else None
        if health is not None and health.health == HealthState.UNSAFE:
            # Nothing goes to a store that overwrites: only a passing proof lets it have more.
            # What another process made due (`sm replay`) waits behind the slot again, once;
            # past the slot (its proof is overdue or under way), behind the next one.
            slot = health.next_probe_at
            if slot is None or slot <= now:
                slot = self.policy.next_probe(now, health.since or now)
            self._parked_until[project_id] = slot
            if self._unsafe_held.get(project_id) != slot:
                self.spool.health.hold(project_id, slot)
                self._unsafe_held[project_id] = slot
            self._expire_between_slots(project_id, on_expired)
            return 0, False
        if health is None or health.health != HealthState.UNREACHABLE:
            self._parked_until.pop(project_id, None)
            return limit, False
        # A slot further ahead than the policy allows was set by a clock that has since gone
        # back: probe now rather than wait for it.
        if health.next_probe_at is not None and \
                now < health.next_probe_at <= now + self.policy.longest_wait:
            self._parked_until[project_id] = health.next_probe_at
            self._expire_between_slots(project_id, on_expired)
            return 0, False
        # Its slot has come (or another process, e.g. `sm replay`, made it due). Only one
        # process sends the probe: the one that takes the probe lease.
        if not self.spool.health.take_probe(project_id, now + PROBE_LEASE):
            return 0, False
        self._parked_until.pop(project_id, None)
        refresh = getattr(self.destinations[project_id], "refresh_credentials", None)
        if refresh is not None:
            refresh()  # rotated keys and refreshed roles are picked up by the probe
        return 1, True

    def probe_sent(self, project_id: str) -> None:
        """The one probe of an unreachable destination is out."""
        self._probing.add(self._store[project_id])
        log.info("probing the unreachable destination of project %s", project_id,
                 extra={"event": "destination_probe", "project_id": project_id})

    def answered_or_failed(self, project_id: str) -> None:
        """An attempt of this project finished: its store's probe, if any, is back."""
        self._probing.discard(self._store[project_id])

    def probe_unanswered(self, project_id: str) -> None:
        """The probe never reached the destination (e.g. the spool's copy was corrupt)."""
        self.spool.health.release_probe(project_id)

    def store_of(self, project_id: str) -> StoreIdentity | None:
        """The store of a project's destination (None for a project not archived here)."""
        return self._store.get(project_id)

    def stores(self) -> dict[StoreIdentity, list[str]]:
        """Each store in use, with the projects whose destination it is."""
        return {identity: list(members) for identity, members in self._sharing.items()}

    def sharing(self, project_id: str) -> list[str]:
        """The projects whose destination is the same store as this one's (itself included)."""
        return self._sharing[self._store[project_id]]

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
        if known == HealthState.UNSAFE:
            return  # an upload that was out when the proof failed: only a proof clears it
        if known == HealthState.OK or (known == HealthState.RATE_LIMITED
                                       and streak < CLEAN_RESPONSES_TO_CLEAR_THROTTLING):
            return
        url = self.destinations[project_id].url
        self.spool.health.set(project_id, url, HealthState.OK)
        self._known[project_id] = HealthState.OK
        if known == HealthState.UNREACHABLE:
            self._wake(project_id)
            log.info("destination %s of project %s is healthy again", url, project_id,
                     extra={"event": "destination_recovered", "destination": url,
                            "project_id": project_id})
            self._wake_sharing(project_id)
        elif known == HealthState.RATE_LIMITED:
            log.debug("destination %s of project %s no longer rate limiting", url, project_id,
                      extra={"event": "destination_rate_limit_cleared", "destination": url,
                             "project_id": project_id})

    def throttled(self, project_id: str, detail: str, concurrency: int) -> None:
        """The destination is rate limiting: record it (it is reachable: wake what waits)."""
        self._clean[project_id] = 0
        known = self._known.get(project_id)
        if known in (HealthState.RATE_LIMITED, HealthState.UNSAFE):
            return
        url = self.destinations[project_id].url
        self.spool.health.set(project_id, url, HealthState.RATE_LIMITED, last_error=detail)
        self._known[project_id] = HealthState.RATE_LIMITED
        if known == HealthState.UNREACHABLE:
            self._wake(project_id)  # throttled means reachable: what waits may go
            self._wake_sharing(project_id)
        now = self.clock.now()
        if now - self._rate_limit_logged.get(project_id, float("-inf")) >= RATE_LIMIT_LOG_EVERY:
            self._rate_limit_logged[project_id] = now
            log.warning("destination %s of project %s is rate limiting (%s); concurrency"
                        " lowered to %d, retrying with backoff", url, project_id, detail,
                        concurrency,
                        extra={"event": "destination_rate_limited", "destination": url,
                               "project_id": project_id, "error": detail})

    def unreachable(self, project_id: str, detail: str) -> float:
        """Mark the store unreachable for every project on it, and park their waiting messages
        behind the next probe slot. Returns the slot (the failed message's next attempt)."""
        now = self.clock.now()
        health = self.spool.health.get(project_id)
        if health is not None and health.health == HealthState.UNSAFE:
            # An upload that was out when the proof failed: it waits for the proof's slot.
            slot = health.next_probe_at or self.policy.next_probe(now, now)
            self._known[project_id] = HealthState.UNSAFE
            self._parked_until[project_id] = slot
            return slot
        was_down = health is not None and health.health == HealthState.UNREACHABLE
        self._clean[project_id] = 0
        if was_down and health is not None and health.next_probe_at is not None \
                and now < health.next_probe_at <= now + self.policy.longest_wait:
            slot = health.next_probe_at  # a request sent before the outage was noticed
        else:
            down_since = health.since if was_down and health is not None and health.since \
                is not None else now
            slot = self.policy.next_probe(now, down_since)
            for member in self.sharing(project_id):
                self._mark_down(member, slot, detail, down_since)
            url = self.destinations[project_id].url
            others = [p for p in self.sharing(project_id) if p != project_id]
            shared = f" (shared with project(s) {', '.join(others)})" if others else ""
            if was_down:
                log.warning("destination %s of project %s is still unreachable (%s)%s; next"
                            " probe at %s", url, project_id, detail, shared, to_rfc3339(slot),
                            extra={"event": "destination_still_unreachable", "destination": url,
                                   "project_id": project_id, "error": detail,
                                   "next_probe_at": to_rfc3339(slot)})
            else:
                log.error("destination %s of project %s is unreachable (%s)%s; its messages"
                          " wait, next probe at %s, then one every %ss", url, project_id,
                          detail, shared, to_rfc3339(slot), int(self.policy.retry_interval),
                          extra={"event": "destination_unreachable", "destination": url,
                                 "project_id": project_id, "error": detail,
                                 "next_probe_at": to_rfc3339(slot)})
        self._known[project_id] = HealthState.UNREACHABLE
        self._parked_until[project_id] = slot
        self._next_expiry.pop(project_id, None)
        return slot

    # ----------------------------------------------------------------------- create-only proof

    def unsafe(self, project_id: str, detail: str) -> float:
        """The store failed (or, already unsafe, could not pass) the create-only proof: mark
        it `unsafe` for every project on it, hold their messages behind the next slot (the
        unreachable schedule: recovery probes, then every interval) and expire those whose
        window is over. Returns the slot, when the proof runs again."""
        now = self.clock.now()
        health = self.spool.health.get(project_id)
        was_unsafe = health is not None and health.health == HealthState.UNSAFE
        down_since = health.since if was_unsafe and health is not None and \
            health.since is not None else now
        slot = self.policy.next_probe(now, down_since)
        for member in self.sharing(project_id):
            self._mark_down(member, slot, detail, down_since, HealthState.UNSAFE)
        url = self.destinations[project_id].url
        log.error("destination %s of project(s) %s is unsafe: %s; nothing is sent to it, its"
                  " messages wait, next create-only proof at %s", url,
                  ", ".join(self.sharing(project_id)), detail, to_rfc3339(slot),
                  extra={"event": "destination_unsafe", "destination": url,
                         "project_id": project_id, "reason": "create_only_not_honoured",
                         "error": detail, "next_probe_at": to_rfc3339(slot)})
        return slot

    def create_only_proven(self, project_id: str) -> None:
        """The store passed the create-only proof: an unsafe one is `ok` again, and every
        message waiting on it is due."""
        for member in self.sharing(project_id):
            health = self.spool.health.get(member)
            if health is None or health.health != HealthState.UNSAFE:
                continue
            url = self.destinations[member].url
            self.spool.health.set(member, url, HealthState.OK)
            self._known[member] = HealthState.OK
            self._wake(member)
            log.info("destination %s of project %s honours create-only writes again; its"
                     " messages are due", url, member,
                     extra={"event": "destination_safe", "destination": url,
                            "project_id": member})

    def _mark_down(self, project_id: str, slot: float, detail: str, down_since: float,
                   state: HealthState = HealthState.UNREACHABLE) -> None:
        self.spool.health.set(project_id, self.destinations[project_id].url,
                              state, next_probe_at=slot, last_error=detail,
                              failed_probe=True, since=down_since)
        self.spool.health.hold(project_id, slot)
        self._known[project_id] = state
        self._parked_until[project_id] = slot
        self._next_expiry.pop(project_id, None)

    def _wake_sharing(self, project_id: str) -> None:
        """The store answered one project: the others on it are reachable too."""
        for member in self.sharing(project_id):
            if member != project_id and self._known.get(member, HealthState.UNREACHABLE) \
                    == HealthState.UNREACHABLE:
                health = self.spool.health.get(member)
                if health is not None and health.health == HealthState.UNREACHABLE:
                    self.spool.health.set(member, self.destinations[member].url, HealthState.OK)
                    self._known[member] = HealthState.OK
                    self._wake(member)

    def expire(self, project_id: str) -> list[Settled]:
        """Expire the project's messages whose retry window is over."""
        self._next_expiry.pop(project_id, None)  # what waits, and since when, may have changed
        expired = self.spool.health.expire_overdue(project_id, self.policy.retry_window,
                                                   self.policy.probes_to_expire)
        if expired:
            log.error("%d message(s) of project %s expired: cannot be archived (destination"
                      " unreachable for %ss since their first failure)", len(expired),
                      project_id, int(self.policy.retry_window),
                      extra={"event": "messages_expired", "count": len(expired),
                             "project_id": project_id})
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
                     woken, project_id,
                     extra={"event": "messages_due", "count": woken, "project_id": project_id})
