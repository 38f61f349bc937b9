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

from .anchors import FAILING_WRITE_ATTEMPTS, AnchorRow
from .manifests import BackfilledEntry, LogHead, NewSegment, OpenEntries, SegmentDraft
from .store import Settled, SpoolStore

__all__ = ["AnchorRow", "BackfilledEntry", "EvidenceQueries", "LogHead", "OpenEntries",
           "SealedSegment", "SegmentBuilder", "SegmentDraft"]


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A segment `EvidenceQueries.seal_segment` sealed: its number and entry count."""

    seq: int
    count: int


# A segment (key, exact bytes, place in its log, tree, checkpoint) from its open entries (as
# dicts) and the project's last sealed segment (None before the first); built by the
# evidence layer inside the sealing transaction.
SegmentBuilder = Callable[[list[dict[str, Any]], "LogHead | None"], SegmentDraft]


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
            head = store.last_segment(project_id)
            seq = 1 if head is None else head.seq + 1
            draft = build(rows, head)
            store.add_segment(NewSegment(
                project_id=project_id, seq=seq, key=draft.key, sealed_at=sealed_at,
                count=len(rows), prev_sha256=draft.prev_sha256, body=draft.body,
                entry_ids=[row["id"] for row in rows], origin=draft.origin,
                log_seq=draft.log_seq, version=draft.version, tree_size=draft.tree_size,
                root=draft.root, frontier=draft.frontier, checkpoint=draft.checkpoint,
                anchors=draft.anchors))
        return SealedSegment(seq, len(rows))

    def last_segment(self, project_id: str) -> LogHead | None:
        """The project's last sealed segment and its place in its log (None before any)."""
        return self.store.last_segment(project_id)

    def adopt_unlogged_segments(self, project_id: str, origin: str) -> int:
        """Segments sealed before logs had an origin become the start of the log `origin`."""
        with self.store.write():
            return self.store.adopt_unlogged_segments(project_id, origin)

    def set_log_state(self, project_id: str, seq: int, tree_size: int, root: str,
                      frontier: str) -> None:
        """Record the tree after a segment sealed before logs had one (the v1 prefix)."""
        with self.store.write():
            self.store.set_log_state(project_id, seq, tree_size, root, frontier)

    def sealer_id(self, new_id: str) -> str:
        """The spool's sealer id (the `sealer` of every segment it seals); `new_id` becomes
        it the first time."""
        with self.store.write():
            return self.store.sealer_id(new_id)

    def mark_checkpoint_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment's signed checkpoint is in the bucket."""
        with self.store.write():
            self.store.mark_checkpoint_written(project_id, seq, now)

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

    # ----------------------------------------------------------------------- anchors

    def pending_anchors(self, now: float, limit: int, latest: float | None = None
                        ) -> list[AnchorRow]:
        """Anchors owed to checkpoints already written to their destination and due by
        `now` (or set for after `latest`: a clock set back), oldest first (time-stamps of a
        checkpoint before its copies), at most `limit`."""
        return self.store.pending_anchors(now, limit, latest)

    def anchors_behind(self, now: float) -> list[AnchorRow]:
        """Every anchor not made yet, whatever its schedule, oldest first."""
        return self.store.anchors_behind(now)

    def anchor_tokens(self, project_id: str, origin: str, tree_size: int
                      ) -> list[tuple[str, bytes]]:
        """(authority URL, token) of the time-stamp tokens obtained for a checkpoint."""
        return self.store.anchor_tokens(project_id, origin, tree_size)

    def keep_anchor_token(self, anchor: AnchorRow, token: bytes) -> None:
        """Keep a checked time-stamp token before it is written anywhere (a failed write
        is retried with it, never with a second request)."""
        with self.store.write():
            self.store.keep_anchor_token(anchor.project_id, anchor.origin, anchor.tree_size,
                                         anchor.kind, anchor.target, token)

    def mark_anchor_done(self, anchor: AnchorRow, token: bytes | None, now: float) -> None:
        """The anchor is made (a time-stamp's `token` kept on its row)."""
        with self.store.write():
            self.store.mark_anchor_done(anchor.project_id, anchor.origin, anchor.tree_size,
                                        anchor.kind, anchor.target, token, now)

    def mark_anchor_failed(self, anchor: AnchorRow, error: str, next_attempt_at: float
                           ) -> None:
        """The anchor failed this time: count it, keep why, try again at `next_attempt_at`."""
        with self.store.write():
            self.store.mark_anchor_failed(anchor.project_id, anchor.origin, anchor.tree_size,
                                          anchor.kind, anchor.target, error, next_attempt_at)

    def failing_manifest_writes(self, min_attempts: int = FAILING_WRITE_ATTEMPTS
                                ) -> list[dict[str, Any]]:
        """Segments (or their checkpoints) still unwritten after `min_attempts` failed writes:
        project_id, seq, log_seq, attempts, last_error, next_attempt_at, written_at."""
        return self.store.failing_manifest_writes(min_attempts)
