"""Intake: recording rendered messages and their send confirmations (SPEC 2, 4).

The first state machine of the spool:
`awaiting_confirmation` → `queued` (a `sent` event or a message with `sent_at`), or →
`discarded` (`send_failed`, never confirmed within `confirm_timeout`, medium not archived).
Rejected input lines are kept with their line number and reason.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..errors import InvalidMessage, MessageConflict, UnknownMessage
from ..message import (
    Message,
    SendEvent,
    format_utc,
    gzip_body,
    identifier_hashes_json,
    parse_event,
    parse_lines,
    parse_message,
    parse_messages,
    parse_sent_at,
    payload_bytes,
    search_hashes,
    sha256_hex,
)
from ..states import FinalReason, IngestOutcome, State
from . import bodies, identity
from .group_commit import GroupCommit, MediumsCache
from .rows import MessageRow
from .sealing import ProtectionLookup, RecipientKeys
from .store import SpoolFull, SpoolStore

INGEST_BATCH = 500
DEFAULT_CONFIRM_GRACE = 7 * 86400.0  # seconds a never-confirmed message keeps its body

MediumsLookup = Callable[[str], list[str] | None]
RegionLookup = Callable[[], str | None]  # the setting `default_phone_region`, read when needed


@dataclass
class IngestReport:
    """Summary of one ingest: counts and the line-numbered rejections."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    discarded: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0  # of the rejected: same id, other content (`sm serve` answers 409)

    def as_dict(self) -> dict[str, Any]:
        """The `sm ingest --json` document."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "discarded": self.discarded,
            "errors": self.errors,
        }


def _full_after(exc: SpoolFull, source: str, first: int, report: IngestReport) -> SpoolFull:
    """The disk filled up at the batch from line `first`: say what was committed before it."""
    said = str(exc).removesuffix("; nothing was written")
    committed = report.accepted + report.duplicate + report.rejected
    if not committed:
        return SpoolFull(f"{said}; nothing of {source} was written", hint=exc.hint)
    return SpoolFull(
        f"{said}: {source} was committed up to line {first - 1} ({committed} line(s): accepted"
        f" {report.accepted}, duplicate {report.duplicate}, rejected {report.rejected}); line"
        f" {first} on was not written", hint=exc.hint)


class Intake:
    """Messages and send events in; discards of what will never be archived."""

    def __init__(self, store: SpoolStore, mediums_for: MediumsLookup | None = None,
                 phone_region: RegionLookup | None = None,
                 protection_for: ProtectionLookup | None = None) -> None:
        self.store = store
        # keyed recipient hashes and per-recipient encryption (SPEC 9.5), when configured
        self.keys = None if protection_for is None else RecipientKeys(store, protection_for)
        self._mediums_for = mediums_for
        self._phone_region = phone_region
        self._group = GroupCommit(store, self._apply_message, self._new_row, self._insert_new,
                                  self._parse_messages)

    def _made_later_lookup(self) -> Callable[[str], bool] | None:
        """Which projects seal their objects in the transaction: validation makes no plain
        gzip object for their messages (`RecipientKeys.seals`)."""
        return None if self.keys is None else self.keys.seals

    def _parse_messages(self, raws: list[Any]) -> list[Message | InvalidMessage]:
        return parse_messages(raws, self._made_later_lookup())

    # ----------------------------------------------------------------------- sender API

    def record(self, message: Any) -> str:
        """Record one rendered message; durable when this returns (see `Spool.record`).

        Concurrent callers share one fsync'd transaction (`GroupCommit`); each returns only
        after the COMMIT that holds its row, and sees only its own error.
        """
        if self.store.lock_held_here():
            # The caller holds the spool's lock: a leader on another thread could never take
            # it, so write alone (the transaction this thread already may be inside).
            parsed = parse_message(message)
            with self.store.write():
                return self._apply_message(parsed, self.store.clock.now())
        return self._group.submit(message)

    def record_each(self, messages: list[Any]) -> list[str | BaseException]:
        """Record `messages` together, each with its own outcome or error (InvalidMessage,
        MessageConflict, a SpoolError for all when the transaction fails), in order: the
        group commit of `record`, for a caller that gathered the messages itself. Durable
        when this returns."""
        return self._group.write_each(messages)

    def record_many(self, messages: Iterable[Any]) -> list[str]:
        """Record a batch in one transaction: all of it is durable, or none of it."""
        parsed: list[Message] = []
        for index, item in enumerate(self._parse_messages(list(messages))):
            if isinstance(item, InvalidMessage):
                raise InvalidMessage(f"message {index}: {item}") from None
            parsed.append(item)
        now = self.store.clock.now()
        mediums: MediumsCache = {}
        with self.store.write():
            new = self._new_rows(parsed, now, mediums)
            if self._insert_new([row for row, _ in new]):
                return [outcome for _, outcome in new]
            # Some were recorded before: one by one, so each gets its own outcome (or error).
            return [self._apply_message(item, now, mediums) for item in parsed]

    def confirm_sent(self, project_id: str | int, message_id: str, *,
                     sent_at: str | datetime, provider: dict[str, Any] | None = None) -> str:
        """Mark a recorded message as accepted by the provider; it becomes due for upload."""
        text = format_utc(sent_at) if isinstance(sent_at, datetime) else sent_at
        event = parse_event({"event": "sent", "project_id": project_id,
                             "message_id": message_id, "sent_at": text, "provider": provider})
        now = self.store.clock.now()
        with self.store.write():
            return self._apply_event(event, now)

    def record_send_failure(self, project_id: str | int, message_id: str, *,
                            reason: str = FinalReason.SEND_FAILED) -> str:
        """Mark a recorded message as not sent; it is discarded and never archived."""
        event = parse_event({"event": "send_failed", "project_id": project_id,
                             "message_id": message_id, "reason": reason})
        now = self.store.clock.now()
        with self.store.write():
            return self._apply_event(event, now)

    # ----------------------------------------------------------------------- ingest

    def ingest_lines(self, lines: Iterable[str | bytes], source: str = "-",
                     progress: Callable[[int], None] | None = None, *,
                     flush_after: float | None = None) -> IngestReport:
        """Read JSON Lines (messages and events); bad lines are kept with their reason.

        Good lines beside a bad one still go in. Lines are committed in batches of
        `INGEST_BATCH`; with `flush_after` (a stream, e.g. `tail -F sent.log | sm ingest -`)
        also within that many seconds of arriving, so a crash loses nothing already read and
        `sm run` archives them meanwhile.
        """
        report = IngestReport()
        batch: list[tuple[int, str | bytes]] = []  # (line number, the line as read)
        opened = 0.0  # when the oldest line of `batch` arrived (monotonic)

        def commit() -> None:
            nonlocal batch
            if batch:
                items = _line_items([raw for _, raw in batch],  # parsed a batch at a time
                                    self._made_later_lookup())
                try:
                    self._ingest_batch([(number, *item) for (number, _), item in
                                        zip(batch, items, strict=True)], source, report)
                except SpoolFull as exc:
                    raise _full_after(exc, source, batch[0][0], report) from None
                if progress:
                    progress(len(batch))
                batch = []

        arrivals = _timed(lines, lambda: opened + flush_after if batch else None) \
            if flush_after is not None else ((raw, False) for raw in lines)
        number = 0
        for raw, timed_out in arrivals:
            if timed_out:
                commit()
                continue
            number += 1
            if not _has_text(raw):
                continue  # an empty line; one of other whitespace is rejected by parse_line
            if not batch:
                opened = time.monotonic()
            batch.append((number, raw))
            if len(batch) >= INGEST_BATCH or (
                    flush_after is not None and time.monotonic() >= opened + flush_after):
                commit()
        commit()
        return report

    def _ingest_batch(self, batch: list[tuple[int, str, Any]], source: str,
                      report: IngestReport) -> None:
        with self.store.write():
            self._apply_lines([(source, *line) for line in batch], report)

    def drain_inbox(self, limit: int = INGEST_BATCH) -> IngestReport:
        """Record the oldest lines SQL senders wrote to the `inbox` table (docs/fleet.md).

        In one transaction: each line is recorded exactly as `sm ingest` records it (the same
        validation and bytes; a bad line goes to `rejected`, source `inbox:SOURCE`, line =
        its inbox id), then deleted. Several workers drain side by side (skip locked).
        """
        report = IngestReport()
        if self.store.inbox_is_empty():
            return report  # the usual case, without taking the write lock
        with self.store.write():
            rows = self.store.take_inbox(limit)
            if not rows:
                return report
            texts = [text or "" for _, text, _ in rows]
            items = iter(_line_items([text for text in texts if _has_text(text)],
                                     self._made_later_lookup()))
            lines = []
            for (row_id, _, source), text in zip(rows, texts, strict=True):
                item = next(items) if _has_text(text) else (text, InvalidMessage("empty line"))
                lines.append((f"inbox:{source or '-'}", int(row_id), *item))
            self._apply_lines(lines, report)
            self.store.drop_inbox([row_id for row_id, _, _ in rows])
        return report

    def _apply_lines(self, lines: list[tuple[str, int, str, Any]], report: IngestReport
                     ) -> None:
        """Record parsed lines in the caller's transaction; bad ones go to `rejected`.

        The messages between two events (a whole file of messages, usually) go in together
        (`_insert_new`: two statements); when one of them was seen before, that run is
        applied line by line instead, as an event always is.
        """
        now = self.store.clock.now()
        mediums: MediumsCache = {}
        run: list[tuple[str, int, str, Any]] = []
        for line in lines:
            if isinstance(line[3], SendEvent):
                self._apply_run(run, now, mediums, report)
                run = []
                self._apply_line(line, now, mediums, report)
            else:
                run.append(line)
        self._apply_run(run, now, mediums, report)

    def _apply_run(self, run: list[tuple[str, int, str, Any]], now: float,
                   mediums: MediumsCache, report: IngestReport) -> None:
        """Lines holding messages or rejections (no event), in line order."""
        messages = [item for _, _, _, item in run if isinstance(item, Message)]
        if len(messages) > 1:
            new = self._new_rows(messages, now, mediums)
            if self._insert_new([row for row, _ in new]):
                outcomes = iter([outcome for _, outcome in new])
                for line in run:
                    if isinstance(line[3], Message):
                        _count(report, next(outcomes))
                    else:
                        self._apply_line(line, now, mediums, report)
                return
        for line in run:  # some were seen before: one by one
            self._apply_line(line, now, mediums, report)

    def _apply_line(self, line: tuple[str, int, str, Any], now: float, mediums: MediumsCache,
                    report: IngestReport) -> None:
        """One parsed line: recorded and counted, or kept in `rejected` with its reason."""
        source, number, text, item = line
        try:
            if isinstance(item, InvalidMessage):
                raise item
            if isinstance(item, SendEvent):
                outcome = self._apply_event(item, now)
            else:
                outcome = self._apply_message(item, now, mediums)
        except (InvalidMessage, MessageConflict, UnknownMessage) as exc:
            reason = str(exc)
            if isinstance(exc, MessageConflict):
                reason = f"conflict: {reason}"
                report.conflicts += 1
            self.store.reject_line(source, number, reason, text, now)
            report.rejected += 1
            report.errors.append({"line": number, "reason": reason})
            return
        _count(report, outcome)

    # ----------------------------------------------------------------------- transitions

    def _archived(self, project_id: str, medium: str, mediums: MediumsCache | None = None
                  ) -> bool:
        """True unless the project's destination leaves out this medium.

        `mediums` caches the lookups of one transaction (the config is read at most once).
        """
        if self._mediums_for is None:
            return True
        if mediums is None:
            archived = self._mediums_for(project_id)
        else:
            if project_id not in mediums:
                mediums[project_id] = self._mediums_for(project_id)
            archived = mediums[project_id]
        return archived is None or medium in archived

    def _new_rows(self, msgs: list[Message], now: float, mediums: MediumsCache | None
                  ) -> list[tuple[MessageRow, str]]:
        """`_new_row` of each message, sealed together (`RecipientKeys.protect_many`)."""
        if self.keys is not None:  # as their projects store them (SPEC 9.5)
            msgs = self.keys.protect_many(msgs, self._phone_region)
        return [self._row_of(msg, now, mediums) for msg in msgs]

    def _new_row(self, msg: Message, now: float, mediums: MediumsCache | None = None
                 ) -> tuple[MessageRow, str]:
        """The row of a message never seen before, and its outcome then."""
        return self._new_rows([msg], now, mediums)[0]

    def _row_of(self, msg: Message, now: float, mediums: MediumsCache | None
                ) -> tuple[MessageRow, str]:
        """`_new_row` of a message already as its project stores it."""
        if not msg.object_bytes:  # validation left it to sealing, and it was not sealed
            msg = replace(msg, object_bytes=gzip_body(msg.payload_bytes))  # (config reloaded)
        content_sha = msg.content_sha256()
        state: State
        final_reason: FinalReason | None = None
        payload_blob: bytes | None = msg.object_bytes  # compressed at validation, not here
        if not self._archived(msg.project_id, msg.medium, mediums):
            state, final_reason, payload_blob = (State.DISCARDED, FinalReason.MEDIUM_NOT_ARCHIVED,
                                                 None)
        elif msg.confirmed:
            state = State.QUEUED
        else:
            state = State.AWAITING_CONFIRMATION
        return (MessageRow(msg.project_id, msg.message_id, msg.medium, msg.message_type,
                           msg.campaign_id, msg.recipient_hash, msg.sent_at_text, msg.key,
                           state, payload_blob, content_sha,
                           msg.payload_sha if msg.confirmed else None, now,
                           now if msg.confirmed else None, now, final_reason,
                           self._recipient_hashes(msg), provider_message_id(msg.document)),
                IngestOutcome.DISCARDED if state == State.DISCARDED else IngestOutcome.ACCEPTED)

    def _recipient_hashes(self, msg: Message) -> str:
        """The message's identifier hashes (`messages.recipient_hashes`): validation's, plus
        the E.164 form of a national phone number read in `default_phone_region` (SPEC 9.2).
        The key's hash is the first identifier's either way: the key layout is unchanged."""
        known = msg.recipient_hashes
        if (self._phone_region is None or '"phone_number"' not in known
                or '"phone_number_e164"' in known):
            return known  # no number, or one with its +country: no region changes it
        region = self._phone_region()
        if region is None:
            return known
        return identifier_hashes_json(search_hashes(
            msg.document["recipient"], region,
            sha256_hex if self.keys is None else self.keys.digest_of(msg.project_id)))

    def _insert_new(self, rows: list[MessageRow]) -> bool:
        """Insert rows made by `_new_row` together; True when every one went in (no message
        was seen before). Otherwise nothing was written and the caller applies the messages
        one by one."""
        if not self.store.insert_new(rows):
            return False
        self._note_provider_ids(rows)
        return True

    def _note_provider_ids(self, rows: list[MessageRow]) -> None:
        """Keep the provider message ids of new rows: a provider's event finds its message
        by them (`deliveries`)."""
        ids = [(row.project_id, row.provider_message_id, row.message_id) for row in rows
               if row.provider_message_id]
        if ids:
            self.store.note_provider_ids(ids)

    def _apply_message(self, msg: Message, now: float, mediums: MediumsCache | None = None
                       ) -> str:
        row, outcome = self._new_row(msg, now, mediums)
        # Insert first and look only on a clash: the common case is one statement.
        if self.store.insert_message(row):
            self._note_provider_ids([row])
            return outcome
        known = self.store.known_message(msg.project_id, msg.message_id)
        if known is None:  # stored, then pruned: the archive index holds its identity
            archived = self.store.archived_message(msg.project_id, msg.message_id)
            assert archived is not None  # what the insert found, under the write lock
            return identity.message_again(msg if row.payload_sha256 in (None, msg.payload_sha)
                                          else replace(msg, payload_sha=row.payload_sha256),
                                          archived)  # sealed: the envelope's hash
        name = f"message {msg.message_id} of project {msg.project_id}"
        if known.content_sha256 != msg.content_sha256():
            raise MessageConflict(f"{name} was recorded before with other content;"
                                  " the first copy is kept")
        if not msg.confirmed or known.final_reason == FinalReason.MEDIUM_NOT_ARCHIVED:
            return IngestOutcome.DUPLICATE  # the same rendered message again, or not archived
        if known.state == State.AWAITING_CONFIRMATION or _revivable(
                known.state, known.final_reason, known.body_kept):
            self._note_provider_ids([row])  # the confirmed copy may name the provider's id
            self._confirm_row(known.row_id, msg.document, now)
            return IngestOutcome.ACCEPTED
        if known.state == State.DISCARDED:
            raise MessageConflict(f"{name} was discarded ({_discard_words(known.final_reason)});"
                                  " it cannot be confirmed now")
        if known.payload_sha256 in (msg.payload_sha, row.payload_sha256):  # plain, or sealed
            return IngestOutcome.DUPLICATE
        raise MessageConflict(f"{name} was already confirmed with another sent_at or provider;"
                              " the first copy is kept")

    def _confirm_row(self, row_id: int, document: dict[str, Any], now: float) -> None:
        payload = payload_bytes(document)
        if self.keys is not None:  # sealed again, as its project stores it (SPEC 9.5)
            payload = self.keys.resealed(str(document["project_id"]), document["message_id"],
                                         payload)
        self.store.confirm(row_id, sha256_hex(payload),
                           format_utc(parse_sent_at(document["sent_at"])),
                           bodies.encoded(payload), now)

    def _apply_event(self, event: SendEvent, now: float) -> str:
        target = self.store.event_target(event.project_id, event.message_id)
        name = f"message {event.message_id} of project {event.project_id}"
        if target is None:
            archived = self.store.archived_message(event.project_id, event.message_id)
            if archived is not None:  # stored, then pruned
                return identity.event_again(event, archived)
            raise UnknownMessage(f"no {name} was recorded before this event")
        row_id, state, payload, known_sent_at, final_reason = target
        if final_reason == FinalReason.MEDIUM_NOT_ARCHIVED:
            return IngestOutcome.DUPLICATE
        if event.event == "send_failed":
            if state == State.AWAITING_CONFIRMATION:
                self.store.discard_send_failed(row_id, (event.reason or "")[:500] or None, now)
                return IngestOutcome.ACCEPTED
            if state == State.DISCARDED:
                return IngestOutcome.DUPLICATE
            raise MessageConflict(f"{name} was already confirmed as sent; a send failure"
                                  " cannot follow a confirmation")
        # event == "sent"
        if state == State.AWAITING_CONFIRMATION or _revivable(state, final_reason,
                                                              payload is not None):
            assert payload is not None  # a message awaiting confirmation keeps its body
            kept = bodies.payload_of(payload)
            document = json.loads(kept if self.keys is None else self.keys.reopened(
                event.project_id, event.message_id, kept))
            document.pop("schema_version", None)
            document["sent_at"] = event.sent_at_text
            if event.provider is not None:
                document["provider"] = event.provider
                noted = provider_message_id(document)
                if noted:
                    self.store.note_provider_ids([(event.project_id, noted, event.message_id)])
            self._confirm_row(row_id, document, now)
            return IngestOutcome.ACCEPTED
        if state == State.DISCARDED:
            raise MessageConflict(f"{name} was discarded ({_discard_words(final_reason)});"
                                  " it cannot be confirmed now")
        if event.sent_at and known_sent_at == format_utc(event.sent_at):
            return IngestOutcome.DUPLICATE
        raise MessageConflict(f"{name} was already confirmed with another sent_at;"
                              " the first confirmation is kept")

    def discard_unconfirmed(self, confirm_timeout: float,
                            confirm_grace: float = DEFAULT_CONFIRM_GRACE) -> int:
        """Discard messages still awaiting confirmation after `confirm_timeout` seconds.

        Their body is kept `confirm_grace` longer (SMS receipts can take days): a late `sent`
        event revives such a message to `queued`. After the grace the body is deleted.
        """
        now = self.store.clock.now()
        with self.store.write():
            return self.store.discard_unconfirmed(now - confirm_timeout, now - confirm_grace,
                                                  now)


def _count(report: IngestReport, outcome: str) -> None:
    """Count one recorded line's outcome."""
    if outcome == IngestOutcome.DUPLICATE:
        report.duplicate += 1
    else:
        report.accepted += 1
        if outcome == IngestOutcome.DISCARDED:
            report.discarded += 1


def _has_text(raw: str | bytes) -> bool:
    """False for an empty line (nothing once its line ending, `\\r\\n`, is removed)."""
    if isinstance(raw, bytes):
        return bool(raw.rstrip(b"\r\n"))
    return bool(raw.rstrip("\r\n"))


def _line_items(raws: list[str | bytes], made_later: Callable[[str], bool] | None = None
                ) -> list[tuple[str, Message | SendEvent | InvalidMessage]]:
    """Non-empty input lines as (its text, what it is), parsed together (`parse_lines`;
    `made_later` as `parse_messages` takes it)."""
    texts: list[str] = []
    undecodable: dict[int, InvalidMessage] = {}
    for index, raw in enumerate(raws):
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Kept readable for the operator; never accepted with replaced characters.
                text = raw.decode("utf-8", "backslashreplace")
                undecodable[index] = InvalidMessage(
                    f"not valid UTF-8 (bad byte at column {exc.start + 1})")
        else:
            text = raw
        texts.append(text.rstrip("\r\n"))
    parsed = iter(parse_lines([text for index, text in enumerate(texts)
                               if index not in undecodable], made_later))
    return [(text, undecodable[index] if index in undecodable else next(parsed))
            for index, text in enumerate(texts)]


_END = object()


def _timed(lines: Iterable[str | bytes], deadline: Callable[[], float | None]
           ) -> Iterator[tuple[str | bytes, bool]]:
    """`(line, False)` as lines arrive, and `("", True)` when `deadline()` (monotonic) passes
    with no new line: a reader thread feeds a queue, so a quiet stream still commits."""
    arrived: queue.Queue[Any] = queue.Queue(maxsize=4 * INGEST_BATCH)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for raw in lines:
                arrived.put(raw)
        except BaseException as exc:  # handed to the consuming thread
            failure.append(exc)
        finally:
            arrived.put(_END)

    threading.Thread(target=read, name="sm-ingest-reader", daemon=True).start()
    while True:
        due = deadline()
        try:
            raw = arrived.get(timeout=None if due is None else max(0.0, due - time.monotonic()))
        except queue.Empty:
            yield "", True
            continue
        if raw is _END:
            if failure:
                raise failure[0]
            return
        yield raw, False


def _revivable(state: str, final_reason: str | None, body_kept: bool) -> bool:
    """A message discarded as never confirmed, whose body is still kept (the grace period)."""
    return state == State.DISCARDED and final_reason == FinalReason.NEVER_CONFIRMED and body_kept


def _discard_words(final_reason: str | None) -> str:
    """A discard reason as words for an error line."""
    if final_reason == FinalReason.NEVER_CONFIRMED:
        return "never confirmed within confirm_timeout"
    if final_reason == FinalReason.SEND_FAILED:
        return "its send failed"
    return final_reason or "discarded"


def provider_message_id(document: dict[str, Any]) -> str | None:
    """`provider.message_id` of a message or event document, when it has one."""
    provider = document.get("provider")
    value = provider.get("message_id") if isinstance(provider, dict) else None
    return value if isinstance(value, str) and value else None
