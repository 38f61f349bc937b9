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
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..message import RECIPIENT_FIELDS, gzip_body, recipient_identity, sha256_hex
from ..states import State
from .bodies import object_of, payload_of
from .store import Settled

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


def recipient_hashes(payload: bytes | None, fallback: str) -> dict[str, str]:
    """A hash of every identifier present in the payload's `recipient`, each normalised as
    the key's rule normalises it (SPEC 3); `{"recipient": fallback}` when unreadable."""
    recipient: Any = None
    if payload is not None:
        try:
            recipient = json.loads(payload).get("recipient")
        except (ValueError, AttributeError):
            recipient = None
    hashes: dict[str, str] = {}
    if isinstance(recipient, dict):
        for name in RECIPIENT_FIELDS:
            identity = recipient_identity({name: recipient.get(name)})
            if identity is not None:
                hashes[name] = sha256_hex(identity.encode("utf-8"))
    return hashes or {"recipient": fallback}


def on_settled(conn: sqlite3.Connection, settled: list[Settled]) -> None:
    """The `Spool.on_settled` hook: complete the entries the settling UPDATE just added."""
    complete_entries(conn)


def complete_entries(conn: sqlite3.Connection) -> int:
    """Turn the payloads the trigger kept into object hash, size and recipient hashes.

    Run by the `on_settled` hook (same transaction as the outcome), and before sealing for
    outcomes settled by a process that did not register it. Returns how many it completed.
    """
    rows = conn.execute(
        'SELECT "id", "outcome", "payload", "recipient_hash" FROM "manifest_entries"'
        ' WHERE "payload" IS NOT NULL').fetchall()
    for row_id, outcome, column, fallback in rows:
        kept = bytes(column)
        payload = payload_of(kept)
        object_sha = size = None
        if outcome == State.STORED:
            body = object_of(kept) or gzip_body(payload)
            object_sha, size = sha256_hex(body), len(body)
        conn.execute(
            'UPDATE "manifest_entries" SET "object_sha256" = ?, "size" = ?,'
            ' "recipient_hashes" = ?, "payload" = NULL WHERE "id" = ?',
            (object_sha, size, json.dumps(recipient_hashes(payload, fallback),
                                          separators=(",", ":")), row_id))
    return len(rows)


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
    ordered = {name: known[name] for name in RECIPIENT_FIELDS if isinstance(known.get(name), str)}
    if len(ordered) != len(known):
        return None
    return json.dumps(ordered, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """What a project's open segment holds: how many entries, settled since when."""

    project_id: str
    count: int
    oldest: float


def open_segments(conn: sqlite3.Connection) -> list[OpenSegment]:
    """Every project's open segment (projects with no open entry are left out)."""
    rows = conn.execute(
        'SELECT "project_id", COUNT(*), MIN("settled_at") FROM "manifest_entries"'
        ' GROUP BY "project_id" ORDER BY "project_id"').fetchall()
    return [OpenSegment(r[0], int(r[1]), float(r[2])) for r in rows]


ENTRY_COLUMNS = ('"id", "message_id", "outcome", "stored_key", "relative_key", "payload_sha256",'
                 ' "object_sha256", "size", "medium", "message_type", "campaign_id", "sent_at",'
                 ' "recipient_hashes", "recipient_hash", "settled_at", "reason"')


def take_entries(conn: sqlite3.Connection, project_id: str, limit: int
                 ) -> list[sqlite3.Row]:
    """The oldest `limit` open entries of a project, in settled order (completed first)."""
    complete_entries(conn)
    cursor = conn.execute(
        f'SELECT {ENTRY_COLUMNS} FROM "manifest_entries" WHERE "project_id" = ?'
        ' ORDER BY "id" LIMIT ?', (project_id, limit))
    cursor.row_factory = sqlite3.Row
    return cursor.fetchall()


def last_segment(conn: sqlite3.Connection, project_id: str) -> tuple[int, str | None]:
    """The last sealed segment's number and hash (0 and None before the first)."""
    row = conn.execute(
        'SELECT "seq", "sha256" FROM "manifest_segments" WHERE "project_id" = ?'
        ' ORDER BY "seq" DESC LIMIT 1', (project_id,)).fetchone()
    return (0, None) if row is None else (int(row[0]), row[1])


def add_segment(conn: sqlite3.Connection, *, project_id: str, seq: int, key: str,
                sealed_at: float, count: int, prev_sha256: str | None, body: bytes,
                entry_ids: list[int]) -> None:
    """Record a sealed segment and drop the open entries it now holds (one transaction)."""
    conn.execute(
        'INSERT INTO "manifest_segments" ("project_id", "seq", "key", "sealed_at", "count",'
        ' "prev_sha256", "sha256", "size", "body") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (project_id, seq, key, sealed_at, count, prev_sha256, sha256_hex(body), len(body), body))
    conn.execute('DELETE FROM "manifest_entries" WHERE "id" IN'
                 ' (SELECT value FROM json_each(?))', (json.dumps(entry_ids),))


def segment_rows(conn: sqlite3.Connection, project_id: str | None = None, *,
                 unwritten_only: bool = False) -> list[sqlite3.Row]:
    """Sealed segments (without bodies), by project and number."""
    where, params = [], []
    if project_id is not None:
        where.append('"project_id" = ?')
        params.append(project_id)
    if unwritten_only:
        where.append('"written_at" IS NULL')
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cursor = conn.execute(
        'SELECT "project_id", "seq", "key", "sealed_at", "count", "prev_sha256", "sha256",'
        ' "size", "written_at", "attempts", "next_attempt_at", "last_error"'
        f' FROM "manifest_segments"{clause} ORDER BY "project_id", "seq"', params)
    cursor.row_factory = sqlite3.Row
    return cursor.fetchall()


def segment_body(conn: sqlite3.Connection, project_id: str, seq: int) -> bytes | None:
    """The exact bytes of a sealed segment not yet written (None once written)."""
    row = conn.execute('SELECT "body" FROM "manifest_segments" WHERE "project_id" = ?'
                       ' AND "seq" = ?', (project_id, seq)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def mark_written(conn: sqlite3.Connection, project_id: str, seq: int, now: float) -> None:
    """The segment is in the bucket: keep its hash, drop its bytes."""
    conn.execute('UPDATE "manifest_segments" SET "written_at" = ?, "body" = NULL,'
                 ' "last_error" = NULL, "next_attempt_at" = NULL'
                 ' WHERE "project_id" = ? AND "seq" = ?', (now, project_id, seq))


def mark_write_failed(conn: sqlite3.Connection, project_id: str, seq: int, error: str,
                      next_attempt_at: float) -> None:
    """The upload failed: try again at `next_attempt_at`."""
    conn.execute('UPDATE "manifest_segments" SET "attempts" = "attempts" + 1,'
                 ' "last_error" = ?, "next_attempt_at" = ? WHERE "project_id" = ? AND "seq" = ?',
                 (error[:500], next_attempt_at, project_id, seq))
