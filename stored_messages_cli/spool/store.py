"""The spool's storage seam: what the state machines ask of a database, grouped by concern.

Like huey's `BaseStorage` (and litestream's `ReplicaClient`): the state machines (`intake`,
`queue`, `health`, `report`) decide what happens to a message; a `SpoolStore` only reads and
writes rows, in its own database's dialect. `spool/sqlite/` is the SQLite store.

Verbs that change rows run inside a transaction the caller opened with `write()` (or, for a
claim, `claiming()`); verbs that only read may be called outside one. Rows come back as plain
Python values (tuples, dicts, the dataclasses below), never a driver's row type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ..clock import Clock
from ..errors import SmError
from ..states import FinalReason, HealthState, RetryClass, State
from . import bodies
from .anchors import AnchorStore
from .delivery_rows import ProviderEventStore
from .holds import HoldStore
from .index_store import IndexStore
from .manifests import BackfilledEntry, LogHead, NewSegment, OpenEntries
from .recipient_keys import RecipientKeyStore
from .rows import ArchivedMessage, EventTarget, KnownMessage, MessageRow


class SpoolVersionError(SmError):
    """The spool was written by a newer `sm` than this one."""


class SpoolError(SmError):
    """The spool cannot be used: corrupt, unreadable, read-only, gone or unreachable."""


class SpoolFull(SpoolError):
    """The disk holding the spool is full: nothing was written; retry once there is room."""


@dataclass(frozen=True, slots=True)
class Settled:
    """One message that reached a final archive outcome (stored, expired or failed)."""

    row_id: int
    project_id: str
    message_id: str
    state: State
    final_reason: str | None
    at: float


# A hook runs inside the settling transaction: what it writes (through the store's verbs)
# commits with the outcome.
SettledHook = Callable[[list[Settled]], None]


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
class Health:
    """What the archiver last learnt about a project's destination."""

    project_id: str
    url: str
    health: str
    since: float | None = None
    next_probe_at: float | None = None
    last_error: str | None = None
    failed_probes: int = 0  # probes failed since the destination became unreachable


class Transactions(Protocol):
    """Opening the spool's transactions; `clock` is what every part of the spool reads."""

    clock: Clock

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean "the spool failed", not "this message is wrong"."""
        ...

    def lock_held_here(self) -> bool:
        """True when this thread holds the spool's lock (inside one of its transactions)."""
        ...

    def write(self, durable: bool = True) -> AbstractContextManager[Any]:
        """A write transaction: committed on success, rolled back on error."""
        ...

    def claiming(self) -> AbstractContextManager[Any]:
        """A transaction that only leases rows (committed without an fsync)."""
        ...

    def settled(self, settled: list[Settled]) -> None:
        """Run the `on_settled` hooks inside the current (settling) transaction."""
        ...


class IntakeStore(Protocol):
    """Messages and send events in (`intake`): insert/confirm, discard, reject, the inbox."""

    def insert_new(self, rows: Sequence[MessageRow]) -> bool:
        """Insert message rows never seen before (with their bodies) in one go; False, and
        nothing written, when any of them was recorded before or is in the archive index."""
        ...

    def insert_message(self, row: MessageRow) -> bool:
        """Insert one message row (with its body); False when it was recorded before, or the
        archive index holds its id (a stored message whose row was pruned)."""
        ...

    def archived_message(self, project_id: str, message_id: str) -> ArchivedMessage | None:
        """The archive index's identity of a message with no row in `messages`."""
        ...

    def known_message(self, project_id: str, message_id: str) -> KnownMessage | None:
        """A recorded message, for a second `record` of it."""
        ...

    def event_target(self, project_id: str, message_id: str) -> EventTarget | None:
        """A recorded message, for a send event naming it."""
        ...

    def confirm(self, row_id: int, payload_sha256: str, sent_at: str, kept: bytes,
                now: float) -> None:
        """The message was sent: `queued`, with its confirmed payload's body."""
        ...

    def discard_send_failed(self, row_id: int, error: str | None, now: float) -> None:
        """The send failed: `discarded` (`send_failed`), its body dropped."""
        ...

    def discard_unconfirmed(self, created_before: float, drop_bodies_before: float,
                            now: float) -> int:
        """Discard messages still awaiting confirmation created before `created_before`;
        drop the bodies of those discarded so before `drop_bodies_before`."""
        ...

    def reject_line(self, source: str, line: int, reason: str, raw: str, now: float) -> None:
        """Keep a rejected input line with its reason."""
        ...

    def inbox_is_empty(self) -> bool:
        """True when no SQL sender left a line in the inbox."""
        ...

    def take_inbox(self, limit: int) -> list[tuple[int, str | None, str | None]]:
        """The oldest inbox lines `(id, line, source)` (skipping those another worker
        holds)."""
        ...

    def drop_inbox(self, ids: Sequence[int]) -> None:
        """Delete inbox lines once recorded."""
        ...


class QueueStore(Protocol):
    """The lease queue (`queue`): claim, lease, release, settle, make due."""

    def waiting_due(self, project_id: str, due_by: float, max_row_id: int | None,
                    limit: int) -> list[int]:
        """Ids of `retry_wait` messages due by `due_by`, soonest first."""
        ...

    def waiting_overdue(self, project_id: str, after: float, max_row_id: int | None,
                        limit: int) -> list[int]:
        """Ids of `retry_wait` messages scheduled after `after` (a clock gone back)."""
        ...

    def queued_ids(self, project_id: str, max_row_id: int | None, limit: int) -> list[int]:
        """Ids of the oldest `queued` messages of a project."""
        ...

    def due_among(self, row_ids: Iterable[int], project_id: str, due_by: float,
                  limit: int) -> list[int]:
        """Those of `row_ids` that are queued or due, in id order."""
        ...

    def lease_oldest_queued(self, project_id: str, max_row_id: int | None, limit: int,
                            owner: str, until: float, now: float) -> list[ClaimedMessage]:
        """Read and lease the oldest queued messages of a project to `owner`."""
        ...

    def lease(self, row_ids: Sequence[int], owner: str, until: float, now: float
              ) -> list[ClaimedMessage]:
        """Read and lease the messages `row_ids` (locked by this claim) to `owner`."""
        ...

    def release(self, owner: str, row_ids: Iterable[int] | None, now: float) -> int:
        """Give `owner`'s leases (all, or `row_ids`) back to where they waited."""
        ...

    def lease_owners(self) -> list[str]:
        """Every owner holding an `in_flight` message."""
        ...

    def release_lapsed(self, now: float, dead_owners: Sequence[str]) -> int:
        """Give back leases that ran out, and every lease of `dead_owners`."""
        ...

    def settle_stored(self, stored: Sequence[Stored], now: float) -> list[Settled]:
        """Mark verified objects stored, drop their bodies and index them."""
        ...

    def settle_retry(self, owner: str, outcome: Retry, now: float) -> None:
        """The attempt failed: the message waits in `retry_wait`."""
        ...

    def settle_failed(self, owner: str, outcome: Failed, now: float) -> list[Settled]:
        """The attempt failed for good: `failed`."""
        ...

    def replayable(self, states: Sequence[State], project_id: str | None,
                   message_id: str | None) -> list[tuple[int, str]]:
        """`(id, project_id)` of matching messages in `states` whose body is kept."""
        ...

    def make_due(self, row_ids: Sequence[int], projects: Iterable[str], now: float) -> None:
        """Make `row_ids` due now (waiting ones only ever earlier), and probe `projects`."""
        ...

    def in_flight(self, project_id: str | None, message_id: str | None) -> list[int]:
        """Ids of matching messages leased right now."""
        ...

    def max_row_id(self) -> int:
        """The highest message row id."""
        ...

    def projects_with_work(self) -> list[str]:
        """Projects with messages queued, in flight or waiting to retry."""
        ...


class HealthStore(Protocol):
    """Destination health rows and project-wide hold, wake and expiry (`health`)."""

    def health_of(self, project_id: str) -> Health | None:
        """The recorded health of a project's destination."""
        ...

    def all_health(self) -> dict[str, Health]:
        """Every recorded destination health, by project."""
        ...

    def set_health(self, project_id: str, url: str, health: HealthState, *,
                   since: float, next_probe_at: float | None, last_error: str | None,
                   failed_probes: int, now: float) -> bool:
        """Record a destination's health; True when it changed."""
        ...

    def take_probe(self, project_id: str, until: float, now: float) -> bool:
        """Take the probe lease of a down destination (False: another process holds it)."""
        ...

    def release_probe(self, project_id: str) -> None:
        """Give up the probe lease."""
        ...

    def forget_health(self, project_id: str) -> None:
        """Drop a project's destination health row."""
        ...

    def hold(self, project_id: str, next_attempt_at: float, now: float) -> int:
        """Park every waiting message of a project behind the next probe."""
        ...

    def wake(self, project_id: str, next_attempt_at: float, now: float) -> int:
        """Bring messages waiting on an unreachable destination forward."""
        ...

    def failed_probes(self, project_id: str) -> int | None:
        """Failed probes of an unreachable destination (None: not unreachable)."""
        ...

    def expire(self, project_id: str, retry_window: float, words: str, now: float
               ) -> list[Settled]:
        """Expire unreachable-waiting messages whose first failure is `retry_window` old."""
        ...

    def first_unreachable_failure(self, project_id: str) -> float | None:
        """The oldest first failure of a project's unreachable-waiting messages."""
        ...


class ReportStore(Protocol):
    """Read-only figures for `sm status`, `sm replay` and tests (`report`)."""

    def state_counts(self) -> dict[str, int]:
        """Messages per state."""
        ...

    def retry_reason_counts(self) -> dict[str | None, int]:
        """`retry_wait` messages per retry reason."""
        ...

    def oldest_unarchived_since(self) -> float | None:
        """When the oldest message not yet archived started waiting."""
        ...

    def next_retry_at(self) -> float | None:
        """The soonest scheduled retry."""
        ...

    def rejected_count(self) -> int:
        """Rejected input lines kept."""
        ...

    def final_reason_counts(self) -> list[tuple[str, str | None, int]]:
        """`(state, final_reason, count)` of expired and failed messages."""
        ...

    def rejected_lines(self, limit: int) -> list[dict[str, Any]]:
        """The most recent rejected lines."""
        ...

    def message_row(self, project_id: str, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body)."""
        ...

    def outcomes_of(self, row_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Where the given messages stand now."""
        ...

    def discarded_by_reason(self) -> dict[str, int]:
        """Discarded messages per reason code."""
        ...

    def in_flight_by_owner(self) -> dict[str, int]:
        """`in_flight` messages per lease owner."""
        ...

    def waiting_count(self) -> int:
        """Messages not yet settled: awaiting confirmation, queued, in flight or waiting to
        retry (`sm serve`'s back-pressure)."""
        ...


class DaemonStore(Protocol):
    """The `daemons` heartbeat rows (`daemons`)."""

    def live_daemons_of(self, host: str) -> list[tuple[int, int]]:
        """`(id, pid)` of daemons of `host` not stopped."""
        ...

    def register_daemon(self, host: str, pid: int, version: str | None,
                        lease_owner: str | None, projects: str, heartbeat_interval: float,
                        now: float, stopped_ids: Sequence[int], forget_before: float) -> int:
        """Stamp `stopped_ids` stopped, drop rows silent since `forget_before`, and add the
        starting daemon; its id."""
        ...

    def heartbeat(self, daemon_id: int, now: float) -> None:
        """The daemon is alive now."""
        ...

    def daemon_stopped(self, daemon_id: int, now: float) -> None:
        """The daemon exits normally."""
        ...

    def daemon_rows(self, include_stopped: bool) -> list[tuple[Any, ...]]:
        """Registered daemons, oldest first."""
        ...


class MaintenanceStore(Protocol):
    """Keeping the spool small (`maintenance`): what prune deletes, compaction."""

    def prunable_counts(self, cutoff: float, grace_cutoff: float) -> dict[str, int]:
        """How many message rows prune would delete, per state."""
        ...

    def old_rejected_count(self, cutoff: float) -> int:
        """Rejected lines kept since before `cutoff`."""
        ...

    def old_daemons_count(self, cutoff: float) -> int:
        """Daemons stopped before `cutoff`."""
        ...

    def prune_messages(self, cutoff: float, grace_cutoff: float, limit: int) -> list[str]:
        """Delete up to `limit` prunable message rows; their states."""
        ...

    def prune_rejected(self, cutoff: float, limit: int) -> int:
        """Delete up to `limit` rejected lines kept since before `cutoff`."""
        ...

    def prune_daemons(self, cutoff: float) -> int:
        """Delete the rows of daemons stopped before `cutoff`."""
        ...

    def after_prune(self) -> None:
        """Let the database reuse what prune freed."""
        ...

    def vacuum(self) -> dict[str, int]:
        """Compact the spool; its bytes before and after."""
        ...


class EvidenceStore(Protocol):
    """Manifest entries and segments (`manifests`), and what audits and backfills read."""

    def complete_entries(self) -> int:
        """Turn the payloads the settle trigger kept into object hash, size and recipient
        hashes (in the caller's transaction); how many it completed."""
        ...

    def open_entries(self, project_id: str) -> OpenEntries:
        """Count and oldest settled time of a project's open entries."""
        ...

    def take_entries(self, project_id: str, limit: int) -> list[dict[str, Any]]:
        """The oldest `limit` open entries of a project, completed, in settled order."""
        ...

    def last_segment(self, project_id: str) -> LogHead | None:
        """The last sealed segment of a project and its place in its log (None before the
        first)."""
        ...

    def add_segment(self, segment: NewSegment) -> None:
        """Record a sealed segment and the anchors its checkpoint is owed; drop the open
        entries it now holds."""
        ...

    def adopt_unlogged_segments(self, project_id: str, origin: str) -> int:
        """Segments sealed before logs had an origin ('') become the first segments of the log
        `origin` (the v1 prefix of a project's log); how many."""
        ...

    def set_log_state(self, project_id: str, seq: int, tree_size: int, root: str,
                      frontier: str) -> None:
        """Record the tree after a segment sealed before logs had one (its v1 prefix, counted
        from the segments' bytes), so the next seal extends it."""
        ...

    def sealer_id(self, new_id: str) -> str:
        """The spool's sealer id; `new_id` becomes it when it has none (a write transaction)."""
        ...

    def mark_checkpoint_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment's checkpoint is in the bucket."""
        ...

    def segment_rows(self, project_id: str | None, unwritten_only: bool
                     ) -> list[dict[str, Any]]:
        """Sealed segments (without bodies), by project and number."""
        ...

    def segment_body(self, project_id: str, seq: int) -> bytes | None:
        """The exact bytes of a sealed segment not yet written (None once written)."""
        ...

    def mark_written(self, project_id: str, seq: int, now: float) -> None:
        """The segment is in the bucket: keep its hash, drop its bytes."""
        ...

    def mark_write_failed(self, project_id: str, seq: int, error: str,
                          next_attempt_at: float) -> None:
        """The segment's upload failed: try again at `next_attempt_at`."""
        ...

    def open_outcomes(self, project_id: str) -> list[tuple[str, str, str | None]]:
        """(message id, outcome, stored key) of a project's open entries, in settled order."""
        ...

    def messages_to_account(self, project_id: str) -> list[dict[str, Any]]:
        """message_id, state, sent_at, key, stored_key of a project's settled and unarchived
        messages."""
        ...

    def indexed_messages(self, project_id: str) -> list[tuple[Any, ...]]:
        """What the archive index holds of a project, with its row in `messages` (or None),
        in the order stored."""
        ...

    def add_backfilled_entry(self, entry: BackfilledEntry) -> None:
        """One complete `stored` entry in the open segment, as the settle trigger adds it."""
        ...


class SpoolStore(Transactions, IntakeStore, QueueStore, HealthStore, ReportStore, DaemonStore,
                 MaintenanceStore, EvidenceStore, AnchorStore, IndexStore, HoldStore,
                 RecipientKeyStore, ProviderEventStore, Protocol):
    """Everything the spool's state machines ask of its database."""
