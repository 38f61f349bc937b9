"""`sm manifest backfill`: manifest entries for messages archived before manifests existed.

What the index holds and no manifest lists (sealed, or in the open segment) is read back from
the bucket, its payload hash checked against the index, and added to the open segment as the
settle would have added it, marked `"backfilled": true` for ever; then the segments are sealed
and written. Only what this spool itself stored (a `stored` message with that payload hash) is
backfilled: an object it did not store (planted, or indexed by `sm index rebuild` from the
bucket) is reported, never laundered into the log; `sm manifest adopt` takes one in, marked
as adopted with the operator's reason (SPEC 9.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..destinations.base import Destination
from ..message import MAX_PAYLOAD_BYTES, gunzip, sha256_hex
from ..spool import Spool
from ..spool.evidence_queries import BackfilledEntry
from ..states import State
from .audit_chain import check_chain
from .findings import ProjectAudit
from .log import LogOptions
from .manifest import DEFAULT_MAX_ENTRIES, Manifests


@dataclass
class BackfillReport:
    """What `sm manifest backfill` did for one project."""

    project_id: str
    already_in_manifests: int = 0
    backfilled: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    not_stored_here: list[str] = field(default_factory=list)  # keys this spool never stored

    def as_dict(self) -> dict[str, Any]:
        """The project's object in `sm manifest backfill --json`."""
        return {"project_id": self.project_id,
                "already_in_manifests": self.already_in_manifests,
                "backfilled": self.backfilled, "failed": len(self.failures),
                "failures": self.failures, "not_stored_here": self.not_stored_here}


def listed_as_stored(spool: Spool, project_id: str, destination: Destination) -> set[str]:
    """The message ids a manifest of the project lists as stored (sealed or still open)."""
    listed: set[str] = set()
    for segment in check_chain(spool, project_id, destination, ProjectAudit(project_id)):
        listed.update(str(e.get("message_id")) for e in segment.entries
                      if e.get("outcome") == State.STORED)
    listed.update(message_id for message_id, outcome, _key
                  in spool.evidence.open_outcomes(project_id) if outcome == State.STORED)
    return listed


def backfill(spool: Spool, project_id: str, destination: Destination,
             max_entries: int = DEFAULT_MAX_ENTRIES, log_options: LogOptions | None = None,
             *, max_payload_bytes: int = MAX_PAYLOAD_BYTES, phone_region: str | None = None
             ) -> BackfillReport:
    """Write manifest entries for what the index holds but no manifest lists (an archive made
    before manifests existed), each after verifying its object; then seal and write them.
    At most `max_payload_bytes` of a payload are decompressed (a bigger one is a failure);
    a national phone number's E.164 hash is read in `phone_region`."""
    report = BackfillReport(project_id)
    listed = listed_as_stored(spool, project_id, destination)
    for (message_id, medium, message_type, campaign_id, fallback, sent_at, key, payload_sha,
         stored_at, row_id) in spool.evidence.indexed_messages(project_id):
        if message_id in listed:
            report.already_in_manifests += 1
            continue
        if row_id is None:
            report.not_stored_here.append(key)
            continue
        try:
            body = destination.get(key).body
            payload = gunzip(body, key, limit=max_payload_bytes)
        except Exception as exc:  # noqa: BLE001 - reported per object, never fatal
            report.failures.append({"key": key, "reason": str(exc) or type(exc).__name__})
            continue
        if sha256_hex(payload) != payload_sha:
            report.failures.append({"key": key, "reason": "the object's payload hash is not"
                                    " the one the index recorded"})
            continue
        relative = key[len(destination.prefix):] if key.startswith(destination.prefix) else key
        spool.evidence.add_backfilled_entry(BackfilledEntry(
            project_id=project_id, message_row=row_id, message_id=message_id,
            stored_key=key, relative_key=relative, payload_sha256=payload_sha,
            object_sha256=sha256_hex(body), size=len(body), medium=medium,
            message_type=message_type, campaign_id=campaign_id, sent_at=sent_at,
            recipient_hash=fallback, payload=payload, settled_at=stored_at or 0.0,
            marks={"backfilled": True}, phone_region=phone_region))
        listed.add(message_id)
        report.backfilled += 1
    Manifests(spool, {project_id: destination}, max_entries, log_options=log_options).close()
    return report
