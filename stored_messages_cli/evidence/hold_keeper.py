"""`sm run`'s share of legal holds: the holds of messages it stores, applied beside the loop.

When a message settles as stored, an open case of its project that matches it gets a
`pending` ledger row in the settling transaction (`holds.hold_new_matches`, registered on the
spool). `HoldKeeper.tick` (an `Archiver.on_tick` hook) then applies what the ledger has left
to do on a thread of its own, at most every `KEEP_INTERVAL` seconds, so holding thousands of
objects never holds up an upload; `close` (the run ends) waits for that thread and finishes
what is left, so a case a crash left half-applied is whole after the next `sm run --once`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from ..clock import Clock
from ..destinations.base import Destination
from ..spool import Spool
from .holds import HoldReport, apply_holds, holds_on_settle

log = logging.getLogger("sm.holds")

KEEP_INTERVAL = 5.0  # seconds between two passes over the ledger, at least
KEEP_BACKOFF_CAP = 300.0  # seconds between passes that only fail (a store down, a lost object)
KEEP_WORKERS = 4  # objects held at once beside the loop (its uploads keep the rest)


class HoldKeeper:
    """Applies the holds the ledger has left for the projects of one `sm run`."""

    def __init__(self, spool: Spool, destinations: Mapping[str, Destination], *,
                 clock: Clock | None = None, workers: int = KEEP_WORKERS) -> None:
        self.spool = spool
        self.destinations = destinations  # the run's own mapping: a reload updates it
        self.clock = clock or spool.clock
        self.workers = workers
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0.0
        self._interval = KEEP_INTERVAL  # doubled after a pass that only failed
        holds_on_settle(spool)

    def tick(self) -> None:
        """Start a pass on its own thread when one is due and none is running."""
        now = self.clock.now()
        if now < self._next or (self._thread is not None and self._thread.is_alive()):
            return
        self._next = now + self._interval
        if not self._has_work():
            return
        self._thread = threading.Thread(target=self._pass, name="sm-holds", daemon=True)
        self._thread.start()

    def _has_work(self) -> bool:
        try:
            return bool(self.spool.store.hold_figures()[1])
        except Exception:  # noqa: BLE001 - a spool hiccup: the next tick asks again
            log.exception("reading the legal hold ledger failed; trying again later")
            return False

    def _pass(self) -> HoldReport | None:
        """One pass over the ledger; a failure is logged, never raised (the loop goes on)."""
        started = self.clock.now()
        try:
            report = apply_holds(self.spool, dict(self.destinations), workers=self.workers,
                                 stop=self.stop)
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("applying legal holds failed; trying again later")
            return None
        if report.failed:
            log.warning("%d legal hold(s) not applied yet (first: %s: %s); retrying later",
                        len(report.failed), *report.failed[0])
        self._interval = KEEP_INTERVAL if report.done or not report.failed else min(
            KEEP_BACKOFF_CAP, self._interval * 2)
        self._next = started + self._interval  # after a failing pass, later and later
        return report

    def close(self) -> HoldReport | None:
        """The run ends: wait for a running pass, then finish what is left."""
        if self._thread is not None:
            self._thread.join()
        if not self._has_work():
            return None
        return self._pass()
