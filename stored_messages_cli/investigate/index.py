"""The local index of stored messages: the `archive_index` table of the spool.

The spool writes one row in the same transaction that marks a message stored; this module
queries those rows (`sm find`, `sm fetch`) and adds rows learnt from the bucket itself
(`sm index rebuild`, remote finds). Rows hold the recipient hash, never the address.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

from ..clock import Clock, SystemClock
from ..message import UNASSOCIATED, parse_sent_at
from ..spool import Spool, immediate_transaction
from ..spool.archive import entry_row, recipient_condition, text_as_bytes, write_entries
from ..spool.identifiers import COMPLETE, PARTIAL

COLUMNS: tuple[str, ...] = (
    "project_id", "message_id", "medium", "message_type", "campaign_id", "recipient_hash",
    "sent_at", "key", "payload_sha256", "version_id", "destination_url", "stored_at",
)
# The fields of one `sm find --json` result, in the SPEC's order.
FIND_FIELDS: tuple[str, ...] = (
    "message_id", "project_id", "medium", "message_type", "campaign_id", "sent_at", "key",
    "payload_sha256",
)
DEFAULT_FIND_LIMIT = 1000
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A time relative to now: `90s`, `30m`, `2h`, `7d`, `4w` (that long ago).
_RELATIVE_RE = re.compile(r"([0-9]{1,7})\s*([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The fraction of a second of a stored `sent_at` (`…:SS.ffffffZ` or `…:SSZ`), as a number.
_SQL_FRACTION = "CAST('0' || rtrim(substr(sent_at, 20), 'Z') AS REAL)"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stored message as the index knows it (`key` includes the destination prefix)."""

    project_id: str
    message_id: str
    medium: str
    message_type: str
    campaign_id: str | None
    recipient_hash: str
    sent_at: str  # RFC 3339 UTC with `Z`
    key: str
    payload_sha256: str | None
    version_id: str | None = None
    destination_url: str | None = None
    stored_at: float | None = None
    # The hash of every identifier of the recipient (the key's included), when known.
    recipient_hashes: tuple[str, ...] = ()

    def find_result(self) -> dict[str, Any]:
        """The `sm find --json` object for this message (SPEC 6)."""
        values = asdict(self)
        return {name: values[name] for name in FIND_FIELDS}

    def sent_at_moment(self) -> datetime:
        """`sent_at` as an aware UTC datetime."""
        return parse_sent_at(self.sent_at)


def parse_time_bound(text: str, *, end_of_day: bool = False, now: float | None = None
                     ) -> datetime:
    """An RFC 3339 time, a plain date (`2026-11-27`) or a relative time (`7d`, `2h`, `30m`,
    `90s`, `4w`: that long before `now`) as an aware UTC datetime.

    A plain date means the start of that day (UTC), or with `end_of_day` its last instant, so
    `--until 2026-11-27` includes the whole day. Raises ValueError with a usage hint.
    """
    value = text.strip()
    relative = _RELATIVE_RE.fullmatch(value)
    if relative:
        seconds = int(relative.group(1)) * _UNIT_SECONDS[relative.group(2).lower()]
        moment = now if now is not None else SystemClock().now()
        try:
            return datetime.fromtimestamp(moment, UTC) - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before year 1") from None
    if _DATE_RE.fullmatch(value):
        try:
            start = datetime.combine(date.fromisoformat(value), day_time.min, UTC)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date ({exc})") from None
        return start + timedelta(days=1, microseconds=-1) if end_of_day else start
    try:
        return parse_sent_at(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use RFC 3339 (2026-11-27T17:00:00Z), a"
                         " date (2026-11-27) or a time ago (7d, 2h, 30m)") from None


@dataclass(frozen=True)
class FindQuery:
    """What `sm find` looks for; every given filter must match (AND).

    `recipient_hashes` are the hashes a recipient term may be stored under
    (`model.recipient_hash_candidates`); a message matches when any identifier of its
    recipient has one of them. `campaign_id="unassociated"` means no campaign (the key's
    `unassociated` folder, which a campaign literally named so shares). `limit=None` means
    no limit.
    """

    recipient_hashes: tuple[str, ...] = ()
    message_id: str | None = None
    campaign_id: str | None = None
    project_id: str | None = None
    medium: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = DEFAULT_FIND_LIMIT

    def matches(self, entry: IndexEntry) -> bool:
        """True when `entry` passes every filter (used on rows read from a bucket)."""
        if self.recipient_hashes and not (
                {entry.recipient_hash, *entry.recipient_hashes} & set(self.recipient_hashes)):
            return False
        campaign = entry.campaign_id if entry.campaign_id is not None else UNASSOCIATED
        if self.campaign_id is not None and (
                campaign != self.campaign_id and entry.campaign_id != self.campaign_id):
            return False
        for wanted, actual in ((self.message_id, entry.message_id),
                               (self.project_id, entry.project_id),
                               (self.medium, entry.medium)):
            if wanted is not None and wanted != actual:
                return False
        if self.since is not None or self.until is not None:
            moment = entry.sent_at_moment()
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment > self.until:
                return False
        return True

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


def sort_newest_first(entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    """The order `sm find` lists messages in: newest `sent_at` first, then project and id."""
    ordered = sorted(entries, key=lambda e: (e.project_id, e.message_id))
    return sorted(ordered, key=lambda e: e.sent_at, reverse=True)


@dataclass(frozen=True)
class Coverage:
    """How much of a project's archive the local index holds (SPEC 8, "Investigations").

    `complete`: filled by `sm run` from the project's first message, or by a full
    `sm index rebuild`; `partial`: rows learnt from remote finds and fetches only.
    """

    project_id: str
    coverage: str  # "complete" | "partial"
    source: str  # run | rebuild | remote | unknown (indexed before coverage was recorded)
    since: float
    updated_at: float

    @property
    def complete(self) -> bool:
        """True when the index holds every message of the project archived so far."""
        return self.coverage == COMPLETE


@dataclass
class FindResult:
    """Matching entries, and whether more matched than the limit allowed."""

    entries: list[IndexEntry] = field(default_factory=list)
    truncated: bool = False


class ArchiveIndex:
    """Reads and adds rows of the `archive_index` table of one spool database.

    Writes are short `BEGIN IMMEDIATE` transactions, like the spool's own, so they interleave
    with a running `sm run` instead of blocking it.
    """

    def __init__(self, conn: sqlite3.Connection, *, clock: Clock | None = None,
                 lock: threading.RLock | None = None) -> None:
        self.conn = conn
        self.clock: Clock = clock or SystemClock()
        self._lock = lock or threading.RLock()  # pass the spool's lock when sharing its conn

    @classmethod
    def of(cls, spool: Spool) -> ArchiveIndex:
        """The index kept in `spool` (which created the table)."""
        return cls(spool.conn, clock=spool.clock, lock=spool.lock)

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self.conn, self._lock)

    def _select(self, where: str, params: list[Any], suffix: str = "") -> list[IndexEntry]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM archive_index WHERE {where} {suffix}"
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [IndexEntry(*row) for row in rows]

    def find(self, query: FindQuery) -> FindResult:
        """Entries matching `query`, newest first, at most `query.limit` of them."""
        where, params = query.where(text_as_bytes=text_as_bytes(self.conn))
        suffix = "ORDER BY sent_at DESC, project_id, message_id"
        if query.limit is not None:
            suffix += " LIMIT ?"
            params = [*params, query.limit + 1]  # one more tells whether the list was cut
        entries = self._select(where, params, suffix)
        truncated = query.limit is not None and len(entries) > query.limit
        return FindResult(entries[: query.limit] if truncated else entries, truncated)

    def entries_for(self, message_id: str, project_id: str | None = None) -> list[IndexEntry]:
        """The entries of one message id (one per project it occurs in)."""
        if project_id is None:
            return self._select("message_id = ?", [message_id], "ORDER BY project_id")
        return self._select("message_id = ? AND project_id = ?", [message_id, project_id])

    def keys_of(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project (rebuild skips these)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT message_id, key FROM archive_index WHERE project_id = ?", (project_id,))
            return dict(rows.fetchall())

    def add(self, entries: Iterable[IndexEntry]) -> int:
        """Add entries learnt from the bucket in one transaction; returns how many changed.

        A row already indexed under the same key is kept as it is (the spool's row, written
        when the message was stored, stays authoritative); one under another key is replaced
        by what the bucket holds now.
        """
        now = self.clock.now()
        entries = list(entries)
        if not entries:
            return 0
        rows = [entry_row([*(getattr(e, c) for c in COLUMNS[:-1]), e.stored_at or now],
                          e.recipient_hashes) for e in entries]
        with self._write() as conn:
            changed = write_entries(conn, rows, replace="other_key")
            conn.executemany(
                "INSERT OR IGNORE INTO index_coverage (project_id, coverage, source, since,"
                " updated_at) VALUES (?, ?, 'remote', ?, ?)",
                [(pid, PARTIAL, now, now) for pid in sorted({e.project_id for e in entries})])
            return changed

    def coverage(self) -> dict[str, Coverage]:
        """What the index knows of each project it holds rows of (or was told about)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT project_id, coverage, source, since, updated_at FROM index_coverage"
                " ORDER BY project_id").fetchall()
        return {row[0]: Coverage(*row) for row in rows}

    def mark_complete(self, project_id: str, source: str = "rebuild") -> None:
        """The index now holds every message of the project (a full rebuild finished)."""
        now = self.clock.now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO index_coverage (project_id, coverage, source, since, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET"
                " coverage = excluded.coverage, source = excluded.source,"
                " updated_at = excluded.updated_at",
                (project_id, COMPLETE, source, now, now))

    def count(self, project_id: str | None = None) -> int:
        """How many messages the index holds (of one project, or in all)."""
        where, params = ("project_id = ?", [project_id]) if project_id else ("1 = 1", [])
        with self._lock:
            return int(self.conn.execute(
                f"SELECT COUNT(*) FROM archive_index WHERE {where}", params).fetchone()[0])
