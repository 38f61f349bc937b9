"""Manifest segments in the spool: every settled outcome, recorded in the settling transaction.

Two tables (SPEC 8, docs/manifests.md):

- `manifest_entries`: the open segment of each project, one row per settled outcome in the
  order it settled. A schema trigger on `messages` inserts the row in the very UPDATE that makes
  a message `stored`, `expired` or `failed`, whichever process or code path settles it, so an
  outcome can never commit without its entry. A stored message whose settle knows the object's
  SHA-256 and size (the uploader's, written on the row by the settling UPDATE, step 11) gets a
  complete entry at once: those, with the identifier hashes taken at ingest. Any other outcome
  keeps its payload for a moment: the `on_settled` hook (`complete_entries`, also run before
  sealing) turns it into the object's SHA-256, size and recipient hashes and drops it, in the
  same transaction.
- `manifest_segments`: sealed segments with their number, hash chain and exact bytes; the bytes
  stay until the segment is written to the bucket (a crash between sealing and upload loses
  nothing: the same bytes are uploaded on restart), the row and its hash stay for good.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..message import RECIPIENT_FIELDS, SEARCH_FORMS, gzip_body, search_hashes, sha256_hex
from ..states import State
from .bodies import object_of, payload_of

SETTLED_OUTCOMES: tuple[State, ...] = (State.STORED, State.EXPIRED, State.FAILED)

def entry_insert_sql(body: str, *, complete: bool = False) -> str:
    """The statement both backends' triggers run for a settled message (`NEW` is its row);
    `body` is SQL for its payload. With `complete` (step 11), a row whose settle wrote the
    object's hash and size gets its whole entry now, without its payload."""
    columns = values = ""
    payload = body
    if complete:
        columns = ', "object_sha256", "size", "recipient_hashes"'
        values = (', NEW."object_sha256", NEW."object_size",'
                  ' CASE WHEN NEW."object_sha256" IS NOT NULL THEN NEW."recipient_hashes" END')
        payload = f'CASE WHEN NEW."object_sha256" IS NULL THEN {body} END'
    return f"""INSERT INTO "manifest_entries" ("project_id", "message_row", "message_id", "outcome",
       "stored_key", "relative_key", "payload_sha256", "medium", "message_type",
       "campaign_id", "sent_at", "recipient_hash", "settled_at", "reason", "payload"{columns})
   VALUES (NEW."project_id", NEW."id", NEW."message_id", NEW."state",
       CASE WHEN NEW."state" = '{State.STORED.value}' THEN NEW."stored_key" END, NEW."key",
       NEW."payload_sha256", NEW."medium", NEW."message_type", NEW."campaign_id",
       NEW."sent_at", NEW."recipient_hash", COALESCE(NEW."updated_at", NEW."stored_at", 0),
       NEW."final_reason", {payload}{values})"""


# --------------------------------------------------------------------------- entries


def recipient_hashes(payload: bytes | None, fallback: str, region: str | None = None
                     ) -> dict[str, str]:
    """A hash of every identifier present in the payload's `recipient`, each normalised as
    the key's rule normalises it (SPEC 3), and the search forms (a national phone number
    read in `region`); `{"recipient": fallback}` when unreadable."""
    recipient: Any = None
    if payload is not None:
        try:
            recipient = json.loads(payload).get("recipient")
        except (ValueError, AttributeError):
            recipient = None
    # the same identifiers, and search forms (SPEC 9.2), as ingest takes (`search_hashes`)
    hashes = search_hashes(recipient, region)
    return hashes or {"recipient": fallback}


def completed(outcome: str, column: bytes, fallback: str, known: str | None = None
              ) -> tuple[str | None, int | None, str]:
    """What an entry whose payload the trigger kept gets instead (`complete_entries`): the
    object's SHA-256 and size (stored outcomes) and its recipient hashes as compact JSON:
    those taken at ingest (`known`, the message row's, which read a national phone number
    in `default_phone_region`) when readable, else the payload's."""
    payload = payload_of(bytes(column))
    object_sha = size = None
    if outcome == State.STORED:
        body = object_of(bytes(column)) or gzip_body(payload)
        object_sha, size = sha256_hex(body), len(body)
    return object_sha, size, canonical_hashes(known) or json.dumps(
        recipient_hashes(payload, fallback), separators=(",", ":"))


def canonical_hashes(identifier_hashes: str | None) -> str | None:
    """The identifier hashes taken at ingest (`messages.recipient_hashes`) as the entry's
    `recipient_hashes` (compact JSON, identifiers in SPEC order): what `complete_entries`
    would compute from the payload. None when they are missing or not readable (a damaged
    spool): the entry then takes the payload path."""
    try:
        known = json.loads(identifier_hashes) if identifier_hashes else None
    except ValueError:
        return None
    if not isinstance(known, dict) or not known:
        return None
    ordered = {name: known[name] for name in RECIPIENT_FIELDS + SEARCH_FORMS
               if isinstance(known.get(name), str)}
    if len(ordered) != len(known):
        return None
    return json.dumps(ordered, separators=(",", ":"))


# The entries `complete_entries` completes, with the identifier hashes taken at ingest.
ENTRIES_TO_COMPLETE = (
    'SELECT e."id", e."outcome", e."payload", e."recipient_hash", m."recipient_hashes"'
    ' FROM "manifest_entries" e LEFT JOIN "messages" m ON m."id" = e."message_row"'
    ' AND m."project_id" = e."project_id" AND m."message_id" = e."message_id"'
    ' WHERE e."payload" IS NOT NULL')
ENTRY_COLUMNS = ('"id", "message_id", "outcome", "stored_key", "relative_key", "payload_sha256",'
                 ' "object_sha256", "size", "medium", "message_type", "campaign_id", "sent_at",'
                 ' "recipient_hashes", "recipient_hash", "settled_at", "reason", "marks"')
SEGMENT_COLUMNS = ('"project_id", "seq", "key", "sealed_at", "count", "prev_sha256", "sha256",'
                   ' "size", "written_at", "attempts", "next_attempt_at", "last_error",'
                   ' "origin", COALESCE("log_seq", "seq") AS "log_seq", "version", "tree_size",'
                   ' "root", "checkpoint", "checkpoint_written_at"')
# What the next seal extends: the last segment's place in its log (`LogHead`).
HEAD_COLUMNS = ('"seq", COALESCE("log_seq", "seq"), "origin", "sha256", "version", "tree_size",'
                ' "root", "frontier"')
# The columns of a sealed segment, in `segment_values` order.
NEW_SEGMENT_COLUMNS = ('"project_id", "seq", "key", "sealed_at", "count", "prev_sha256",'
                       ' "sha256", "size", "body", "origin", "log_seq", "version", "tree_size",'
                       ' "root", "frontier", "checkpoint"')
# The columns of an anchor still to make (`NewSegment.anchors`), in `anchor_values` order.
ANCHOR_COLUMNS = '"project_id", "origin", "tree_size", "kind", "target", "created_at"'
SEALER_NAME = "sealer"  # the spool's sealer id in `spool_meta`
# What an audit reads of the messages a manifest must (or will) list.
ACCOUNT_COLUMNS = "message_id, state, sent_at, key, stored_key"
# The columns of a backfilled entry, in `backfilled_values` order.
BACKFILL_COLUMNS = ('"project_id", "message_row", "message_id", "outcome", "stored_key",'
                    ' "relative_key", "payload_sha256", "object_sha256", "size", "medium",'
                    ' "message_type", "campaign_id", "sent_at", "recipient_hash",'
                    ' "recipient_hashes", "settled_at", "marks"')


def backfilled_values(entry: BackfilledEntry) -> tuple[Any, ...]:
    """The `BACKFILL_COLUMNS` values of a backfilled entry (a complete `stored` entry)."""
    return (entry.project_id, entry.message_row, entry.message_id, State.STORED.value,
            entry.stored_key, entry.relative_key, entry.payload_sha256, entry.object_sha256,
            entry.size, entry.medium, entry.message_type, entry.campaign_id, entry.sent_at,
            entry.recipient_hash,
            json.dumps(recipient_hashes(entry.payload, entry.recipient_hash,
                                        entry.phone_region),
                       separators=(",", ":")), entry.settled_at,
            json.dumps(entry.marks, separators=(",", ":")) if entry.marks else None)


def segment_values(segment: NewSegment) -> tuple[Any, ...]:
    """The `NEW_SEGMENT_COLUMNS` values of a sealed segment."""
    return (segment.project_id, segment.seq, segment.key, segment.sealed_at, segment.count,
            segment.prev_sha256, segment.sha256, len(segment.body), segment.body,
            segment.origin, segment.log_seq, segment.version, segment.tree_size, segment.root,
            segment.frontier, segment.checkpoint)


def anchor_values(segment: NewSegment) -> list[tuple[Any, ...]]:
    """The `ANCHOR_COLUMNS` rows of the anchors a sealed segment's checkpoint is owed."""
    return [(segment.project_id, segment.origin, segment.tree_size, kind, target,
             segment.sealed_at) for kind, target in segment.anchors]


@dataclass(frozen=True, slots=True)
class OpenEntries:
    """What a project's open segment holds now: how many entries, the oldest settled when."""

    count: int
    oldest_settled_at: float | None


@dataclass(frozen=True, slots=True)
class LogHead:
    """The last sealed segment of a project: its number in the spool and in its log, the log
    (`origin`; '' for a segment sealed before logs had one), its hash, and the tree after it
    (version 2; `frontier` is the compact range the next seal extends, as JSON)."""

    seq: int
    log_seq: int
    origin: str
    sha256: str
    version: int
    tree_size: int | None
    root: str | None
    frontier: str | None


@dataclass(frozen=True, slots=True)
class SegmentDraft:
    """What the evidence layer builds of a segment inside the sealing transaction: its key
    and exact bytes, its place in its log, the tree after it, its signed checkpoint and the
    anchors the checkpoint is owed (kind, target)."""

    key: str
    body: bytes
    prev_sha256: str | None
    origin: str = ""
    log_seq: int | None = None
    version: int = 1
    tree_size: int | None = None
    root: str | None = None
    frontier: str | None = None
    checkpoint: str | None = None
    anchors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NewSegment:
    """A sealed segment to record: its number (in the spool and in its log), key, hash
    chain, tree, signed checkpoint, exact bytes, and the anchors its checkpoint is owed
    (kind, target)."""

    project_id: str
    seq: int
    key: str
    sealed_at: float
    count: int
    prev_sha256: str | None
    body: bytes
    entry_ids: list[int]
    origin: str = ""
    log_seq: int | None = None
    version: int = 1
    tree_size: int | None = None
    root: str | None = None
    frontier: str | None = None
    checkpoint: str | None = None
    anchors: tuple[tuple[str, str], ...] = ()

    @property
    def sha256(self) -> str:
        """The segment's hash (the next segment's `prev_sha256`)."""
        return sha256_hex(self.body)


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
    # what marks the entry for ever (SPEC 9.1): {"backfilled": true}, {"adopted": {…}}
    marks: dict[str, Any] | None = None
    phone_region: str | None = None  # `default_phone_region`: a national number's E.164 hash
