"""The lease queue: claim due messages, release them, settle the outcome of an attempt.

The second state machine of the spool:
`queued` / due `retry_wait` → `in_flight` (claim, under a lease) → `stored` | `retry_wait` |
`failed` (settle), or back where it waited (release, a lapsed lease, a dead local owner).
`make_due` (what `sm replay` does) brings waiting and, on request, final messages forward.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..states import FinalReason, RetryClass, State
from . import archive, bodies, identifiers, manifests
from .db import Settled, SpoolDB
from .dialect import chunks


@dataclass(slots=True)
class ClaimedMessage:
    """A message leased to one worker for one upload attempt."""

    row_id: int
    project_id: str
    message_id: str
    key: str  # relative to the destination prefix
    kept: bytes  # the body as the spool keeps it (`bodies`): its gzip object, or older plain
    payload_sha256: str
    attempts: int
    first_failure_at: float | None
    retry_reason: str | None
    # Set by the uploader: the SHA-256 and size of the gzip object it wrote.
    object_sha256: str | None = None
    object_size: int | None = None

    @property
    def payload(self) -> bytes:
        """The payload (decompressed here, on the uploader's thread, not in the claim)."""
        return bodies.payload_of(self.kept)

    @property
    def body(self) -> bytes | None:
        """The gzip object as ingest made it (None for a body kept by an earlier sm)."""
        return bodies.object_of(self.kept)


@dataclass(slots=True)
class Stored:
    """Outcome: the object is in the bucket and verified."""

    row_id: int
    key: str  # the full key, prefix included
    destination_url: str
    version_id: str | None = None
    # The uploaded object's SHA-256 and size, when the uploader knows them (the manifest
    # entry then needs no second gzip of the payload).
    object_sha256: str | None = None
    size: int | None = None


@dataclass(slots=True)
class Retry:
    """Outcome: the attempt failed and the message waits until `next_attempt_at`."""

    row_id: int
    reason: RetryClass
    next_attempt_at: float
    error: str


@dataclass(slots=True)
class Failed:
    """Outcome: a permanent problem an operator must see (e.g. a conflict)."""

    row_id: int
    reason: FinalReason
    error: str


Outcome = Stored | Retry | Failed

# A message whose body is missing claims as empty bytes: its hash check fails it as
# `corrupt_in_spool` rather than the loop crashing. The bodies come in the same read, joined
# (not a subquery per row); a lease changes none of these columns.
_CLAIMED = ("SELECT messages.id, project_id, message_id, key, COALESCE(b.payload, X''),"
            " payload_sha256, attempts, first_failure_at, retry_reason"
            " FROM messages LEFT JOIN message_bodies b ON b.id = messages.id")
_RELEASE_SET = (
    f"state = CASE WHEN next_attempt_at IS NULL THEN '{State.QUEUED}'"
    f" ELSE '{State.RETRY_WAIT}' END,"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
)


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


def _matching(states: list[State], project_id: str | None, message_id: str | None
              ) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for messages in `states`, optionally one project's
    or one message's."""
    where = [f"state IN ({','.join('?' * len(states))})"]
    params: list[Any] = list(states)
    for column, value in (("project_id", project_id), ("message_id", message_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(where), params


class Queue:
    """Leases, releases and settles messages of the `messages` table."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db

    def claim(self, owner: str, project_id: str, limit: int, *, lease_seconds: float,
              due_by: float | None = None, max_row_id: int | None = None,
              overdue_after: float | None = None) -> list[ClaimedMessage]:
        """Lease up to `limit` due messages of one project to `owner`, oldest first.

        Due means `queued`, or `retry_wait` with `next_attempt_at <= due_by` (default now) or
        `next_attempt_at > overdue_after` (a schedule further ahead than the policy allows was
        written by a clock that has since gone back). Each kind is read through an index
        (queued by id, waiting by due time), so the cost does not grow with the backlog or
        the archived history.
        """
        now = self.db.clock.now()
        due_by = now if due_by is None else due_by
        below = " AND messages.id <= ?" if max_row_id is not None else ""
        extra: tuple[Any, ...] = (max_row_id,) if max_row_id is not None else ()
        locked = self.db.dialect.skip_locked  # rows another worker is claiming are skipped
        with self.db.claiming() as conn:  # a lost lease only means a second claim
            # The state is written literally: SQLite prepares a statement again each time a
            # parameter it compared with a partial index's condition is bound (~0.1 ms).
            waiting = conn.execute(
                f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}' AND project_id = ?"
                f" AND next_attempt_at <= ?{below} ORDER BY next_attempt_at LIMIT ?{locked}",
                (project_id, due_by, *extra, limit)).fetchall()
            if overdue_after is not None:
                waiting += conn.execute(
                    f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}'"
                    f" AND project_id = ? AND next_attempt_at > ?{below}"
                    f" ORDER BY next_attempt_at DESC LIMIT ?{locked}",
                    (project_id, overdue_after, *extra, limit)).fetchall()
            if not waiting:  # the usual case: the oldest queued are the claim, read at once
                rows = conn.execute(
                    f"{_CLAIMED} WHERE state = '{State.QUEUED}' AND project_id = ?{below}"
                    f" ORDER BY messages.id LIMIT ?{self.db.dialect.skip_locked_joined}",
                    (project_id, *extra, limit)).fetchall()
                return self._lease(conn, rows, owner, now + lease_seconds, now)
            queued = conn.execute(
                f"SELECT id FROM messages WHERE state = '{State.QUEUED}' AND project_id = ?"
                f"{below} ORDER BY id LIMIT ?{locked}", (project_id, *extra, limit)).fetchall()
            ids = sorted({r[0] for r in queued + waiting})[:limit]
            return self._lease(conn, self._claimed_rows(conn, ids), owner,
                               now + lease_seconds, now)

    def claim_among(self, owner: str, project_id: str, row_ids: Iterable[int], limit: int, *,
                    lease_seconds: float, due_by: float | None = None
                    ) -> list[ClaimedMessage]:
        """Like `claim`, but only among `row_ids` (the messages `sm replay` made due)."""
        now = self.db.clock.now()
        due_by = now if due_by is None else due_by
        wanted = json.dumps(sorted(set(row_ids)))
        with self.db.claiming() as conn:
            rows = conn.execute(
                "SELECT id FROM messages"
                " WHERE id IN (SELECT value FROM json_each(?)) AND project_id = ?"
                " AND (state = ? OR (state = ? AND next_attempt_at <= ?))"
                f" ORDER BY id LIMIT ?{self.db.dialect.skip_locked}",
                (wanted, project_id, State.QUEUED, State.RETRY_WAIT, due_by, limit)).fetchall()
            return self._lease(conn, self._claimed_rows(conn, [r[0] for r in rows]), owner,
                               now + lease_seconds, now)

    @staticmethod
    def _claimed_rows(conn: sqlite3.Connection, ids: list[int]) -> list[Any]:
        """The rows (`_CLAIMED`) of `ids`, already locked by the caller, in id order: only the
        winners' bodies are read."""
        if not ids:
            return []
        return conn.execute(f"{_CLAIMED} WHERE messages.id IN ({','.join('?' * len(ids))})"
                            " ORDER BY messages.id", ids).fetchall()

    @staticmethod
    def _lease(conn: sqlite3.Connection, rows: list[Any], owner: str, until: float, now: float
               ) -> list[ClaimedMessage]:
        """Mark the messages of `rows` (`_CLAIMED`) in flight for `owner`."""
        if not rows:
            return []
        conn.execute(
            f"UPDATE messages SET state = ?, lease_owner = ?, lease_expires_at = ?,"
            f" updated_at = ? WHERE id IN ({','.join('?' * len(rows))})",
            (State.IN_FLIGHT, owner, until, now, *(r[0] for r in rows)))
        return [ClaimedMessage(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8])
                for r in rows]

    def release(self, owner: str, row_ids: Iterable[int] | None = None) -> int:
        """Give leased messages back (shutdown): they return to where they were waiting."""
        now = self.db.clock.now()
        with self.db.write() as conn:
            if row_ids is None:
                return conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                    (now, State.IN_FLIGHT, owner)).rowcount
            count = 0
            for row_id in row_ids:
                count += conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE id = ? AND state = ?"
                    " AND lease_owner = ?", (now, row_id, State.IN_FLIGHT, owner)).rowcount
            return count

    def release_expired_leases(self) -> int:
        """Return messages whose lease ran out, or whose local owner died, to the queue."""
        now = self.db.clock.now()
        host = socket.gethostname()
        owners = [r[0] for r in self.db.read(
            "SELECT DISTINCT lease_owner FROM messages WHERE state = ?", (State.IN_FLIGHT,))]
        dead = [o for o in owners if o and _owner_is_dead(o, host)]
        with self.db.write() as conn:
            count = conn.execute(
                f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_expires_at <= ?",
                (now, State.IN_FLIGHT, now)).rowcount
            for owner in dead:
                count += conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                    (now, State.IN_FLIGHT, owner)).rowcount
        return count

    def settle(self, owner: str, outcomes: Iterable[Outcome]) -> list[Settled]:
        """Record the outcomes of finished attempts, all in one transaction.

        Returns the messages that reached a final outcome; the `on_settled` hooks see them
        inside the same transaction.
        """
        now = self.db.clock.now()
        settled: list[Settled] = []
        outcomes = list(outcomes)
        with self.db.write() as conn:
            settled += self._settle_stored(conn, [o for o in outcomes if isinstance(o, Stored)],
                                           now)
            for outcome in outcomes:
                if isinstance(outcome, Stored):
                    continue
                if isinstance(outcome, Retry):
                    # Unreachable streaks keep their first failure; rate limiting never expires.
                    conn.execute(
                        "UPDATE messages SET state = ?, attempts = attempts + 1,"
                        " first_failure_at = CASE WHEN ? = ?"
                        "   THEN COALESCE(first_failure_at, ?) ELSE NULL END,"
                        " next_attempt_at = ?, retry_reason = ?, last_error = ?,"
                        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                        " WHERE id = ? AND state = ? AND lease_owner = ?",
                        (State.RETRY_WAIT, outcome.reason, RetryClass.UNREACHABLE, now,
                         outcome.next_attempt_at, outcome.reason, outcome.error[:500], now,
                         outcome.row_id, State.IN_FLIGHT, owner))
                else:
                    settled += [Settled(row[0], row[1], row[2], State.FAILED, outcome.reason, now)
                                for row in conn.execute(
                        "UPDATE messages SET state = ?, attempts = attempts + 1,"
                        " final_reason = ?, last_error = ?, next_attempt_at = NULL,"
                        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                        " WHERE id = ? AND state = ? AND lease_owner = ?"
                        " RETURNING id, project_id, message_id",
                        (State.FAILED, outcome.reason, outcome.error[:500], now,
                         outcome.row_id, State.IN_FLIGHT, owner)).fetchall()]
            self.db.settled(conn, settled)
        return settled

    @staticmethod
    def _settle_stored(conn: sqlite3.Connection, stored: list[Stored], now: float
                       ) -> list[Settled]:
        """Mark verified objects stored (whoever holds the lease now), drop their bodies and
        index them, all in the caller's transaction: a few statements per batch, not per
        message (on a shared PostgreSQL spool each is a round trip under the write lock)."""
        unique: dict[int, Stored] = {}
        for outcome in stored:  # the same row twice: the first outcome stands
            unique.setdefault(outcome.row_id, outcome)
        ids = list(unique)
        # The identifier hashes taken at ingest, checked, make the manifest entry with the
        # uploader's object hash and size (the trigger reads them from the row); a row
        # without readable ones gets no object hash here and its entry takes the payload path.
        hashes: dict[int, str | None] = {}
        known = [i for i in ids if unique[i].object_sha256 is not None
                 and unique[i].size is not None]
        for chunk in chunks(known):
            hashes.update((row_id, manifests.canonical_hashes(text)) for row_id, text in
                          conn.execute("SELECT id, recipient_hashes FROM messages WHERE id IN"
                                       f" ({','.join('?' * len(chunk))})", chunk).fetchall())
        found: dict[int, tuple[Any, ...]] = {}
        for chunk in chunks(ids, 250):  # seven parameters a row
            values: list[Any] = []
            for row_id in chunk:
                outcome, canonical = unique[row_id], hashes.get(row_id)
                values += [row_id, outcome.key, outcome.destination_url, outcome.version_id,
                           outcome.object_sha256 if canonical else None,
                           outcome.size if canonical else None, canonical]
            rows = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            found.update((r[0], tuple(r)) for r in conn.execute(
                f"WITH v (row_id, stored_key, url, version_id, sha, size, hashes) AS"
                f" (VALUES {rows})"
                f" UPDATE messages SET state = '{State.STORED}', attempts = attempts + 1,"
                " stored_at = ?, stored_key = CAST(v.stored_key AS TEXT),"
                " destination_url = CAST(v.url AS TEXT),"
                " version_id = CAST(v.version_id AS TEXT),"
                " next_attempt_at = NULL, retry_reason = NULL, first_failure_at = NULL,"
                " last_error = NULL, final_reason = NULL, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ?,"
                " object_sha256 = CAST(v.sha AS TEXT), object_size = CAST(v.size AS BIGINT),"
                " recipient_hashes = COALESCE(CAST(v.hashes AS TEXT), messages.recipient_hashes)"
                f" FROM v WHERE messages.id = CAST(v.row_id AS BIGINT)"
                f" AND messages.state != '{State.STORED}'"
                " RETURNING messages.id, messages.project_id, messages.message_id",
                (*values, now, now)).fetchall())
            done = [row_id for row_id in chunk if row_id in found]
            if done:  # after the UPDATE, whose trigger may read them
                bodies.drop_many(conn, done)
        settled = [Settled(found[i][0], found[i][1], found[i][2], State.STORED, None, now)
                   for i in ids if i in found]
        first_of_project: dict[str, int] = {}
        for item in settled:
            first_of_project.setdefault(item.project_id, item.row_id)
        # The index rows, with every identifier's hash, commit with the outcomes.
        archive.write_entries(conn, archive.entries_of_message_rows(
            conn, [s.row_id for s in settled]))
        for row_id in first_of_project.values():
            conn.execute(identifiers.COVERAGE_ON_SETTLE_SQL, (row_id, now))
        return settled

    def make_due(self, *, project_id: str | None = None, message_id: str | None = None,
                 include_expired: bool = False, include_failed: bool = False) -> list[int]:
        """Make matching waiting (and optionally expired/failed) messages due now.

        Replayed expired/failed messages start a fresh retry window. Returns their row ids.
        """
        now = self.db.clock.now()
        states = [State.RETRY_WAIT] + ([State.EXPIRED] if include_expired else []) + (
            [State.FAILED] if include_failed else [])
        where, params = _matching(states, project_id, message_id)
        # Expired/failed rows keep their payload (only stored/discarded drop it) so replay works.
        clause = where + f" AND {bodies.HAS_BODY}"
        with self.db.write() as conn:
            rows = conn.execute(f"SELECT id, project_id FROM messages WHERE {clause}", params)
            ids, projects = [], set()
            for row_id, project in rows.fetchall():
                ids.append(row_id)
                projects.add(project)
            for row_id in ids:
                # Waiting messages keep their schedule's history; replayed final ones start anew.
                # Only ever earlier: a second replay never pushes back what the first made due.
                conn.execute(
                    "UPDATE messages SET next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?),"
                    " updated_at = ? WHERE id = ? AND state = ?",
                    (now, now, now, row_id, State.RETRY_WAIT))
                conn.execute(
                    "UPDATE messages SET state = ?, next_attempt_at = NULL, retry_reason = NULL,"
                    " first_failure_at = NULL, final_reason = NULL, updated_at = ?"
                    " WHERE id = ? AND state != ?", (State.QUEUED, now, row_id, State.RETRY_WAIT))
            for project in projects:
                conn.execute("UPDATE destination_health SET next_probe_at = ?"
                             " WHERE project_id = ?", (now, project))
        return ids

    def in_flight(self, *, project_id: str | None = None, message_id: str | None = None
                  ) -> list[int]:
        """Row ids of matching messages leased right now (another process is uploading them)."""
        where, params = _matching([State.IN_FLIGHT], project_id, message_id)
        return [r[0] for r in self.db.read(f"SELECT id FROM messages WHERE {where}", params)]

    def max_row_id(self) -> int:
        """The highest message row id (a pass of `sm run --once` stops there)."""
        return int(self.db.read("SELECT COALESCE(MAX(id), 0) FROM messages")[0][0])

    def projects_with_work(self) -> list[str]:
        """Projects that have messages queued, in flight or waiting to retry.

        One index seek per project and state (idx_messages_state_project_id_next_attempt_at),
        not a DISTINCT over the whole backlog (130 ms at 1M queued rows).
        """
        found: set[str] = set()
        for state in (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT):
            after = ""  # project ids are never empty
            while True:
                after = self.db.read("SELECT MIN(project_id) FROM messages WHERE state = ?"
                                     " AND project_id > ?", (state, after))[0][0]
                if after is None:
                    break
                found.add(after)
        return sorted(found)
