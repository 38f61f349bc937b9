"""Manifests: seal each project's open segment and write it, create-only, beside the messages.

A segment is sealed when it holds `manifest_max_entries` outcomes, when its oldest outcome is
`manifest_max_age` old, or when the daemon stops (`Manifests.close`). Sealing numbers it
(`seq` from 1 per project, no gaps), chains it to the previous segment's bytes and keeps its
exact bytes in the spool until the destination has them; an unwritten segment is retried on
later ticks and after restarts, never renumbered. Format: docs/manifests.md (SPEC 8).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..clock import Clock, to_rfc3339
from ..destinations.base import Destination
from ..errors import ConfigError
from ..message import sha256_hex
from ..spool import Spool, immediate_transaction
from ..spool import manifests as store
from ..states import State

log = logging.getLogger("sm.manifest")

MANIFEST_VERSION = 1
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_AGE = 15 * 60.0  # seconds
MANIFEST_FOLDER = "_sm/manifests/"
SEGMENT_SUFFIX = ".jsonl.gz"
RETRY_CAP = 300.0  # seconds between attempts to write a segment, at most

HEADER_FIELDS = ("manifest_version", "project_id", "seq", "prev_sha256", "sealed_at", "count")
OUTCOMES = (State.STORED.value, State.EXPIRED.value, State.FAILED.value)


def limits_from(settings: Any) -> tuple[int, float]:
    """`manifest_max_entries` and `manifest_max_age` (seconds) from the settings when they
    know them, else from `SM_MANIFEST_MAX_ENTRIES` / `SM_MANIFEST_MAX_AGE`, else the defaults."""
    from ..config import parse_duration

    entries = getattr(settings, "manifest_max_entries", None) or \
        os.environ.get("SM_MANIFEST_MAX_ENTRIES") or DEFAULT_MAX_ENTRIES
    age = getattr(settings, "manifest_max_age", None) or \
        os.environ.get("SM_MANIFEST_MAX_AGE") or DEFAULT_MAX_AGE
    try:
        return max(1, int(entries)), max(0.0, parse_duration(age))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid manifest limit: {exc}",
                          hint="manifest_max_entries is a count, manifest_max_age a duration"
                          " (15m)") from None


def segment_key(project_id: str, seq: int, sealed_at: float) -> str:
    """The key of a segment relative to the destination prefix (SPEC 8)."""
    day = datetime.fromtimestamp(sealed_at, UTC)
    return f"{MANIFEST_FOLDER}{project_id}/{day:%Y/%m/%d}/{seq:012d}{SEGMENT_SUFFIX}"


def manifest_prefix(destination_prefix: str, project_id: str) -> str:
    """Where a project's segments lie in its bucket (a full key prefix)."""
    return f"{destination_prefix}{MANIFEST_FOLDER}{project_id}/"


def seq_of_key(key: str) -> int | None:
    """The segment number a manifest key names, or None for any other key."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    digits = name[: -len(SEGMENT_SUFFIX)]
    return int(digits) if len(digits) == 12 and digits.isdigit() else None


def _line(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8") + b"\n"


def retention_days_of(destination: Any) -> int | None:
    """The retention (days) the destination sets on what it writes, or None."""
    days = getattr(getattr(destination, "options", None), "retention_days", None)
    return int(days) if days else None


def required_retain_until(settled_at: float, retention_days: int) -> float:
    """Until when a stored object must be retained: its settled time (whole seconds, as the
    manifest shows it) plus the retention. The store's own date is set at upload, moments
    before the outcome settles, so `sm audit` allows it `RETENTION_SLACK` less."""
    return float(int(settled_at)) + retention_days * 86400.0


RETENTION_SLACK = 3600.0  # seconds: upload-to-settle time and clock differences


def entry_document(row: sqlite3.Row, destination_prefix: str,
                   retention_days: int | None = None) -> dict[str, Any]:
    """One manifest line for an open entry, fields in SPEC 8's order; a stored entry carries
    `retain_until` when the destination sets retention."""
    key = row["stored_key"] or f"{destination_prefix}{row['relative_key']}"
    hashes = json.loads(row["recipient_hashes"]) if row["recipient_hashes"] else {
        "recipient": row["recipient_hash"]}
    document: dict[str, Any] = {
        "message_id": row["message_id"], "outcome": row["outcome"], "key": key,
        "payload_sha256": row["payload_sha256"], "object_sha256": row["object_sha256"],
        "size": row["size"], "medium": row["medium"], "message_type": row["message_type"],
        "campaign_id": row["campaign_id"], "sent_at": row["sent_at"],
        "settled_at": to_rfc3339(row["settled_at"]), "recipient_hashes": hashes,
    }
    if retention_days and row["outcome"] == State.STORED:
        document["retain_until"] = to_rfc3339(
            required_retain_until(float(row["settled_at"]), retention_days))
    if row["reason"]:
        document["reason"] = row["reason"]
    return document


def build_segment(project_id: str, seq: int, prev_sha256: str | None, sealed_at: float,
                  entries: list[dict[str, Any]]) -> bytes:
    """The gzip bytes of a segment: the header line, then one line per entry."""
    header = {"manifest_version": MANIFEST_VERSION, "project_id": project_id, "seq": seq,
              "prev_sha256": prev_sha256, "sealed_at": to_rfc3339(sealed_at),
              "count": len(entries)}
    raw = _line(header) + b"".join(_line(entry) for entry in entries)
    return gzip.compress(raw, compresslevel=6, mtime=0)


class ManifestFormatError(ValueError):
    """A segment that is not gzip JSON Lines with a valid header."""


@dataclass(frozen=True)
class Segment:
    """A parsed segment: its header, its entries and the hash of its exact bytes."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]
    sha256: str


def parse_segment(body: bytes) -> Segment:
    """Read a segment's bytes; raises ManifestFormatError when they are not a segment."""
    try:
        text = gzip.decompress(body).decode("utf-8")
        lines = [json.loads(line) for line in text.splitlines() if line]
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestFormatError(f"not gzip JSON Lines ({exc})") from None
    if not lines or not isinstance(lines[0], dict) or \
            lines[0].get("manifest_version") != MANIFEST_VERSION:
        raise ManifestFormatError("no manifest header on line 1")
    header, entries = lines[0], lines[1:]
    if set(header) != set(HEADER_FIELDS):
        raise ManifestFormatError("the header does not have exactly the manifest fields")
    if any(not isinstance(e, dict) or e.get("outcome") not in OUTCOMES for e in entries):
        raise ManifestFormatError("a line is not a manifest entry")
    if header.get("count") != len(entries):
        raise ManifestFormatError(
            f"the header counts {header.get('count')} entries, the segment holds {len(entries)}")
    return Segment(header, entries, sha256_hex(body))


class Manifests:
    """Seals and writes the manifest segments of the projects `sm run` archives."""

    def __init__(self, spool: Spool, destinations: Mapping[str, Destination],
                 max_entries: int = DEFAULT_MAX_ENTRIES, max_age: float = DEFAULT_MAX_AGE, *,
                 clock: Clock | None = None) -> None:
        self.spool = spool
        self.destinations = dict(destinations)
        self.max_entries = max(1, int(max_entries))
        self.max_age = float(max_age)
        self.clock = clock or spool.clock
        spool.on_settled(store.on_settled)

    # ----------------------------------------------------------------------- seams

    def tick(self) -> None:
        """Seal what is full or old enough, then write what is sealed (`Archiver.on_tick`)."""
        self.seal(force=False)
        self.write_pending()

    def close(self) -> None:
        """The daemon stops: seal every open segment and try once more to write them all."""
        self.seal(force=True)
        self.write_pending(ignore_schedule=True)

    # ----------------------------------------------------------------------- sealing

    def seal(self, *, force: bool) -> int:
        """Seal the open segments that are due (all of them with `force`); returns how many."""
        sealed = 0
        now = self.clock.now()
        for project_id in self.destinations:
            while True:
                # A read first: a tick with nothing due takes no write lock (an ingest or a
                # settle elsewhere would make it wait); due is checked again under the lock.
                with self.spool.lock:
                    if not self._due(self.spool.conn, project_id, now, force):
                        break
                with self._write() as conn:
                    if not self._due(conn, project_id, now, force):
                        break
                    self._seal_one(conn, project_id, now)
                    sealed += 1
        return sealed

    def _due(self, conn: sqlite3.Connection, project_id: str, now: float, force: bool) -> bool:
        # Both from the (project_id, id) index and one row: entries are in settled order, so
        # the first is the oldest, and no tick reads every open entry.
        count = int(conn.execute('SELECT COUNT(*) FROM "manifest_entries"'
                                 ' WHERE "project_id" = ?', (project_id,)).fetchone()[0])
        if not count:
            return False
        if force or count >= self.max_entries:
            return True
        first = conn.execute('SELECT "settled_at" FROM "manifest_entries" WHERE "project_id" = ?'
                             ' ORDER BY "id" LIMIT 1', (project_id,)).fetchone()
        return first is not None and now - float(first[0]) >= self.max_age

    def _seal_one(self, conn: sqlite3.Connection, project_id: str, now: float) -> None:
        destination = self.destinations[project_id]
        days = retention_days_of(destination)
        rows = store.take_entries(conn, project_id, self.max_entries)
        last_seq, prev_sha = store.last_segment(conn, project_id)
        seq = last_seq + 1
        body = build_segment(project_id, seq, prev_sha, now,
                             [entry_document(row, destination.prefix, days) for row in rows])
        store.add_segment(conn, project_id=project_id, seq=seq,
                          key=segment_key(project_id, seq, now), sealed_at=now,
                          count=len(rows), prev_sha256=prev_sha, body=body,
                          entry_ids=[row["id"] for row in rows])
        log.info("sealed manifest %d of project %s (%d entries)", seq, project_id, len(rows))

    # ----------------------------------------------------------------------- writing

    def write_pending(self, *, ignore_schedule: bool = False) -> int:
        """Write sealed segments not yet in the bucket, in order; returns how many were written.

        A failure is logged and retried later (backing off up to `RETRY_CAP`); the later
        segments of that project wait, so segments arrive in order.
        """
        written = 0
        now = self.clock.now()
        with self.spool.lock:
            rows = store.segment_rows(self.spool.conn, unwritten_only=True)
        blocked: set[str] = set()
        for row in rows:
            project_id, seq = row["project_id"], row["seq"]
            destination = self.destinations.get(project_id)
            if destination is None or project_id in blocked:
                continue
            if not ignore_schedule and row["next_attempt_at"] and row["next_attempt_at"] > now:
                blocked.add(project_id)
                continue
            with self.spool.lock:
                body = store.segment_body(self.spool.conn, project_id, seq)
            if body is None:
                continue
            key = destination.prefix + row["key"]
            try:
                destination.put(key, body, sha256_hex(gzip.decompress(body)))
            except Exception as exc:  # noqa: BLE001 - the daemon keeps running; retried later
                delay = min(RETRY_CAP, 2.0 ** min(row["attempts"] + 1, 16))
                log.warning("manifest %d of project %s not written yet (%s); retrying in %ds",
                            seq, project_id, exc, int(delay))
                with self._write() as conn:
                    store.mark_write_failed(conn, project_id, seq, str(exc), now + delay)
                blocked.add(project_id)
                continue
            with self._write() as conn:
                store.mark_written(conn, project_id, seq, self.clock.now())
            written += 1
        return written

    def _write(self) -> Any:
        return immediate_transaction(self.spool.conn, self.spool.lock)


def iter_segment_rows(spool: Spool, project_id: str) -> Iterator[sqlite3.Row]:
    """The spool's record of a project's sealed segments, in order."""
    with spool.lock:
        rows = store.segment_rows(spool.conn, project_id)
    yield from rows


# --------------------------------------------------------------------------- backfill


@dataclass
class BackfillReport:
    """What `sm manifest backfill` did for one project."""

    project_id: str
    already_in_manifests: int = 0
    backfilled: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The project's object in `sm manifest backfill --json`."""
        return {"project_id": self.project_id,
                "already_in_manifests": self.already_in_manifests,
                "backfilled": self.backfilled, "failed": len(self.failures),
                "failures": self.failures}


def backfill(spool: Spool, project_id: str, destination: Destination,
             max_entries: int = DEFAULT_MAX_ENTRIES) -> BackfillReport:
    """Write manifest entries for what the index holds but no manifest lists (an archive made
    before manifests existed), each after verifying its object; then seal and write them."""
    from .audit import ProjectAudit, _check_chain, _open_entries

    report = BackfillReport(project_id)
    listed: set[str] = set()
    for segment in _check_chain(spool, project_id, destination, ProjectAudit(project_id)):
        listed.update(str(e.get("message_id")) for e in segment.entries
                      if e.get("outcome") == State.STORED)
    with spool.lock:
        listed.update(m for m, outcome, _key in _open_entries(spool.conn, project_id)
                      if outcome == State.STORED)
        cursor = spool.conn.execute(
            "SELECT a.message_id, a.medium, a.message_type, a.campaign_id, a.recipient_hash,"
            " a.sent_at, a.key, a.payload_sha256, a.stored_at, m.id FROM archive_index a"
            " LEFT JOIN messages m ON m.project_id = a.project_id"
            " AND m.message_id = a.message_id WHERE a.project_id = ?"
            " ORDER BY a.stored_at, a.message_id", (project_id,))
        rows = cursor.fetchall()
    for (message_id, medium, message_type, campaign_id, fallback, sent_at, key, payload_sha,
         stored_at, row_id) in rows:
        if message_id in listed:
            report.already_in_manifests += 1
            continue
        try:
            body = destination.get(key).body
            payload = gzip.decompress(body)
        except Exception as exc:  # noqa: BLE001 - reported per object, never fatal
            report.failures.append({"key": key, "reason": str(exc) or type(exc).__name__})
            continue
        if sha256_hex(payload) != payload_sha:
            report.failures.append({"key": key, "reason": "the object's payload hash is not"
                                    " the one the index recorded"})
            continue
        relative = key[len(destination.prefix):] if key.startswith(destination.prefix) else key
        with immediate_transaction(spool.conn, spool.lock) as conn:
            conn.execute(
                'INSERT INTO "manifest_entries" ("project_id", "message_row", "message_id",'
                ' "outcome", "stored_key", "relative_key", "payload_sha256", "object_sha256",'
                ' "size", "medium", "message_type", "campaign_id", "sent_at", "recipient_hash",'
                ' "recipient_hashes", "settled_at") VALUES'
                ' (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (project_id, row_id or 0, message_id, State.STORED.value, key, relative,
                 payload_sha, sha256_hex(body), len(body), medium, message_type, campaign_id,
                 sent_at, fallback, json.dumps(store.recipient_hashes(payload, fallback),
                                               separators=(",", ":")), stored_at or 0.0))
        listed.add(message_id)
        report.backfilled += 1
    Manifests(spool, {project_id: destination}, max_entries).close()
    return report
