"""The access log: a chain of custody for every read of the archive (SPEC 8, issue 14).

Every `sm fetch`, `sm show`, `sm export` and `sm find --remote` (and a local `sm find` given
`--case`) appends one JSON line to `access.log` in SM_HOME (owner-only, 0600):

    {"time": "2026-11-27T17:00:00Z", "user": "ann", "host": "laptop", "command": "fetch",
     "case_id": null, "filters": {...}, "messages": [{"project_id", "message_id", "key"}],
     "count": 1, "result": "ok", "error": null, ...details of the command}

Who (the OS user and host), when (RFC 3339 UTC), what (the command, its filters and the
messages it touched, by id and key) and how it ended (`result`: `ok`, `failed` — an object
failed verification —, `not_found`, `ambiguous`, `error`). A recipient given as a filter is
logged only as the hashes searched for (`recipient_hashes`), never as the address itself.

With a case id the same line (byte for byte, newline included) is also written create-only to
each destination the command concerned, as
`{prefix}_sm/access/{case_id}/{YYYYMMDDTHHMMSSZ}-{16 hex}.json`; an export's checksum listing
(`SHA256SUMS`, or the zip's `.zip.sha256`) goes beside it as `….SHA256SUMS`.

No Typer or Rich here: the CLI (`cli/access_log.py`) decides when to record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock, to_rfc3339
from ..config import ensure_private_dir
from ..destinations.base import Destination
from ..errors import IntegrityError, ObjectConflict, ObjectNotFound
from ..investigate.index import IndexEntry
from ..message import recipient_hash_candidates, sha256_hex

ACCESS_LOG_FILE = "access.log"
ACCESS_FOLDER = "_sm/access/"
CASE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
CASE_ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ -"

# How a command ended.
OK = "ok"
FAILED = "failed"          # an object failed verification (checksum / integrity)
NOT_FOUND = "not_found"
AMBIGUOUS = "ambiguous"
ERROR = "error"
RESULTS: tuple[str, ...] = (OK, FAILED, NOT_FOUND, AMBIGUOUS, ERROR)

# The fields of every record, in this order; a command's details follow them.
RECORD_FIELDS: tuple[str, ...] = (
    "time", "user", "host", "command", "case_id", "filters", "messages", "count", "result",
    "error")

_NEW_LOG = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def check_case_id(value: str) -> str:
    """`value` if it is a valid case id (it becomes a key folder and a file name)."""
    if not CASE_ID_RE.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a case id: {CASE_ID_RULE}")
    return value


def current_user() -> str:
    """The OS user running `sm` (from the process's user id, not the environment)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no name for this uid
            return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def current_host() -> str:
    """This machine's host name."""
    return socket.gethostname() or "unknown"


def random_suffix() -> str:
    """16 random hex digits: two records of the same second never share a key."""
    return secrets.token_hex(8)


def recipient_filter(recipient: str) -> list[str]:
    """A recipient filter as it is logged: the hashes searched for, never the address."""
    return recipient_hash_candidates(recipient)


def filters_of(*, recipient: str | None = None, **others: Any) -> dict[str, Any]:
    """The filters of a command as logged: the ones given (not None), the recipient hashed.

    Times are logged as given (`7d`) — what the investigator asked — not as resolved.
    """
    filters: dict[str, Any] = {}
    if recipient is not None:
        filters["recipient_hashes"] = recipient_filter(recipient)
    for name, value in others.items():
        if value is not None and value is not False:
            filters[name] = value
    return filters


def message_ref(project_id: str | None, message_id: str, key: str | None) -> dict[str, Any]:
    """One message touched: project, id and object key (keys hold hashes, never addresses)."""
    return {"project_id": project_id, "message_id": message_id, "key": key}


def refs_of(entries: Iterable[IndexEntry]) -> list[dict[str, Any]]:
    """The messages of index entries, as logged."""
    return [message_ref(e.project_id, e.message_id, e.key) for e in entries]


def result_of(exc: BaseException | None) -> str:
    """The `result` of a command that raised `exc` (None: it succeeded)."""
    if exc is None:
        return OK
    if isinstance(exc, IntegrityError):
        return FAILED
    if isinstance(exc, ObjectNotFound) or type(exc).__name__ == "UnknownMessageId":
        return NOT_FOUND
    if type(exc).__name__ == "AmbiguousMessage":
        return AMBIGUOUS
    return ERROR


def redact(text: str, secrets_: Iterable[str | None]) -> str:
    """`text` with every non-empty value of `secrets_` (a raw recipient) replaced."""
    for value in secrets_:
        for form in {value, value.strip(), value.strip().lower()} if value else ():
            if form:
                text = re.sub(re.escape(form), "[recipient]", text, flags=re.IGNORECASE)
    return text


@dataclass
class AccessRecord:
    """One access: built while the command runs, written when it ends."""

    command: str
    case_id: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    count: int | None = None  # default: len(messages)
    result: str = OK
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    projects: list[str] = field(default_factory=list)  # where a case copy goes
    attachments: dict[str, bytes] = field(default_factory=dict)  # suffix -> bytes (case copy)

    def touch(self, refs: Iterable[dict[str, Any]]) -> None:
        """Add messages touched (a message already listed is not repeated)."""
        seen = {(m["project_id"], m["message_id"]) for m in self.messages}
        for ref in refs:
            if (ref["project_id"], ref["message_id"]) not in seen:
                seen.add((ref["project_id"], ref["message_id"]))
                self.messages.append(ref)

    def concern(self, project_ids: Iterable[str | None]) -> None:
        """Note projects whose destination receives the case copy."""
        for pid in project_ids:
            if pid is not None and pid not in self.projects:
                self.projects.append(pid)

    def document(self, *, time: str, user: str, host: str) -> dict[str, Any]:
        """The JSON object of the record (RECORD_FIELDS, then the command's details)."""
        document: dict[str, Any] = {
            "time": time, "user": user, "host": host, "command": self.command,
            "case_id": self.case_id, "filters": self.filters, "messages": self.messages,
            "count": len(self.messages) if self.count is None else self.count,
            "result": self.result, "error": self.error}
        for name, value in self.details.items():
            if name not in document:
                document[name] = value
        return document


def encode_line(document: dict[str, Any]) -> bytes:
    """One record as its log line: compact JSON, UTF-8, `\\n`-terminated."""
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":"))
            + "\n").encode("utf-8")


def case_key(destination_prefix: str, case_id: str, moment: float, suffix: str) -> str:
    """`{prefix}_sm/access/{case_id}/{YYYYMMDDTHHMMSSZ}-{suffix}.json`."""
    stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{destination_prefix}{ACCESS_FOLDER}{check_case_id(case_id)}/{stamp}-{suffix}.json"


class AccessLog:
    """The local access log (`access.log` beside the spool, 0600), and case copies."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self.path = path
        self.clock = clock or SystemClock()

    @classmethod
    def in_folder(cls, folder: Path, *, clock: Clock | None = None) -> AccessLog:
        """The access log of an SM_HOME (or state) folder."""
        return cls(folder / ACCESS_LOG_FILE, clock=clock)

    def seal(self, record: AccessRecord) -> tuple[float, bytes]:
        """The moment and exact line of `record`, with who and when filled in."""
        moment = self.clock.now()
        document = record.document(time=to_rfc3339(moment) or "", user=current_user(),
                                   host=current_host())
        return moment, encode_line(document)

    def append(self, line: bytes) -> None:
        """Append one line: created 0600, never through a symlink, one write, fsync'd."""
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, _NEW_LOG, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # an access log is personal data: owner only
            with _locked(fd):
                written = 0
                while written < len(line):
                    written += os.write(fd, line[written:])
                os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(line number, record) for each line; None for a line that is not a JSON object."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    document = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    yield number, None
                    continue
                yield number, document if isinstance(document, dict) else None


def select(records: Iterable[dict[str, Any]], *, case_id: str | None = None,
           since: datetime | None = None) -> list[dict[str, Any]]:
    """The records of one case and/or at or after `since`, in log order."""
    chosen: list[dict[str, Any]] = []
    for record in records:
        if case_id is not None and record.get("case_id") != case_id:
            continue
        if since is not None:
            moment = _parse_time(record.get("time"))
            if moment is None or moment < since:
                continue
        chosen.append(record)
    return chosen


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def write_case_copy(destination: Destination, case_id: str, moment: float, line: bytes,
                    attachments: dict[str, bytes] | None = None) -> list[str]:
    """Write the record (and its attachments) create-only under the case; returns the keys.

    The record object holds exactly the bytes of its access.log line. An attachment
    (`SHA256SUMS`) is written first, beside it, with the same stem: the record, written
    last, is the proof the copy is whole.
    """
    for _ in range(3):
        key = case_key(destination.prefix, case_id, moment, random_suffix())
        stem = key.removesuffix(".json")
        try:
            written = []
            for suffix, body in sorted((attachments or {}).items()):
                attached = f"{stem}.{suffix}"
                destination.put(attached, body, sha256_hex(body))
                written.append(attached)
            destination.put(key, line, sha256_hex(line))
            return [*written, key]
        except ObjectConflict:
            continue  # the same random suffix twice: choose another
    raise ObjectConflict(f"could not choose a new key under {ACCESS_FOLDER}{case_id}/")


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: O_APPEND writes of one line are enough
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)

