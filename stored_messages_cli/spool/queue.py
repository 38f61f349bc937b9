"""The lease queue: claim due messages, release them, settle the outcome of an attempt.

The second state machine of the spool:
`queued` / due `retry_wait` → `in_flight` (claim, under a lease) → `stored` | `retry_wait` |
`failed` (settle), or back where it waited (release, a lapsed lease, a dead local owner).
`make_due` (what `sm replay` does) brings waiting and, on request, final messages forward.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from ..states import State
from .store import ClaimedMessage, Failed, Outcome, Retry, Settled, SpoolStore, Stored

__all__ = ["ClaimedMessage", "Failed", "Outcome", "Queue", "Retry", "Stored",
           "lease_owner_name"]


def lease_owner_name() -> str:
    """A name for this process's leases: host, pid and a start stamp."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _owner_is_dead(owner: str, host: str) -> bool:
    """True when `owner` names a process on this host that no longer runs."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Queue:
    """Leases, releases and settles messages (the rows are the store's, `store.QueueStore`)."""

    def __init__(self, store: SpoolStore) -> None:
        self.store = store

    def claim(self, owner: str, project_id: str, limit: int, *, lease_seconds: float,
              due_by: float | None = None, max_row_id: int | None = None,
              overdue_after: float | None = None) -> list[ClaimedMessage]:
        """Lease up to `limit` due messages of one project to `owner`, oldest first.

        Due means `queued`, or `retry_wait` with `next_attempt_at <= due_by` (default now) or
        `next_attempt_at > overdue_after` (a schedule further ahead than the policy allows was
        written by a clock that has since gone back). Each kind is read through an index
        (queued by id, waiting by due time), so the cost does not grow with the backlog or
        the archived history. Rows another worker is claiming are skipped.
        """
        store = self.store
        now = store.clock.now()
        due_by = now if due_by is None else due_by
        until = now + lease_seconds
        with store.claiming():  # a lost lease only means a second claim
            waiting = store.waiting_due(project_id, due_by, max_row_id, limit)
            if overdue_after is not None:
                waiting += store.waiting_overdue(project_id, overdue_after, max_row_id, limit)
            if not waiting:  # the usual case: the oldest queued are the claim, read at once
                return store.lease_oldest_queued(project_id, max_row_id, limit, owner, until, now)
            queued = store.queued_ids(project_id, max_row_id, limit)
            ids = sorted(set(queued + waiting))[:limit]
            return store.lease(ids, owner, until, now)

    def claim_among(self, owner: str, project_id: str, row_ids: Iterable[int], limit: int, *,
                    lease_seconds: float, due_by: float | None = None
                    ) -> list[ClaimedMessage]:
        """Like `claim`, but only among `row_ids` (the messages `sm replay` made due)."""
        now = self.store.clock.now()
        due_by = now if due_by is None else due_by
        with self.store.claiming():
            ids = self.store.due_among(row_ids, project_id, due_by, limit)
            return self.store.lease(ids, owner, now + lease_seconds, now)

    def release(self, owner: str, row_ids: Iterable[int] | None = None) -> int:
        """Give leased messages back (shutdown): they return to where they were waiting."""
        now = self.store.clock.now()
        with self.store.write():
            return self.store.release(owner, row_ids, now)

    def release_expired_leases(self) -> int:
        """Return messages whose lease ran out, or whose local owner died, to the queue."""
        now = self.store.clock.now()
        host = socket.gethostname()
        dead = [o for o in self.store.lease_owners() if _owner_is_dead(o, host)]
        with self.store.write():
            return self.store.release_lapsed(now, dead)

    def settle(self, owner: str, outcomes: Iterable[Outcome]) -> list[Settled]:
        """Record the outcomes of finished attempts, all in one transaction.

        Returns the messages that reached a final outcome; the `on_settled` hooks see them
        inside the same transaction. A stored message is marked stored whoever holds its
        lease now (the object is in the bucket).
        """
        now = self.store.clock.now()
        outcomes = list(outcomes)
        with self.store.write():
            settled = self.store.settle_stored(
                [o for o in outcomes if isinstance(o, Stored)], now)
            for outcome in outcomes:
                if isinstance(outcome, Retry):
                    self.store.settle_retry(owner, outcome, now)
                elif isinstance(outcome, Failed):
                    settled += self.store.settle_failed(owner, outcome, now)
            self.store.settled(settled)
        return settled

    def make_due(self, *, project_id: str | None = None, message_id: str | None = None,
                 include_expired: bool = False, include_failed: bool = False) -> list[int]:
        """Make matching waiting (and optionally expired/failed) messages due now.

        Replayed expired/failed messages start a fresh retry window; their destinations are
        probed at once. Returns their row ids.
        """
        now = self.store.clock.now()
        states = [State.RETRY_WAIT] + ([State.EXPIRED] if include_expired else []) + (
            [State.FAILED] if include_failed else [])
        with self.store.write():
            found = self.store.replayable(states, project_id, message_id)
            ids = [row_id for row_id, _ in found]
            self.store.make_due(ids, sorted({project for _, project in found}), now)
        return ids

    def in_flight(self, *, project_id: str | None = None, message_id: str | None = None
                  ) -> list[int]:
        """Row ids of matching messages leased right now (another process is uploading them)."""
        return self.store.in_flight(project_id, message_id)

    def max_row_id(self) -> int:
        """The highest message row id (a pass of `sm run --once` stops there)."""
        return self.store.max_row_id()

    def projects_with_work(self) -> list[str]:
        """Projects that have messages queued, in flight or waiting to retry."""
        return self.store.projects_with_work()
