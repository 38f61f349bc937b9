"""The local index of stored messages, as investigations see it (`Spool.index` underneath).

The spool writes one row in the same transaction that marks a message stored; this module
asks for those rows (`sm find`, `sm fetch`) and adds rows learnt from the bucket itself
(`sm index rebuild`, remote finds). Rows hold the recipient hash, never the address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

from ..clock import SystemClock
from ..errors import SmError
from ..message import UNASSOCIATED, parse_sent_at
from ..spool import Spool
from ..spool.identifiers import COMPLETE
from ..spool.index_queries import INDEX_COLUMNS, IndexFilter, IndexQueries

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
class FindQuery(IndexFilter):
    """What `sm find` looks for; every given filter must match (AND).

    `recipient_hashes` are the hashes a recipient term may be stored under
    (`message.recipient_hash_candidates`); a message matches when any identifier of its
    recipient has one of them. `campaign_id="unassociated"` means no campaign (the key's
    `unassociated` folder, which a campaign literally named so shares). `limit=None` means
    no limit.
    """

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


class AmbiguousMessage(SmError):
    """A message id found in more than one project (or under more than one key)."""

    def __init__(self, message: str, *, places: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.places = places


class ArchiveIndex:
    """The archive index of one spool, in the terms of an investigation (`IndexEntry`)."""

    def __init__(self, queries: IndexQueries) -> None:
        self.queries = queries

    @classmethod
    def of(cls, spool: Spool) -> ArchiveIndex:
        """The index kept in `spool`."""
        return cls(spool.index)

    def find(self, query: FindQuery) -> FindResult:
        """Entries matching `query`, newest first, at most `query.limit` of them."""
        # One more than the limit tells whether the list was cut.
        rows = self.queries.find(query, None if query.limit is None else query.limit + 1)
        entries = [IndexEntry(*row) for row in rows]
        truncated = query.limit is not None and len(entries) > query.limit
        return FindResult(entries[: query.limit] if truncated else entries, truncated)

    def entries_for(self, message_id: str, project_id: str | None = None) -> list[IndexEntry]:
        """The entries of one message id (one per project it occurs in)."""
        return [IndexEntry(*row) for row in self.queries.entries_for(message_id, project_id)]

    def keys_of(self, project_id: str) -> dict[str, str]:
        """message_id -> key of every indexed message of a project (rebuild skips these)."""
        return self.queries.keys_of(project_id)

    def add(self, entries: Iterable[IndexEntry]) -> int:
        """Add entries learnt from the bucket in one transaction; returns how many changed.

        A row already indexed under the same key is kept as it is (the spool's row, written
        when the message was stored, stays authoritative); one under another key is replaced
        by what the bucket holds now.
        """
        return self.queries.add_learnt(
            ([getattr(entry, column) for column in INDEX_COLUMNS], entry.recipient_hashes)
            for entry in entries)

    def coverage(self) -> dict[str, Coverage]:
        """What the index knows of each project it holds rows of (or was told about)."""
        return {row[0]: Coverage(*row) for row in self.queries.coverage()}

    def mark_complete(self, project_id: str, source: str = "rebuild") -> None:
        """The index now holds every message of the project (a full rebuild finished)."""
        self.queries.mark_complete(project_id, source)

    def count(self, project_id: str | None = None) -> int:
        """How many messages the index holds (of one project, or in all)."""
        return self.queries.count(project_id)
