"""Provider delivery events: the verbs a store implements for them (`ProviderEventStore`,
part of `store.SpoolStore`) and the rows they take and give, as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


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


class ProviderEventStore(Protocol):
    """Provider delivery events and the provider message ids they name (`deliveries`)."""

    def note_provider_ids(self, ids: Sequence[tuple[str, str, str]]) -> None:
        """Remember `(project_id, provider_message_id, message_id)` (the first one stays)."""
        ...

    def message_for_provider_id(self, project_id: str, provider_ids: Sequence[str]
                                ) -> str | None:
        """The message id recorded with the first of `provider_ids` known."""
        ...

    def seen_token(self, provider: str, token: str, now: float, forget_before: float
                   ) -> bool:
        """Forget tokens seen before `forget_before`, then remember `token`; True when it was
        already remembered (a replay)."""
        ...

    def add_provider_event(self, event: NewProviderEvent, message_id: str | None,
                           now: float) -> int | None:
        """Keep a verified event, matched (`message_id`) or an orphan; its row id, or None
        when the provider's event was kept before."""
        ...

    def orphan_events(self, limit: int) -> list[tuple[int, str, str]]:
        """`(id, project_id, message ids as JSON)` of the oldest orphan events."""
        ...

    def match_event(self, row_id: int, message_id: str) -> None:
        """An orphan's message is now recorded."""
        ...

    def drop_orphans(self, received_before: float) -> int:
        """Drop orphans received before `received_before`; how many."""
        ...

    def unapplied_events(self, limit: int) -> list[int]:
        """Ids of matched events whose effect was not applied yet (a crash between)."""
        ...

    def events_to_apply(self, row_ids: Sequence[int]
                        ) -> list[tuple[int, str, str, str, str | None, str]]:
        """`(id, project_id, message_id, event_id, effect, at)` of matched `row_ids` not
        applied yet."""
        ...

    def set_event_applied(self, row_id: int, applied: str) -> None:
        """Record what the event did to its message."""
        ...

    def events_to_archive(self, project_ids: Sequence[str], now: float, limit: int
                          ) -> list[EventToArchive]:
        """Applied, matched events of `project_ids` due for their evidence upload."""
        ...

    def event_archived(self, row_id: int, key: str, relative_key: str, payload_sha256: str,
                       object_sha256: str, size: int, now: float) -> None:
        """The evidence object is stored: the event is archived and its log entry added."""
        ...

    def event_archive_failed(self, row_id: int, error: str, next_attempt_at: float) -> None:
        """The evidence upload failed: try again at `next_attempt_at`."""
        ...

    def delivery_rows(self, project_id: str, message_id: str) -> list[dict[str, Any]]:
        """The events of a message, by time (`Deliveries.delivery_of`)."""
        ...

    def prune_provider_events(self, cutoff: float) -> int:
        """Forget the events (received or archived before `cutoff`) and provider message ids
        of messages whose row is gone (`sm spool prune`); how many events."""
        ...

    def provider_event_counts(self) -> list[tuple[str, int]]:
        """`(state, count)` of the provider events kept."""
        ...
