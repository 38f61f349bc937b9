"""The spool's side of the evidence: manifest segments to seal and write, and what an audit or a
backfill reads of the spool (`Spool.evidence`).

The evidence layer (`evidence/`) calls these methods and never sees a connection. Each query is
one named function taking the connection, in SQLite's spelling (`postgres.translate` respells it
for a shared spool), so a store per backend can own it. The tables are `spool/manifests.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..states import SETTLED_OUTCOMES, UNARCHIVED_STATES, State
from .manifests import (
    add_segment,
    last_segment,
    mark_write_failed,
    mark_written,
    on_settled,
    recipient_hashes,
    segment_body,
    segment_rows,
    take_entries,
)

if TYPE_CHECKING:
    from .db import SpoolDB



@dataclass(frozen=True, slots=True)
class OpenEntries:
    """What a project's open segment holds now: how many entries, the oldest settled when."""

    count: int
    oldest_settled_at: float | None


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A segment `EvidenceQueries.seal_segment` sealed: its number and entry count."""

    seq: int
    count: int


# A segment's relative key and exact bytes, from its open entries (as dicts), number and the
# previous segment's hash; built by the evidence layer inside the sealing transaction.
SegmentBuilder = Callable[[list[dict[str, Any]], int, "str | None"], tuple[str, bytes]]


class EvidenceQueries:
    """Manifest segments and the audit's reads, as methods (`Spool.evidence`)."""

    def __init__(self, db: SpoolDB) -> None:
        self.db = db


    def complete_entries_on_settle(self) -> None:
        """Complete each settled message's manifest entry in its settling transaction."""
        self.db.settled_hooks.append(on_settled)

    # ----------------------------------------------------------------------- sealing

    def open_entries(self, project_id: str) -> OpenEntries:
        """How many outcomes the project's open segment holds, and the oldest one's time."""
        return self.db.reading(lambda conn: open_entry_figures(conn, project_id))

    def seal_segment(self, project_id: str, limit: int, sealed_at: float, *,
                     due: Callable[[OpenEntries], bool], build: SegmentBuilder
                     ) -> SealedSegment | None:
        """Seal the oldest `limit` open entries of a project into its next segment, in one
        write transaction, when `due` (asked again under the write lock) says so."""
        with self.db.write() as conn:
            if not due(open_entry_figures(conn, project_id)):
                return None
            rows = [dict(row) for row in take_entries(conn, project_id, limit)]
            last_seq, prev_sha = last_segment(conn, project_id)
            key, body = build(rows, last_seq + 1, prev_sha)
            add_segment(conn, project_id=project_id, seq=last_seq + 1, key=key,
                                  sealed_at=sealed_at, count=len(rows), prev_sha256=prev_sha,
                                  body=body, entry_ids=[row["id"] for row in rows])
        return SealedSegment(last_seq + 1, len(rows))

    # ----------------------------------------------------------------------- writing

    def segments(self, project_id: str | None = None, *, unwritten_only: bool = False
                 ) -> list[dict[str, Any]]:
        """Sealed segments (without bodies) of one project or all, by project and number."""
        return self.db.reading(lambda conn: [dict(row) for row in segment_rows(
            conn, project_id, unwritten_only=unwritten_only)])

    def segment_body(self, project_id: str, seq: int) -> bytes | None:
        """The exact bytes of a sealed segment not yet written (None once written)."""
        return self.db.reading(lambda conn: segment_body(conn, project_id, seq))

    def mark_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment is in the bucket: keep its hash, drop its bytes."""
        with self.db.write() as conn:
            mark_written(conn, project_id, seq, now)

    def mark_write_failed(self, project_id: str, seq: int, error: str,
                          next_attempt_at: float) -> None:
        """The segment's upload failed: try again at `next_attempt_at`."""
        with self.db.write() as conn:
            mark_write_failed(conn, project_id, seq, error, next_attempt_at)

    # ----------------------------------------------------------------------- audit, backfill

    def open_outcomes(self, project_id: str) -> list[tuple[str, str, str | None]]:
        """(message id, outcome, stored key) of each entry of the project's open segment."""
        return self.db.reading(lambda conn: open_outcomes(conn, project_id))

    def messages_to_account(self, project_id: str) -> list[dict[str, Any]]:
        """The project's messages a manifest must list (settled) or will list (unarchived)."""
        return self.db.reading(lambda conn: messages_to_account(conn, project_id))

    def indexed_messages(self, project_id: str) -> list[tuple[Any, ...]]:
        """What the archive index holds of a project, for a backfill (see `indexed_messages`)."""
        return self.db.reading(lambda conn: indexed_messages(conn, project_id))

    def add_backfilled_entry(self, entry: BackfilledEntry) -> None:
        """Add a verified stored message to the project's open segment (`sm manifest
        backfill`), in its own transaction."""
        with self.db.write() as conn:
            insert_backfilled_entry(conn, entry)


@dataclass(frozen=True, slots=True)
class BackfilledEntry:
    """A stored message no manifest lists, verified against its object in the bucket."""

    project_id: str
    message_row: int  # its row in `messages`, 0 when the spool no longer holds it
    message_id: str
    stored_key: str
    relative_key: str
    payload_sha256: str
    object_sha256: str
    size: int
    medium: str
    message_type: str
    campaign_id: str | None
    sent_at: str | None
    recipient_hash: str  # the key's; the fallback when the payload names no identifier
    payload: bytes  # the object's payload: its identifiers' hashes go into the entry
    settled_at: float


# --------------------------------------------------------------------------- the queries


def open_entry_figures(conn: Any, project_id: str) -> OpenEntries:
    """Count and oldest settled time of a project's open entries: both from the
    (project_id, id) index and one row, since entries are in settled order."""
    count = int(conn.execute('SELECT COUNT(*) FROM "manifest_entries" WHERE "project_id" = ?',
                             (project_id,)).fetchone()[0])
    if not count:
        return OpenEntries(0, None)
    first = conn.execute('SELECT "settled_at" FROM "manifest_entries" WHERE "project_id" = ?'
                         ' ORDER BY "id" LIMIT 1', (project_id,)).fetchone()
    return OpenEntries(count, None if first is None else float(first[0]))


def open_outcomes(conn: Any, project_id: str) -> list[tuple[str, str, str | None]]:
    """(message id, outcome, stored key) of a project's open entries, in settled order."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        'SELECT "message_id", "outcome", "stored_key" FROM "manifest_entries"'
        ' WHERE "project_id" = ? ORDER BY "id"', (project_id,)).fetchall()]


def messages_to_account(conn: Any, project_id: str) -> list[dict[str, Any]]:
    """Message id, state, sent_at, key and stored key of a project's settled and unarchived
    messages."""
    states = (*SETTLED_OUTCOMES, *UNARCHIVED_STATES)
    cursor = conn.execute(
        "SELECT message_id, state, sent_at, key, stored_key FROM messages"
        f" WHERE project_id = ? AND state IN ({','.join('?' * len(states))})",
        (project_id, *states))
    names = ("message_id", "state", "sent_at", "key", "stored_key")
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def indexed_messages(conn: Any, project_id: str) -> list[tuple[Any, ...]]:
    """(message id, medium, message type, campaign, recipient hash, sent_at, key, payload
    hash, stored_at, row in `messages` or None) of each indexed message of a project, in the
    order they were stored."""
    return [tuple(row) for row in conn.execute(
        "SELECT a.message_id, a.medium, a.message_type, a.campaign_id, a.recipient_hash,"
        " a.sent_at, a.key, a.payload_sha256, a.stored_at, m.id FROM archive_index a"
        " LEFT JOIN messages m ON m.project_id = a.project_id"
        " AND m.message_id = a.message_id WHERE a.project_id = ?"
        " ORDER BY a.stored_at, a.message_id", (project_id,)).fetchall()]


def insert_backfilled_entry(conn: Any, entry: BackfilledEntry) -> None:
    """One complete `stored` entry in the open segment, as the settle trigger would add it."""
    conn.execute(
        'INSERT INTO "manifest_entries" ("project_id", "message_row", "message_id",'
        ' "outcome", "stored_key", "relative_key", "payload_sha256", "object_sha256",'
        ' "size", "medium", "message_type", "campaign_id", "sent_at", "recipient_hash",'
        ' "recipient_hashes", "settled_at") VALUES'
        ' (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (entry.project_id, entry.message_row, entry.message_id, State.STORED.value,
         entry.stored_key, entry.relative_key, entry.payload_sha256, entry.object_sha256,
         entry.size, entry.medium, entry.message_type, entry.campaign_id, entry.sent_at,
         entry.recipient_hash,
         json.dumps(recipient_hashes(entry.payload, entry.recipient_hash),
                    separators=(",", ":")), entry.settled_at))
