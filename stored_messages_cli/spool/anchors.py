"""The anchors each signed checkpoint is owed, in the spool (`log_anchors`, SPEC 9.1).

Sealing a segment inserts one row per configured anchor (a checkpoint copy location, a
time-stamp authority) in the sealing transaction (`NewSegment.anchors`). The evidence layer
(`evidence/anchors.py`) makes them later, outside any transaction, through these verbs; a row
is done once its anchor is made, and until then it is retried on its own schedule and shown as
behind by `sm status`, `--check` and the metrics. Each backend writes the SQL itself
(`sqlite/evidence.py`, `postgres/evidence.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# A manifest write (a segment or its checkpoint) failing this many times is a problem an
# operator sees (`sm status --check`, `sm_manifest_writes_failing`).
FAILING_WRITE_ATTEMPTS = 3
# An anchor not made this long (seconds) after its seal is a problem (`sm status --check`).
BEHIND_AFTER = 3600.0

# What every anchor read returns, in `AnchorRow` order, with the segment's checkpoint text.
ANCHOR_ROW_COLUMNS = ('a."project_id", a."origin", a."tree_size", a."kind", a."target",'
                      ' a."created_at", a."attempts", a."last_error", a."next_attempt_at",'
                      ' a."token", s."checkpoint"')
ANCHOR_JOIN = ('"log_anchors" a LEFT JOIN "manifest_segments" s ON s."project_id" ='
               ' a."project_id" AND s."origin" = a."origin" AND s."tree_size" = a."tree_size"')
# Time-stamps first: a copy made after them carries their tokens too.
ANCHOR_ORDER = ' ORDER BY a."created_at", a."project_id", a."tree_size", a."kind" DESC,' \
    ' a."target"'
FAILING_WRITE_COLUMNS = ('"project_id", "seq", COALESCE("log_seq", "seq") AS "log_seq",'
                         ' "attempts", "last_error", "next_attempt_at", "written_at"')
UNWRITTEN = ('("written_at" IS NULL OR "checkpoint" IS NOT NULL'
             ' AND "checkpoint_written_at" IS NULL)')


@dataclass(frozen=True, slots=True)
class AnchorRow:
    """One anchor not yet made: which checkpoint (project, log, tree size), which anchor
    (`kind` copy or timestamp, `target` its URL), since when, how often it failed and why,
    the time-stamp token already obtained (kept before it is written anywhere) and the
    checkpoint's exact signed text (None when the segment row is gone)."""

    project_id: str
    origin: str
    tree_size: int
    kind: str
    target: str
    created_at: float
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    token: bytes | None
    checkpoint: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | Any) -> AnchorRow:
        """The row of an `ANCHOR_ROW_COLUMNS` read, as the driver gave it."""
        (project_id, origin, size, kind, target, created, attempts, error, next_at, token,
         checkpoint) = tuple(row)
        return cls(str(project_id), str(origin), int(size), str(kind), str(target),
                   float(created), int(attempts), error,
                   None if next_at is None else float(next_at),
                   None if token is None else bytes(token), checkpoint)

    def age(self, now: float) -> float:
        """How long the anchor has been owed, in seconds."""
        return max(0.0, now - self.created_at)


class AnchorStore(Protocol):
    """The anchors owed to checkpoints (`log_anchors`), and the manifest writes that keep
    failing (what status, `--check` and metrics show of the evidence)."""

    def pending_anchors(self, now: float, limit: int, latest: float | None = None
                        ) -> list[AnchorRow]:
        """Anchors not done, due by `now`, whose checkpoint the destination has (so a copy
        never names a tree the bucket lacks), oldest first, time-stamps before copies. A
        next attempt later than `latest` (more than any retry waits: the clock was set back)
        counts as due."""
        ...

    def anchors_behind(self, now: float) -> list[AnchorRow]:
        """Every anchor not done, whatever its schedule, oldest first."""
        ...

    def anchor_tokens(self, project_id: str, origin: str, tree_size: int
                      ) -> list[tuple[str, bytes]]:
        """(authority URL, token) of every time-stamp token kept for a checkpoint (only
        time-stamp rows hold one)."""
        ...

    def keep_anchor_token(self, project_id: str, origin: str, tree_size: int, kind: str,
                          target: str, token: bytes) -> None:
        """Keep a checked time-stamp token on its row before it is written anywhere."""
        ...

    def mark_anchor_done(self, project_id: str, origin: str, tree_size: int, kind: str,
                         target: str, token: bytes | None, now: float) -> None:
        """The anchor is made (with its token, for a time-stamp)."""
        ...

    def mark_anchor_failed(self, project_id: str, origin: str, tree_size: int, kind: str,
                           target: str, error: str, next_attempt_at: float) -> None:
        """Count a failed attempt; try again at `next_attempt_at`."""
        ...

    def failing_manifest_writes(self, min_attempts: int) -> list[dict[str, Any]]:
        """Segments (or their checkpoints) not written after `min_attempts` failed writes."""
        ...
