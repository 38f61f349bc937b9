"""The rows of provider delivery events (`store.ProviderEventStore`), as plain values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NewProviderEvent:
    """A verified event as the receiver records it."""

    project_id: str
    provider: str
    event_id: str
    provider_message_id: str | None
    message_ids: tuple[str, ...]  # every spelling to look the message up by
    kind: str
    at: str
    body: bytes
    headers: str  # JSON: the headers verification used
    result: str  # JSON: the verification result
    effect: str | None  # SENT, FAILED or None: what the event does to its message


@dataclass(frozen=True, slots=True)
class EventToArchive:
    """A matched event whose evidence object is still to upload."""

    row_id: int
    project_id: str
    provider: str
    event_id: str
    message_id: str
    provider_message_id: str | None
    kind: str
    at: str
    received_at: float
    body: bytes
    headers: str
    result: str
    attempts: int
