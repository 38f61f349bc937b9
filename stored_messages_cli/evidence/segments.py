"""The manifest segment format (SPEC 8, docs/manifests.md): keys, lines, bytes and parsing.

Shared by the writer (`manifest`), the auditor (`audit`), the backfill and remote finds; it
reads nothing and writes nothing itself. A segment's bytes never change once sealed, so this
module is what pins them: a header line, then one entry line per outcome, gzip without mtime.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..clock import to_rfc3339
from ..errors import UnreadableObject
from ..message import gunzip, sha256_hex
from ..states import SETTLED_OUTCOMES, State

MANIFEST_VERSION = 1
MANIFEST_FOLDER = "_sm/manifests/"
SEGMENT_SUFFIX = ".jsonl.gz"

# The most a segment may expand to (10,000 entries of the default seal are about 6 MiB); its
# gzip bytes are refused above it too, before anything is downloaded where a listing says so.
MAX_SEGMENT_BYTES = 64 * 1024 * 1024

HEADER_FIELDS = ("manifest_version", "project_id", "seq", "prev_sha256", "sealed_at", "count")


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
    return document


def build_segment(project_id: str, seq: int, prev_sha256: str | None, sealed_at: float,
                  entries: list[dict[str, Any]]) -> bytes:
    """The gzip bytes of a segment: the header line, then one line per entry."""
    header = {"manifest_version": MANIFEST_VERSION, "project_id": project_id, "seq": seq,
              "prev_sha256": prev_sha256, "sealed_at": to_rfc3339(sealed_at),
              "count": len(entries)}
    raw = segment_line(header) + b"".join(segment_line(entry) for entry in entries)
    return gzip.compress(raw, compresslevel=6, mtime=0)


class ManifestFormatError(ValueError):
    """A segment that is not gzip JSON Lines with a valid header."""


@dataclass(frozen=True)
class Segment:
    """A parsed segment: its header, its entries and the hash of its exact bytes."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]
    sha256: str


def parse_segment(body: bytes, key: str = "the segment") -> Segment:
    """Read a segment's bytes (at most MAX_SEGMENT_BYTES, compressed or not); raises
    ManifestFormatError when they are not a segment."""
    if len(body) > MAX_SEGMENT_BYTES:
        raise ManifestFormatError(f"{len(body)} bytes, over the {MAX_SEGMENT_BYTES} a segment"
                                  " may hold (not read)")
    try:
        text = gunzip(body, key, limit=MAX_SEGMENT_BYTES).decode("utf-8")
        lines = [json.loads(line) for line in text.splitlines() if line]
    except UnreadableObject as exc:
        raise ManifestFormatError(exc.detail) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestFormatError(f"not gzip JSON Lines ({exc})") from None
    if not lines or not isinstance(lines[0], dict) or \
            lines[0].get("manifest_version") != MANIFEST_VERSION:
        raise ManifestFormatError("no manifest header on line 1")
    header, entries = lines[0], lines[1:]
    if set(header) != set(HEADER_FIELDS):
        raise ManifestFormatError("the header does not have exactly the manifest fields")
    if any(not isinstance(e, dict) or e.get("outcome") not in SETTLED_OUTCOMES for e in entries):
        raise ManifestFormatError("a line is not a manifest entry")
    if header.get("count") != len(entries):
        raise ManifestFormatError(
            f"the header counts {header.get('count')} entries, the segment holds {len(entries)}")
    return Segment(header, entries, sha256_hex(body))
