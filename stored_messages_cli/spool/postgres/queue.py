"""The PostgreSQL store's lease queue verbs: claim, lease, release, settle, make due.

A claim's reads lock the rows they take and skip those another worker is claiming
(`FOR UPDATE SKIP LOCKED`), so workers on many hosts lease disjoint messages side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ...states import RetryClass, State
from .. import archive, manifests
from ..bodies import HAS_BODY
from ..dialect import chunks
from ..store import ClaimedMessage, Failed, Retry, Settled, Stored
from .base import PgStoreBase
from .index import PgIndex

# A message whose body is missing claims as empty bytes: its hash check fails it as
# `corrupt_in_spool`. Only the messages are locked (PostgreSQL locks no side of an outer
# join it may leave empty).
_CLAIMED = ("SELECT messages.id, project_id, message_id, key, COALESCE(b.payload, ''::bytea),"
            " payload_sha256, attempts, first_failure_at, retry_reason"
            " FROM messages LEFT JOIN message_bodies b ON b.id = messages.id")
_RELEASE_SET = (
    f"state = CASE WHEN next_attempt_at IS NULL THEN '{State.QUEUED}'"
    f" ELSE '{State.RETRY_WAIT}' END,"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s"
)
# What a stored message's settle records, the first time the project's index gets one.
_COVERAGE = (
    'INSERT INTO "index_coverage" ("project_id", "coverage", "source", "since",'
    ' "updated_at") SELECT "project_id", \'complete\', \'run\', %s, %s FROM "messages"'
    ' WHERE "id" = %s ON CONFLICT DO NOTHING')


def _matching(states: Sequence[State], project_id: str | None, message_id: str | None
              ) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for messages in `states`, optionally one project's
    or one message's."""
    where = ["state = ANY(%s)"]
    params: list[Any] = [[str(state) for state in states]]
    for column, value in (("project_id", project_id), ("message_id", message_id)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    return " AND ".join(where), params


def _claimed(r: Sequence[Any]) -> ClaimedMessage:
    return ClaimedMessage(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8])


def _below(max_row_id: int | None) -> tuple[str, tuple[Any, ...]]:
    """The claim's optional `id <=` bound and its parameter."""
    if max_row_id is None:
        return "", ()
    return " AND messages.id <= %s", (max_row_id,)


class QueuePg(PgStoreBase):
    """`QueueStore` on PostgreSQL (states written literally, as the partial indexes name
    them, so the planner can use those)."""

    def waiting_due(self, project_id: str, due_by: float, max_row_id: int | None,
                    limit: int) -> list[int]:
        """Ids of `retry_wait` messages due by `due_by`, soonest first."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self._all(
            f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}' AND project_id = %s"
            f" AND next_attempt_at <= %s{below} ORDER BY next_attempt_at LIMIT %s"
            " FOR UPDATE SKIP LOCKED", (project_id, due_by, *extra, limit))]

    def waiting_overdue(self, project_id: str, after: float, max_row_id: int | None,
                        limit: int) -> list[int]:
        """Ids of `retry_wait` messages scheduled after `after` (a clock gone back)."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self._all(
            f"SELECT id FROM messages WHERE state = '{State.RETRY_WAIT}'"
            f" AND project_id = %s AND next_attempt_at > %s{below}"
            " ORDER BY next_attempt_at DESC LIMIT %s FOR UPDATE SKIP LOCKED",
            (project_id, after, *extra, limit))]

    def queued_ids(self, project_id: str, max_row_id: int | None, limit: int) -> list[int]:
        """Ids of the oldest `queued` messages of a project."""
        below, extra = _below(max_row_id)
        return [r[0] for r in self._all(
            f"SELECT id FROM messages WHERE state = '{State.QUEUED}' AND project_id = %s"
            f"{below} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (project_id, *extra, limit))]

    def due_among(self, row_ids: Iterable[int], project_id: str, due_by: float,
                  limit: int) -> list[int]:
        """Those of `row_ids` that are queued or due, in id order."""
        return [r[0] for r in self._all(
            "SELECT id FROM messages WHERE id = ANY(%s) AND project_id = %s"
            " AND (state = %s OR (state = %s AND next_attempt_at <= %s))"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (sorted(set(row_ids)), project_id, State.QUEUED, State.RETRY_WAIT, due_by,
             limit))]

    def lease_oldest_queued(self, project_id: str, max_row_id: int | None, limit: int,
                            owner: str, until: float, now: float) -> list[ClaimedMessage]:
        """Read and lease the oldest queued messages of a project (one read, one write)."""
        below, extra = _below(max_row_id)
        rows = self._all(
            f"{_CLAIMED} WHERE state = '{State.QUEUED}' AND project_id = %s{below}"
            " ORDER BY messages.id LIMIT %s FOR UPDATE OF messages SKIP LOCKED",
            (project_id, *extra, limit))
        return self._lease_rows([_claimed(r) for r in rows], owner, until, now)

    def lease(self, row_ids: Sequence[int], owner: str, until: float, now: float
              ) -> list[ClaimedMessage]:
        """Read and lease `row_ids` (already locked by the claim), in id order."""
        if not row_ids:
            return []
        rows = self._all(f"{_CLAIMED} WHERE messages.id = ANY(%s) ORDER BY messages.id",
                         (list(row_ids),))
        return self._lease_rows([_claimed(r) for r in rows], owner, until, now)

    def _lease_rows(self, rows: list[ClaimedMessage], owner: str, until: float, now: float
                    ) -> list[ClaimedMessage]:
        if rows:
            self.pg.execute(
                "UPDATE messages SET state = %s, lease_owner = %s, lease_expires_at = %s,"
                " updated_at = %s WHERE id = ANY(%s)",
                (State.IN_FLIGHT, owner, until, now, [r.row_id for r in rows]))
        return rows

    def release(self, owner: str, row_ids: Iterable[int] | None, now: float) -> int:
        """Give `owner`'s leases (all, or `row_ids`) back to where they waited."""
        if row_ids is None:
            return self._count(
                f"UPDATE messages SET {_RELEASE_SET} WHERE state = %s AND lease_owner = %s",
                (now, State.IN_FLIGHT, owner))
        return self._count(
            f"UPDATE messages SET {_RELEASE_SET} WHERE id = ANY(%s) AND state = %s"
            " AND lease_owner = %s", (now, sorted(set(row_ids)), State.IN_FLIGHT, owner))

    def lease_owners(self) -> list[str]:
        """Every owner holding an `in_flight` message."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT lease_owner FROM messages WHERE state = %s", (State.IN_FLIGHT,))
            if r[0]]

    def release_lapsed(self, now: float, dead_owners: Sequence[str]) -> int:
        """Give back leases that ran out, and every lease of `dead_owners`."""
        return self._count(
            f"UPDATE messages SET {_RELEASE_SET} WHERE state = %s"
            " AND (lease_expires_at <= %s OR lease_owner = ANY(%s))",
            (now, State.IN_FLIGHT, now, list(dead_owners)))

    def settle_retry(self, owner: str, outcome: Retry, now: float) -> None:
        """The attempt failed: `retry_wait`. Unreachable streaks keep their first failure;
        rate limiting never expires."""
        self.pg.execute(
            "UPDATE messages SET state = %s, attempts = attempts + 1,"
            " first_failure_at = CASE WHEN %s THEN COALESCE(first_failure_at, %s) END,"
            " next_attempt_at = %s, retry_reason = %s, last_error = %s,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s"
            " WHERE id = %s AND state = %s AND lease_owner = %s",
            (State.RETRY_WAIT, outcome.reason == RetryClass.UNREACHABLE, now,
             outcome.next_attempt_at, outcome.reason, outcome.error[:500], now,
             outcome.row_id, State.IN_FLIGHT, owner))

    def settle_failed(self, owner: str, outcome: Failed, now: float) -> list[Settled]:
        """The attempt failed for good: `failed`."""
        return [Settled(row[0], row[1], row[2], State.FAILED, outcome.reason, now)
                for row in self._all(
                    "UPDATE messages SET state = %s, attempts = attempts + 1,"
                    " final_reason = %s, last_error = %s, next_attempt_at = NULL,"
                    " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s"
                    " WHERE id = %s AND state = %s AND lease_owner = %s"
                    " RETURNING id, project_id, message_id",
                    (State.FAILED, outcome.reason, outcome.error[:500], now,
                     outcome.row_id, State.IN_FLIGHT, owner))]

    def settle_stored(self, stored: Sequence[Stored], now: float) -> list[Settled]:
        """Mark verified objects stored (whoever holds the lease now), drop their bodies and
        index them, in the caller's transaction: a few statements per batch, each one round
        trip under the write lock."""
        unique: dict[int, Stored] = {}
        for outcome in stored:  # the same row twice: the first outcome stands
            unique.setdefault(outcome.row_id, outcome)
        ids = list(unique)
        known = [i for i in ids if unique[i].object_sha256 is not None
                 and unique[i].size is not None]
        hashes = {row_id: manifests.canonical_hashes(text) for row_id, text in self._all(
            "SELECT id, recipient_hashes FROM messages WHERE id = ANY(%s)", (known,))
        } if known else {}
        found: dict[int, tuple[Any, ...]] = {}
        for chunk in chunks(ids, 250):  # seven parameters a row
            found.update(self._mark_stored([unique[row_id] for row_id in chunk], hashes, now))
            done = [row_id for row_id in chunk if row_id in found]
            if done:  # after the UPDATE, whose trigger may read them
                self.pg.execute('DELETE FROM "message_bodies" WHERE "id" = ANY(%s)', (done,))
        settled = [Settled(found[i][0], found[i][1], found[i][2], State.STORED, None, now)
                   for i in ids if i in found]
        first_of_project: dict[str, int] = {}
        for item in settled:
            first_of_project.setdefault(item.project_id, item.row_id)
        # The index rows, with every identifier's hash, commit with the outcomes.
        index = PgIndex(self.pg)
        archive.index_entries(index, index.entries_of_messages([s.row_id for s in settled]))
        for row_id in first_of_project.values():
            self.pg.execute(_COVERAGE, (now, now, row_id))
        return settled

    def _mark_stored(self, chunk: list[Stored], hashes: dict[int, str | None], now: float
                     ) -> dict[int, tuple[Any, ...]]:
        """One UPDATE … FROM (VALUES …) for a slice of stored outcomes; the rows it changed."""
        values: list[Any] = []
        for outcome in chunk:
            canonical = hashes.get(outcome.row_id)
            values += [outcome.row_id, outcome.key, outcome.destination_url, outcome.version_id,
                       outcome.object_sha256 if canonical else None,
                       outcome.size if canonical else None, canonical]
        rows = ",".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
        return {r[0]: tuple(r) for r in self._all(
            f"WITH v (row_id, stored_key, url, version_id, sha, size, hashes) AS"
            f" (VALUES {rows})"
            f" UPDATE messages SET state = '{State.STORED}', attempts = attempts + 1,"
            " stored_at = %s, stored_key = CAST(v.stored_key AS TEXT),"
            " destination_url = CAST(v.url AS TEXT),"
            " version_id = CAST(v.version_id AS TEXT),"
            " next_attempt_at = NULL, retry_reason = NULL, first_failure_at = NULL,"
            " last_error = NULL, final_reason = NULL, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = %s,"
            " object_sha256 = CAST(v.sha AS TEXT), object_size = CAST(v.size AS BIGINT),"
            " recipient_hashes = COALESCE(CAST(v.hashes AS TEXT), messages.recipient_hashes)"
            f" FROM v WHERE messages.id = CAST(v.row_id AS BIGINT)"
            f" AND messages.state != '{State.STORED}'"
            " RETURNING messages.id, messages.project_id, messages.message_id",
            (*values, now, now))}

    def replayable(self, states: Sequence[State], project_id: str | None,
                   message_id: str | None) -> list[tuple[int, str]]:
        """`(id, project_id)` of matching messages in `states` whose body is kept."""
        where, params = _matching(states, project_id, message_id)
        return [(r[0], r[1]) for r in self._all(
            f"SELECT id, project_id FROM messages WHERE {where} AND {HAS_BODY}", params)]

    def make_due(self, row_ids: Sequence[int], projects: Iterable[str], now: float) -> None:
        """Make `row_ids` due now and probe `projects` now: waiting messages only ever
        earlier, replayed final ones start anew."""
        ids = list(row_ids)
        if ids:
            self.pg.execute(
                "UPDATE messages SET next_attempt_at = LEAST(COALESCE(next_attempt_at, %s), %s),"
                " updated_at = %s WHERE id = ANY(%s) AND state = %s",
                (now, now, now, ids, State.RETRY_WAIT))
            self.pg.execute(
                "UPDATE messages SET state = %s, next_attempt_at = NULL, retry_reason = NULL,"
                " first_failure_at = NULL, final_reason = NULL, updated_at = %s"
                " WHERE id = ANY(%s) AND state != %s", (State.QUEUED, now, ids, State.RETRY_WAIT))
        projects = list(projects)
        if projects:
            self.pg.execute("UPDATE destination_health SET next_probe_at = %s"
                            " WHERE project_id = ANY(%s)", (now, projects))

    def in_flight(self, project_id: str | None, message_id: str | None) -> list[int]:
        """Ids of matching messages leased right now."""
        where, params = _matching([State.IN_FLIGHT], project_id, message_id)
        return [r[0] for r in self._rows(f"SELECT id FROM messages WHERE {where}", params)]

    def max_row_id(self) -> int:
        """The highest message row id."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) FROM messages"))

    def projects_with_work(self) -> list[str]:
        """Projects that have messages queued, in flight or waiting to retry (one index seek
        per project and state, not a DISTINCT over the backlog)."""
        found: set[str] = set()
        for state in (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT):
            after = ""  # project ids are never empty
            while True:
                after = self._one("SELECT MIN(project_id) FROM messages WHERE state = %s"
                                  " AND project_id > %s", (state, after))
                if after is None:
                    break
                found.add(after)
        return sorted(found)
