"""The spool's side of investigations: lookups in the archive index and of stored messages
(`Spool.index`).

`investigate/` (find, fetch, show, rebuild), `setup/checks` (a recent write) and `ops/metrics`
(the last stored time) call these methods and never see a connection. Each query is one named
function taking the connection, in SQLite's spelling (`postgres.translate` respells it for a
shared spool), so a store per backend can own it. The tables are `spool/archive.py`'s and
`spool/identifiers.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..message import UNASSOCIATED
from ..states import State
from .archive import entry_row, recipient_condition, text_as_bytes, write_entries
from .bodies import HAS_BODY
from .identifiers import COMPLETE, PARTIAL

if TYPE_CHECKING:
    from .db import SpoolDB

# The columns of one indexed message, in the order lookups return them.
INDEX_COLUMNS: tuple[str, ...] = (
    "project_id", "message_id", "medium", "message_type", "campaign_id", "recipient_hash",
    "sent_at", "key", "payload_sha256", "version_id", "destination_url", "stored_at",
)
# The fraction of a second of a stored `sent_at` (`…:SS.ffffffZ` or `…:SSZ`), as a number.
_SQL_FRACTION = "CAST('0' || rtrim(substr(sent_at, 20), 'Z') AS REAL)"



@dataclass(frozen=True)
class IndexFilter:
    """What the index can be asked; every given filter must match (AND).

    `recipient_hashes`: a message matches when any identifier of its recipient has one of
    them. `campaign_id="unassociated"` means no campaign (the key's `unassociated` folder,
    which a campaign literally named so shares).
    """

    recipient_hashes: tuple[str, ...] = ()
    message_id: str | None = None
    campaign_id: str | None = None
    project_id: str | None = None
    medium: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, *, text_as_bytes: bool = False) -> tuple[str, list[Any]]:
        """The SQL condition and parameters for these filters (`text_as_bytes`: the index's
        hash columns hold odd text as bytes, see `spool.archive.packed`)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.recipient_hashes:
            condition, values = recipient_condition(self.recipient_hashes,
                                                    text_as_bytes=text_as_bytes)
            clauses.append(condition)
            params.extend(values)
        if self.campaign_id == UNASSOCIATED:
            clauses.append("(campaign_id IS NULL OR campaign_id = ?)")
            params.append(UNASSOCIATED)
        for column, wanted in (("message_id", self.message_id),
                               ("campaign_id", None if self.campaign_id == UNASSOCIATED
                                else self.campaign_id),
                               ("project_id", self.project_id), ("medium", self.medium)):
            if wanted is not None:
                clauses.append(f"{column} = ?")
                params.append(wanted)
        # sent_at is text; `…:00.5Z` sorts before `…:00Z`, so the second is compared as text
        # (which the sent_at indexes serve) and its fraction as a number.
        if self.since is not None:
            second, fraction = _split_second(self.since)
            clauses.append(f"sent_at >= ? AND (substr(sent_at, 1, 19) > ?"
                           f" OR {_SQL_FRACTION} >= ?)")
            params.extend([second, second, fraction])
        if self.until is not None:
            second, fraction = _split_second(self.until)
            clauses.append(f"sent_at <= ? AND (substr(sent_at, 1, 19) < ?"
                           f" OR {_SQL_FRACTION} <= ?)")
            params.extend([second + "Z", second, fraction])
        return (" AND ".join(clauses) or "1 = 1"), params


def _split_second(moment: datetime) -> tuple[str, float]:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S"), utc.microsecond / 1_000_000


# One message learnt from the bucket: its values in INDEX_COLUMNS order (stored_at may be
# None: now), and the hashes of its recipient's identifiers.
LearntEntry = tuple[Sequence[Any], Sequence[str]]


class IndexQueries:
    """Lookups in the archive index and of stored messages, as methods (`Spool.index`).

    Writes are short `BEGIN IMMEDIATE` transactions, like the spool's own, so they interleave
    with a running `sm run` instead of blocking it.
    """

    def __init__(self, db: SpoolDB) -> None:
        self.db = db


    def find(self, wanted: IndexFilter, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Indexed messages matching `wanted` (INDEX_COLUMNS), newest first, at most `limit`."""
        return self.db.reading(lambda conn: find_entries(conn, wanted, limit))

    def entries_for(self, message_id: str, project_id: str | None = None
                    ) -> list[tuple[Any, ...]]:
        """The indexed rows of one message id (one per project it occurs in)."""
        return self.db.reading(lambda conn: entries_of_message(conn, message_id, project_id))

    def keys_of(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project."""
        return self.db.reading(lambda conn: keys_of_project(conn, project_id))

    def count(self, project_id: str | None = None) -> int:
        """How many messages the index holds (of one project, or in all)."""
        return self.db.reading(lambda conn: count_entries(conn, project_id or None))

    def last_stored_at(self, project_id: str) -> float | None:
        """When the project's latest indexed message was stored (None before the first)."""
        return self.db.reading(lambda conn: last_stored_at(conn, project_id))

    def add_learnt(self, entries: Iterable[LearntEntry]) -> int:
        """Index messages read from the bucket in one transaction; returns how many changed.

        A row already indexed under the same key is kept as it is (the spool's row, written
        when the message was stored, stays authoritative); one under another key is replaced
        by what the bucket holds now. Their projects' coverage becomes at least `partial`.
        """
        now = self.db.clock.now()
        rows = [entry_row([*values[:-1], values[-1] or now], hashes)
                for values, hashes in entries]
        if not rows:
            return 0
        with self.db.write() as conn:
            changed = write_entries(conn, rows, replace="other_key")
            add_partial_coverage(conn, sorted({row.project_id for row in rows}), now)
        return changed

    def coverage(self) -> list[tuple[Any, ...]]:
        """(project, coverage, source, since, updated_at) of each project, by project."""
        return self.db.reading(coverage_rows)

    def mark_complete(self, project_id: str, source: str) -> None:
        """The index now holds every message of the project (`source`: how it was filled)."""
        now = self.db.clock.now()
        with self.db.write() as conn:
            set_complete_coverage(conn, project_id, source, now)

    def message_records(self, message_id: str, project_id: str | None = None
                        ) -> list[tuple[Any, ...]]:
        """The spool's rows of one message id, by project: project, state, final reason, last
        error, created, confirmed, first failure, next attempt, stored at, attempts,
        destination URL, stored key, relative key, payload hash, body still held."""
        return self.db.reading(lambda conn: message_records(conn, message_id, project_id))

    def latest_stored(self, project_id: str, since: float) -> tuple[str, float] | None:
        """(stored key, stored_at) of the project's newest message stored at `since` or later."""
        return self.db.reading(lambda conn: latest_stored(conn, project_id, since))


# --------------------------------------------------------------------------- the queries


def find_entries(conn: Any, wanted: IndexFilter, limit: int | None) -> list[tuple[Any, ...]]:
    """`archive_index` rows matching `wanted`, newest `sent_at` first, then project and id."""
    where, params = wanted.where(text_as_bytes=text_as_bytes(conn))
    sql = (f"SELECT {', '.join(INDEX_COLUMNS)} FROM archive_index WHERE {where}"
           " ORDER BY sent_at DESC, project_id, message_id")
    if limit is not None:
        sql += " LIMIT ?"
        params = [*params, limit]
    return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def entries_of_message(conn: Any, message_id: str, project_id: str | None
                       ) -> list[tuple[Any, ...]]:
    """`archive_index` rows of a message id (of one project, or of each, by project)."""
    sql = f"SELECT {', '.join(INDEX_COLUMNS)} FROM archive_index WHERE message_id = ?"
    if project_id is None:
        rows = conn.execute(sql + " ORDER BY project_id", (message_id,))
    else:
        rows = conn.execute(sql + " AND project_id = ?", (message_id, project_id))
    return [tuple(row) for row in rows.fetchall()]


def keys_of_project(conn: Any, project_id: str) -> dict[str, str]:
    """message_id -> key of every indexed message of a project."""
    rows = conn.execute("SELECT message_id, key FROM archive_index WHERE project_id = ?",
                        (project_id,)).fetchall()
    return {row[0]: row[1] for row in rows}


def count_entries(conn: Any, project_id: str | None) -> int:
    """How many messages `archive_index` holds (of one project, or in all)."""
    if project_id is None:
        return int(conn.execute("SELECT COUNT(*) FROM archive_index").fetchone()[0])
    return int(conn.execute("SELECT COUNT(*) FROM archive_index WHERE project_id = ?",
                            (project_id,)).fetchone()[0])


def last_stored_at(conn: Any, project_id: str) -> float | None:
    """The latest `stored_at` of the project's indexed messages."""
    value = conn.execute("SELECT MAX(stored_at) FROM archive_index WHERE project_id = ?",
                         (project_id,)).fetchone()[0]
    return None if value is None else float(value)


def add_partial_coverage(conn: Any, project_ids: Sequence[str], now: float) -> None:
    """Projects the index knew nothing of are now covered in part (rows learnt remotely)."""
    conn.executemany(
        "INSERT OR IGNORE INTO index_coverage (project_id, coverage, source, since,"
        " updated_at) VALUES (?, ?, 'remote', ?, ?)",
        [(project_id, PARTIAL, now, now) for project_id in project_ids])


def coverage_rows(conn: Any) -> list[tuple[Any, ...]]:
    """Every `index_coverage` row, by project."""
    return [tuple(row) for row in conn.execute(
        "SELECT project_id, coverage, source, since, updated_at FROM index_coverage"
        " ORDER BY project_id").fetchall()]


def set_complete_coverage(conn: Any, project_id: str, source: str, now: float) -> None:
    """The project's coverage becomes `complete` (its `since` kept when already recorded)."""
    conn.execute(
        "INSERT INTO index_coverage (project_id, coverage, source, since, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET"
        " coverage = excluded.coverage, source = excluded.source,"
        " updated_at = excluded.updated_at",
        (project_id, COMPLETE, source, now, now))


def message_records(conn: Any, message_id: str, project_id: str | None
                    ) -> list[tuple[Any, ...]]:
    """The `messages` rows of a message id (`IndexQueries.message_records`), by project."""
    where = "message_id = ?" + (" AND project_id = ?" if project_id is not None else "")
    params = [message_id] + ([project_id] if project_id is not None else [])
    return [tuple(row) for row in conn.execute(
        "SELECT project_id, state, final_reason, last_error, created_at, confirmed_at,"
        " first_failure_at, next_attempt_at, stored_at, attempts, destination_url,"
        f" stored_key, key, payload_sha256, {HAS_BODY}"
        f" FROM messages WHERE {where} ORDER BY project_id", params).fetchall()]


def latest_stored(conn: Any, project_id: str, since: float) -> tuple[str, float] | None:
    """The project's newest stored message with a key, stored at `since` or later."""
    row = conn.execute(
        f"SELECT stored_key, stored_at FROM messages WHERE state = '{State.STORED}'"
        " AND project_id = ? AND stored_at >= ? AND stored_key IS NOT NULL"
        " ORDER BY stored_at DESC LIMIT 1",  # the literal state: a partial index serves it
        (str(project_id), since)).fetchone()
    return None if row is None else (row[0], row[1])
