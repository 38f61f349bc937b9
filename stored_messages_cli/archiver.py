"""The archiving loop behind `sm run`: claim due messages, upload them, settle the outcome.

It takes a stop event and a clock. Uploads run on a thread pool; every spool write happens
on the calling thread, with outcomes settled in batches (one fsync for many messages).

The retry policy (SPEC 5) as the loop applies it:

- rate limited: the message backs off on its own (1 s doubling to 5 min, jittered) and never
  expires; the loop halves its concurrency (at most once per window of requests) and adds one
  back after every `CLEAN_RESPONSES_TO_GROW` clean responses.
- unreachable: the destination is marked down and every waiting message of that project is
  parked behind its next slot; at each slot one message goes out as the probe (credentials
  resolved afresh first). A failed probe parks them all again and expires those whose own
  first failure is a whole retry window old; a successful one makes them all due at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .clock import Clock, SystemClock, to_rfc3339
from .destinations.base import Destination, PutResult
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
RATE_LIMIT_LOG_EVERY = 900.0  # seconds: throttling comes and goes; say so at most this often


@dataclass
class RunReport:
    """What one `sm run` did (attempt outcomes, not distinct messages)."""

    stored: int = 0
    already_stored: int = 0
    rate_limited: int = 0
    unreachable: int = 0
    failed: int = 0
    expired: int = 0

    def as_dict(self) -> dict[str, int]:
        """The `--json` form."""
        return {"stored": self.stored, "already_stored": self.already_stored,
                "rate_limited": self.rate_limited, "unreachable": self.unreachable,
                "failed": self.failed, "expired": self.expired}


@dataclass
class ProjectTarget:
    """A project's destination as the archiver uses it."""

    project_id: str
    destination: Destination


Finished = tuple[ClaimedMessage, int, PutResult | BaseException]


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
        rng: random.Random | None = None,
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
        self.rng = rng or random.Random()
        self.owner = lease_owner_name()
        self.report = RunReport()
        self._limit = self.concurrency  # lowered when throttled, raised after clean responses
        self._clean_streak = 0
        self._sent = 0  # uploads submitted so far; numbers each request
        self._shrunk_after = 0  # throttles of requests sent before the last cut are old news
        self._health: dict[str, str | None] = {}  # last health written, to write only changes
        self._project_clean: dict[str, int] = {}
        self._parked_until: dict[str, float] = {}
        self._rate_limit_logged: dict[str, float] = {}
        self._next_expiry: dict[str, float] = {}  # so the busy loop does not write to check

    @property
    def concurrency_limit(self) -> int:
        """How many uploads may run at once right now (at most `concurrency`)."""
        return self._limit

    # ----------------------------------------------------------------------- main loop

    def run(self, *, once: bool = False, row_ids: Collection[int] | None = None) -> RunReport:
        """Archive until stopped (or, with `once`, until what was due at the start is done).

        With `row_ids` only those messages are attempted (what `sm replay` made due).
        """
        started = self.clock.now()
        max_row_id = self.spool.max_row_id() if once else None
        backlog: deque[ClaimedMessage] = deque()
        pending: dict[Future[PutResult], tuple[ClaimedMessage, int]] = {}
        probing: set[str] = set()
        finished: list[Finished] = []
        last_settle = time.monotonic()
        self._adopt_destinations()
        self._housekeeping()
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="sm-upload") as pool:
            while True:
                if not self.stop.is_set() and len(backlog) < self._limit * 2:
                    backlog.extend(self._claim(
                        capacity=self._limit * 8 - len(backlog), probing=probing,
                        due_by=started if once else None, max_row_id=max_row_id,
                        row_ids=row_ids))
                if self.stop.is_set() and backlog:
                    self.spool.release(self.owner, [m.row_id for m in backlog])
                    backlog.clear()
                self._park(backlog)
                while backlog and len(pending) < self._limit:
                    message = backlog.popleft()
                    self._sent += 1
                    pending[pool.submit(self._upload, message)] = (message, self._sent)
                if pending:
                    done, _ = wait(pending, timeout=SETTLE_EVERY, return_when=FIRST_COMPLETED)
                    for future in done:
                        message, seq = pending.pop(future)
                        error = future.exception()
                        finished.append((message, seq, error if error else future.result()))
                # A failure is settled at once: it may park the destination's backlog.
                if finished and (len(finished) >= SETTLE_BATCH or not pending or not backlog
                                 or any(not isinstance(f[2], PutResult) for f in finished)
                                 or time.monotonic() - last_settle >= SETTLE_EVERY):
                    self._settle(finished, probing)
                    finished = []
                    last_settle = time.monotonic()
                    if not pending and not backlog and not self.stop.is_set():
                        continue  # a probe that worked made its destination's messages due
                if not pending and not backlog:
                    if once or self.stop.is_set():
                        break
                    self.stop.wait(self.poll_interval)
                    if not self.stop.is_set():
                        self._housekeeping()
        if finished:
            self._settle(finished, probing)
        return self.report

    def _adopt_destinations(self) -> None:
        """A project connected to a new destination starts afresh: its waiting messages are due."""
        now = self.clock.now()
        for project_id, target in self.targets.items():
            health = self.spool.health(project_id)
            if health is not None and health.url != target.destination.url:
                self.spool.forget_health(project_id)
                woken = self.spool.reschedule_unreachable(project_id, now)
                log.info("project %s has a new destination %s; %d waiting message(s) are due",
                         project_id, target.destination.url, woken)

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
               max_row_id: int | None, row_ids: Collection[int] | None
               ) -> list[ClaimedMessage]:
        claimed: list[ClaimedMessage] = []
        now = self.clock.now()
        for project_id, target in self.targets.items():
            limit = capacity - len(claimed)
            if limit <= 0:
                break
            if project_id in probing:
                continue  # one request per destination while it is down
            health = self.spool.health(project_id)
            self._health[project_id] = health.health if health else None
            down = health is not None and health.health == HEALTH_UNREACHABLE
            if down:
                if health.next_probe_at is not None and health.next_probe_at > now:
                    self._parked_until[project_id] = health.next_probe_at
                    self._expire_between_slots(project_id)
                    continue
                refresh = getattr(target.destination, "refresh_credentials", None)
                if refresh is not None:
                    refresh()  # rotated keys and refreshed roles are picked up by the probe
                limit = 1
            # Its slot has come (or another process, e.g. `sm replay`, found it healthy).
            self._parked_until.pop(project_id, None)
            if row_ids is not None:
                batch = self.spool.claim_among(self.owner, project_id, row_ids, limit,
                                               lease_seconds=self.lease_seconds, due_by=due_by)
            else:
                batch = self.spool.claim(self.owner, project_id, limit,
                                         lease_seconds=self.lease_seconds, due_by=due_by,
                                         max_row_id=max_row_id)
            if down and batch:
                probing.add(project_id)
                log.info("probing the unreachable destination of project %s", project_id)
            claimed.extend(batch)
        return claimed

    def _park(self, backlog: deque[ClaimedMessage]) -> None:
        """Give back claimed messages of a destination that went down: they wait for its probe."""
        now = self.clock.now()
        down = {p for p, until in self._parked_until.items() if until > now}
        if not down or not any(m.project_id in down for m in backlog):
            return
        parked = [m for m in backlog if m.project_id in down]
        kept = [m for m in backlog if m.project_id not in down]
        backlog.clear()
        backlog.extend(kept)
        self.spool.release(self.owner, [m.row_id for m in parked])
        for project_id in {m.project_id for m in parked}:
            self.spool.hold_for_destination(project_id, self._parked_until[project_id])
            self._next_expiry.pop(project_id, None)

    def _upload(self, message: ClaimedMessage) -> PutResult:
        target = self.targets[message.project_id]
        key = target.destination.prefix + message.key
        return target.destination.put(key, gzip_body(message.payload), message.payload_sha256)

    # ----------------------------------------------------------------------- outcomes

    def _settle(self, finished: list[Finished], probing: set[str]) -> None:
        outcomes: list[Outcome] = []
        now = self.clock.now()
        down: set[str] = set()
        for message, seq, result in finished:
            project_id = message.project_id
            probing.discard(project_id)
            if isinstance(result, PutResult):
                outcomes.append(Stored(message.row_id, result.key,
                                       self.targets[project_id].destination.url,
                                       result.version_id))
                if result.created:
                    self.report.stored += 1
                else:
                    self.report.already_stored += 1
                self._clean_response(project_id)
                self._emit("stored")
                continue
            retry_class = classify(result)
            detail = describe(result)
            if retry_class == CONFLICT:
                outcomes.append(Failed(message.row_id, f"conflict: {detail}"))
                self.report.failed += 1
                log.error("message %s of project %s cannot be archived: %s",
                          message.message_id, project_id, detail)
                self._clean_response(project_id)  # the destination answered
                self._emit("failed")
            elif retry_class == RATE_LIMITED:
                delay = self.policy.rate_limited_delay(message.attempts + 1, self.rng)
                outcomes.append(Retry(message.row_id, RATE_LIMITED, now + delay, detail))
                self.report.rate_limited += 1
                self._throttled(project_id, seq, detail)
                self._emit("rate_limited")
            else:
                next_probe = self._destination_down(project_id, detail)
                outcomes.append(Retry(message.row_id, UNREACHABLE, next_probe, detail))
                self.report.unreachable += 1
                down.add(project_id)
                self._emit("unreachable")
        self.spool.settle(self.owner, outcomes)
        for project_id in down:
            self._expire(project_id)

    def _clean_response(self, project_id: str) -> None:
        """The destination answered: grow concurrency, and mark it healthy when it is."""
        self._clean_streak += 1
        if self._clean_streak >= CLEAN_RESPONSES_TO_GROW and self._limit < self.concurrency:
            self._limit += 1
            self._clean_streak = 0
            log.debug("concurrency raised to %d", self._limit)
        streak = self._project_clean[project_id] = self._project_clean.get(project_id, 0) + 1
        known = self._health.get(project_id)
        if known == HEALTH_OK or (known == HEALTH_RATE_LIMITED
                                  and streak < CLEAN_RESPONSES_TO_GROW):
            return
        url = self.targets[project_id].destination.url
        self.spool.set_health(project_id, url, HEALTH_OK)
        self._health[project_id] = HEALTH_OK
        if known == HEALTH_UNREACHABLE:
            self._wake(project_id)
            log.info("destination %s of project %s is healthy again", url, project_id)
        elif known == HEALTH_RATE_LIMITED:
            log.debug("destination %s of project %s no longer rate limiting", url, project_id)

    def _wake(self, project_id: str) -> None:
        """Every message waiting on the destination is due now (it answered)."""
        self._parked_until.pop(project_id, None)
        woken = self.spool.reschedule_unreachable(project_id, self.clock.now())
        if woken:
            log.info("%d message(s) of project %s waiting on its destination are due now",
                     woken, project_id)

    def _throttled(self, project_id: str, seq: int, detail: str) -> None:
        """Back off: halve concurrency once per window, record and (sometimes) say so."""
        self._clean_streak = 0
        self._project_clean[project_id] = 0
        if seq > self._shrunk_after:
            self._limit = max(1, self._limit // 2)
            self._shrunk_after = self._sent
            log.debug("rate limited: concurrency lowered to %d", self._limit)
        known = self._health.get(project_id)
        if known == HEALTH_RATE_LIMITED:
            return
        url = self.targets[project_id].destination.url
        self.spool.set_health(project_id, url, HEALTH_RATE_LIMITED, last_error=detail)
        self._health[project_id] = HEALTH_RATE_LIMITED
        if known == HEALTH_UNREACHABLE:
            self._wake(project_id)  # throttled means reachable: the waiting messages may go
        now = self.clock.now()
        if now - self._rate_limit_logged.get(project_id, float("-inf")) >= RATE_LIMIT_LOG_EVERY:
            self._rate_limit_logged[project_id] = now
            log.warning("destination %s of project %s is rate limiting (%s); concurrency"
                        " lowered to %d, retrying with backoff", url, project_id, detail,
                        self._limit)

    def _destination_down(self, project_id: str, detail: str) -> float:
        """Mark the destination unreachable and park its waiting messages behind the next slot."""
        now = self.clock.now()
        health = self.spool.health(project_id)
        was_down = health is not None and health.health == HEALTH_UNREACHABLE
        self._project_clean[project_id] = 0
        if was_down and health.next_probe_at is not None and health.next_probe_at > now:
            slot = health.next_probe_at  # a request sent before the outage was noticed
        else:
            slot = self.policy.next_slot(now, health.next_probe_at if was_down else None)
            url = self.targets[project_id].destination.url
            self.spool.set_health(project_id, url, HEALTH_UNREACHABLE, next_probe_at=slot,
                                  last_error=detail)
            self.spool.hold_for_destination(project_id, slot)
            if was_down:
                log.warning("destination %s of project %s is still unreachable (%s); next"
                            " probe at %s", url, project_id, detail, to_rfc3339(slot))
            else:
                log.error("destination %s of project %s is unreachable (%s); its messages"
                          " wait, one probe every %ss, next at %s", url, project_id, detail,
                          int(self.policy.retry_interval), to_rfc3339(slot))
        self._health[project_id] = HEALTH_UNREACHABLE
        self._parked_until[project_id] = slot
        self._next_expiry.pop(project_id, None)
        return slot

    def _expire_between_slots(self, project_id: str) -> None:
        """Expire messages whose window ends between two probes (a window off the slot grid)."""
        if project_id not in self._next_expiry:
            expiry = self.spool.next_expiry(project_id, self.policy.retry_window)
            self._next_expiry[project_id] = float("inf") if expiry is None else expiry
        if self.clock.now() >= self._next_expiry[project_id]:
            del self._next_expiry[project_id]
            self._expire(project_id)

    def _expire(self, project_id: str) -> None:
        self._next_expiry.pop(project_id, None)  # what waits, and since when, may have changed
        expired = self.spool.expire_overdue(project_id, self.policy.retry_window)
        if expired:
            self.report.expired += expired
            log.error("%d message(s) of project %s expired: cannot be archived (destination"
                      " unreachable for %ss since their first failure)", expired, project_id,
                      int(self.policy.retry_window))
            for _ in range(expired):
                self._emit("expired")

    def _emit(self, kind: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(kind)
