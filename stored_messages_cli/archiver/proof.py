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

Each proof runs on a thread of its own (a stalled store never stops the loop, its heartbeat
or a SIGTERM); while it runs, nothing is claimed for that store, so no upload goes out before
the verdict. Verdicts are applied on the loop's thread (`settle`), like every spool write.

The proof itself is a callable (`setup.checks.prove_create_only` in the daemon) that gets
the destination and the key of an object sm stored there lately, if any.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..destinations.base import Check
from ..spool import Settled
from ..states import CheckStatus, HealthState
from .outage import Outage, StoreIdentity

log = logging.getLogger("sm.archiver")

PROOF_EVERY = 86400.0  # seconds between proofs of a healthy store

Prove = Callable[[Any, str | None], Check]  # (destination, a key sm stored there) → verdict


class _Running:
    """One proof on its thread; `check` is its verdict once `done` is set."""

    def __init__(self, prove: Prove, destination: Any, stored_key: str | None) -> None:
        self.check: Check | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(prove, destination, stored_key),
                                       name="sm-create-only-proof", daemon=True)

    def _run(self, prove: Prove, destination: Any, stored_key: str | None) -> None:
        try:
            self.check = prove(destination, stored_key)
        except Exception as exc:  # a proof that breaks proves nothing: tried again later
            self.check = Check("create_only", CheckStatus.WARN, f"the proof failed: {exc}")
        finally:
            self.done.set()


class CreateOnlyProofs:
    """When each store's create-only proof is due, and what its verdict does to its health."""

    def __init__(self, outage: Outage, prove: Prove, *,
                 on_expired: Callable[[list[Settled]], None], stop: threading.Event,
                 every: float = PROOF_EVERY) -> None:
        self.outage = outage
        self.prove = prove
        self.on_expired = on_expired
        self.stop = stop  # once set, no new proof starts (the daemon is stopping)
        self.every = every
        self._due: dict[StoreIdentity, float] = {}  # a store missing here is due now
        self._unproven_since: dict[StoreIdentity, float] = {}
        self._running: dict[StoreIdentity, _Running] = {}

    def request(self) -> None:
        """Prove every store again at the next turn (a reload)."""
        self._due = dict.fromkeys(self.outage.stores(), float("-inf"))
        self._unproven_since.clear()

    def holding(self, project_id: str) -> bool:
        """True while the proof of this project's store runs: nothing is claimed for it."""
        return self.outage.store_of(project_id) in self._running

    def running(self) -> bool:
        """True while any proof runs."""
        return bool(self._running)

    def pending(self) -> bool:
        """True while a proof runs or one just ended: its verdict, applied now, may let its
        store's messages go (one more turn of `sm run --once` claims them)."""
        was_running = self.running()
        self.settle()
        return was_running

    def tick(self) -> None:
        """Apply finished proofs, start those that are due (the archiver's `on_tick` hook)."""
        self.settle()
        if self.stop.is_set():
            return
        now = self.outage.clock.now()
        for identity, members in self.outage.stores().items():
            if identity not in self._running and now >= self._due_at(identity, members, now):
                self._start(identity, members)

    def settle(self) -> None:
        """Apply the verdict of every proof that has finished (on the loop's thread)."""
        for identity, running in list(self._running.items()):
            if running.done.is_set():
                del self._running[identity]
                members = self.outage.stores().get(identity)
                if members and running.check is not None:  # still a store in use
                    self._apply(identity, members, running.check)

    def finish(self) -> None:
        """Wait for the proofs that run, then apply them (the end of `sm run --once`)."""
        for running in list(self._running.values()):
            running.done.wait()
        self.settle()

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

    def _start(self, identity: StoreIdentity, members: list[str]) -> None:
        destination = self.outage.destinations[members[0]]
        running = self._running[identity] = _Running(self.prove, destination,
                                                     self._stored_key(members))
        running.thread.start()

    def _apply(self, identity: StoreIdentity, members: list[str], check: Check) -> None:
        now = self.outage.clock.now()
        project_id = members[0]
        url = self.outage.destinations[project_id].url
        health = self.outage.spool.health.get(project_id)
        unsafe = health is not None and health.health == HealthState.UNSAFE
        if check.status == CheckStatus.PASS:
            self._unproven_since.pop(identity, None)
            self._due[identity] = now + self.every
            self.outage.create_only_proven(project_id)
            log.debug("create-only writes proven on %s: %s", url, check.detail,
                      extra={"event": "create_only_proven", "destination": url})
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
                    " probe slot", url, check.detail,
                    extra={"event": "create_only_unproven", "destination": url,
                           "error": check.detail})

    def _stored_key(self, members: list[str]) -> str | None:
        """The newest object sm stored for a project on this store (rewriting its own bytes
        proves the condition without leaving anything behind)."""
        found = [f for f in (self.outage.spool.index.latest_stored(p, 0.0) for p in members)
                 if f is not None]
        return max(found, key=lambda f: f[1])[0] if found else None
