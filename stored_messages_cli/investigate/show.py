"""`sm show`: everything the spool and the local index know of one message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..clock import to_rfc3339
from ..errors import SmError
from ..states import FinalReason, State
from .index import AmbiguousMessage, ArchiveIndex

SHOW_FIELDS: tuple[str, ...] = (
    "message_id", "project_id", "state", "final_reason", "last_error", "recorded_at",
    "confirmed_at", "first_failure_at", "next_attempt_at", "stored_at", "attempts",
    "destination", "key", "payload_sha256", "body_in_spool",
    "holds",  # the open legal hold cases holding it (SPEC 9.4)
    "delivery",  # the verified provider events (SPEC 9.3)
)
DELIVERY_FIELDS = ("event", "at", "provider", "verified", "key")
# What each final reason code means, for a person (`sm show`).
REASON_WORDS: dict[str, str] = {
    FinalReason.CONFLICT: "another object already holds its key with different bytes; the"
                          " first copy is kept",
    FinalReason.CORRUPT_IN_SPOOL: "its body in the spool no longer matched its hash before"
                                  " upload",
    FinalReason.EXPIRED_UNREACHABLE: "its destination stayed unreachable for the whole retry"
                                     " window",
    FinalReason.NEVER_CONFIRMED: "its send was never confirmed within confirm_timeout",
    FinalReason.SEND_FAILED: "the send pipeline reported that its send failed",
    FinalReason.MEDIUM_NOT_ARCHIVED: "its project does not archive this medium",
}


class UnknownMessageId(SmError):
    """Neither the spool nor the local index knows the message id."""


def _key_prefix_of(url: str | None) -> str:
    """The key prefix of a destination URL (`s3://bucket/archive/` → `archive/`)."""
    if not url or url.startswith("file:"):
        return ""
    parts = url.split("/", 3)
    return parts[3] if len(parts) > 3 else ""


def show_message(index: ArchiveIndex, message_id: str, *, project_id: str | None = None,
                 destination_of: Callable[[str], str | None] = lambda _: None
                 ) -> dict[str, Any]:
    """Everything the spool and the local index know of one message, as SHOW_FIELDS.

    `destination_of(project)` is the project's configured URL (where a message not yet
    stored will go). Raises UnknownMessageId, or AmbiguousMessage for an id in several
    projects without `project_id`.
    """
    rows = index.queries.message_records(message_id, project_id)
    indexed = {e.project_id: e for e in index.entries_for(message_id, project_id)}
    projects = sorted({row[0] for row in rows} | set(indexed))
    if not projects:
        scope = f" of project {project_id}" if project_id is not None else ""
        raise UnknownMessageId(
            f"message {message_id}{scope} is unknown to the spool and to the local index",
            hint=f"sm find --remote --message-id {message_id} --recipient R, or sm index"
                 " rebuild")
    if len(projects) > 1:
        raise AmbiguousMessage(
            f"message id {message_id} exists in projects {', '.join(projects)}",
            places=projects, hint=f"sm show {message_id} --project {projects[0]}")
    pid = projects[0]
    holds = index.queries.store.holding_cases(pid, [message_id]).get(message_id, [])
    entry = indexed.get(pid)
    row = next((r for r in rows if r[0] == pid), None)
    if row is None:  # archived, known from the index only (another spool, or pruned)
        assert entry is not None
        return {"message_id": message_id, "project_id": pid, "state": State.STORED,
                "final_reason": None, "last_error": None, "recorded_at": None,
                "confirmed_at": None, "first_failure_at": None, "next_attempt_at": None,
                "stored_at": to_rfc3339(entry.stored_at), "attempts": None,
                "destination": entry.destination_url, "key": entry.key,
                "payload_sha256": entry.payload_sha256, "body_in_spool": False,
                "holds": holds, "delivery": delivery_timeline(index, pid, message_id)}
    (_, state, final_reason, last_error, created_at, confirmed_at, first_failure_at,
     next_attempt_at, stored_at, attempts, destination_url, stored_key, relative_key,
     payload_sha256, has_body) = row
    destination = destination_url or (entry.destination_url if entry else None) or \
        destination_of(pid)
    key = stored_key or (entry.key if entry else None) or \
        f"{_key_prefix_of(destination)}{relative_key}"
    return {"message_id": message_id, "project_id": pid, "state": state,
            "final_reason": final_reason, "last_error": last_error,
            "recorded_at": to_rfc3339(created_at), "confirmed_at": to_rfc3339(confirmed_at),
            "first_failure_at": to_rfc3339(first_failure_at),
            "next_attempt_at": to_rfc3339(next_attempt_at),
            "stored_at": to_rfc3339(stored_at), "attempts": int(attempts or 0),
            "destination": destination, "key": key,
            "payload_sha256": payload_sha256 or (entry.payload_sha256 if entry else None),
            "body_in_spool": bool(has_body), "holds": holds,
            "delivery": delivery_timeline(index, pid, message_id)}


def delivery_timeline(index: ArchiveIndex, project_id: str, message_id: str
                      ) -> list[dict[str, Any]]:
    """The message's verified provider events, by time (SPEC 9.3): event, at, provider,
    verified, key (the evidence object's, None until archived)."""
    return [{name: row[name] for name in DELIVERY_FIELDS}
            for row in index.queries.store.delivery_rows(project_id, message_id)]
