"""The manifest segment format (SPEC 8, docs/manifests.md): keys, lines, bytes and parsing.

Shared by the writer (`manifest`), the auditor (`audit`), the backfill and remote finds; it
reads nothing and writes nothing itself. A segment's bytes never change once sealed, so this
module is what pins them: a header line, then one entry line per outcome, gzip without mtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..clock import to_rfc3339
from ..errors import UnreadableObject
from ..message import gunzip, gzip_member, sha256_hex
from ..states import EVIDENCE_OUTCOME, SETTLED_OUTCOMES, State

MANIFEST_VERSION = 2  # a segment of a signed Merkle log (SPEC 9.1); 1 is read as before
MANIFEST_FOLDER = "_sm/manifests/"
CHECKPOINT_FOLDER = "_sm/checkpoints/"
SEGMENT_SUFFIX = ".jsonl.gz"

# The most a segment may expand to (10,000 entries of the default seal are about 6 MiB); its
# gzip bytes are refused above it too, before anything is downloaded where a listing says so.
MAX_SEGMENT_BYTES = 64 * 1024 * 1024

# The most a checkpoint (a few lines and a few signatures) may hold when read from a bucket.
MAX_CHECKPOINT_BYTES = 64 * 1024

HEADER_FIELDS = ("manifest_version", "project_id", "seq", "prev_sha256", "sealed_at", "count")
# A version 2 header adds the log: the tree after this segment, its origin and sealer, and in a
# log's first segment after a reconnect, the log before it (`previous_log`).
LOG_HEADER_FIELDS = (*HEADER_FIELDS, "tree_size", "root", "origin", "sealer")
PREVIOUS_LOG = "previous_log"
# The marks an entry may carry for ever (SPEC 9.1), after its other fields.
ENTRY_MARKS = ("backfilled", "adopted")
# Every outcome a log entry may have: a message's settled ones, and delivery evidence.
LOG_OUTCOMES: tuple[str, ...] = (*SETTLED_OUTCOMES, EVIDENCE_OUTCOME)


def segment_key(project_id: str, seq: int, sealed_at: float) -> str:
    """The key of a segment relative to the destination prefix (SPEC 8)."""
    day = datetime.fromtimestamp(sealed_at, UTC)
    return f"{MANIFEST_FOLDER}{project_id}/{day:%Y/%m/%d}/{seq:012d}{SEGMENT_SUFFIX}"


def checkpoint_key(project_id: str, tree_size: int, suffix: str = ".txt") -> str:
    """The key of a log's checkpoint at `tree_size` (`.txt`), or of a time-stamp token of it
    (`.tsr`), relative to the destination prefix (SPEC 9.1)."""
    return f"{CHECKPOINT_FOLDER}{project_id}/{tree_size:012d}{suffix}"


def log_id(origin: str) -> str:
    """A short name of a log: the first 16 hex digits of its origin's SHA-256."""
    return sha256_hex(origin.encode("utf-8"))[:16]


def copy_checkpoint_key(project_id: str, origin: str, tree_size: int, suffix: str = ".txt"
                        ) -> str:
    """The key of a log's checkpoint (or time-stamp token) at a checkpoint copy location,
    relative to its prefix: in a folder of its own log (`log_id`), since one location keeps
    the copies of every log of a project (after a reconnect, the earlier log's and the new
    one's, whose tree sizes meet)."""
    return f"{CHECKPOINT_FOLDER}{project_id}/{log_id(origin)}/{tree_size:012d}{suffix}"


def log_origin(destination_url: str, project_id: str) -> str:
    """The origin of a project's log at a destination: its URL without credentials, query or
    fragment, ending in `/`, then `#` and the project id (`s3://acme-archive/messages/#12345`).
    """
    parts = urlsplit(destination_url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}/#{project_id}"


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


def segment_line(document: Mapping[str, Any]) -> bytes:
    """One line of a segment: compact JSON in the document's own field order, UTF-8."""
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


def entry_document(row: Mapping[str, Any], destination_prefix: str,
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
    marks = json.loads(row["marks"]) if row.get("marks") else {}
    for name in ENTRY_MARKS:
        if name in marks:
            document[name] = marks[name]
    return document


def segment_header(project_id: str, seq: int, prev_sha256: str | None, sealed_at: float,
                   count: int, **log: Any) -> dict[str, Any]:
    """A segment's header, fields in SPEC order: version 1's, then (version 2) `log`'s
    `tree_size`, `root`, `origin`, `sealer` and, when given, `previous_log`."""
    header: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION if log else 1, "project_id": project_id,
        "seq": seq, "prev_sha256": prev_sha256, "sealed_at": to_rfc3339(sealed_at),
        "count": count}
    for name in (*LOG_HEADER_FIELDS[len(HEADER_FIELDS):], PREVIOUS_LOG):
        if name in log:
            header[name] = log[name]
    return header


def build_segment(header: Mapping[str, Any], lines: list[bytes]) -> bytes:
    """The gzip bytes of a segment: the header line, then the entry lines (each the exact
    bytes of a leaf, without its newline)."""
    raw = segment_line(header) + b"".join(line + b"\n" for line in lines)
    return gzip_member(raw)  # the pinned gzip bytes (SPEC 9.6), whatever the Python version


class ManifestFormatError(ValueError):
    """A segment that is not gzip JSON Lines with a valid header."""


@dataclass(frozen=True)
class Segment:
    """A parsed segment: its header, its entries and the hash of its exact bytes."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]
    sha256: str
    lines: tuple[bytes, ...] = ()  # each entry's exact line (a leaf of the log), no newline

    @property
    def version(self) -> int:
        """The header's `manifest_version` (1 or 2)."""
        return int(self.header["manifest_version"])


def parse_segment(body: bytes, key: str = "the segment") -> Segment:
    """Read a segment's bytes (at most MAX_SEGMENT_BYTES, compressed or not); raises
    ManifestFormatError when they are not a segment."""
    if len(body) > MAX_SEGMENT_BYTES:
        raise ManifestFormatError(f"{len(body)} bytes, over the {MAX_SEGMENT_BYTES} a segment"
                                  " may hold (not read)")
    try:
        raw = gunzip(body, key, limit=MAX_SEGMENT_BYTES)
        if not raw.endswith(b"\n"):
            raise ValueError("the last line has no newline")
        raw_lines = raw[:-1].split(b"\n")
        lines = [json.loads(line.decode("utf-8")) for line in raw_lines]
    except UnreadableObject as exc:
        raise ManifestFormatError(exc.detail) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestFormatError(f"not gzip JSON Lines ({exc})") from None
    if not lines or not isinstance(lines[0], dict) or \
            lines[0].get("manifest_version") not in (1, MANIFEST_VERSION):
        raise ManifestFormatError("no manifest header on line 1")
    header, entries = lines[0], lines[1:]
    if set(header) != set(_header_fields(header)):
        raise ManifestFormatError("the header does not have exactly the manifest fields")
    if any(not isinstance(e, dict) or e.get("outcome") not in LOG_OUTCOMES for e in entries):
        raise ManifestFormatError("a line is not a manifest entry")
    if header.get("count") != len(entries):
        raise ManifestFormatError(
            f"the header counts {header.get('count')} entries, the segment holds {len(entries)}")
    return Segment(header, entries, sha256_hex(body), tuple(raw_lines[1:]))


def _header_fields(header: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a header of its version must have (exactly)."""
    if header.get("manifest_version") == 1:
        return HEADER_FIELDS
    return (*LOG_HEADER_FIELDS, PREVIOUS_LOG) if PREVIOUS_LOG in header else LOG_HEADER_FIELDS
