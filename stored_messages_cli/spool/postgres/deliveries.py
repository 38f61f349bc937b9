"""The PostgreSQL store's provider event verbs (`ProviderEventStore`) and their schema step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...states import EVIDENCE_OUTCOME, EventState
from ..delivery_rows import EventToArchive, NewProviderEvent
from .base import PgStoreBase
from .session import PgSession

DELIVERY_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS "provider_message_ids" (
   "project_id" TEXT NOT NULL,
   "provider_message_id" TEXT NOT NULL,
   "message_id" TEXT NOT NULL,
   PRIMARY KEY ("project_id", "provider_message_id")
);
CREATE TABLE IF NOT EXISTS "provider_events" (
   "id" BIGSERIAL PRIMARY KEY,
   "project_id" TEXT NOT NULL,
   "provider" TEXT NOT NULL,
   "event_id" TEXT NOT NULL,
   "provider_message_id" TEXT,
   "message_ids" TEXT NOT NULL,
   "message_id" TEXT,
   "kind" TEXT NOT NULL,
   "at" TEXT NOT NULL,
   "received_at" DOUBLE PRECISION NOT NULL,
   "body" BYTEA NOT NULL,
   "headers" TEXT NOT NULL,
   "result" TEXT NOT NULL,
   "effect" TEXT,
   "state" TEXT NOT NULL,
   "applied" TEXT,
   "key" TEXT,
   "object_sha256" TEXT,
   "size" BIGINT,
   "archived_at" DOUBLE PRECISION,
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" DOUBLE PRECISION,
   "last_error" TEXT,
   UNIQUE ("project_id", "provider", "event_id")
);
CREATE INDEX IF NOT EXISTS "idx_provider_events_message"
    ON "provider_events" ("project_id", "message_id");
CREATE INDEX IF NOT EXISTS "idx_provider_events_waiting"
    ON "provider_events" ("state", "id") WHERE "state" <> '{EventState.ARCHIVED.value}';
CREATE TABLE IF NOT EXISTS "provider_tokens" (
   "provider" TEXT NOT NULL,
   "token" TEXT NOT NULL,
   "seen_at" DOUBLE PRECISION NOT NULL,
   PRIMARY KEY ("provider", "token")
);
CREATE INDEX IF NOT EXISTS "idx_provider_tokens_seen_at" ON "provider_tokens" ("seen_at")
"""

ARCHIVE_COLUMNS = ('"id", "project_id", "provider", "event_id", "message_id",'
                   ' "provider_message_id", "kind", "at", "received_at", "body", "headers",'
                   ' "result", "attempts"')
# An event's evidence is archived while its message has a row (its log entry is made from it).
WITH_MESSAGE = ('EXISTS (SELECT 1 FROM "messages" m WHERE m."project_id" = e."project_id"'
                ' AND m."message_id" = e."message_id")')
DELIVERY_COLUMNS = ('"kind", "at", "provider", "key", "event_id", "state", "applied",'
                    ' "received_at", "object_sha256"')
EVIDENCE_ENTRY = f"""INSERT INTO "manifest_entries" ("project_id", "message_row", "message_id",
       "outcome", "stored_key", "relative_key", "payload_sha256", "object_sha256", "size",
       "medium", "message_type", "campaign_id", "sent_at", "recipient_hash",
       "recipient_hashes", "settled_at")
   SELECT m."project_id", m."id", m."message_id", '{EVIDENCE_OUTCOME}', %s, %s, %s, %s, %s,
       m."medium", m."message_type", m."campaign_id", m."sent_at", m."recipient_hash",
       m."recipient_hashes", %s
   FROM "messages" m JOIN "provider_events" e ON e."project_id" = m."project_id"
       AND e."message_id" = m."message_id" WHERE e."id" = %s"""


def deliveries(conn: PgSession) -> None:
    """Step: provider events, the provider message ids intake keeps, and the one-time tokens
    seen (SPEC 9.3)."""
    for statement in DELIVERY_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def delivery_dict(row: Sequence[Any]) -> dict[str, Any]:
    """One `delivery_rows` row as `sm show` lists it."""
    kind, at, provider, key, event_id, state, applied, received_at, object_sha256 = row
    return {"event": kind, "at": at, "provider": provider, "verified": True, "key": key,
            "event_id": event_id, "state": state, "applied": applied,
            "received_at": float(received_at), "object_sha256": object_sha256}


class DeliveryPg(PgStoreBase):
    """`ProviderEventStore` on PostgreSQL."""

    def note_provider_ids(self, ids: Sequence[tuple[str, str, str]]) -> None:
        """Remember provider message ids (the first one recorded stays)."""
        if ids:
            self.pg.executemany(
                'INSERT INTO "provider_message_ids" ("project_id", "provider_message_id",'
                ' "message_id") VALUES (%s, %s, %s) ON CONFLICT DO NOTHING', list(ids))

    def message_for_provider_id(self, project_id: str, provider_ids: Sequence[str]
                                ) -> str | None:
        """The message id recorded with the first of `provider_ids` known."""
        for provider_id in provider_ids:
            rows = self._rows('SELECT "message_id" FROM "provider_message_ids" WHERE'
                              ' "project_id" = %s AND "provider_message_id" = %s',
                              (project_id, provider_id))
            if rows:
                return str(rows[0][0])
        return None

    def seen_token(self, provider: str, token: str, now: float, forget_before: float
                   ) -> bool:
        """Forget old tokens, remember `token`; True when it was remembered already."""
        self.pg.execute('DELETE FROM "provider_tokens" WHERE "seen_at" < %s', (forget_before,))
        return self._count(
            'INSERT INTO "provider_tokens" ("provider", "token", "seen_at")'
            ' VALUES (%s, %s, %s) ON CONFLICT DO NOTHING', (provider, token, now)) == 0

    def add_provider_event(self, event: NewProviderEvent, message_id: str | None,
                           now: float) -> int | None:
        """Keep a verified event; its row id, or None when it was kept before."""
        state = EventState.MATCHED if message_id is not None else EventState.ORPHAN
        rows = self._all(
            'INSERT INTO "provider_events" ("project_id", "provider", "event_id",'
            ' "provider_message_id", "message_ids", "message_id", "kind", "at",'
            ' "received_at", "body", "headers", "result", "effect", "state")'
            f' VALUES ({", ".join(["%s"] * 14)}) ON CONFLICT DO NOTHING RETURNING "id"',
            (event.project_id, event.provider, event.event_id, event.provider_message_id,
             json.dumps(list(event.message_ids)), message_id, event.kind, event.at, now,
             event.body, event.headers, event.result, event.effect, state.value))
        return int(rows[0][0]) if rows else None

    def orphan_events(self, limit: int) -> list[tuple[int, str, str]]:
        """`(id, project_id, message ids)` of the oldest orphans."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self._rows(
            'SELECT "id", "project_id", "message_ids" FROM "provider_events" WHERE'
            ' "state" = %s ORDER BY "id" LIMIT %s', (EventState.ORPHAN.value, limit))]

    def match_event(self, row_id: int, message_id: str) -> None:
        """An orphan's message is now recorded."""
        self.pg.execute('UPDATE "provider_events" SET "state" = %s, "message_id" = %s'
                        ' WHERE "id" = %s AND "state" = %s',
                        (EventState.MATCHED.value, message_id, row_id,
                         EventState.ORPHAN.value))

    def drop_orphans(self, received_before: float) -> int:
        """Drop orphans received before `received_before`."""
        return self._count('DELETE FROM "provider_events" WHERE "state" = %s AND'
                           ' "received_at" < %s', (EventState.ORPHAN.value, received_before))

    def unapplied_events(self, limit: int) -> list[int]:
        """Matched events not applied yet."""
        return [int(r[0]) for r in self._rows(
            'SELECT "id" FROM "provider_events" WHERE "state" = %s AND "applied" IS NULL'
            ' ORDER BY "id" LIMIT %s', (EventState.MATCHED.value, limit))]

    def events_to_apply(self, row_ids: Sequence[int]
                        ) -> list[tuple[int, str, str, str, str | None, str]]:
        """Matched `row_ids` not applied yet, in id order."""
        if not row_ids:
            return []
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], str(r[5])) for r in
                self._rows('SELECT "id", "project_id", "message_id", "event_id", "effect",'
                           ' "at" FROM "provider_events" WHERE "applied" IS NULL AND'
                           ' "message_id" IS NOT NULL AND "id" = ANY(%s) ORDER BY "id"',
                           (list(row_ids),))]

    def set_event_applied(self, row_id: int, applied: str) -> None:
        """Record what the event did to its message."""
        self.pg.execute('UPDATE "provider_events" SET "applied" = %s WHERE "id" = %s',
                        (applied, row_id))

    def events_to_archive(self, project_ids: Sequence[str], now: float, limit: int
                          ) -> list[EventToArchive]:
        """Applied, matched events of `project_ids` due for upload, oldest first."""
        if not project_ids:
            return []
        return [EventToArchive(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                               bytes(r[9]), r[10], r[11], r[12]) for r in self._rows(
            f'SELECT {ARCHIVE_COLUMNS} FROM "provider_events" e WHERE {WITH_MESSAGE}'
            f' AND "state" = %s AND'
            ' "applied" IS NOT NULL AND COALESCE("next_attempt_at", 0) <= %s AND'
            ' "project_id" = ANY(%s) ORDER BY "id" LIMIT %s',
            (EventState.MATCHED.value, now, list(project_ids), limit))]

    def event_archived(self, row_id: int, key: str, relative_key: str, payload_sha256: str,
                       object_sha256: str, size: int, now: float) -> None:
        """Archived, with its log entry in the project's open segment."""
        changed = self._count(
            'UPDATE "provider_events" SET "state" = %s, "key" = %s, "object_sha256" = %s,'
            ' "size" = %s, "archived_at" = %s, "body" = %s'  # the bucket holds it now
            ' WHERE "id" = %s AND "state" = %s',
            (EventState.ARCHIVED.value, key, object_sha256, size, now, b"", row_id,
             EventState.MATCHED.value))
        if changed:
            self.pg.execute(EVIDENCE_ENTRY, (key, relative_key, payload_sha256,
                                             object_sha256, size, now, row_id))

    def event_archive_failed(self, row_id: int, error: str, next_attempt_at: float) -> None:
        """The upload failed: try again later."""
        self.pg.execute('UPDATE "provider_events" SET "attempts" = "attempts" + 1,'
                        ' "last_error" = %s, "next_attempt_at" = %s WHERE "id" = %s',
                        (error, next_attempt_at, row_id))

    def delivery_rows(self, project_id: str, message_id: str) -> list[dict[str, Any]]:
        """The events of a message, by time."""
        return [delivery_dict(r) for r in self._rows(
            f'SELECT {DELIVERY_COLUMNS} FROM "provider_events" WHERE "project_id" = %s AND'
            ' "message_id" = %s ORDER BY "at", "id"', (project_id, message_id))]

    def prune_provider_events(self, cutoff: float) -> int:
        """Forget the events and provider message ids of messages whose row is gone."""
        gone = ('NOT EXISTS (SELECT 1 FROM "messages" m WHERE m."project_id" = t."project_id"'
                ' AND m."message_id" = t."message_id")')
        events = self._count(
            f'DELETE FROM "provider_events" AS t WHERE "state" <> %s AND'
            f' COALESCE("archived_at", "received_at") < %s AND {gone}',
            (EventState.ORPHAN.value, cutoff))
        self.pg.execute(f'DELETE FROM "provider_message_ids" AS t WHERE {gone}')
        return int(events)

    def provider_event_counts(self) -> list[tuple[str, int]]:
        """`(state, count)` of the events kept."""
        return [(str(r[0]), int(r[1])) for r in self._rows(
            'SELECT "state", COUNT(*) FROM "provider_events" GROUP BY "state"'
            ' ORDER BY "state"')]
