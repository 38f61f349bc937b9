"""Create-only writes re-proven while `sm run` archives (SPEC 9.2).

`sm connect` proves that a store refuses a second create-only write before it saves the
destination; a store (or a proxy in front of it) can stop honouring `If-None-Match` later, and
then every upload could replace an archived object. So the daemon proves it again: when it
starts, after each reload, and every `every` seconds (a day by default), once per store.

- `pass`: the store is fine; an `unsafe` one is `ok` again and its messages are due.
- `fail`: the store overwrote. Every project on it becomes `unsafe` (reason
  `create_only_not_honoured`): nothing is sent to it, and its messages wait as for
  `unreachable`, behind the same probe slots (recovery probes, then every retry interval),
  where the proof, not a message, is the probe; they expire on the same rule.
- `warn`: a request failed, so nothing is proven: an unsafe store stays unsafe until its
  next slot; another one keeps archiving (its uploads find out whether it answers) and the
  proof is tried again on the probe schedule.

While a store is `unreachable` no proof goes out (one request per slot goes to a down store:
the probe); a proof that fell due meanwhile runs at the first turn after it answers again.

The proof itself is a callable (`setup.checks.prove_create_only` in the daemon) that gets
the destination and the key of an object sm stored there lately, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..destinations.base import Check
from ..spool import Settled
from ..states import CheckStatus, HealthState
from .outage import Outage, StoreIdentity

log = logging.getLogger("sm.archiver")

PROOF_EVERY = 86400.0  # seconds between proofs of a healthy store

Prove = Callable[[Any, str | None], Check]  # (destination, a key sm stored there) → verdict


class CreateOnlyProofs:
    """When each store's create-only proof is due, and what its verdict does to its health."""

    def __init__(self, outage: Outage, prove: Prove, *,
                 on_expired: Callable[[list[Settled]], None], every: float = PROOF_EVERY
                 ) -> None:
        self.outage = outage
        self.prove = prove
        self.on_expired = on_expired
        self.every = every
        self._due: dict[StoreIdentity, float] = {}  # a store missing here is due now
        self._unproven_since: dict[StoreIdentity, float] = {}

    def request(self) -> None:
        """Prove every store again at the next turn (a reload)."""
        self._due = dict.fromkeys(self.outage.stores(), float("-inf"))
        self._unproven_since.clear()

    def tick(self) -> None:
        """Run the proofs that are due (the archiver's `on_tick` hook)."""
        now = self.outage.clock.now()
        for identity, members in self.outage.stores().items():
            if now >= self._due_at(identity, members, now):
                self._prove(identity, members, now)

    def _due_at(self, identity: StoreIdentity, members: list[str], now: float) -> float:
        """An unsafe store's proof is due at its probe slot (another process may have moved
        it); any other store's at the time this object set."""
        health = self.outage.spool.health.get(members[0])
        if health is not None and health.health == HealthState.UNREACHABLE:
            # One request per slot goes to a down store (its probe): the proof waits, due,
            # for the turn after the store answers again.
            return float("inf")
        if health is not None and health.health == HealthState.UNSAFE:
            slot = health.next_probe_at
            if slot is None or slot > now + self.outage.policy.longest_wait:
                return now  # no slot, or one a clock that went back set: prove now
            return min(slot, self._due.get(identity, slot))
        return self._due.get(identity, now)

    def _prove(self, identity: StoreIdentity, members: list[str], now: float) -> None:
        project_id = members[0]
        destination = self.outage.destinations[project_id]
        check = self.prove(destination, self._stored_key(members))
        health = self.outage.spool.health.get(project_id)
        unsafe = health is not None and health.health == HealthState.UNSAFE
        if check.status == CheckStatus.PASS:
            self._unproven_since.pop(identity, None)
            self._due[identity] = now + self.every
            self.outage.create_only_proven(project_id)
            log.debug("create-only writes proven on %s: %s", destination.url, check.detail,
                      extra={"event": "create_only_proven", "destination": destination.url})
            return
        if check.status == CheckStatus.FAIL or unsafe:
            self._unproven_since.pop(identity, None)
            self._due[identity] = self.outage.unsafe(project_id, check.detail)
            for member in members:
                self.on_expired(self.outage.expire(member))
            return
        since = self._unproven_since.setdefault(identity, now)
        self._due[identity] = self.outage.policy.next_probe(now, since)
        log.warning("cannot re-prove create-only writes on %s (%s); trying again at the next"
                    " probe slot", destination.url, check.detail,
                    extra={"event": "create_only_unproven", "destination": destination.url,
                           "error": check.detail})

    def _stored_key(self, members: list[str]) -> str | None:
        """The newest object sm stored for a project on this store (rewriting its own bytes
        proves the condition without leaving anything behind)."""
        found = [f for f in (self.outage.spool.index.latest_stored(p, 0.0) for p in members)
                 if f is not None]
        return max(found, key=lambda f: f[1])[0] if found else None
