"""What `POST /v1/messages` and `POST /v1/events` do with a body, without HTTP (SPEC 9.3).

Blocking: the app calls `BodyIngest.post` (and `post_each`) off the event loop. The summary
and its line numbers are `sm ingest`'s own (`Spool.ingest_lines`, `IngestReport`); single
messages go through the spool's group commit (`Intake.record_each`), so concurrent
single-message requests share one COMMIT. Every answer is given after the COMMIT that holds
what it reports.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..clock import Clock
from ..errors import InvalidMessage, MessageConflict
from ..spool import IngestReport, Spool, SpoolError
from ..states import IngestOutcome

log = logging.getLogger("sm.serve")

MESSAGES = "messages"
EVENTS = "events"
# Content types that mean JSON Lines; anything JSON else is one document.
JSON_LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl",
                              "application/x-jsonlines", "application/json-lines"})
ONE_DOCUMENT_TYPES = frozenset({"application/json", ""})
RETRY_AFTER_BUSY = 5  # seconds a client told 429 waits before trying again
RETRY_AFTER_UNWRITABLE = 30  # seconds after a 503: someone has to free the disk
BACKLOG_TTL = 1.0  # seconds the count of waiting messages is reused


@dataclass
class Answer:
    """An HTTP answer: status, the JSON document, extra headers."""

    status: int
    document: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, hint: str | None = None, **headers: str) -> Answer:
    """An error answer: `{"error": …, "hint"?: …}`."""
    document: dict[str, Any] = {"error": message}
    if hint:
        document["hint"] = hint
    return Answer(status, document, {k.replace("_", "-"): v for k, v in headers.items()})


class Backlog:
    """How many messages wait to be archived, read at most once per `ttl` seconds.

    One reader refreshes the figure while the others keep using the last one: a busy server
    counts about once a second, whatever its request rate.
    """

    def __init__(self, spool: Spool, limit: int, clock: Clock, ttl: float = BACKLOG_TTL
                 ) -> None:
        self.spool = spool
        self.limit = limit
        self.clock = clock
        self.ttl = ttl
        self._count: int | None = None
        self._read_at = 0.0
        self._refreshing = threading.Lock()

    def cached(self) -> int | None:
        """The last count while it is fresh, else None (call `read`, off the event loop)."""
        # a clock set back since makes the count stale too, not fresh until it catches up
        if self._count is not None and 0 <= self.clock.now() - self._read_at < self.ttl:
            return self._count
        return None

    def read(self) -> int:
        """The count, refreshed if stale (blocking: a query)."""
        if self._count is not None and not self._refreshing.acquire(blocking=False):
            return self._count  # another request is counting; the last figure will do
        if self._count is None:
            self._refreshing.acquire()
        try:
            if self.cached() is None:
                self._count = self.spool.report.waiting()
                self._read_at = self.clock.now()
            assert self._count is not None
            return self._count
        finally:
            self._refreshing.release()

    def refusal(self, waiting: int) -> Answer | None:
        """The 429 answer while more than `limit` messages wait, else None."""
        if waiting <= self.limit:
            return None
        return error(429, f"{waiting} messages wait to be archived, more than serve_max_queued"
                     f" ({self.limit}); nothing was written",
                     hint=f"retry after {RETRY_AFTER_BUSY} s; check that sm run is archiving"
                     " (sm status)", Retry_After=str(RETRY_AFTER_BUSY))


def body_lines(body: bytes) -> list[bytes]:
    """A JSON Lines body split as `sm ingest` reads a file: at `\\n` only, numbered from 1."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


class BodyIngest:
    """Messages and send events in from request bodies, into one spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def post(self, kind: str, body: bytes, *, json_lines: bool) -> Answer:
        """Record `body` (one JSON document, or JSON Lines) posted to `/v1/{kind}`.

        202 with the summary when anything was accepted or was a duplicate, 409 for one
        document that conflicts, 422 when every line was rejected, 503 when the spool cannot
        write (what was committed before is said, and a retry makes it a duplicate).
        """
        if not body.strip():
            return _empty()
        if not json_lines and kind == MESSAGES:
            return self.post_each([body])[0]
        try:
            report = self._lines(kind, [body] if not json_lines else body_lines(body),
                                 f"serve /v1/{kind}")
        except SpoolError as exc:
            return unwritable(exc)
        return Answer(status_of(report, single=not json_lines), report.as_dict())

    def post_each(self, bodies: list[bytes]) -> list[Answer]:
        """`post(MESSAGES, body, json_lines=False)` of each of `bodies` (single messages of
        concurrent requests), written in one transaction: one COMMIT for all of them. A
        rejected one is then kept as `sm ingest` keeps it."""
        try:
            outcomes = self.spool.intake.record_each(bodies)
        except SpoolError as exc:
            outcomes = [exc] * len(bodies)
        return [self._answer_one(body, outcome)
                for body, outcome in zip(bodies, outcomes, strict=True)]

    def _answer_one(self, body: bytes, outcome: str | BaseException) -> Answer:
        if isinstance(outcome, str):
            return Answer(202, _single_report(outcome).as_dict())
        if isinstance(outcome, SpoolError):
            return unwritable(outcome)
        if not isinstance(outcome, InvalidMessage | MessageConflict):
            log.error("recording a message failed", exc_info=outcome,
                      extra={"event": "serve_request_failed"})
            return error(500, "internal error; see the server's log")
        if not body.strip():
            return _empty()
        try:
            report = self._lines(MESSAGES, [body], f"serve /v1/{MESSAGES}")
        except SpoolError as exc:
            return unwritable(exc)
        return Answer(status_of(report, single=True), report.as_dict())

    def _lines(self, kind: str, lines: list[bytes], source: str) -> IngestReport:
        """`Spool.ingest_lines` over the lines meant for `/v1/{kind}`; a line of the other
        kind is rejected here (and kept) with its number, the rest keep theirs."""
        misplaced: list[tuple[int, str, str]] = []
        for index, raw in enumerate(lines):
            reason = _misplaced(kind, raw)
            if reason is not None:
                misplaced.append((index + 1, reason, raw.decode("utf-8", "backslashreplace")))
                lines[index] = b""  # skipped, as an empty line is: the numbers stay
        report = self.spool.ingest_lines(lines, source=source) if len(misplaced) < len(
            lines) else IngestReport()
        if misplaced:
            self._keep_rejected(source, misplaced)
            report.rejected += len(misplaced)
            report.errors = sorted([*report.errors, *({"line": number, "reason": reason}
                                                      for number, reason, _ in misplaced)],
                                   key=lambda entry: int(entry["line"]))
        return report

    def _keep_rejected(self, source: str, lines: list[tuple[int, str, str]]) -> None:
        store = self.spool.store
        now = self.spool.clock.now()
        with store.write():
            for number, reason, text in lines:
                store.reject_line(source, number, reason, text, now)


def _empty() -> Answer:
    """The 400 answer to an empty body."""
    return error(400, "the body is empty", hint="send one JSON document, or JSON Lines with"
                 " Content-Type: application/x-ndjson")


def unwritable(exc: SpoolError) -> Answer:
    """The 503 answer: the spool cannot write (what was committed before is said)."""
    return error(503, str(exc), hint=exc.hint, Retry_After=str(RETRY_AFTER_UNWRITABLE))


def _single_report(outcome: str) -> IngestReport:
    """The summary of one recorded message."""
    report = IngestReport()
    if outcome == IngestOutcome.DUPLICATE:
        report.duplicate = 1
    else:
        report.accepted = 1
        report.discarded = int(outcome == IngestOutcome.DISCARDED)
    return report


def _misplaced(kind: str, raw: bytes) -> str | None:
    """Why a line does not belong at `/v1/{kind}` (an event posted as a message, or the
    reverse), or None. A line that is not a JSON object is left to the spool to reject; an
    event whose key is spelled with escapes (`"\\u0065vent"`) passes the cheap test and is
    recorded as `sm ingest` records it."""
    if kind == MESSAGES and b'"event"' not in raw:
        return None  # the cheap test first: a message line never needs a second parse
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    if kind == MESSAGES and "event" in document:
        return "this is a send event, not a message; POST it to /v1/events"
    if kind == EVENTS and "event" not in document:
        return "this is a message, not a send event; POST it to /v1/messages"
    return None


def status_of(report: IngestReport, *, single: bool) -> int:
    """202 when anything went in (or was there already), else 409 (one document that
    conflicts) or 422."""
    if report.accepted or report.duplicate:
        return 202
    if single and report.conflicts:
        return 409
    return 422
