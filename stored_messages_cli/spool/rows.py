"""The rows intake writes and reads (`store.IntakeStore`), as plain Python values."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..states import FinalReason, State


class MessageRow(NamedTuple):
    """A message never seen before, as intake records it (`kept`: its body, or None)."""

    project_id: str
    message_id: str
    medium: str
    message_type: str
    campaign_id: str | None
    recipient_hash: str
    sent_at: str | None
    key: str
    state: State
    kept: bytes | None
    content_sha256: str
    payload_sha256: str | None
    created_at: float
    confirmed_at: float | None
    updated_at: float
    final_reason: FinalReason | None
    recipient_hashes: str | None
    # `provider.message_id` when the message carries one (kept in `provider_message_ids`).
    provider_message_id: str | None = None

    def without_body(self) -> tuple[Any, ...]:
        """The `messages` columns (in this order; the body goes to `message_bodies`)."""
        values = tuple(self)
        return values[:9] + values[10:17]


class KnownMessage(NamedTuple):
    """A message recorded before, as a second `record` of it needs to see it."""

    row_id: int
    state: str
    content_sha256: str
    payload_sha256: str | None
    final_reason: str | None
    body_kept: bool


class EventTarget(NamedTuple):
    """The message a send event names, as the event needs to see it."""

    row_id: int
    state: str
    kept: bytes | None
    sent_at: str | None
    final_reason: str | None


class ArchivedMessage(NamedTuple):
    """A message the archive index holds but `messages` no longer does (`sm spool prune`
    deleted its row), or never did (indexed from the bucket): its identity, for a second
    `record` of it or a send event naming it."""

    key: str
    payload_sha256: str | None
    content_prefix: str | None  # its content hash's first 16 hex digits (None: indexed from
    #                             the bucket, or pruned by an older sm)
    sent_at: str | None
