"""Provider delivery events in the spool (SPEC 9.3): recorded, matched, applied, archived.

A verified event is kept whole (raw body, the headers verification used, the result) in
`provider_events`. It names its message by the provider's message id, which intake keeps
(`provider_message_ids`) when a message or a `sent` event carries `provider.message_id`.
An event whose message is not recorded waits as an orphan for `orphan_event_ttl`; once
matched, an event that says the provider sent the message confirms it and a rejection
discards it, through `Intake` (the state machine stays in one place); then `sm run`
archives its evidence object (`evidence/delivery.py`). Transactions are opened here; the
SQL is each store's (`ProviderEventStore`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidMessage, MessageConflict, UnknownMessage
from ..states import EventState, State
from .delivery_rows import EventToArchive, NewProviderEvent
from .intake import Intake
from .store import SpoolStore

SENT = "sent"
FAILED = "send_failed"
APPLY_BATCH = 200


class Deliveries:
    """The provider events of one spool (`Spool.deliveries`)."""

    def __init__(self, store: SpoolStore, intake: Intake) -> None:
        self.store = store
        self.intake = intake

    def replayed(self, provider: str, token: str, forget_before: float) -> bool:
        """Remember a one-time token (Mailgun's); True when it was seen before (a replay).
        Tokens older than `forget_before` are forgotten first."""
        with self.store.write():
            return self.store.seen_token(provider, token, self.store.clock.now(),
                                         forget_before)

    def record(self, events: Sequence[NewProviderEvent]) -> list[dict[str, Any]]:
        """Record verified events in one transaction, match each to its message, and apply
        what they say; per event `{"event_id", "recorded", "message_id", "applied"}`."""
        now = self.store.clock.now()
        answers: list[dict[str, Any]] = []
        to_apply: list[int] = []
        with self.store.write():
            for event in events:
                message_id = self.store.message_for_provider_id(event.project_id,
                                                                list(event.message_ids))
                row_id = self.store.add_provider_event(event, message_id, now)
                answers.append({"event_id": event.event_id, "recorded": row_id is not None,
                                "message_id": message_id})
                if row_id is not None and message_id is not None:
                    to_apply.append(row_id)
        applied = self._apply(to_apply)
        for answer in answers:
            answer["applied"] = applied.get(answer["event_id"])
        return answers

    def match_orphans(self, received_before: float | None = None) -> int:
        """Match waiting orphans to messages recorded since, apply them, and drop those that
        arrived before `received_before` (`orphan_event_ttl` ago); how many matched."""
        matched: list[int] = []
        if not self.store.orphan_events(1):  # the usual case: no write transaction at all
            self._apply(self.store.unapplied_events(APPLY_BATCH))
            return 0
        with self.store.write():
            for row_id, project_id, ids in self.store.orphan_events(APPLY_BATCH):
                message_id = self.store.message_for_provider_id(project_id, json.loads(ids))
                if message_id is not None:
                    self.store.match_event(row_id, message_id)
                    matched.append(row_id)
            if received_before is not None:
                self.store.drop_orphans(received_before)
        self._apply(matched)
        self._apply([row for row in self.store.unapplied_events(APPLY_BATCH)
                     if row not in matched])
        return len(matched)

    def _apply(self, row_ids: Sequence[int]) -> dict[str, str]:
        """Confirm or discard the messages of matched events (through `Intake`); event id ->
        what was done. An event whose message moved on already changes nothing."""
        done: dict[str, str] = {}
        for row_id, project_id, message_id, event_id, effect, at in \
                self.store.events_to_apply(list(row_ids)):
            outcome = "unchanged"
            try:
                if effect == SENT and self._awaiting(project_id, message_id):
                    self.intake.confirm_sent(project_id, message_id, sent_at=at)
                    outcome = "confirmed"
                elif effect == FAILED and self._awaiting(project_id, message_id):
                    self.intake.record_send_failure(project_id, message_id,
                                                    reason="the provider rejected it")
                    outcome = "send_failed"
            except (InvalidMessage, MessageConflict, UnknownMessage) as exc:
                outcome = f"unchanged: {exc}"[:300]
            # Without an fsync: a crash before it only has the event applied again next turn,
            # where its message has moved on ("unchanged").
            with self.store.write(durable=False):
                self.store.set_event_applied(row_id, outcome)
            done[event_id] = outcome
        return done

    def _awaiting(self, project_id: str, message_id: str) -> bool:
        """True when the message still waits for its confirmation."""
        row = self.store.message_row(project_id, message_id)
        return row is not None and row.get("state") in (State.AWAITING_CONFIRMATION,
                                                        State.DISCARDED)

    # ----------------------------------------------------------------------- archiving

    def to_archive(self, project_ids: Sequence[str], limit: int) -> list[EventToArchive]:
        """Matched, applied events of `project_ids` whose evidence upload is due now."""
        return self.store.events_to_archive(list(project_ids), self.store.clock.now(), limit)

    def archived(self, row_id: int, key: str, relative_key: str, payload_sha256: str,
                 object_sha256: str, size: int) -> None:
        """The evidence object is in the bucket: the event is archived and its log entry
        (`"outcome": "evidence"`) joins the project's open segment, in one transaction."""
        with self.store.write():
            self.store.event_archived(row_id, key, relative_key, payload_sha256,
                                      object_sha256, size, self.store.clock.now())

    def archive_failed(self, row_id: int, error: str, next_attempt_at: float) -> None:
        """The upload failed: try again at `next_attempt_at`."""
        with self.store.write():
            self.store.event_archive_failed(row_id, error[:500], next_attempt_at)

    # ----------------------------------------------------------------------- reading

    def delivery_of(self, project_id: str, message_id: str) -> list[dict[str, Any]]:
        """The events of a message, by time: event, at, provider, verified, key (None until
        archived), event_id, state."""
        return self.store.delivery_rows(project_id, message_id)

    def counts(self) -> dict[str, int]:
        """Provider events per state."""
        return {str(state): count for state, count in self.store.provider_event_counts()}


__all__ = ["Deliveries", "EventState", "EventToArchive", "NewProviderEvent"]
