"""`sm audit`, step 1: the chain of a project's manifest segments.

Every segment present (`manifest_missing`), numbers contiguous, each `prev_sha256` the hash of
the previous segment's bytes, each segment's bytes the ones sealed (`chain_broken`). The
segments read here are what steps 2 and 3 check the bucket and the spool against.
"""

from __future__ import annotations

from typing import Any

from ..destinations.base import Destination
from ..errors import IntegrityError, ObjectNotFound
from ..message import sha256_hex
from ..spool import Spool
from .findings import Finding, ProjectAudit
from .segments import (
    MAX_SEGMENT_BYTES,
    ManifestFormatError,
    Segment,
    log_origin,
    manifest_prefix,
    parse_segment,
    seq_of_key,
)


def log_rows(spool: Spool, project_id: str, origin: str) -> list[dict[str, Any]]:
    """The spool's segments of the log `origin` (and those sealed before logs had one,
    which join the next log sealed), in order."""
    return [row for row in spool.evidence.segments(project_id)
            if row["origin"] in (origin, "")]


def check_chain(spool: Spool, project_id: str, destination: Destination,
                result: ProjectAudit, rows: list[dict[str, Any]] | None = None
                ) -> list[Segment]:
    """The segments of the project's log at `destination` in order, read from the bucket (or
    the spool, while unwritten; `rows` are the spool's segments of this log); a missing,
    altered or misnumbered one becomes a finding in `result`. A gap in the numbers is one
    finding, whatever its size."""
    if rows is None:
        rows = log_rows(spool, project_id, log_origin(destination.url, project_id))
    listed: dict[int, list[str]] = {}
    for info in destination.list(manifest_prefix(destination.prefix, project_id)):
        seq = seq_of_key(info.key)
        if seq is not None:
            listed.setdefault(seq, []).append(info.key)
            result.listing[info.key] = info
    known = {int(r["log_seq"]): r for r in rows}
    numbers = sorted({*listed, *known})
    last = numbers[-1] if numbers else 0
    segments: list[Segment] = []
    previous: str | None = None  # the previous segment's hash, when known
    previous_known = True
    expected = 1
    for seq in numbers:
        if seq > expected:  # never iterate over a gap: one planted number may be huge
            span = f"segment {expected}" if seq == expected + 1 else \
                f"segments {expected}..{seq - 1}"
            result.findings.append(Finding(
                "manifest_missing", f"{span} missing: not in the bucket (segments up to"
                f" {last} exist)", seq=expected))
            previous, previous_known = None, False
        expected = seq + 1
        row = known.get(seq)
        recorded = row["sha256"] if row is not None else None
        if recorded:
            result.recorded_sha256[seq] = recorded
        body, key = _segment_bytes(spool, project_id, destination, seq, listed, row, result)
        if body is None:
            if key is None:
                result.findings.append(Finding(
                    "manifest_missing", f"manifest segment {seq} is not in the bucket"
                    " (the spool sealed and wrote it)", seq=seq,
                    key=destination.prefix + row["key"] if row is not None else None))
            previous, previous_known = recorded, recorded is not None
            continue
        result.segments[seq] = body
        segment = _read_segment(body, seq, key, recorded, result)
        if segment is None:
            previous, previous_known = recorded or sha256_hex(body), True
            continue
        problems = []
        header = segment.header
        if header.get("seq") != seq or str(header.get("project_id")) != project_id:
            problems.append(f"its header says project {header.get('project_id')} segment"
                            f" {header.get('seq')}")
        expected_prev = None if seq == 1 else previous
        if (seq == 1 or previous_known) and header.get("prev_sha256") != expected_prev:
            problems.append("its prev_sha256 is not the hash of segment"
                            f" {seq - 1}'s bytes" if seq > 1 else "segment 1 has a prev_sha256")
        broken = bool(recorded) and segment.sha256 != recorded
        if problems and not broken:
            result.findings.append(Finding("chain_broken", f"segment {seq}: "
                                           + "; ".join(problems), seq=seq, key=key))
        result.manifests += 1
        segments.append(segment)
        previous, previous_known = recorded or segment.sha256, True
    return segments


def _read_segment(body: bytes, seq: int, key: str | None, recorded: str | None,
                  result: ProjectAudit) -> Segment | None:
    """The parsed segment (None when unreadable); bytes other than those sealed are one
    `chain_broken` finding, and still read (their entries account for messages, so one edit
    is one finding), never past MAX_SEGMENT_BYTES."""
    digest = sha256_hex(body)
    broken = bool(recorded) and digest != recorded
    if broken:
        result.findings.append(Finding(
            "chain_broken", f"segment {seq}'s bytes are not those sealed (sha256 {digest},"
            f" sealed as {recorded})", seq=seq, key=key))
    try:
        return parse_segment(body, key or f"segment {seq}")
    except ManifestFormatError as exc:
        if not broken:
            result.findings.append(Finding("chain_broken", f"segment {seq}: {exc}",
                                           seq=seq, key=key))
        return None


def _segment_bytes(spool: Spool, project_id: str, destination: Destination, seq: int,
                   listed: dict[int, list[str]], row: dict[str, Any] | None,
                   result: ProjectAudit) -> tuple[bytes | None, str | None]:
    """The segment's bytes from the bucket, or from the spool while it is not yet written.

    Returns (None, None) when it is nowhere; (None, key) when it was reported otherwise.
    """
    keys = listed.get(seq, [])
    if len(keys) > 1:
        result.findings.append(Finding("chain_broken", f"segment {seq} exists {len(keys)} times"
                                       f" ({', '.join(keys)})", seq=seq, key=keys[0]))
    for key in keys:
        size = result.listing[key].size
        if size is not None and size > MAX_SEGMENT_BYTES:
            result.findings.append(Finding(
                "chain_broken", f"segment {seq}: {size} bytes, over the {MAX_SEGMENT_BYTES} a"
                " segment may hold (not read)", seq=seq, key=key))
            return None, key
        try:
            return destination.get(key).body, key
        except ObjectNotFound:
            continue
        except IntegrityError as exc:
            result.findings.append(Finding("chain_broken", f"segment {seq}: {exc}",
                                           seq=seq, key=key))
            return None, key
    if row is not None and row["written_at"] is None:
        body = spool.evidence.segment_body(project_id, int(row["seq"]))
        if body is not None:
            return body, destination.prefix + row["key"]
    return None, None
