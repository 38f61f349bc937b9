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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidMessage, MessageConflict, UnknownMessage
from ..message import (
    Message,
    SendEvent,
    format_utc,
    parse_event,
    parse_lines,
    parse_message,
    parse_messages,
    parse_sent_at,
    payload_bytes,
    sha256_hex,
)
from ..states import FinalReason, IngestOutcome, State
from . import bodies
from .store import MessageRow, SpoolStore

INGEST_BATCH = 500
# How long a group-commit leader waits, at most, for the callers of the last group to come
# back with their next message (a lone caller never waits: nobody else is coming).
GROUP_WINDOW = 0.002
DEFAULT_CONFIRM_GRACE = 7 * 86400.0  # seconds a never-confirmed message keeps its body

MediumsLookup = Callable[[str], list[str] | None]
MediumsCache = dict[str, list[str] | None]


@dataclass
class IngestReport:
    """Summary of one ingest: counts and the line-numbered rejections."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    discarded: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The `sm ingest --json` document."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "discarded": self.discarded,
            "errors": self.errors,
        }


class _Waiting:
    """One `record()` call waiting for the transaction that will hold its row."""

    __slots__ = ("raw", "message", "outcome", "error", "done")

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # as the caller gave it; the leader validates it
        self.message: Message | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.done = False  # set (under the group's lock) once its transaction has ended


ApplyMessage = Callable[[Message, float, MediumsCache], str]
NewRow = Callable[[Message, float, MediumsCache], tuple[MessageRow, str]]
InsertNew = Callable[[list[MessageRow]], bool]
ParseMessages = Callable[[list[Any]], list[Message | InvalidMessage]]


def _valid(item: _Waiting) -> Message:
    assert item.message is not None  # only validated callers reach the transaction
    return item.message


class _Isolate(Exception):
    """One message of a group failed: the group's transaction is redone without it."""


class GroupCommit:
    """Group commit for `record()`: concurrent callers of one process share one transaction.

    Leader/follower. A caller queues its message as given; when no group is being written
    it becomes the leader, takes every queued message, validates them together
    (`parse_messages`, outside any lock; an invalid one's caller gets its InvalidMessage at
    once) and writes the valid ones in one `BEGIN IMMEDIATE` … `COMMIT` (one fsync for all).
    Callers that
    arrive meanwhile wait — the window is the leader's group, its fsync included — and the
    first of them to wake leads the next group. A leader first waits (at most `window`,
    2 ms) for as many callers as the last group held: after a commit they are back a moment
    later with their next message, and without the wait eight threads often split into a
    group of one and one of seven, two fsyncs where one does. A lone caller writes at once
    and never waits. The leader validates rather than each caller because under one GIL
    the callers would validate one after another anyway, each on a thread just woken, with
    the GIL handed over between them: several times the CPU of the same validations in a
    row (8 threads: the time between two groups' writes fell from 0.9-2.4 ms to 0.3 ms).

    Guarantees, the same as one transaction per call:

    - a caller returns only after the COMMIT that holds its row (durable on return);
    - an error of one message (InvalidMessage, MessageConflict, or any exception but the
      spool's own) is raised in its own caller only: an invalid message never reaches the
      transaction, and one whose write fails is left out and the transaction redone
      without it, so nobody else's row is rolled back;
    - when the transaction itself fails (COMMIT or BEGIN raises, the leader is interrupted),
      no row of the group is kept and every caller of the group gets the error: nothing
      unacknowledged is half-written, nothing acknowledged is lost.
    """

    def __init__(self, store: SpoolStore, apply: ApplyMessage, new_row: NewRow,
                 insert_new: InsertNew, parse: ParseMessages = parse_messages) -> None:
        self._store = store
        self._parse = parse
        self._apply = apply
        self._new_row = new_row
        self._insert_new = insert_new
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # followers wait here for their commit
        self._arrival = threading.Condition(lock)  # a gathering leader waits here
        self._queue: list[_Waiting] = []
        self._leading = False
        self._last_group = 1  # how many callers the last group held
        self._writing: list[_Waiting] = []  # the group being written (for tests to watch)
        self.window = GROUP_WINDOW  # seconds a leader may wait for the last group's callers

    def submit(self, message: Any) -> str:
        """Validate and record `message` with whatever else is queued; its outcome once
        committed (InvalidMessage as soon as its group is validated)."""
        waiting = _Waiting(message)
        with self._cond:
            self._queue.append(waiting)
            self._arrival.notify()
            while self._leading and not waiting.done:
                self._cond.wait()
            lead = not waiting.done
            if lead:
                self._leading = True
                deadline = time.monotonic() + self.window
                # The callers of the last group: back in a moment with their next message (or
                # not: then the window ends the wait, once).
                while len(self._queue) < self._last_group:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._arrival.wait(left)
                group, self._queue = self._queue, []
                self._last_group = len(group)
                self._writing = group
        if lead:
            try:
                self._write(group)
            finally:
                with self._cond:
                    self._leading = False
                    self._writing = []
                    for item in group:
                        item.done = True
                    self._cond.notify_all()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.outcome is not None
        return waiting.outcome

    def _write(self, group: list[_Waiting]) -> None:
        """Validate the group, then one transaction for its valid messages. New messages
        (the common case) go in with one statement per table. A message seen before is
        applied alone; one whose apply raises is left out and the transaction redone
        without it (its caller gets the error)."""
        try:
            pending = self._validate(group)
        except BaseException as exc:  # the leader interrupted: nothing was written
            for item in group:
                if item.error is None:
                    item.error = exc
            return
        now = self._store.clock.now()
        mediums: MediumsCache = {}
        try:
            while pending:
                try:
                    with self._store.write():
                        self._write_pending(pending, now, mediums)
                    break
                except _Isolate:
                    pending = [item for item in pending if item.error is None]
        except BaseException as exc:  # nothing of what was pending was committed
            for item in pending:
                item.outcome = None
                if item.error is None:
                    item.error = exc

    def _validate(self, group: list[_Waiting]) -> list[_Waiting]:
        """Validate the group's messages (`parse_messages`: stage by stage), before any lock
        is taken; the callers of invalid ones are told at once. Returns the valid ones."""
        valid: list[_Waiting] = []
        for item, parsed in zip(group, self._parse([item.raw for item in group]), strict=True):
            if isinstance(parsed, InvalidMessage):  # this caller's error
                item.error = parsed
            else:
                item.message = parsed
                valid.append(item)
        if len(valid) < len(group):
            with self._cond:
                for item in group:
                    if item.error is not None:
                        item.done = True
                self._cond.notify_all()
        return valid

    def _write_pending(self, pending: list[_Waiting], now: float, mediums: MediumsCache
                       ) -> None:
        if len(pending) > 1:
            new: list[tuple[MessageRow, str]] = []
            for item in pending:
                try:
                    new.append(self._new_row(_valid(item), now, mediums))
                except Exception as exc:  # this caller's error
                    item.error = exc
                    raise _Isolate from None
            if self._insert_new([row for row, _ in new]):
                for item, (_, outcome) in zip(pending, new, strict=True):
                    item.outcome = outcome
                return
        for item in pending:  # some were seen before: one by one
            try:
                item.outcome = self._apply(_valid(item), now, mediums)
            except self._store.errors:
                raise  # the spool failed, not this message: the whole group is told
            except Exception as exc:  # this caller's error; the others' rows stay
                item.error = exc
                if len(pending) == 1:
                    return  # alone: the rollback of its transaction is all there is to undo
                raise _Isolate from None


class Intake:
    """Messages and send events in; discards of what will never be archived."""

    def __init__(self, store: SpoolStore, mediums_for: MediumsLookup | None = None) -> None:
        self.store = store
        self._mediums_for = mediums_for
        self._group = GroupCommit(store, self._apply_message, self._new_row, self._insert_new)

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

    def record_many(self, messages: Iterable[Any]) -> list[str]:
        """Record a batch in one transaction: all of it is durable, or none of it."""
        parsed: list[Message] = []
        for index, item in enumerate(parse_messages(list(messages))):
            if isinstance(item, InvalidMessage):
                raise InvalidMessage(f"message {index}: {item}") from None
            parsed.append(item)
        now = self.store.clock.now()
        mediums: MediumsCache = {}
        with self.store.write():
            new = [self._new_row(item, now, mediums) for item in parsed]
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
                items = _line_items([raw for _, raw in batch])  # parsed a batch at a time
                self._ingest_batch([(number, *item) for (number, _), item in
                                    zip(batch, items, strict=True)], source, report)
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
            items = iter(_line_items([text for text in texts if _has_text(text)]))
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
            new = [self._new_row(message, now, mediums) for message in messages]
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

    def _new_row(self, msg: Message, now: float, mediums: MediumsCache | None = None
                 ) -> tuple[MessageRow, str]:
        """The row of a message never seen before, and its outcome then."""
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
                           msg.recipient_hashes),
                IngestOutcome.DISCARDED if state == State.DISCARDED else IngestOutcome.ACCEPTED)

    def _insert_new(self, rows: list[MessageRow]) -> bool:
        """Insert rows made by `_new_row` together; True when every one went in (no message
        was seen before). Otherwise nothing was written and the caller applies the messages
        one by one."""
        return self.store.insert_new(rows)

    def _apply_message(self, msg: Message, now: float, mediums: MediumsCache | None = None
                       ) -> str:
        row, outcome = self._new_row(msg, now, mediums)
        # Insert first and look only on a clash: the common case is one statement.
        if self.store.insert_message(row):
            return outcome
        known = self.store.known_message(msg.project_id, msg.message_id)
        assert known is not None  # the insert clashed with it, under the write lock
        name = f"message {msg.message_id} of project {msg.project_id}"
        if known.content_sha256 != msg.content_sha256():
            raise MessageConflict(f"{name} was recorded before with other content;"
                                  " the first copy is kept")
        if not msg.confirmed or known.final_reason == FinalReason.MEDIUM_NOT_ARCHIVED:
            return IngestOutcome.DUPLICATE  # the same rendered message again, or not archived
        if known.state == State.AWAITING_CONFIRMATION or _revivable(
                known.state, known.final_reason, known.body_kept):
            self._confirm_row(known.row_id, msg.document, now)
            return IngestOutcome.ACCEPTED
        if known.state == State.DISCARDED:
            raise MessageConflict(f"{name} was discarded ({_discard_words(known.final_reason)});"
                                  " it cannot be confirmed now")
        if known.payload_sha256 == msg.payload_sha:
            return IngestOutcome.DUPLICATE
        raise MessageConflict(f"{name} was already confirmed with another sent_at or provider;"
                              " the first copy is kept")

    def _confirm_row(self, row_id: int, document: dict[str, Any], now: float) -> None:
        payload = payload_bytes(document)
        self.store.confirm(row_id, sha256_hex(payload),
                           format_utc(parse_sent_at(document["sent_at"])),
                           bodies.encoded(payload), now)

    def _apply_event(self, event: SendEvent, now: float) -> str:
        target = self.store.event_target(event.project_id, event.message_id)
        name = f"message {event.message_id} of project {event.project_id}"
        if target is None:
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
            document = json.loads(bodies.payload_of(payload))
            document.pop("schema_version", None)
            document["sent_at"] = event.sent_at_text
            if event.provider is not None:
                document["provider"] = event.provider
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


def _line_items(raws: list[str | bytes]
                ) -> list[tuple[str, Message | SendEvent | InvalidMessage]]:
    """Non-empty input lines as (its text, what it is), parsed together (`parse_lines`)."""
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
                               if index not in undecodable]))
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


class ConfigMediums:
    """Looks up a project's archived mediums in config.toml, re-reading it when it changes."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self._stamp: float | None = None
        self._projects: dict[str, list[str]] = {}

    def __call__(self, project_id: str) -> list[str] | None:
        try:
            stamp = self.config_file.stat().st_mtime
        except FileNotFoundError:
            return None
        if stamp != self._stamp:
            from ..config import load_settings  # loads pydantic: only once a config is read

            settings = load_settings(self.config_file)
            self._projects = {pid: dest.mediums for pid, dest in settings.projects.items()}
            self._stamp = stamp
        return self._projects.get(project_id)
