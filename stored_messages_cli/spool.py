"""The durable local spool: every message's state, its retry schedule and the archive index.

One SQLite file (WAL, `synchronous=FULL`), written only inside `BEGIN IMMEDIATE`
transactions, so several sender processes and `sm run` can share it. A message accepted here
survives a crash; it ends in exactly one final state (SPEC 4).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .clock import Clock, SystemClock
from .config import ensure_private_dir
from .errors import InvalidMessage, MessageConflict, UnknownMessage
from .model import (
    Message,
    SendEvent,
    format_utc,
    parse_event,
    parse_message,
    parse_sent_at,
    payload_bytes,
    sha256_hex,
)

# --------------------------------------------------------------------------- states

AWAITING_CONFIRMATION = "awaiting_confirmation"
QUEUED = "queued"
IN_FLIGHT = "in_flight"
RETRY_WAIT = "retry_wait"
STORED = "stored"
EXPIRED = "expired"
FAILED = "failed"
DISCARDED = "discarded"
STATES: tuple[str, ...] = (
    AWAITING_CONFIRMATION, QUEUED, IN_FLIGHT, RETRY_WAIT, STORED, EXPIRED, FAILED, DISCARDED,
)
FINAL_STATES: frozenset[str] = frozenset({STORED, EXPIRED, FAILED, DISCARDED})
UNARCHIVED_STATES: tuple[str, ...] = (QUEUED, IN_FLIGHT, RETRY_WAIT)

# Ingest outcomes.
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

# Discard reasons (the `final_reason` column).
MEDIUM_NOT_ARCHIVED = "medium_not_archived"
NEVER_CONFIRMED = "never_confirmed"
SEND_FAILED = "send_failed"

# Destination health values (SPEC 6, `sm status`).
HEALTH_OK = "ok"
HEALTH_UNREACHABLE = "unreachable"
HEALTH_RATE_LIMITED = "rate_limited"
HEALTH_UNKNOWN = "unknown"

INGEST_BATCH = 500


@dataclass(slots=True)
class ClaimedMessage:
    """A message leased to one worker for one upload attempt."""

    row_id: int
    project_id: str
    message_id: str
    key: str  # relative to the destination prefix
    payload: bytes
    payload_sha256: str
    attempts: int
    first_failure_at: float | None
    retry_reason: str | None


@dataclass(slots=True)
class Stored:
    """Outcome: the object is in the bucket and verified."""

    row_id: int
    key: str
    destination_url: str
    version_id: str | None = None


@dataclass(slots=True)
class Retry:
    """Outcome: the attempt failed and the message waits until `next_attempt_at`."""

    row_id: int
    reason: str  # rate_limited | unreachable
    next_attempt_at: float
    error: str


@dataclass(slots=True)
class Failed:
    """Outcome: a permanent problem an operator must see (e.g. conflict)."""

    row_id: int
    reason: str


Outcome = Stored | Retry | Failed


@dataclass(slots=True)
class Health:
    """What the archiver last learnt about a project's destination."""

    project_id: str
    url: str
    health: str
    since: float | None = None
    next_probe_at: float | None = None
    last_error: str | None = None


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


MediumsLookup = Callable[[str], list[str] | None]


def lease_owner_name() -> str:
    """A name for this process's leases: host, pid and a start stamp."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _owner_is_dead(owner: str, host: str) -> bool:
    """True when `owner` names a process on this host that no longer runs."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def immediate_transaction(conn: sqlite3.Connection, lock: threading.RLock
                          ) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction on `conn` under `lock` (one lock per connection).

    Committed on success, rolled back on error; writers of other processes wait on the busy
    timeout instead of failing with "database is locked".
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class Spool:
    """The SQLite spool. Use `Spool.open()` (config home) or `Spool.open(path)`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        mediums_for: MediumsLookup | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self._mediums_for = mediums_for
        self._lock = threading.RLock()
        ensure_private_dir(self.path.parent)
        old_umask = os.umask(0o077)  # the db, -wal and -shm files are owner-only
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=60000")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._create_schema()
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):  # files made by an older umask are closed too
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except OSError:
                pass

    # ----------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
    ) -> Spool:
        """Open the spool of `home` (default `$SM_HOME` or the platform folders), or `path`.

        The project's archived mediums are read from that home's `config.toml` so messages of
        a medium the project does not archive are discarded at ingest.
        """
        from .config import Paths

        paths = Paths.resolve(home)
        spool_path = Path(path) if path is not None else paths.spool_file
        return cls(spool_path, clock=clock, mediums_for=_ConfigMediums(paths.config_file))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        # A spool already at this schema skips sqlite-utils entirely (fast `sm status`); any
        # edit to this method changes the fingerprint, so the idempotent creation runs again.
        fingerprint = _code_fingerprint(Spool._create_schema)
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == fingerprint:
            return
        import sqlite_utils

        db = sqlite_utils.Database(self.conn)
        with self._write():
            db["messages"].create(
                {
                    "id": int,
                    "project_id": str,
                    "message_id": str,
                    "medium": str,
                    "message_type": str,
                    "campaign_id": str,
                    "recipient_hash": str,
                    "sent_at": str,
                    "key": str,
                    "state": str,
                    "payload": bytes,
                    "content_sha256": str,
                    "payload_sha256": str,
                    "created_at": float,
                    "confirmed_at": float,
                    "updated_at": float,
                    "attempts": int,
                    "first_failure_at": float,
                    "next_attempt_at": float,
                    "retry_reason": str,
                    "last_error": str,
                    "lease_owner": str,
                    "lease_expires_at": float,
                    "final_reason": str,
                    "stored_at": float,
                    "stored_key": str,
                    "destination_url": str,
                    "version_id": str,
                },
                pk="id",
                not_null={"project_id", "message_id", "medium", "message_type",
                          "recipient_hash", "key", "state", "content_sha256", "created_at"},
                defaults={"attempts": 0},
                if_not_exists=True,
            )
            db["messages"].create_index(["project_id", "message_id"], unique=True,
                                        if_not_exists=True)
            db["messages"].create_index(["state", "project_id", "next_attempt_at"],
                                        if_not_exists=True)
            db["rejected"].create(
                {"id": int, "source": str, "line": int, "reason": str, "raw": str,
                 "rejected_at": float},
                pk="id", if_not_exists=True,
            )
            db["destination_health"].create(
                {"project_id": str, "url": str, "health": str, "since": float,
                 "next_probe_at": float, "last_error": str, "updated_at": float},
                pk="project_id", if_not_exists=True,
            )
            db["archive_index"].create(
                {"project_id": str, "message_id": str, "medium": str, "message_type": str,
                 "campaign_id": str, "recipient_hash": str, "sent_at": str, "key": str,
                 "payload_sha256": str, "version_id": str, "destination_url": str,
                 "stored_at": float},
                pk=("project_id", "message_id"), if_not_exists=True,
            )
            db["archive_index"].create_index(["recipient_hash", "sent_at"], if_not_exists=True)
            db["archive_index"].create_index(["message_id"], if_not_exists=True)
            db["archive_index"].create_index(["campaign_id", "sent_at"], if_not_exists=True)
            db["archive_index"].create_index(["sent_at"], if_not_exists=True)
            self.conn.execute(f"PRAGMA user_version = {fingerprint}")

    @property
    def lock(self) -> threading.RLock:
        """The lock guarding `conn`; anything else using `conn` must hold it too."""
        return self._lock

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed on success, rolled back on error."""
        return immediate_transaction(self.conn, self._lock)

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self.conn.execute(sql, tuple(params))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    # ----------------------------------------------------------------------- sender API

    def record(self, message: Any) -> str:
        """Record one rendered message; durable when this returns.

        Returns `accepted`, `duplicate` or `discarded` (medium not archived). Raises
        InvalidMessage for bad input and MessageConflict for the same id with other content.
        """
        parsed = parse_message(message)
        now = self.clock.now()
        with self._write() as conn:
            return self._apply_message(conn, parsed, now)

    def record_many(self, messages: Iterable[Any]) -> list[str]:
        """Record a batch in one transaction: all of it is durable, or none of it."""
        parsed: list[Message] = []
        for index, message in enumerate(messages):
            try:
                parsed.append(parse_message(message))
            except InvalidMessage as exc:
                raise InvalidMessage(f"message {index}: {exc}") from None
        now = self.clock.now()
        with self._write() as conn:
            mediums: dict[str, list[str] | None] = {}
            return [self._apply_message(conn, item, now, mediums) for item in parsed]

    def confirm_sent(
        self,
        project_id: str | int,
        message_id: str,
        *,
        sent_at: str | datetime,
        provider: dict[str, Any] | None = None,
    ) -> str:
        """Mark a recorded message as accepted by the provider; it becomes due for upload."""
        text = format_utc(sent_at) if isinstance(sent_at, datetime) else sent_at
        event = parse_event({"event": "sent", "project_id": project_id,
                             "message_id": message_id, "sent_at": text, "provider": provider})
        now = self.clock.now()
        with self._write() as conn:
            return self._apply_event(conn, event, now)

    def record_send_failure(self, project_id: str | int, message_id: str, *,
                            reason: str = SEND_FAILED) -> str:
        """Mark a recorded message as not sent; it is discarded and never archived."""
        event = parse_event({"event": "send_failed", "project_id": project_id,
                             "message_id": message_id, "reason": reason})
        now = self.clock.now()
        with self._write() as conn:
            return self._apply_event(conn, event, now)

    # ----------------------------------------------------------------------- ingest

    def ingest_lines(self, lines: Iterable[str | bytes], source: str = "-",
                     progress: Callable[[int], None] | None = None) -> IngestReport:
        """Read JSON Lines (messages and events); bad lines are kept with their reason.

        Good lines beside a bad one still go in. Lines are committed in batches.
        """
        report = IngestReport()
        batch: list[tuple[int, str, Message | SendEvent | InvalidMessage]] = []
        for number, raw in enumerate(lines, start=1):
            if isinstance(raw, bytes):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    # Kept readable for the operator; never accepted with replaced characters.
                    text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
                    batch.append((number, text, InvalidMessage(
                        f"not valid UTF-8 (bad byte at column {exc.start + 1})")))
                    continue
            else:
                text = raw
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            batch.append((number, text, _parse_line(text)))
            if len(batch) >= INGEST_BATCH:
                self._ingest_batch(batch, source, report)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self._ingest_batch(batch, source, report)
            if progress:
                progress(len(batch))
        return report

    def _ingest_batch(self, batch: list[tuple[int, str, Any]], source: str,
                      report: IngestReport) -> None:
        now = self.clock.now()
        mediums: dict[str, list[str] | None] = {}
        with self._write() as conn:
            for number, text, item in batch:
                try:
                    if isinstance(item, InvalidMessage):
                        raise item
                    if isinstance(item, SendEvent):
                        outcome = self._apply_event(conn, item, now)
                    else:
                        outcome = self._apply_message(conn, item, now, mediums)
                except (InvalidMessage, MessageConflict, UnknownMessage) as exc:
                    reason = str(exc)
                    if isinstance(exc, MessageConflict):
                        reason = f"conflict: {reason}"
                    conn.execute(
                        "INSERT INTO rejected (source, line, reason, raw, rejected_at)"
                        " VALUES (?, ?, ?, ?, ?)", (source, number, reason, text, now))
                    report.rejected += 1
                    report.errors.append({"line": number, "reason": reason})
                    continue
                if outcome == DUPLICATE:
                    report.duplicate += 1
                else:
                    report.accepted += 1
                    if outcome == DISCARDED:
                        report.discarded += 1

    # ----------------------------------------------------------------------- transitions

    def _archived(self, project_id: str, medium: str,
                  mediums: dict[str, list[str] | None] | None = None) -> bool:
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

    def _apply_message(self, conn: sqlite3.Connection, msg: Message, now: float,
                       mediums: dict[str, list[str] | None] | None = None) -> str:
        content_sha = msg.content_sha256()
        payload = msg.payload()
        if not self._archived(msg.project_id, msg.medium, mediums):
            state, final_reason, payload_blob = DISCARDED, MEDIUM_NOT_ARCHIVED, None
        elif msg.confirmed:
            state, final_reason, payload_blob = QUEUED, None, payload
        else:
            state, final_reason, payload_blob = AWAITING_CONFIRMATION, None, payload
        # Insert first and look only on a clash: the common case is one statement.
        inserted = conn.execute(
            "INSERT INTO messages (project_id, message_id, medium, message_type, campaign_id,"
            " recipient_hash, sent_at, key, state, payload, content_sha256, payload_sha256,"
            " created_at, confirmed_at, updated_at, final_reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project_id, message_id) DO NOTHING",
            (msg.project_id, msg.message_id, msg.medium, msg.message_type, msg.campaign_id,
             msg.recipient_hash, format_utc(msg.sent_at) if msg.sent_at else None, msg.key,
             state, payload_blob, content_sha, sha256_hex(payload) if msg.confirmed else None,
             now, now if msg.confirmed else None, now, final_reason),
        ).rowcount
        if inserted:
            return DISCARDED if state == DISCARDED else ACCEPTED
        existing = conn.execute(
            "SELECT id, state, content_sha256, payload_sha256, final_reason FROM messages"
            " WHERE project_id = ? AND message_id = ?", (msg.project_id, msg.message_id),
        ).fetchone()
        row_id, state, known_content_sha, known_payload_sha, final_reason = existing
        name = f"message {msg.message_id} of project {msg.project_id}"
        if known_content_sha != content_sha:
            raise MessageConflict(f"{name} was recorded before with other content;"
                                  " the first copy is kept")
        if not msg.confirmed or final_reason == MEDIUM_NOT_ARCHIVED:
            return DUPLICATE  # the same rendered message again, or one never archived
        if state == AWAITING_CONFIRMATION:
            self._confirm_row(conn, row_id, msg.document, now)
            return ACCEPTED
        if state == DISCARDED:
            raise MessageConflict(f"{name} was discarded ({_discard_words(final_reason)});"
                                  " it cannot be confirmed now")
        if known_payload_sha == sha256_hex(payload):
            return DUPLICATE
        raise MessageConflict(f"{name} was already confirmed with another sent_at or provider;"
                              " the first copy is kept")

    def _confirm_row(self, conn: sqlite3.Connection, row_id: int, document: dict[str, Any],
                     now: float) -> None:
        payload = payload_bytes(document)
        conn.execute(
            "UPDATE messages SET state = ?, payload = ?, payload_sha256 = ?, sent_at = ?,"
            " confirmed_at = ?, updated_at = ? WHERE id = ?",
            (QUEUED, payload, sha256_hex(payload),
             format_utc(parse_sent_at(document["sent_at"])), now, now, row_id),
        )

    def _apply_event(self, conn: sqlite3.Connection, event: SendEvent, now: float) -> str:
        row = conn.execute(
            "SELECT id, state, payload, sent_at, final_reason FROM messages"
            " WHERE project_id = ? AND message_id = ?", (event.project_id, event.message_id),
        ).fetchone()
        if row is None:
            raise UnknownMessage(
                f"no message {event.message_id} of project {event.project_id} was recorded"
                " before this event"
            )
        row_id, state, payload, known_sent_at, final_reason = row
        if final_reason == MEDIUM_NOT_ARCHIVED:
            return DUPLICATE
        if event.event == "send_failed":
            if state == AWAITING_CONFIRMATION:
                conn.execute(
                    "UPDATE messages SET state = ?, payload = NULL, final_reason = ?,"
                    " updated_at = ? WHERE id = ?",
                    (DISCARDED, f"{SEND_FAILED}: {event.reason}"[:500], now, row_id))
                return ACCEPTED
            if state == DISCARDED:
                return DUPLICATE
            raise MessageConflict(
                f"message {event.message_id} of project {event.project_id} was already"
                " confirmed as sent; a send failure cannot follow a confirmation")
        # event == "sent"
        if state == AWAITING_CONFIRMATION:
            document = json.loads(payload)
            document.pop("schema_version", None)
            document["sent_at"] = event.sent_at_text
            if event.provider is not None:
                document["provider"] = event.provider
            self._confirm_row(conn, row_id, document, now)
            return ACCEPTED
        if state == DISCARDED:
            raise MessageConflict(
                f"message {event.message_id} of project {event.project_id} was discarded"
                f" ({_discard_words(final_reason)}); it cannot be confirmed now")
        if event.sent_at and known_sent_at == format_utc(event.sent_at):
            return DUPLICATE
        raise MessageConflict(
            f"message {event.message_id} of project {event.project_id} was already confirmed"
            " with another sent_at; the first confirmation is kept")

    def discard_unconfirmed(self, confirm_timeout: float) -> int:
        """Discard messages still awaiting confirmation after `confirm_timeout` seconds."""
        now = self.clock.now()
        with self._write() as conn:
            return conn.execute(
                "UPDATE messages SET state = ?, payload = NULL, final_reason = ?, updated_at = ?"
                " WHERE state = ? AND created_at <= ?",
                (DISCARDED, NEVER_CONFIRMED, now, AWAITING_CONFIRMATION, now - confirm_timeout),
            ).rowcount

    # ----------------------------------------------------------------------- leases

    def release_expired_leases(self) -> int:
        """Return messages whose lease ran out, or whose local owner died, to the queue."""
        now = self.clock.now()
        host = socket.gethostname()
        owners = [r[0] for r in self._read(
            "SELECT DISTINCT lease_owner FROM messages WHERE state = ?", (IN_FLIGHT,))]
        dead = [o for o in owners if o and _owner_is_dead(o, host)]
        with self._write() as conn:
            count = conn.execute(
                f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_expires_at <= ?",
                (now, IN_FLIGHT, now)).rowcount
            for owner in dead:
                count += conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                    (now, IN_FLIGHT, owner)).rowcount
        return count

    def claim(
        self,
        owner: str,
        project_id: str,
        limit: int,
        *,
        lease_seconds: float,
        due_by: float | None = None,
        max_row_id: int | None = None,
    ) -> list[ClaimedMessage]:
        """Lease up to `limit` due messages of one project to `owner`.

        Due means `queued`, or `retry_wait` with `next_attempt_at <= due_by` (default now).
        Nothing is deleted on claim: an unacknowledged lease simply runs out.
        """
        now = self.clock.now()
        due_by = now if due_by is None else due_by
        extra = " AND id <= ?" if max_row_id is not None else ""
        params: list[Any] = [project_id, QUEUED, RETRY_WAIT, due_by]
        if max_row_id is not None:
            params.append(max_row_id)
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, project_id, message_id, key, payload, payload_sha256, attempts,"
                " first_failure_at, retry_reason FROM messages"
                " WHERE project_id = ? AND (state = ? OR (state = ? AND next_attempt_at <= ?))"
                f"{extra} ORDER BY id LIMIT ?", (*params, limit),
            ).fetchall()
            if rows:
                ids = [r[0] for r in rows]
                marks = ",".join("?" * len(ids))
                conn.execute(
                    f"UPDATE messages SET state = ?, lease_owner = ?, lease_expires_at = ?,"
                    f" updated_at = ? WHERE id IN ({marks})",
                    (IN_FLIGHT, owner, now + lease_seconds, now, *ids))
        return [ClaimedMessage(*r) for r in rows]

    def release(self, owner: str, row_ids: Iterable[int] | None = None) -> int:
        """Give leased messages back (shutdown): they return to where they were waiting."""
        now = self.clock.now()
        with self._write() as conn:
            if row_ids is None:
                return conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE state = ? AND lease_owner = ?",
                    (now, IN_FLIGHT, owner)).rowcount
            count = 0
            for row_id in row_ids:
                count += conn.execute(
                    f"UPDATE messages SET {_RELEASE_SET} WHERE id = ? AND state = ?"
                    " AND lease_owner = ?", (now, row_id, IN_FLIGHT, owner)).rowcount
            return count

    def settle(self, owner: str, outcomes: Iterable[Outcome]) -> None:
        """Record the outcomes of finished attempts, all in one transaction."""
        now = self.clock.now()
        with self._write() as conn:
            for outcome in outcomes:
                if isinstance(outcome, Stored):
                    self._settle_stored(conn, outcome, now)
                elif isinstance(outcome, Retry):
                    # Unreachable streaks keep their first failure; rate limiting never expires.
                    conn.execute(
                        "UPDATE messages SET state = ?, attempts = attempts + 1,"
                        " first_failure_at = CASE WHEN ? = 'unreachable'"
                        "   THEN COALESCE(first_failure_at, ?) ELSE NULL END,"
                        " next_attempt_at = ?, retry_reason = ?, last_error = ?,"
                        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                        " WHERE id = ? AND state = ? AND lease_owner = ?",
                        (RETRY_WAIT, outcome.reason, now, outcome.next_attempt_at,
                         outcome.reason, outcome.error[:500], now, outcome.row_id, IN_FLIGHT,
                         owner))
                else:
                    conn.execute(
                        "UPDATE messages SET state = ?, attempts = attempts + 1,"
                        " final_reason = ?, last_error = ?, next_attempt_at = NULL,"
                        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                        " WHERE id = ? AND state = ? AND lease_owner = ?",
                        (FAILED, outcome.reason[:500], outcome.reason[:500], now,
                         outcome.row_id, IN_FLIGHT, owner))

    def _settle_stored(self, conn: sqlite3.Connection, outcome: Stored, now: float) -> None:
        # A verified object is stored whoever holds the lease now; the body leaves the spool.
        updated = conn.execute(
            "UPDATE messages SET state = ?, payload = NULL, attempts = attempts + 1,"
            " stored_at = ?, stored_key = ?, destination_url = ?, version_id = ?,"
            " next_attempt_at = NULL, retry_reason = NULL, first_failure_at = NULL,"
            " last_error = NULL, final_reason = NULL, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND state != ?",
            (STORED, now, outcome.key, outcome.destination_url, outcome.version_id, now,
             outcome.row_id, STORED)).rowcount
        if updated:
            conn.execute(
                "INSERT OR REPLACE INTO archive_index (project_id, message_id, medium,"
                " message_type, campaign_id, recipient_hash, sent_at, key, payload_sha256,"
                " version_id, destination_url, stored_at)"
                " SELECT project_id, message_id, medium, message_type, campaign_id,"
                " recipient_hash, sent_at, stored_key, payload_sha256, version_id,"
                " destination_url, stored_at FROM messages WHERE id = ?", (outcome.row_id,))

    # ----------------------------------------------------------------------- retry schedule

    def expire_overdue(self, project_id: str, retry_window: float) -> int:
        """Expire unreachable messages whose first failure is `retry_window` old or older."""
        now = self.clock.now()
        with self._write() as conn:
            return conn.execute(
                "UPDATE messages SET state = ?, final_reason = ?,"
                " next_attempt_at = NULL, updated_at = ? WHERE project_id = ? AND state = ?"
                " AND retry_reason = 'unreachable' AND first_failure_at + ? <= ?",
                (EXPIRED, "cannot be archived: destination unreachable for the whole retry"
                 " window", now, project_id, RETRY_WAIT, retry_window, now)).rowcount

    def next_expiry(self, project_id: str, retry_window: float) -> float | None:
        """When the next unreachable-waiting message of a project reaches its window's end."""
        rows = self._read(
            "SELECT MIN(first_failure_at) FROM messages WHERE project_id = ? AND state = ?"
            " AND retry_reason = 'unreachable'", (project_id, RETRY_WAIT))
        first = rows[0][0]
        return None if first is None else first + retry_window

    def reschedule_unreachable(self, project_id: str, next_attempt_at: float) -> int:
        """Bring every message waiting on an unreachable destination forward to `next_attempt_at`.

        Only ever earlier: a message already due stays due (a `--once` pass started before
        the probe succeeded still takes it).
        """
        now = self.clock.now()
        with self._write() as conn:
            return conn.execute(
                "UPDATE messages SET next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?),"
                " updated_at = ? WHERE project_id = ? AND state = ?"
                " AND retry_reason = 'unreachable'",
                (next_attempt_at, next_attempt_at, now, project_id, RETRY_WAIT)).rowcount

    def hold_for_destination(self, project_id: str, next_attempt_at: float) -> int:
        """Park every waiting message of a project behind its destination's next probe.

        Queued and rate-limited messages join the unreachable ones: the destination is down,
        so they wait on the same probe. Those held here for the first time count the hold as
        their first failure, so they expire on the same rule as the ones that were tried.
        """
        now = self.clock.now()
        with self._write() as conn:
            return conn.execute(
                "UPDATE messages SET state = ?, retry_reason = 'unreachable',"
                " first_failure_at = COALESCE(first_failure_at, ?), next_attempt_at = ?,"
                " updated_at = ? WHERE project_id = ? AND state IN (?, ?)",
                (RETRY_WAIT, now, next_attempt_at, now, project_id, QUEUED, RETRY_WAIT),
            ).rowcount

    def claim_among(
        self,
        owner: str,
        project_id: str,
        row_ids: Iterable[int],
        limit: int,
        *,
        lease_seconds: float,
        due_by: float | None = None,
    ) -> list[ClaimedMessage]:
        """Like `claim`, but only among `row_ids` (the messages `sm replay` made due)."""
        now = self.clock.now()
        due_by = now if due_by is None else due_by
        ids = json.dumps(sorted(set(row_ids)))
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, project_id, message_id, key, payload, payload_sha256, attempts,"
                " first_failure_at, retry_reason FROM messages"
                " WHERE id IN (SELECT value FROM json_each(?)) AND project_id = ?"
                " AND (state = ? OR (state = ? AND next_attempt_at <= ?))"
                " ORDER BY id LIMIT ?",
                (ids, project_id, QUEUED, RETRY_WAIT, due_by, limit)).fetchall()
            if rows:
                marks = ",".join("?" * len(rows))
                conn.execute(
                    f"UPDATE messages SET state = ?, lease_owner = ?, lease_expires_at = ?,"
                    f" updated_at = ? WHERE id IN ({marks})",
                    (IN_FLIGHT, owner, now + lease_seconds, now, *[r[0] for r in rows]))
        return [ClaimedMessage(*r) for r in rows]

    def final_reasons(self) -> dict[str, dict[str, int]]:
        """Why messages are `expired` or `failed`: counts per reason, per state (for status)."""
        reasons: dict[str, dict[str, int]] = {}
        for state, reason, count in self._read(
                "SELECT state, final_reason, COUNT(*) FROM messages WHERE state IN (?, ?)"
                " GROUP BY state, final_reason", (EXPIRED, FAILED)):
            reasons.setdefault(state, {})[reason or state] = count
        return reasons

    def outcomes_of(self, row_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Where the given messages stand now: ids, state, retry reason, final reason, error."""
        ids = json.dumps(sorted(set(row_ids)))
        return [dict(r) for r in self._read(
            "SELECT project_id, message_id, state, retry_reason, final_reason, last_error,"
            " next_attempt_at FROM messages WHERE id IN (SELECT value FROM json_each(?))"
            " ORDER BY id", (ids,))]

    def health(self, project_id: str) -> Health | None:
        """The recorded health of a project's destination, if any."""
        rows = self._read("SELECT project_id, url, health, since, next_probe_at, last_error"
                          " FROM destination_health WHERE project_id = ?", (project_id,))
        return Health(*rows[0]) if rows else None

    def set_health(self, project_id: str, url: str, health: str, *,
                   next_probe_at: float | None = None, last_error: str | None = None) -> bool:
        """Record a destination's health; returns True when it changed (worth a log line)."""
        now = self.clock.now()
        with self._write() as conn:
            row = conn.execute("SELECT health, url FROM destination_health WHERE project_id = ?",
                               (project_id,)).fetchone()
            changed = row is None or row[0] != health or row[1] != url
            conn.execute(
                "INSERT INTO destination_health (project_id, url, health, since, next_probe_at,"
                " last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(project_id) DO UPDATE SET url = excluded.url,"
                " health = excluded.health, next_probe_at = excluded.next_probe_at,"
                " last_error = excluded.last_error, updated_at = excluded.updated_at,"
                " since = CASE WHEN destination_health.health = excluded.health"
                "   THEN destination_health.since ELSE excluded.since END",
                (project_id, url, health, now, next_probe_at,
                 last_error[:500] if last_error else None, now))
        return changed

    def forget_health(self, project_id: str) -> None:
        """Drop what is known about a project's destination (after disconnect)."""
        with self._write() as conn:
            conn.execute("DELETE FROM destination_health WHERE project_id = ?", (project_id,))

    def replay(
        self,
        *,
        project_id: str | None = None,
        message_id: str | None = None,
        include_expired: bool = False,
        include_failed: bool = False,
    ) -> list[int]:
        """Make matching waiting (and optionally expired/failed) messages due now.

        Replayed expired/failed messages start a fresh retry window. Returns their row ids.
        """
        now = self.clock.now()
        states = [RETRY_WAIT] + ([EXPIRED] if include_expired else []) + (
            [FAILED] if include_failed else [])
        where = [f"state IN ({','.join('?' * len(states))})"]
        params: list[Any] = list(states)
        if project_id is not None:
            where.append("project_id = ?")
            params.append(project_id)
        if message_id is not None:
            where.append("message_id = ?")
            params.append(message_id)
        # Expired/failed rows keep their payload (only stored/discarded drop it) so replay works.
        where.append("payload IS NOT NULL")
        clause = " AND ".join(where)
        with self._write() as conn:
            rows = conn.execute(f"SELECT id, project_id FROM messages WHERE {clause}", params)
            ids, projects = [], set()
            for row_id, project in rows.fetchall():
                ids.append(row_id)
                projects.add(project)
            for row_id in ids:
                # Waiting messages keep their schedule's history; replayed final ones start anew.
                conn.execute(
                    "UPDATE messages SET next_attempt_at = ?, updated_at = ? WHERE id = ?"
                    " AND state = ?", (now, now, row_id, RETRY_WAIT))
                conn.execute(
                    "UPDATE messages SET state = ?, next_attempt_at = NULL, retry_reason = NULL,"
                    " first_failure_at = NULL, final_reason = NULL, updated_at = ?"
                    " WHERE id = ? AND state != ?", (QUEUED, now, row_id, RETRY_WAIT))
            for project in projects:
                conn.execute("UPDATE destination_health SET next_probe_at = ?"
                             " WHERE project_id = ?", (now, project))
        return ids

    # ----------------------------------------------------------------------- reporting

    def max_row_id(self) -> int:
        """The highest message row id (a pass of `sm run --once` stops there)."""
        rows = self._read("SELECT COALESCE(MAX(id), 0) FROM messages")
        return int(rows[0][0])

    def projects_with_work(self) -> list[str]:
        """Projects that have messages queued, in flight or waiting to retry."""
        return [r[0] for r in self._read(
            "SELECT DISTINCT project_id FROM messages WHERE state IN (?, ?, ?)",
            UNARCHIVED_STATES)]

    def status(self) -> dict[str, Any]:
        """Counts per state and retry reason, oldest unarchived age, next retry, rejections."""
        now = self.clock.now()
        counts = {state: 0 for state in STATES}
        for state, count in self._read("SELECT state, COUNT(*) FROM messages GROUP BY state"):
            counts[state] = count
        reasons = {r[0]: r[1] for r in self._read(
            "SELECT retry_reason, COUNT(*) FROM messages WHERE state = ? GROUP BY retry_reason",
            (RETRY_WAIT,))}
        oldest = self._read(
            "SELECT MIN(COALESCE(confirmed_at, created_at)) FROM messages"
            " WHERE state IN (?, ?, ?)", UNARCHIVED_STATES)[0][0]
        next_retry = self._read(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?", (RETRY_WAIT,))[0][0]
        rejected = self._read("SELECT COUNT(*) FROM rejected")[0][0]
        return {
            "counts": counts,
            "retry_reasons": reasons,
            "oldest_unarchived_age_seconds": None if oldest is None else max(0.0, now - oldest),
            "next_retry_at": next_retry,
            "rejected_lines": rejected,
        }

    def all_health(self) -> dict[str, Health]:
        """Every recorded destination health, by project."""
        return {r[0]: Health(*r) for r in self._read(
            "SELECT project_id, url, health, since, next_probe_at, last_error"
            " FROM destination_health")}

    def rejected_lines(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent rejected input lines (source, line number, reason)."""
        return [dict(r) for r in self._read(
            "SELECT source, line, reason, rejected_at FROM rejected ORDER BY id DESC LIMIT ?",
            (limit,))]

    def message_state(self, project_id: str | int, message_id: str) -> dict[str, Any] | None:
        """One message's row (without its body), for status and tests."""
        rows = self._read(
            "SELECT project_id, message_id, state, attempts, first_failure_at, next_attempt_at,"
            " retry_reason, last_error, final_reason, stored_key, payload_sha256, version_id"
            " FROM messages WHERE project_id = ? AND message_id = ?",
            (str(project_id), message_id))
        return dict(rows[0]) if rows else None


_RELEASE_SET = (
    "state = CASE WHEN next_attempt_at IS NULL THEN 'queued' ELSE 'retry_wait' END,"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
)


def _code_fingerprint(function: Callable[..., Any]) -> int:
    """A 31-bit number that changes whenever `function`'s code changes."""
    code = function.__code__
    # Set literals compile to frozensets whose repr order varies with the hash seed.
    consts = [sorted(map(repr, c)) if isinstance(c, frozenset) else c for c in code.co_consts]
    return zlib.crc32(repr((code.co_code, consts, code.co_names)).encode()) & 0x7FFFFFFF


def _discard_words(final_reason: str | None) -> str:
    """A discard reason as words for an error line."""
    if final_reason == NEVER_CONFIRMED:
        return "never confirmed within confirm_timeout"
    if final_reason and final_reason.startswith(SEND_FAILED):
        return "its send failed"
    return final_reason or "discarded"


def _parse_line(text: str) -> Message | SendEvent | InvalidMessage:
    """One JSON Lines line as a message, an event, or the reason it is rejected."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return InvalidMessage(f"not valid JSON ({exc.args[0].split(':')[0]})")
    try:
        if isinstance(raw, dict) and "event" in raw:
            return parse_event(raw)
        return parse_message(raw)
    except InvalidMessage as exc:
        return exc


class _ConfigMediums:
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
            from .config import load_settings

            settings = load_settings(self.config_file)
            self._projects = {pid: dest.mediums for pid, dest in settings.projects.items()}
            self._stamp = stamp
        return self._projects.get(project_id)
