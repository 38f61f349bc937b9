"""`sm audit`'s check of delivery evidence (SPEC 9.3): every `"outcome": "evidence"` entry of
the log names an object in the bucket with the entry's exact bytes (its SHA-256 and size:
`missing_object`, `altered_object`), and every object under the project's evidence folder is
in the log or about to be (`unexpected_object`). Evidence objects are small: each is read
whole and hashed."""

from __future__ import annotations

from typing import Any

from ..destinations.base import Destination
from ..errors import DestinationError, ObjectNotFound
from ..message import sha256_hex
from ..states import EVIDENCE_OUTCOME
from .delivery import EVIDENCE_FOLDER
from .findings import Finding, ProjectAudit
from .segments import Segment

MAX_EVIDENCE_BYTES = 4 * 1024 * 1024  # an evidence object holds one webhook request (≤ 1 MiB)


def check_evidence(destination: Destination, project_id: str, segments: list[Segment],
                   open_outcomes: list[tuple[str, str, str | None]], result: ProjectAudit
                   ) -> int:
    """Check the project's evidence objects against its log; how many entries were checked."""
    entries = [e for segment in segments for e in segment.entries
               if e.get("outcome") == EVIDENCE_OUTCOME]
    logged = {str(e.get("key")) for e in entries}
    logged |= {key for _, outcome, key in open_outcomes if outcome == EVIDENCE_OUTCOME and key}
    for entry in entries:
        _check_one(destination, entry, result)
    folder = f"{destination.prefix}{EVIDENCE_FOLDER}{project_id}/"
    for info in destination.list(folder):
        if info.key not in logged:
            result.findings.append(Finding(
                "unexpected_object", "an evidence object that no log entry lists",
                key=info.key))
    return len(entries)


def _check_one(destination: Destination, entry: dict[str, Any], result: ProjectAudit) -> None:
    """One evidence entry's object: there, and the bytes the entry hashed."""
    key = str(entry.get("key"))
    message_id = str(entry.get("message_id"))
    try:
        info = destination.head(key)
        if info is None:
            raise ObjectNotFound(key)
        if info.size is not None and info.size > MAX_EVIDENCE_BYTES:
            raise ValueError(f"{info.size} bytes")
        body = destination.get(key).body
    except ObjectNotFound:
        result.findings.append(Finding("missing_object", "a delivery evidence object of the"
                                       " log is not in the bucket", message_id=message_id,
                                       key=key))
        return
    except (DestinationError, ValueError) as exc:
        result.findings.append(Finding("altered_object", f"the evidence object cannot be read"
                                       f" ({exc})", message_id=message_id, key=key))
        return
    if (sha256_hex(body), len(body)) != (entry.get("object_sha256"), entry.get("size")):
        result.findings.append(Finding(
            "altered_object", "the evidence object's bytes are not the ones the log entered"
            f" (SHA-256 {sha256_hex(body)}, {len(body)} bytes)", message_id=message_id,
            key=key))
