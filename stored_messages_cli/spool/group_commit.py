"""Group commit for `Spool.record`: concurrent callers of one process share one transaction.

Backend-neutral: it batches on the store's `write()` (one fsync on SQLite, one COMMIT and one
write lock on PostgreSQL); `Intake` gives it the intake's own steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidMessage
from ..message import Message, parse_messages
from .rows import MessageRow
from .store import SpoolStore

# How long a group-commit leader waits, at most, for the callers of the last group to come
# back with their next message (a lone caller never waits: nobody else is coming).
GROUP_WINDOW = 0.002
MediumsCache = dict[str, list[str] | None]


class _Waiting:
    """One `record()` call waiting for the transaction that will hold its row."""

    __slots__ = ("raw", "message", "outcome", "error", "done", "lead", "_wake")

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # as the caller gave it; the leader validates it
        self.message: Message | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.done = False  # set (under the group's lock) once its transaction has ended
        self.lead = False  # set (under the group's lock) when it is to lead the next group
        # Held until this caller is to wake (done, or made the next leader): each caller
        # is woken once, by name, instead of every waiting thread at each commit.
        self._wake = threading.Lock()
        self._wake.acquire()

    def wake(self) -> None:
        """Let this caller's thread go on (once its `done` or `lead` is set)."""
        self._wake.release()

    def sleep(self) -> None:
        """Wait until `wake()`."""
        self._wake.acquire()


ApplyMessage = Callable[[Message, float, MediumsCache], str]
NewRow = Callable[[Message, float, MediumsCache], tuple[MessageRow, str]]
InsertNew = Callable[[list[MessageRow]], bool]
ParseMessages = Callable[[list[Any]], list[Message | InvalidMessage]]


def _valid(item: _Waiting) -> Message:
    assert item.message is not None  # only validated callers reach the transaction
    return item.message


class _Isolate(Exception):
    """One message of a group failed: the group's transaction is redone without it."""


class GroupCommit:
    """Group commit for `record()`: concurrent callers of one process share one transaction.

    Leader/follower. A caller queues its message as given; when no group is being written
    it becomes the leader, takes every queued message, validates them together
    (`parse_messages`, outside any lock; an invalid one's caller gets its InvalidMessage at
    once) and writes the valid ones in one `BEGIN IMMEDIATE` … `COMMIT` (one fsync for all).
    Callers that arrive meanwhile wait — the window is the leader's group, its fsync
    included — and the first of them leads the next group. A leader first waits (at most
    `window`, 2 ms) for as many callers as the last group held: after a commit they are
    back a moment later with their next message, and without the wait eight threads often
    split into a group of one and one of seven, two fsyncs where one does. A lone caller
    writes at once and never waits. Each thread is woken once, by name: the group's
    callers when their COMMIT is done, the next leader when its turn comes, the gathering
    leader when its group is complete (waking every waiting thread at each commit and the
    leader at each arrival cost more CPU per message than the group's SQL). The leader
    validates rather than each caller because under one GIL
    the callers would validate one after another anyway, each on a thread just woken, with
    the GIL handed over between them: several times the CPU of the same validations in a
    row (8 threads: the time between two groups' writes fell from 0.9-2.4 ms to 0.3 ms).

    Guarantees, the same as one transaction per call:

    - a caller returns only after the COMMIT that holds its row (durable on return);
    - an error of one message (InvalidMessage, MessageConflict, or any exception but the
      spool's own) is raised in its own caller only: an invalid message never reaches the
      transaction, and one whose write fails is left out and the transaction redone
      without it, so nobody else's row is rolled back;
    - when the transaction itself fails (COMMIT or BEGIN raises, the leader is interrupted),
      no row of the group is kept and every caller of the group gets the error: nothing
      unacknowledged is half-written, nothing acknowledged is lost.
    """

    def __init__(self, store: SpoolStore, apply: ApplyMessage, new_row: NewRow,
                 insert_new: InsertNew, parse: ParseMessages = parse_messages) -> None:
        self._store = store
        self._parse = parse
        self._apply = apply
        self._new_row = new_row
        self._insert_new = insert_new
        # The group's lock; a gathering leader waits on it for its group's callers to come.
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Waiting] = []
        self._leading = False  # a leader is gathering or writing a group
        self._gathering = 0  # callers the gathering leader waits for (0: none gathering)
        self._last_group = 1  # how many callers the last group held
        self._writing: list[_Waiting] = []  # the group being written (for tests to watch)
        self.window = GROUP_WINDOW  # seconds a leader may wait for the last group's callers

    def submit(self, message: Any) -> str:
        """Validate and record `message` with whatever else is queued; its outcome once
        committed (InvalidMessage as soon as its group is validated)."""
        waiting = _Waiting(message)
        with self._cond:
            self._queue.append(waiting)
            if self._gathering and len(self._queue) >= self._gathering:
                self._cond.notify()  # the leader's group is complete: one wake-up, not one each
            if not self._leading:
                self._leading = waiting.lead = True
        if not waiting.lead:
            self._wait(waiting)
        if waiting.lead:
            self._lead(waiting)
        if waiting.error is not None:
            raise waiting.error
        assert waiting.outcome is not None
        return waiting.outcome

    def write_each(self, messages: list[Any]) -> list[str | BaseException]:
        """Record `messages` in one transaction as one group of `submit` callers would be:
        each gets its own outcome or error, in order (`sm serve` gathers its requests'
        single messages on its event loop and hands them over at once)."""
        group = [_Waiting(message) for message in messages]
        self._write(group)
        results: list[str | BaseException] = []
        for item in group:
            if item.error is not None:
                results.append(item.error)
            else:
                assert item.outcome is not None
                results.append(item.outcome)
        return results
    def _wait(self, waiting: _Waiting) -> None:
        """Sleep until this caller's transaction has ended or it is to lead the next group.
        Interrupted (KeyboardInterrupt in the main thread), it leaves the queue if it still
        can and hands on a lead it was given, so the others never wait for a gone leader."""
        try:
            waiting.sleep()
        except BaseException:
            with self._cond:
                if waiting in self._queue:
                    self._queue.remove(waiting)  # not written: its caller is told by the raise
                if waiting.lead:
                    waiting.lead = False
                    self._hand_on()
            raise

    def _hand_on(self) -> None:
        """Under the lock, as a leader stops: the first queued caller leads the next group,
        or nobody leads until the next caller comes."""
        if self._queue:
            self._queue[0].lead = True
            self._queue[0].wake()
        else:
            self._leading = False

    def _lead(self, waiting: _Waiting) -> None:
        """Gather a group (this caller included), write it, wake its callers."""
        with self._cond:
            deadline = time.monotonic() + self.window
            # The callers of the last group: back in a moment with their next message (or
            # not: then the window ends the wait, once).
            self._gathering = self._last_group
            while len(self._queue) < self._last_group:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._gathering = 0
            group, self._queue = self._queue, []
            self._last_group = len(group)
            self._writing = group
        try:
            self._write(group)
        finally:
            with self._cond:
                self._writing = []
                for item in group:
                    if not item.done:
                        item.done = True
                        if item is not waiting:
                            item.wake()
                waiting.lead = False
                self._hand_on()

    def _write(self, group: list[_Waiting]) -> None:
        """Validate the group, then one transaction for its valid messages. New messages
        (the common case) go in with one statement per table. A message seen before is
        applied alone; one whose apply raises is left out and the transaction redone
        without it (its caller gets the error)."""
        try:
            pending = self._validate(group)
        except BaseException as exc:  # the leader interrupted: nothing was written
            for item in group:
                if item.error is None:
                    item.error = exc
            return
        now = self._store.clock.now()
        mediums: MediumsCache = {}
        try:
            while pending:
                try:
                    with self._store.write():
                        self._write_pending(pending, now, mediums)
                    break
                except _Isolate:
                    pending = [item for item in pending if item.error is None]
        except BaseException as exc:  # nothing of what was pending was committed
            for item in pending:
                item.outcome = None
                if item.error is None:
                    item.error = exc

    def _validate(self, group: list[_Waiting]) -> list[_Waiting]:
        """Validate the group's messages (`parse_messages`: stage by stage), before any lock
        is taken; the callers of invalid ones are told at once. Returns the valid ones."""
        valid: list[_Waiting] = []
        for item, parsed in zip(group, self._parse([item.raw for item in group]), strict=True):
            if isinstance(parsed, InvalidMessage):  # this caller's error
                item.error = parsed
            else:
                item.message = parsed
                valid.append(item)
        if len(valid) < len(group):
            with self._cond:
                for item in group:
                    if item.error is not None and not item.done and not item.lead:
                        item.done = True
                        item.wake()
        return valid

    def _write_pending(self, pending: list[_Waiting], now: float, mediums: MediumsCache
                       ) -> None:
        if len(pending) > 1:
            new: list[tuple[MessageRow, str]] = []
            for item in pending:
                try:
                    new.append(self._new_row(_valid(item), now, mediums))
                except Exception as exc:  # this caller's error
                    item.error = exc
                    raise _Isolate from None
            if self._insert_new([row for row, _ in new]):
                for item, (_, outcome) in zip(pending, new, strict=True):
                    item.outcome = outcome
                return
        for item in pending:  # some were seen before: one by one
            try:
                item.outcome = self._apply(_valid(item), now, mediums)
            except self._store.errors:
                raise  # the spool failed, not this message: the whole group is told
            except Exception as exc:  # this caller's error; the others' rows stay
                item.error = exc
                if len(pending) == 1:
                    return  # alone: the rollback of its transaction is all there is to undo
                raise _Isolate from None
