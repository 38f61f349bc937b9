"""The archiving loop behind `sm run`: claim due messages, upload them, settle the outcome.

It takes a stop event and a clock. Uploads run on a thread pool; every spool write happens
on the calling thread, with outcomes settled in batches (one fsync for many messages).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from .clock import Clock, SystemClock, to_rfc3339
from .destinations.base import Destination, PutResult
from .errors import DestinationError
from .model import gzip_body
from .retry import CONFLICT, RATE_LIMITED, UNREACHABLE, RetryPolicy, classify, describe
from .spool import (
    HEALTH_OK,
    HEALTH_RATE_LIMITED,
    HEALTH_UNREACHABLE,
    ClaimedMessage,
    Failed,
    Outcome,
    Retry,
    Spool,
    Stored,
    lease_owner_name,
)

log = logging.getLogger("sm.archiver")

SETTLE_BATCH = 200
SETTLE_EVERY = 0.2  # seconds: bound how long a finished upload waits to be recorded
CLEAN_RESPONSES_TO_GROW = 20


@dataclass
class RunReport:
    """What one `sm run` did."""

    stored: int = 0
    already_stored: int = 0
    rate_limited: int = 0
    unreachable: int = 0
    failed: int = 0
    expired: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The `--json` form."""
        return {"stored": self.stored, "already_stored": self.already_stored,
                "rate_limited": self.rate_limited, "unreachable": self.unreachable,
                "failed": self.failed, "expired": self.expired}


@dataclass
class ProjectTarget:
    """A project's destination as the archiver uses it."""

    project_id: str
    destination: Destination


class Archiver:
    """Drains the spool to each project's destination under the retry policy."""

    def __init__(
        self,
        spool: Spool,
        targets: Iterable[ProjectTarget],
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        lease_seconds: float = 300,
        confirm_timeout: float = 24 * 3600,
        poll_interval: float = 1.0,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.spool = spool
        self.targets = {t.project_id: t for t in targets}
        self.policy = policy or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.confirm_timeout = confirm_timeout
        self.poll_interval = poll_interval
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.on_outcome = on_outcome
        self.owner = lease_owner_name()
        self.report = RunReport()
        self._limit = self.concurrency  # lowered when throttled, raised after clean responses
        self._clean_streak = 0

    # ----------------------------------------------------------------------- main loop

    def run(self, *, once: bool = False) -> RunReport:
        """Archive until stopped (or, with `once`, until what was due at the start is done)."""
        started = self.clock.now()
        max_row_id = self.spool.max_row_id() if once else None
        backlog: deque[ClaimedMessage] = deque()
        pending: dict[Future[PutResult], ClaimedMessage] = {}
        probing: set[str] = set()
        finished: list[tuple[ClaimedMessage, PutResult | BaseException]] = []
        last_settle = time.monotonic()
        self._housekeeping()
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="sm-upload") as pool:
            while True:
                if not self.stop.is_set() and len(backlog) < self.concurrency * 2:
                    backlog.extend(self._claim(
                        capacity=self.concurrency * 8 - len(backlog), probing=probing,
                        due_by=started if once else None, max_row_id=max_row_id))
                if self.stop.is_set() and backlog:
                    self.spool.release(self.owner, [m.row_id for m in backlog])
                    backlog.clear()
                while backlog and len(pending) < self._limit:
                    message = backlog.popleft()
                    pending[pool.submit(self._upload, message)] = message
                if pending:
                    done, _ = wait(pending, timeout=SETTLE_EVERY, return_when=FIRST_COMPLETED)
                    for future in done:
                        message = pending.pop(future)
                        error = future.exception()
                        finished.append((message, error if error else future.result()))
                if finished and (len(finished) >= SETTLE_BATCH or not pending or not backlog
                                 or time.monotonic() - last_settle >= SETTLE_EVERY):
                    self._settle(finished, probing)
                    finished = []
                    last_settle = time.monotonic()
                if not pending and not backlog:
                    if once or self.stop.is_set():
                        break
                    self.stop.wait(self.poll_interval)
                    if not self.stop.is_set():
                        self._housekeeping()
        if finished:
            self._settle(finished, probing)
        return self.report

    def _housekeeping(self) -> None:
        """Return lapsed leases and discard messages never confirmed."""
        released = self.spool.release_expired_leases()
        if released:
            log.warning("returned %d message(s) with lapsed leases to the queue", released)
        discarded = self.spool.discard_unconfirmed(self.confirm_timeout)
        if discarded:
            log.warning("discarded %d message(s) never confirmed within %ss", discarded,
                        int(self.confirm_timeout))

    def _claim(self, *, capacity: int, probing: set[str], due_by: float | None,
               max_row_id: int | None) -> list[ClaimedMessage]:
        claimed: list[ClaimedMessage] = []
        now = self.clock.now()
        for project_id, target in self.targets.items():
            if capacity - len(claimed) <= 0:
                break
            if project_id in probing:
                continue  # one request per destination while it is down
            health = self.spool.health(project_id)
            limit = capacity - len(claimed)
            if health is not None and health.health == HEALTH_UNREACHABLE:
                if health.next_probe_at is not None and health.next_probe_at > now:
                    self._expire(project_id)
                    continue
                refresh = getattr(target.destination, "refresh_credentials", None)
                if refresh is not None:
                    refresh()  # rotated keys and refreshed roles are picked up by the probe
                limit = 1
            batch = self.spool.claim(self.owner, project_id, limit,
                                     lease_seconds=self.lease_seconds, due_by=due_by,
                                     max_row_id=max_row_id)
            if health is not None and health.health == HEALTH_UNREACHABLE:
                if batch:
                    probing.add(project_id)
                    log.info("probing unreachable destination of project %s", project_id)
                else:  # nothing left to probe with: try again next slot
                    self._destination_down(project_id, health.last_error or "unreachable")
            claimed.extend(batch)
        return claimed

    def _upload(self, message: ClaimedMessage) -> PutResult:
        target = self.targets[message.project_id]
        key = target.destination.prefix + message.key
        return target.destination.put(key, gzip_body(message.payload), message.payload_sha256)

    # ----------------------------------------------------------------------- outcomes

    def _settle(self, finished: list[tuple[ClaimedMessage, PutResult | BaseException]],
                probing: set[str]) -> None:
        outcomes: list[Outcome] = []
        now = self.clock.now()
        for message, result in finished:
            project_id = message.project_id
            was_probe = project_id in probing
            probing.discard(project_id)
            if isinstance(result, PutResult):
                outcomes.append(Stored(message.row_id, result.key,
                                       self.targets[project_id].destination.url,
                                       result.version_id))
                if result.created:
                    self.report.stored += 1
                else:
                    self.report.already_stored += 1
                self._destination_up(project_id, was_probe)
                self._grow()
                self._emit("stored")
                continue
            retry_class = (result.retry_class if isinstance(result, DestinationError)
                           else classify(result))
            detail = describe(result) if not isinstance(result, DestinationError) else str(result)
            if retry_class == CONFLICT:
                outcomes.append(Failed(message.row_id, f"conflict: {detail}"))
                self.report.failed += 1
                log.error("message %s of project %s cannot be archived: %s",
                          message.message_id, project_id, detail)
                self._emit("failed")
            elif retry_class == RATE_LIMITED:
                delay = self.policy.rate_limited_delay(message.attempts + 1)
                outcomes.append(Retry(message.row_id, RATE_LIMITED, now + delay, detail))
                self.report.rate_limited += 1
                self._shrink()
                if self.spool.set_health(project_id, self.targets[project_id].destination.url,
                                         HEALTH_RATE_LIMITED, last_error=detail):
                    log.warning("destination of project %s is rate limiting; backing off",
                                project_id)
                if was_probe:
                    self.spool.reschedule_unreachable(project_id, now)
                self._emit("rate_limited")
            else:
                next_probe = self._destination_down(project_id, detail)
                outcomes.append(Retry(message.row_id, UNREACHABLE, next_probe, detail))
                self.report.unreachable += 1
                self._emit("unreachable")
        self.spool.settle(self.owner, outcomes)
        for project_id in {m.project_id for m, r in finished if not isinstance(r, PutResult)}:
            self._expire(project_id)

    def _destination_down(self, project_id: str, detail: str) -> float:
        """Mark the destination unreachable; its waiting messages move to the next slot."""
        health = self.spool.health(project_id)
        now = self.clock.now()
        if (health is not None and health.health == HEALTH_UNREACHABLE
                and health.next_probe_at is not None and health.next_probe_at > now):
            return health.next_probe_at
        next_probe = self.policy.next_probe_at(now)
        url = self.targets[project_id].destination.url
        if self.spool.set_health(project_id, url, HEALTH_UNREACHABLE, next_probe_at=next_probe,
                                 last_error=detail):
            log.error("destination %s of project %s is unreachable (%s); next try at %s",
                      url, project_id, detail, to_rfc3339(next_probe))
        else:
            log.warning("destination %s of project %s still unreachable (%s); next try at %s",
                        url, project_id, detail, to_rfc3339(next_probe))
        self.spool.hold_for_destination(project_id, next_probe)
        return next_probe

    def _destination_up(self, project_id: str, was_probe: bool) -> None:
        url = self.targets[project_id].destination.url
        if self.spool.set_health(project_id, url, HEALTH_OK):
            log.info("destination %s of project %s is healthy", url, project_id)
            woken = self.spool.reschedule_unreachable(project_id, self.clock.now())
            if woken or was_probe:
                log.info("%d waiting message(s) of project %s are due now", woken, project_id)

    def _expire(self, project_id: str) -> None:
        expired = self.spool.expire_overdue(project_id, self.policy.retry_window)
        if expired:
            self.report.expired += expired
            log.error("%d message(s) of project %s expired: cannot be archived (destination"
                      " unreachable for %ss)", expired, project_id, int(self.policy.retry_window))
            for _ in range(expired):
                self._emit("expired")

    def _shrink(self) -> None:
        self._clean_streak = 0
        self._limit = max(1, self._limit // 2)

    def _grow(self) -> None:
        self._clean_streak += 1
        if self._clean_streak >= CLEAN_RESPONSES_TO_GROW and self._limit < self.concurrency:
            self._limit += 1
            self._clean_streak = 0

    def _emit(self, kind: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(kind)
