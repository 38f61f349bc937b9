"""The spool's side of the evidence: manifest segments to seal and write, and what an audit or a
backfill reads of the spool (`Spool.evidence`).

The evidence layer (`evidence/`) calls these methods and never sees a connection: each opens
the store's transaction and calls its verbs (`store.EvidenceStore`), whose SQL each backend
writes in its own dialect (`sqlite/evidence.py`, `postgres/evidence.py`). The tables are
`spool/manifests.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .manifests import BackfilledEntry, NewSegment, OpenEntries
from .store import Settled, SpoolStore

__all__ = ["BackfilledEntry", "EvidenceQueries", "OpenEntries", "SealedSegment",
           "SegmentBuilder"]


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

    def __init__(self, store: SpoolStore, hooks: list[Callable[[list[Settled]], None]]
                 ) -> None:
        self.store = store
        self.hooks = hooks

    def complete_entries_on_settle(self) -> None:
        """Complete each settled message's manifest entry in its settling transaction."""
        self.hooks.append(self._complete)

    def _complete(self, settled: list[Settled]) -> None:
        self.store.complete_entries()

    # ----------------------------------------------------------------------- sealing

    def open_entries(self, project_id: str) -> OpenEntries:
        """How many outcomes the project's open segment holds, and the oldest one's time."""
        return self.store.open_entries(project_id)

    def seal_segment(self, project_id: str, limit: int, sealed_at: float, *,
                     due: Callable[[OpenEntries], bool], build: SegmentBuilder
                     ) -> SealedSegment | None:
        """Seal the oldest `limit` open entries of a project into its next segment, in one
        write transaction, when `due` (asked again under the write lock) says so."""
        store = self.store
        with store.write():
            if not due(store.open_entries(project_id)):
                return None
            rows = store.take_entries(project_id, limit)
            last_seq, prev_sha = store.last_segment(project_id)
            key, body = build(rows, last_seq + 1, prev_sha)
            store.add_segment(NewSegment(
                project_id=project_id, seq=last_seq + 1, key=key, sealed_at=sealed_at,
                count=len(rows), prev_sha256=prev_sha, body=body,
                entry_ids=[row["id"] for row in rows]))
        return SealedSegment(last_seq + 1, len(rows))

    # ----------------------------------------------------------------------- writing

    def segments(self, project_id: str | None = None, *, unwritten_only: bool = False
                 ) -> list[dict[str, Any]]:
        """Sealed segments (without bodies) of one project or all, by project and number."""
        return self.store.segment_rows(project_id, unwritten_only)

    def segment_body(self, project_id: str, seq: int) -> bytes | None:
        """The exact bytes of a sealed segment not yet written (None once written)."""
        return self.store.segment_body(project_id, seq)

    def mark_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment is in the bucket: keep its hash, drop its bytes."""
        with self.store.write():
            self.store.mark_written(project_id, seq, now)

    def mark_write_failed(self, project_id: str, seq: int, error: str,
                          next_attempt_at: float) -> None:
        """The segment's upload failed: try again at `next_attempt_at`."""
        with self.store.write():
            self.store.mark_write_failed(project_id, seq, error, next_attempt_at)

    # ----------------------------------------------------------------------- audit, backfill

    def open_outcomes(self, project_id: str) -> list[tuple[str, str, str | None]]:
        """(message id, outcome, stored key) of each entry of the project's open segment."""
        return self.store.open_outcomes(project_id)

    def messages_to_account(self, project_id: str) -> list[dict[str, Any]]:
        """The project's messages a manifest must list (settled) or will list (unarchived)."""
        return self.store.messages_to_account(project_id)

    def indexed_messages(self, project_id: str) -> list[tuple[Any, ...]]:
        """What the archive index holds of a project: (message id, medium, message type,
        campaign, recipient hash, sent_at, key, payload hash, stored_at, row in `messages`
        or None), in the order they were stored."""
        return self.store.indexed_messages(project_id)

    def add_backfilled_entry(self, entry: BackfilledEntry) -> None:
        """Add a verified stored message to the project's open segment (`sm manifest
        backfill`), in its own transaction."""
        with self.store.write():
            self.store.add_backfilled_entry(entry)
