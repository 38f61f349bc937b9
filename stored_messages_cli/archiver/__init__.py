"""The archiving loop behind `sm run`: claim due messages, upload them, settle the outcome.

It takes a stop event and a clock. Uploads run on a thread pool; every spool write happens
on the calling thread, with outcomes settled in batches (one fsync for many messages).

The retry policy (SPEC 5) as the loop applies it:

- rate limited: the message backs off on its own (1 s doubling to 5 min, jittered) and never
  expires; the loop halves its concurrency (at most once per window of requests) and adds one
  back after every `CLEAN_RESPONSES_TO_GROW` clean responses.
- unreachable: `outage.Outage` marks the store down (for every project on it) and parks
  their waiting messages behind the next probe slot (recovery probes, then every interval);
  at each slot one message goes out as the probe, one across every process. A failed probe
  parks them again and expires those whose window is over once the window's probes have
  failed; an answer makes them all due at once.

- unsafe: a store that fails the create-only proof (`proof.CreateOnlyProofs`, at the
  first turn, after a reload, daily) gets nothing; its messages wait as for unreachable.

Claims are shared fairly between projects; seams (`on_settled`, `on_tick`, `on_upload`) let
manifests, heartbeats and metrics follow the loop without living in it.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, SimpleQueue

from ..clock import Clock, SystemClock
from ..destinations.base import Destination, PutResult
from ..message import gzip_body, sha256_hex
from ..retry import RetryPolicy, describe, error_class
from ..spool import (
    ClaimedMessage,
    Failed,
    Outcome,
    Retry,
    Settled,
    Spool,
    SpoolFull,
    Stored,
    lease_owner_name,
)
from ..states import ErrorClass, FinalReason, RetryClass
from .outage import Outage
from .proof import PROOF_EVERY, CreateOnlyProofs, Prove

log = logging.getLogger("sm.archiver")

SETTLE_BATCH = 200
SETTLE_EVERY = 0.2  # seconds: bound how long a finished upload waits to be recorded
CLEAN_RESPONSES_TO_GROW = 20
CLAIM_AT_LEAST = 64  # rows per claim when that many are due (one transaction for many)
DISK_FULL_WAIT = 10  # seconds between tries while the spool's disk is full
TICK_EVERY = 0.5  # seconds between `on_tick` calls while the loop turns
PROOF_WAIT = 0.02  # seconds `--once` waits between looks at a create-only proof that runs


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
        confirm_grace: float = 7 * 86400,
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
        self.confirm_grace = confirm_grace
        self.disk_full_wait: float = DISK_FULL_WAIT
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
        self.outage = Outage(spool, {p: t.destination for p, t in self.targets.items()},
                             self.policy, self.clock)
        self._settled_hooks: list[Callable[[list[Settled]], None]] = []
        self._tick_hooks: list[Callable[[], None]] = []
        self._upload_hooks: list[Callable[[str, float, PutResult | BaseException], None]] = []
        self._last_tick = float("-inf")
        self._rotation = -1  # which project claims first; moves on every claim
        self._retired: dict[str, ProjectTarget] = {}  # replaced targets, for claimed work
        self._moved: set[str] = set()  # projects whose claimed, unsent work goes back
        self._proofs: CreateOnlyProofs | None = None  # see `prove_create_only`

    def set_targets(self, targets: Iterable[ProjectTarget]) -> None:
        """Archive to these projects' destinations from now on (a reloaded configuration).

        Work already claimed for a project that left or moved finishes where it started; a
        project that moved to a new destination starts afresh there (its waits are due).
        """
        new = {t.project_id: t for t in targets}
        self._moved.update(p for p, old in self.targets.items()
                           if p not in new or new[p].destination is not old.destination)
        self._retired.update(self.targets)
        self.targets = new
        self.outage.set_destinations({p: t.destination for p, t in self.targets.items()})
        self.outage.adopt()

    def prove_create_only(self, prove: Prove, *, every: float = PROOF_EVERY
                          ) -> CreateOnlyProofs:
        """Re-prove create-only writes on every store: at the first turn of the loop, after
        `request()` (a reload) and every `every` seconds; a store that fails is `unsafe`."""
        proofs = CreateOnlyProofs(self.outage, prove, on_expired=self._expired,
                                  stop=self.stop, every=every)
        self.on_tick(proofs.tick)
        self._proofs = proofs
        return proofs

    # ----------------------------------------------------------------------- seams

    def on_settled(self, hook: Callable[[list[Settled]], None]) -> None:
        """Call `hook(settled)` after each transaction that settled messages (stored, failed,
        expired): the seam for what follows an outcome (manifests, metrics)."""
        self._settled_hooks.append(hook)

    def on_tick(self, hook: Callable[[], None]) -> None:
        """Call `hook()` as the loop turns (at most every `TICK_EVERY` seconds, and once when
        it ends): heartbeats, sealing on age, liveness. Runs on the loop's thread."""
        self._tick_hooks.append(hook)

    def on_upload(self, hook: Callable[[str, float, PutResult | BaseException], None]) -> None:
        """Call `hook(project_id, seconds, result)` for every finished upload attempt."""
        self._upload_hooks.append(hook)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_tick >= TICK_EVERY:
            self._last_tick = now
            self.spool.check_file()  # deleted or replaced under us: stop with an error
            for hook in self._tick_hooks:
                hook()

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
        max_row_id = self.spool.queue.max_row_id() if once else None
        backlog: deque[ClaimedMessage] = deque()
        pending: dict[Future[PutResult], tuple[ClaimedMessage, int]] = {}
        finished: list[Finished] = []
        completed: SimpleQueue[Future[PutResult]] = SimpleQueue()  # see `_completions`
        last_settle = time.monotonic()
        self._last_tick = float("-inf")  # the hooks see every run's first turn, before claims
        self.outage.adopt()
        self._housekeeping()
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="sm-upload") as pool:
            while True:
                try:
                    self._tick()
                    if not self.stop.is_set() and len(backlog) < max(CLAIM_AT_LEAST // 4,
                                                                         self._limit * 2):
                        backlog.extend(self._claim(
                            capacity=max(CLAIM_AT_LEAST, self._limit * 8) - len(backlog),
                            due_by=started if once else None, max_row_id=max_row_id,
                            row_ids=row_ids))
                    if self.stop.is_set() and backlog:
                        self.spool.queue.release(self.owner, [m.row_id for m in backlog])
                        backlog.clear()
                    self._park(backlog)
                    while backlog and len(pending) < self._limit:
                        message = backlog.popleft()
                        self._sent += 1
                        _submit(pool.submit(self._upload, message), message, self._sent,
                                pending, completed)
                    done = _completions(completed, SETTLE_EVERY) if pending else []
                    for future in done:
                        message, seq = pending.pop(future)
                        error = future.exception()
                        finished.append((message, seq, error if error else future.result()))
                    # Successes settle in batches (one fsync for many), even one upload at a time;
                    # this turn's failures at once: they may park the destination's backlog.
                    if finished and (len(finished) >= SETTLE_BATCH or (not pending and not backlog)
                                     or any(f.exception() is not None for f in done)
                                     or time.monotonic() - last_settle >= SETTLE_EVERY):
                        self._settle(finished)
                        finished = []
                        last_settle = time.monotonic()
                        if not pending and not backlog and not self.stop.is_set():
                            continue  # a probe that worked made its destination's messages due
                    if not pending and not backlog:
                        if self.stop.is_set() or (once and not (
                                self._proofs is not None and self._proofs.pending())):
                            break
                        if once:  # a create-only proof holds a store's messages: wait for it
                            self.stop.wait(PROOF_WAIT)
                            continue
                        self.stop.wait(self.poll_interval)
                        if not self.stop.is_set():
                            self._housekeeping()
                except SpoolFull as exc:
                    if once:
                        raise
                    # Nothing is lost: unsettled outcomes stay in hand and leases hold.
                    log.error("%s; waiting %gs, then trying again", exc, self.disk_full_wait,
                              extra={"event": "spool_full"})
                    self.stop.wait(self.disk_full_wait)
        if finished:
            self._settle(finished)
        self._tick(force=True)
        if once and self._proofs is not None:
            self._proofs.finish()  # a proof the pass started ends with it
        return self.report

    def _housekeeping(self) -> None:
        """Return lapsed leases and discard messages never confirmed."""
        released = self.spool.queue.release_expired_leases()
        if released:
            log.warning("returned %d message(s) with lapsed leases to the queue", released,
                        extra={"event": "leases_returned", "count": released})
        discarded = self.spool.intake.discard_unconfirmed(self.confirm_timeout,
                                                          self.confirm_grace)
        if discarded:
            log.warning("discarded %d message(s) never confirmed within %ss", discarded,
                        int(self.confirm_timeout),
                        extra={"event": "messages_discarded", "count": discarded})

    def _claim(self, *, capacity: int, due_by: float | None, max_row_id: int | None,
               row_ids: Collection[int] | None) -> list[ClaimedMessage]:
        """Claim up to `capacity` due messages, shared fairly between the projects.

        Each project first gets an equal share (the starting project rotates), then the
        room left goes to those with more; the result interleaves the projects, so a busy
        project never starves another (each one's oldest due message goes out early).
        """
        projects = list(self.targets)
        if not projects:
            return []
        self._rotation = (self._rotation + 1) % len(projects)
        projects = projects[self._rotation:] + projects[:self._rotation]
        batches: dict[str, list[ClaimedMessage]] = {p: [] for p in projects}
        hungry = list(projects)
        share = max(1, capacity // len(projects))
        while hungry and sum(map(len, batches.values())) < capacity:
            still_hungry = []
            for project_id in hungry:
                room = min(share, capacity - sum(map(len, batches.values())))
                if room <= 0:
                    break
                batch = self._claim_project(project_id, room, due_by, max_row_id, row_ids)
                batches[project_id] += batch
                if len(batch) == room and room > 0:
                    still_hungry.append(project_id)
            hungry = still_hungry
            share = max(1, capacity - sum(map(len, batches.values())))
        claimed: list[ClaimedMessage] = []
        for round_ in itertools.zip_longest(*batches.values()):
            claimed.extend(m for m in round_ if m is not None)
        return claimed

    def _claim_project(self, project_id: str, room: int, due_by: float | None,
                       max_row_id: int | None, row_ids: Collection[int] | None
                       ) -> list[ClaimedMessage]:
        if self._proofs is not None and self._proofs.holding(project_id):
            return []  # no upload before the store's create-only verdict
        limit, probe = self.outage.claim_limit(project_id, room, self._expired)
        if limit <= 0:
            return []
        if row_ids is not None:
            batch = self.spool.queue.claim_among(self.owner, project_id, row_ids, limit,
                                                 lease_seconds=self.lease_seconds, due_by=due_by)
        else:
            batch = self.spool.queue.claim(
                self.owner, project_id, limit, lease_seconds=self.lease_seconds,
                due_by=due_by, max_row_id=max_row_id,
                overdue_after=self.clock.now() + self.policy.longest_wait)
        if probe and batch:
            self.outage.probe_sent(project_id)
        return batch

    def _park(self, backlog: deque[ClaimedMessage]) -> None:
        """Give back claimed messages of a destination that went down: they wait for its probe.

        Those of a project that moved or left (a reload) go back to the queue too.
        """
        if self._moved:
            moved = [m for m in backlog if m.project_id in self._moved]
            if moved:
                kept_ = [m for m in backlog if m.project_id not in self._moved]
                backlog.clear()
                backlog.extend(kept_)
                self.spool.queue.release(self.owner, [m.row_id for m in moved])
            self._moved.clear()
        down = self.outage.parked()
        if not down or not any(m.project_id in down for m in backlog):
            return
        parked = [m for m in backlog if m.project_id in down]
        kept = [m for m in backlog if m.project_id not in down]
        backlog.clear()
        backlog.extend(kept)
        self.spool.queue.release(self.owner, [m.row_id for m in parked])
        self.outage.hold({m.project_id for m in parked})

    def _upload(self, message: ClaimedMessage) -> PutResult:
        payload = message.payload
        if sha256_hex(payload) != message.payload_sha256:
            raise CorruptInSpool(
                f"the spool's copy of message {message.message_id} no longer matches the"
                " hash recorded at ingest (disk corruption?); it was not uploaded")
        target = self.targets.get(message.project_id) or self._retired[message.project_id]
        key = target.destination.prefix + message.key
        # The payload's hash matched, so the gzip ingest made of it is the object (its header
        # is checked when claimed); a body from an earlier sm is compressed here.
        body = message.body
        if body is None:
            body = gzip_body(payload)
        message.object_sha256, message.object_size = sha256_hex(body), len(body)
        if not self._upload_hooks:
            return target.destination.put(key, body, message.payload_sha256)
        started = time.perf_counter()
        result: PutResult | BaseException
        try:
            result = target.destination.put(key, body, message.payload_sha256)
            return result
        except BaseException as exc:
            result = exc
            raise
        finally:
            for hook in self._upload_hooks:
                hook(message.project_id, time.perf_counter() - started, result)

    # ----------------------------------------------------------------------- outcomes

    def _settle(self, finished: list[Finished]) -> None:
        outcomes: list[Outcome] = []
        give_back: list[int] = []
        now = self.clock.now()
        down: set[str] = set()
        for message, seq, result in finished:
            project_id = message.project_id
            if project_id not in self.targets:  # its destination changed while it was out
                if isinstance(result, PutResult):
                    outcomes.append(self._retired_stored(message, result))
                else:  # back where it waited: the new configuration decides where it goes
                    give_back.append(message.row_id)
                continue
            self.outage.answered_or_failed(project_id)
            if isinstance(result, PutResult):
                outcomes.append(Stored(message.row_id, result.key,
                                       self.targets[project_id].destination.url,
                                       result.version_id, message.object_sha256,
                                       message.object_size))
                if result.created:
                    self.report.stored += 1
                else:
                    self.report.already_stored += 1
                self._clean_response(project_id)
                self._emit("stored")
                continue
            detail = str(result) if isinstance(result, CorruptInSpool) else describe(result)
            if isinstance(result, CorruptInSpool):
                self.outage.probe_unanswered(project_id)
                outcomes.append(Failed(message.row_id, FinalReason.CORRUPT_IN_SPOOL, detail))
                self.report.failed += 1
                _log_failed(message, detail)
                self._emit("failed")
                continue
            kind = error_class(result)
            if kind == ErrorClass.CONFLICT:
                outcomes.append(Failed(message.row_id, FinalReason.CONFLICT, detail))
                self.report.failed += 1
                _log_failed(message, detail)
                self._clean_response(project_id)  # the destination answered
                self._emit("failed")
            elif kind == ErrorClass.RATE_LIMITED:
                delay = self.policy.rate_limited_delay(message.attempts + 1, self.rng)
                outcomes.append(Retry(message.row_id, RetryClass.RATE_LIMITED, now + delay,
                                      detail))
                self.report.rate_limited += 1
                self._throttled(project_id, seq, detail)
                self._emit("rate_limited")
            else:
                next_probe = self.outage.unreachable(project_id, detail)
                outcomes.append(Retry(message.row_id, RetryClass.UNREACHABLE, next_probe,
                                      detail))
                self.report.unreachable += 1
                down.update(self.outage.sharing(project_id))
                self._emit("unreachable")
        self._after_settle(self.spool.queue.settle(self.owner, outcomes))
        if give_back:
            self.spool.queue.release(self.owner, give_back)
        for project_id in down:
            self._expired(self.outage.expire(project_id))

    def _retired_stored(self, message: ClaimedMessage, result: PutResult) -> Outcome:
        """An upload that finished after its project left the configuration (a reload)."""
        self.report.stored += int(result.created)
        self.report.already_stored += int(not result.created)
        self._emit("stored")
        return Stored(message.row_id, result.key,
                      self._retired[message.project_id].destination.url, result.version_id,
                      message.object_sha256, message.object_size)

    def _after_settle(self, settled: list[Settled]) -> None:
        for hook in self._settled_hooks:
            hook(settled)

    def _expired(self, settled: list[Settled]) -> None:
        """Messages whose retry window ended: count, tell the hooks."""
        if settled:
            self.report.expired += len(settled)
            for _ in settled:
                self._emit("expired")
            self._after_settle(settled)

    def _clean_response(self, project_id: str) -> None:
        """The destination answered: grow concurrency, and mark it healthy when it is."""
        self._clean_streak += 1
        if self._clean_streak >= CLEAN_RESPONSES_TO_GROW and self._limit < self.concurrency:
            self._limit += 1
            self._clean_streak = 0
            log.debug("concurrency raised to %d", self._limit)
        self.outage.answered(project_id)

    def _throttled(self, project_id: str, seq: int, detail: str) -> None:
        """Back off: halve concurrency once per window, and record the throttling."""
        self._clean_streak = 0
        if seq > self._shrunk_after:
            self._limit = max(1, self._limit // 2)
            self._shrunk_after = self._sent
            log.debug("rate limited: concurrency lowered to %d", self._limit)
        self.outage.throttled(project_id, detail, self._limit)

    def _emit(self, kind: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(kind)


def _log_failed(message: ClaimedMessage, detail: str) -> None:
    log.error("message %s of project %s cannot be archived: %s", message.message_id,
              message.project_id, detail,
              extra={"event": "message_failed", "message_id": message.message_id,
                     "project_id": message.project_id, "error": detail})


class CorruptInSpool(Exception):
    """The spool's payload no longer matches the hash recorded at ingest."""


def _submit(future: Future[PutResult], message: ClaimedMessage, seq: int,
            pending: dict[Future[PutResult], tuple[ClaimedMessage, int]],
            completed: SimpleQueue[Future[PutResult]]) -> None:
    """An upload just submitted: kept in `pending` with its message and number, and put on
    `completed` when it is done (`_completions`)."""
    pending[future] = (message, seq)
    future.add_done_callback(completed.put)


def _completions(completed: SimpleQueue[Future[PutResult]], timeout: float
                 ) -> list[Future[PutResult]]:
    """The uploads done so far: the first within `timeout` seconds (none if none finishes),
    then every other one already on the queue. Each upload puts itself on the queue when done,
    so one turn of the loop takes every completion at once, and no waiter is set up on each
    pending upload per turn (as `concurrent.futures.wait` does)."""
    try:
        done = [completed.get(timeout=timeout)]
    except Empty:
        return []
    while True:
        try:
            done.append(completed.get_nowait())
        except Empty:
            return done
