"""The SQLite store's lease queue verbs: claim, lease, release, settle, make due."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ...states import RetryClass, State
from .. import bodies, manifests
from ..dialect import chunks
from ..store import ClaimedMessage, Failed, Retry, Settled, Stored
from .base import StoreBase, marks
from .index_writer import entries_of_message_rows, write_entries

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

# What a stored message's settle records: the project's index is complete when this spool
# stored its first message (a project first seen through remote finds stays partial).
_COVERAGE = (
    'INSERT OR IGNORE INTO "index_coverage" ("project_id", "coverage", "source", "since",'
    ' "updated_at") SELECT "project_id", \'complete\', \'run\', ?2, ?2 FROM "messages"'
    ' WHERE "id" = ?1')


def matching(states: Sequence[State], project_id: str | None, message_id: str | None
             ) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for messages in `states`, optionally one project's
    or one message's."""
    where = [f"state IN ({marks(len(states))})"]
    params: list[Any] = list(states)
    for column, value in (("project_id", project_id), ("message_id", message_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(where), params


def _claimed(r: Any) -> ClaimedMessage:
    return ClaimedMessage(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8])


class QueueSql(StoreBase):
    """`QueueStore` on SQLite.

    A claim runs under SQLite's one write lock, so no row needs locking. The claim's states
    are written literally: SQLite prepares a statement again each time a
    parameter it compared with a partial index's condition is bound (~0.1 ms).
    """

    def waiting_due(self, project_id: str, due_by: float, max_row_id: int | None,
                    limit: int) -> list[int]:
        """Ids of `retry_wait` messages due by `due_by`, soonest first."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}' AND project_id = ?"
            f" AND next_attempt_at <= ?{below} ORDER BY next_attempt_at LIMIT ?",
            (project_id, due_by, *extra, limit)).fetchall()]

    def waiting_overdue(self, project_id: str, after: float, max_row_id: int | None,
                        limit: int) -> list[int]:
        """Ids of `retry_wait` messages scheduled after `after` (a clock gone back)."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}'"
            f" AND project_id = ? AND next_attempt_at > ?{below}"
            " ORDER BY next_attempt_at DESC LIMIT ?",
            (project_id, after, *extra, limit)).fetchall()]

    def queued_ids(self, project_id: str, max_row_id: int | None, limit: int) -> list[int]:
        """Ids of the oldest `queued` messages of a project."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM messages WHERE state = '{State.QUEUED}' AND project_id = ?"
            f"{below} ORDER BY id LIMIT ?",
            (project_id, *extra, limit)).fetchall()]

    def due_among(self, row_ids: Iterable[int], project_id: str, due_by: float,
                  limit: int) -> list[int]:
        """Those of `row_ids` that are queued or due, in id order."""
        wanted = json.dumps(sorted(set(row_ids)))
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM messages"
            " WHERE id IN (SELECT value FROM json_each(?)) AND project_id = ?"
            " AND (state = ? OR (state = ? AND next_attempt_at <= ?))"
            " ORDER BY id LIMIT ?",
            (wanted, project_id, State.QUEUED, State.RETRY_WAIT, due_by, limit)).fetchall()]

    def lease_oldest_queued(self, project_id: str, max_row_id: int | None, limit: int,
                            owner: str, until: float, now: float) -> list[ClaimedMessage]:
        """Read and lease the oldest queued messages of a project (one read, one write)."""
        below, extra = _below(max_row_id)
        rows = self.conn.execute(
            f"{_CLAIMED} WHERE state = '{State.QUEUED}' AND project_id = ?{below}"
            " ORDER BY messages.id LIMIT ?",
            (project_id, *extra, limit)).fetchall()
        return self._lease_rows([_claimed(r) for r in rows], owner, until, now)

    def lease(self, row_ids: Sequence[int], owner: str, until: float, now: float
              ) -> list[ClaimedMessage]:
        """Read and lease `row_ids` (already locked by the claim), in id order: only the
        winners' bodies are read."""
        if not row_ids:
            return []
        rows = self.conn.execute(f"{_CLAIMED} WHERE messages.id IN ({marks(len(row_ids))})"
                                 " ORDER BY messages.id", list(row_ids)).fetchall()
        return self._lease_rows([_claimed(r) for r in rows], owner, until, now)

    def _lease_rows(self, rows: list[ClaimedMessage], owner: str, until: float, now: float
                    ) -> list[ClaimedMessage]:
        if rows:
            self.conn.execute(
                f"UPDATE messages SET state = ?, lease_owner = ?, lease_expires_at = ?,"
                f" updated_at = ? WHERE id IN ({marks(len(rows))})",
                (State.IN_FLIGHT, owner, until, now, *(r.row_id for r in rows)))
        return rows

    def release(self, owner: str, row_ids: Iterable[int] | None, now: float) -> int:
        """Give `owner`'s leases (all, or `row_ids`) back to where they waited."""
        if row_ids is None:
            return int(self.conn.execute(
                f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                (now, State.IN_FLIGHT, owner)).rowcount)
        count = 0
        for row_id in row_ids:
            count += self.conn.execute(
                f"UPDATE messages SET {_RELEASE_SET} WHERE id = ? AND state = ?"
                " AND lease_owner = ?", (now, row_id, State.IN_FLIGHT, owner)).rowcount
        return count

    def lease_owners(self) -> list[str]:
        """Every owner holding an `in_flight` message."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT lease_owner FROM messages WHERE state = ?", (State.IN_FLIGHT,))
            if r[0]]

    def release_lapsed(self, now: float, dead_owners: Sequence[str]) -> int:
        """Give back leases that ran out, and every lease of `dead_owners`."""
        count = int(self.conn.execute(
            f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_expires_at <= ?",
            (now, State.IN_FLIGHT, now)).rowcount)
        for owner in dead_owners:
            count += self.conn.execute(
                f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                (now, State.IN_FLIGHT, owner)).rowcount
        return count

    def settle_retry(self, owner: str, outcome: Retry, now: float) -> None:
        """The attempt failed: `retry_wait`. Unreachable streaks keep their first failure;
        rate limiting never expires."""
        self.conn.execute(
            "UPDATE messages SET state = ?, attempts = attempts + 1,"
            " first_failure_at = CASE WHEN ? = ?"
            "   THEN COALESCE(first_failure_at, ?) ELSE NULL END,"
            " next_attempt_at = ?, retry_reason = ?, last_error = ?,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            " WHERE id = ? AND state = ? AND lease_owner = ?",
            (State.RETRY_WAIT, outcome.reason, RetryClass.UNREACHABLE, now,
             outcome.next_attempt_at, outcome.reason, outcome.error[:500], now,
             outcome.row_id, State.IN_FLIGHT, owner))

    def settle_failed(self, owner: str, outcome: Failed, now: float) -> list[Settled]:
        """The attempt failed for good: `failed`."""
        return [Settled(row[0], row[1], row[2], State.FAILED, outcome.reason, now)
                for row in self.conn.execute(
                    "UPDATE messages SET state = ?, attempts = attempts + 1,"
                    " final_reason = ?, last_error = ?, next_attempt_at = NULL,"
                    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE id = ? AND state = ? AND lease_owner = ?"
                    " RETURNING id, project_id, message_id",
                    (State.FAILED, outcome.reason, outcome.error[:500], now,
                     outcome.row_id, State.IN_FLIGHT, owner)).fetchall()]

    def settle_stored(self, stored: Sequence[Stored], now: float) -> list[Settled]:
        """Mark verified objects stored (whoever holds the lease now), drop their bodies and
        index them, all in the caller's transaction: a few statements per batch, not per
        message (on a shared PostgreSQL spool each is a round trip under the write lock)."""
        unique: dict[int, Stored] = {}
        for outcome in stored:  # the same row twice: the first outcome stands
            unique.setdefault(outcome.row_id, outcome)
        ids = list(unique)
        hashes = self._canonical_hashes([i for i in ids if unique[i].object_sha256 is not None
                                         and unique[i].size is not None])
        found: dict[int, tuple[Any, ...]] = {}
        for chunk in chunks(ids, 250):  # seven parameters a row
            found.update(self._mark_stored([unique[row_id] for row_id in chunk], hashes, now))
            done = [row_id for row_id in chunk if row_id in found]
            if done:  # after the UPDATE, whose trigger may read them
                bodies.drop_many(self.conn, done)
        settled = [Settled(found[i][0], found[i][1], found[i][2], State.STORED, None, now)
                   for i in ids if i in found]
        first_of_project: dict[str, int] = {}
        for item in settled:
            first_of_project.setdefault(item.project_id, item.row_id)
        # The index rows, with every identifier's hash, commit with the outcomes.
        write_entries(self.conn, entries_of_message_rows(
            self.conn, [s.row_id for s in settled]))
        for row_id in first_of_project.values():
            self.conn.execute(_COVERAGE, (row_id, now))
        return settled

    def _canonical_hashes(self, ids: list[int]) -> dict[int, str | None]:
        """The identifier hashes taken at ingest, checked: with the uploader's object hash and
        size they make the manifest entry (the trigger reads them from the row); a row without
        readable ones gets no object hash and its entry takes the payload path."""
        hashes: dict[int, str | None] = {}
        for chunk in chunks(ids):
            hashes.update((row_id, manifests.canonical_hashes(text)) for row_id, text in
                          self.conn.execute("SELECT id, recipient_hashes FROM messages WHERE"
                                            f" id IN ({marks(len(chunk))})", chunk).fetchall())
        return hashes

    def _mark_stored(self, chunk: list[Stored], hashes: dict[int, str | None], now: float
                     ) -> dict[int, tuple[Any, ...]]:
        """One UPDATE … FROM (VALUES …) for a slice of stored outcomes; the rows it changed."""
        values: list[Any] = []
        for outcome in chunk:
            canonical = hashes.get(outcome.row_id)
            values += [outcome.row_id, outcome.key, outcome.destination_url, outcome.version_id,
                       outcome.object_sha256 if canonical else None,
                       outcome.size if canonical else None, canonical]
        rows = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        return {r[0]: tuple(r) for r in self.conn.execute(
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
            (*values, now, now)).fetchall()}

    def replayable(self, states: Sequence[State], project_id: str | None,
                   message_id: str | None) -> list[tuple[int, str]]:
        """`(id, project_id)` of matching messages in `states` whose body is kept (expired and
        failed rows keep theirs: only stored and discarded drop it)."""
        where, params = matching(states, project_id, message_id)
        return [(r[0], r[1]) for r in self.conn.execute(
            f"SELECT id, project_id FROM messages WHERE {where} AND {bodies.HAS_BODY}",
            params).fetchall()]

    def make_due(self, row_ids: Sequence[int], projects: Iterable[str], now: float) -> None:
        """Make `row_ids` due now and probe `projects` now. Waiting messages keep their
        schedule's history, only ever earlier (a second replay never pushes back what the
        first made due); replayed final ones start anew."""
        for row_id in row_ids:
            self.conn.execute(
                "UPDATE messages SET next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?),"
                " updated_at = ? WHERE id = ? AND state = ?",
                (now, now, now, row_id, State.RETRY_WAIT))
            self.conn.execute(
                "UPDATE messages SET state = ?, next_attempt_at = NULL, retry_reason = NULL,"
                " first_failure_at = NULL, final_reason = NULL, updated_at = ?"
                " WHERE id = ? AND state != ?", (State.QUEUED, now, row_id, State.RETRY_WAIT))
        for project in projects:
            self.conn.execute("UPDATE destination_health SET next_probe_at = ?"
                              " WHERE project_id = ?", (now, project))

    def in_flight(self, project_id: str | None, message_id: str | None) -> list[int]:
        """Ids of matching messages leased right now."""
        where, params = matching([State.IN_FLIGHT], project_id, message_id)
        return [r[0] for r in self._rows(f"SELECT id FROM messages WHERE {where}", params)]

    def max_row_id(self) -> int:
        """The highest message row id."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) FROM messages"))

    def projects_with_work(self) -> list[str]:
        """Projects that have messages queued, in flight or waiting to retry.

        One index seek per project and state (idx_messages_state_project_id_next_attempt_at),
        not a DISTINCT over the whole backlog (130 ms at 1M queued rows).
        """
        found: set[str] = set()
        for state in (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT):
            after = ""  # project ids are never empty
            while True:
                after = self._one("SELECT MIN(project_id) FROM messages WHERE state = ?"
                                  " AND project_id > ?", (state, after))
                if after is None:
                    break
                found.add(after)
        return sorted(found)


def _below(max_row_id: int | None) -> tuple[str, tuple[Any, ...]]:
    """The claim's optional `id <=` bound and its parameter."""
    if max_row_id is None:
        return "", ()
    return " AND messages.id <= ?", (max_row_id,)
