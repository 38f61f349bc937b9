"""`sm manifest adopt`: take into the log an object the spool never stored (SPEC 9.1).

An investigator may decide that an object `sm audit` reports as `unexpected_object` belongs in
the archive (say, one a spool lost before its outcome was sealed). Adopting it reads the
object (bounded), checks that its key lies in the project's message layout and that its
payload is that message, refuses it when a manifest already lists it or the spool stored that
message id (`sm manifest backfill` is for those), then adds a complete stored entry marked
`"adopted": {"reason", "at"}` for ever, and seals and writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clock import Clock, to_rfc3339
from ..destinations.base import Destination
from ..errors import InvalidMessage, ObjectNotFound, SmError, UnreadableObject
from ..message import (
    MAX_PAYLOAD_BYTES,
    decode_json,
    gunzip,
    max_object_bytes,
    parse_key,
    sha256_hex,
)
from ..spool import Spool
from ..spool.evidence_queries import BackfilledEntry
from ..states import State
from .audit_chain import check_chain
from .findings import ProjectAudit
from .log import LogOptions
from .manifest import DEFAULT_MAX_ENTRIES, Manifests


class AdoptRefused(SmError):
    """The object cannot be adopted; the text says why."""


@dataclass(frozen=True)
class Adopted:
    """What `sm manifest adopt` added: the message, its key and object, and the log after."""

    project_id: str
    message_id: str
    key: str
    object_sha256: str
    size: int
    adopted: dict[str, str]
    tree_size: int | None

    def as_dict(self) -> dict[str, Any]:
        """`sm manifest adopt --json`."""
        return {"project_id": self.project_id, "message_id": self.message_id,
                "key": self.key, "object_sha256": self.object_sha256, "size": self.size,
                "adopted": self.adopted, "tree_size": self.tree_size}


def adopt(spool: Spool, project_id: str, destination: Destination, key: str, reason: str, *,
          clock: Clock | None = None, max_entries: int = DEFAULT_MAX_ENTRIES,
          log_options: LogOptions | None = None,
          max_payload_bytes: int = MAX_PAYLOAD_BYTES, phone_region: str | None = None
          ) -> Adopted:
    """Add the object at `key` (full, or relative to the destination prefix) to the
    project's log as an adopted stored entry with `reason`, then seal and write it (a
    national phone number's E.164 hash read in `phone_region`)."""
    reason = reason.strip()
    if not reason:
        raise AdoptRefused("an adoption needs a reason", hint='--reason "why it belongs"')
    full = key if key.startswith(destination.prefix) else destination.prefix + key
    fields = parse_key(full, destination.prefix)
    if fields is None or str(fields["project_id"]) != project_id:
        raise AdoptRefused(f"{full} is not a message key of project {project_id}",
                           hint="adopt a key sm audit reports as unexpected_object")
    message_id = str(fields["message_id"])
    _refuse_known(spool, project_id, destination, full, message_id)
    body, payload, document = _read(destination, full, message_id, max_payload_bytes)
    now = (clock or spool.clock).now()
    mark = {"reason": reason, "at": to_rfc3339(now) or ""}
    spool.evidence.add_backfilled_entry(BackfilledEntry(
        project_id=project_id, message_row=0, message_id=message_id, stored_key=full,
        relative_key=full[len(destination.prefix):], payload_sha256=sha256_hex(payload),
        object_sha256=sha256_hex(body), size=len(body), medium=str(fields["medium"]),
        message_type=str(document.get("message_type") or ""),
        campaign_id=fields.get("campaign_id"), sent_at=document.get("sent_at"),
        recipient_hash=str(fields["recipient_hash"]), payload=payload, settled_at=now,
        marks={"adopted": mark}, phone_region=phone_region))
    Manifests(spool, {project_id: destination}, max_entries, clock=clock,
              log_options=log_options).close()
    head = spool.evidence.last_segment(project_id)
    return Adopted(project_id, message_id, full, sha256_hex(body), len(body), mark,
                   head.tree_size if head else None)


def _refuse_known(spool: Spool, project_id: str, destination: Destination, key: str,
                  message_id: str) -> None:
    """AdoptRefused when a manifest (sealed or open) lists the key or the message as
    stored, or the spool stored that message id."""
    listed_keys: set[str] = set()
    stored_ids: set[str] = set()
    for segment in check_chain(spool, project_id, destination, ProjectAudit(project_id)):
        for entry in segment.entries:
            listed_keys.add(str(entry.get("key")))
            if entry.get("outcome") == State.STORED:
                stored_ids.add(str(entry.get("message_id")))
    for open_id, outcome, open_key in spool.evidence.open_outcomes(project_id):
        listed_keys.add(str(open_key))
        if outcome == State.STORED:
            stored_ids.add(open_id)
    if key in listed_keys or message_id in stored_ids:
        raise AdoptRefused(f"a manifest of project {project_id} already lists message"
                           f" {message_id}; there is nothing to adopt",
                           hint=f"sm prove {message_id} --project {project_id}")
    records = spool.index.message_records(message_id, project_id)
    if any(row[1] == State.STORED for row in records):
        raise AdoptRefused(f"this spool stored message {message_id}: its entry comes from the"
                           " spool, not from an adoption",
                           hint=f"sm manifest backfill --project {project_id}")


def _read(destination: Destination, key: str, message_id: str, limit: int
          ) -> tuple[bytes, bytes, dict[str, Any]]:
    """The object's bytes, its payload and the payload's document, read bounded; the
    payload must be the message its key names."""
    info = destination.head(key)
    if info is None:
        raise AdoptRefused(f"{key} is not in the bucket", hint="sm audit lists what is there")
    if info.size is not None and info.size > max_object_bytes(limit):
        raise AdoptRefused(f"{key} is {info.size} bytes, over what max_payload_bytes allows"
                           " (not read)")
    try:
        body = destination.get(key).body
        payload = gunzip(body, key, limit=limit)
        document = decode_json(payload.decode("utf-8"))
    except ObjectNotFound:
        raise AdoptRefused(f"{key} is not in the bucket") from None
    except (UnreadableObject, UnicodeDecodeError, InvalidMessage) as exc:
        raise AdoptRefused(f"{key} does not hold a message ({exc})") from None
    if not isinstance(document, dict) or document.get("message_id") != message_id:
        raise AdoptRefused(f"{key} does not hold message {message_id}")
    return body, payload, document
