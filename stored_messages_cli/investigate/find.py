"""Reading the archive back for an investigation: verified reads, remote find, index rebuild.

Every object read is verified before anything is shown: the store's own checksum where it
has one (S3 `ChecksumSHA256`, checked by the SDK), gzip, `sm-payload-sha256` against the
payload bytes and against the local index, the payload's canonical encoding, and the key
against the payload's own ids. Written against the Destination Protocol only.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..clock import to_rfc3339
from ..destinations.base import PAYLOAD_SHA_METADATA, Destination
from ..errors import DestinationError, IntegrityError, InvalidMessage, ObjectNotFound, SmError
from ..message import (
    KEY_SUFFIX,
    MEDIUMS,
    UNASSOCIATED,
    canonical_json,
    decode_json,
    format_utc,
    identifier_hashes,
    parse_key,
    parse_sent_at,
    recipient_hash,
    recipient_prefix,
    sha256_hex,
)
from ..spool.bodies import HAS_BODY
from .index import ArchiveIndex, FindQuery, IndexEntry, sort_newest_first

PARTS: tuple[str, ...] = ("json", "html", "text", "body")
READ_WORKERS = 8
INDEX_BATCH = 200


class AmbiguousMessage(SmError):
    """A message id found in more than one project (or under more than one key)."""

    def __init__(self, message: str, *, places: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.places = places


class MissingPart(SmError):
    """The message has no such part (`--part html` of an SMS, say)."""


@dataclass(frozen=True)
class VerifiedMessage:
    """A message read from the bucket whose bytes passed every check."""

    entry: IndexEntry
    payload: bytes  # the exact archived payload JSON
    document: dict[str, Any]

    def part(self, name: str) -> bytes:
        """The exact bytes of one part: `json` (the payload), `html`, `text` or `body`.

        Text parts are the stored string encoded as UTF-8, nothing added. Raises MissingPart.
        """
        if name == "json":
            return self.payload
        if name not in PARTS:
            raise MissingPart(f"unknown part {name!r}; use one of {', '.join(PARTS)}")
        content = self.document.get("content")
        value = content.get(name) if isinstance(content, dict) else None
        if not isinstance(value, str):
            medium = self.entry.medium
            have = [p for p in PARTS[1:] if isinstance(content, dict)
                    and isinstance(content.get(p), str)]
            raise MissingPart(
                f"message {self.entry.message_id} ({medium}) has no {name} part",
                hint=f"sm fetch {self.entry.message_id} --project {self.entry.project_id}"
                     f" --part {(have or ['json'])[0]}  (parts: {', '.join(['json', *have])})")
        return value.encode("utf-8")


def _mismatch(key: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"checksum mismatch for {key}: {detail}",
        hint="the object was altered or replaced after it was archived; do not rely on it."
             " Check the bucket's object versions and access logs")


def _not_intact(key: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"integrity check failed for {key}: {detail}",
        hint="the object was altered or replaced after it was archived; do not rely on it."
             " Check the bucket's object versions and access logs")


def read_verified(destination: Destination, key: str, *,
                  expected_sha256: str | None = None) -> VerifiedMessage:
    """Download `key` and verify it; raises IntegrityError naming what does not match.

    `expected_sha256` is the payload hash the local index recorded when the message was
    stored; without it (a fresh machine) the object's own metadata is all there is.
    """
    try:
        fetched = destination.get(key)
    except DestinationError as exc:
        if type(exc.__cause__).__name__ == "FlexibleChecksumError":
            raise _mismatch(key, "the bytes downloaded do not match the store's checksum"
                            " of the object") from exc
        raise
    try:
        payload = gzip.decompress(fetched.body)
    except (OSError, EOFError, zlib.error):
        raise _mismatch(key, "the object is not valid gzip") from None
    actual = sha256_hex(payload)
    recorded = fetched.info.payload_sha256
    if not recorded:
        raise _mismatch(key, f"the object has no {PAYLOAD_SHA_METADATA} metadata (payload"
                        f" SHA-256 is {actual})")
    if recorded != actual:
        raise _mismatch(key, f"payload SHA-256 is {actual} but the object's"
                        f" {PAYLOAD_SHA_METADATA} metadata says {recorded}")
    if expected_sha256 and expected_sha256 != actual:
        raise _mismatch(key, f"payload SHA-256 is {actual} but the local index recorded"
                        f" {expected_sha256} when the message was stored")
    document = _payload_document(key, payload)
    entry = _entry_from_payload(destination, key, document, actual, fetched.info.version_id)
    return VerifiedMessage(entry, payload, document)


def _payload_document(key: str, payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_intact(key, "the payload is not UTF-8") from None
    try:
        # decode_json caps nesting (model.MAX_DEPTH) before anything recursive runs, so a
        # forged object nested thousands deep is one integrity error, never a RecursionError.
        document = decode_json(text)
    except InvalidMessage as exc:
        raise _not_intact(key, f"the payload is not a stored message's JSON ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a forged object does, it is not intact
        raise _not_intact(key, f"the payload cannot be read ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise _not_intact(key, "the payload is not a JSON object")
    try:
        canonical = canonical_json(document)
    except SmError:
        canonical = b""
    if canonical != payload:
        raise _not_intact(key, "the payload is not in the canonical encoding sm writes"
                          " (it was re-encoded or edited)")
    return document


def _entry_from_payload(destination: Destination, key: str, document: dict[str, Any],
                        payload_sha256: str, version_id: str | None) -> IndexEntry:
    """The index row for a payload, after checking the key names the same message."""
    parsed = parse_key(key, destination.prefix)
    if parsed is None:
        raise _not_intact(key, "the key is not an sm message key")
    try:
        rhash = recipient_hash(document.get("recipient") or {})
        sent_at = format_utc(parse_sent_at(document.get("sent_at")))
    except (SmError, ValueError) as exc:
        raise _not_intact(key, f"the payload is not a stored message ({exc})") from None
    campaign = document.get("campaign_id")
    # The key's campaign folder is the payload's campaign, or `unassociated` for none (so a
    # campaign literally named "unassociated" shares that folder, as SPEC 3's layout implies).
    folder = key[len(destination.prefix):].split("/")[3]
    claims = {"medium": (parsed["medium"], document.get("medium")),
              "project_id": (parsed["project_id"], document.get("project_id")),
              "recipient_hash": (parsed["recipient_hash"], rhash),
              "campaign_id": (folder, UNASSOCIATED if campaign is None else campaign),
              "message_id": (parsed["message_id"], document.get("message_id"))}
    for name, (in_key, value) in claims.items():
        if in_key != value:
            raise _not_intact(key, f"the key says {name} {json.dumps(in_key)} but the payload"
                              f" says {json.dumps(value, ensure_ascii=False)}")
    message_type = document.get("message_type")
    if not isinstance(message_type, str):
        raise _not_intact(key, "the payload has no message_type")
    return IndexEntry(
        project_id=parsed["project_id"], message_id=parsed["message_id"],
        medium=parsed["medium"], message_type=message_type, campaign_id=campaign,
        recipient_hash=rhash, sent_at=sent_at, key=key, payload_sha256=payload_sha256,
        version_id=version_id, destination_url=destination.url,
        recipient_hashes=tuple(sorted({rhash, *identifier_hashes(
            document.get("recipient")).values()})))


# --------------------------------------------------------------------------- parallel reads


def read_many(destination: Destination, keys: Iterable[str], *,
              expected: dict[str, str] | None = None, workers: int = READ_WORKERS,
              ) -> Iterator[tuple[str, VerifiedMessage | SmError]]:
    """Read and verify many keys in parallel; yields (key, result or the error) as they finish.

    Integrity failures and objects gone since listing are yielded as errors so one bad
    object does not hide the others; other destination errors propagate.
    """
    expected = expected or {}
    pending: deque[str] = deque(keys)
    running: dict[Future[VerifiedMessage], str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sm-read")
    try:
        while pending or running:
            while pending and len(running) < workers * 2:
                key = pending.popleft()
                running[pool.submit(read_verified, destination, key,
                                    expected_sha256=expected.get(key))] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                try:
                    yield key, future.result()
                except (IntegrityError, ObjectNotFound) as exc:
                    yield key, exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- remote find


KEY_PREFIX = "key prefix"
MANIFESTS = "manifests"


@dataclass
class RemoteFindReport:
    """What a remote find read: matching messages and objects that failed verification.

    `source` says how candidates were found: `manifests` (the manifests' `recipient_hashes`,
    which hold every identifier, plus the key prefix for what no sealed manifest lists yet)
    or `key prefix` (only the identifier the key was made from).
    """

    entries: list[IndexEntry] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    listed: int = 0
    truncated: bool = False
    source: str = KEY_PREFIX
    segments: int = 0
    sealed_through: str | None = None  # the newest segment's sealed_at
    manifest_failures: list[tuple[str, str]] = field(default_factory=list)


def find_remote(destination: Destination, project_id: str, query: FindQuery, *,
                mediums: Iterable[str] = MEDIUMS, workers: int = READ_WORKERS
                ) -> RemoteFindReport:
    """Find a recipient's messages of one project in the bucket, without the local index.

    Lists `{prefix}{medium}/{project}/{hash}/` for each medium and each hash the recipient
    term may be stored under, skips keys the id/campaign filters rule out, then reads and
    verifies each remaining object for `sent_at` and `message_type`. The result is not cut
    to `query.limit`; the caller merges projects first.
    """
    if not query.recipient_hashes:
        raise ValueError("a remote find needs recipient hashes")
    report = RemoteFindReport()
    from_manifests = _manifest_candidates(destination, project_id, query, report)
    prefixes = [recipient_prefix(medium, project_id, rhash, destination.prefix)
                for medium in mediums if query.medium in (None, medium)
                for rhash in query.recipient_hashes]
    keys: list[str] = []

    def list_keys(prefix: str) -> list[str]:
        return [info.key for info in destination.list(prefix)]

    # The first listing runs alone so a lazily built SDK client is built once, not per
    # thread; the rest go in parallel, since on a real bucket each is a round trip.
    listings = [list_keys(prefixes[0])] if prefixes else []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(prefixes))),
                            thread_name_prefix="sm-list") as pool:
        listings.extend(pool.map(list_keys, prefixes[1:]))
    for key in (key for listing in listings for key in listing):
        parsed = parse_key(key, destination.prefix)
        if parsed is None:
            continue
        report.listed += 1
        if query.message_id is not None and parsed["message_id"] != query.message_id:
            continue
        folder = parsed["campaign_id"] if parsed["campaign_id"] is not None else UNASSOCIATED
        if query.campaign_id is not None and folder != query.campaign_id:
            continue
        keys.append(key)
    keys = list(dict.fromkeys([*keys, *from_manifests]))
    for key, result in read_many(destination, keys, workers=workers):
        if isinstance(result, VerifiedMessage):
            if query.matches(result.entry):
                report.entries.append(result.entry)
        elif isinstance(result, IntegrityError):
            report.failures.append((key, str(result)))
    report.entries = sort_newest_first(report.entries)
    return report


def _manifest_candidates(destination: Destination, project_id: str, query: FindQuery,
                         report: RemoteFindReport) -> list[str]:
    """Keys of stored messages the project's manifests list for any of the query's hashes
    (and within its other filters, dates included); records in `report` what was read."""
    from ..evidence.segments import ManifestFormatError, manifest_prefix, parse_segment, seq_of_key

    wanted = set(query.recipient_hashes)
    segment_keys = sorted((seq, info.key) for info in destination.list(
        manifest_prefix(destination.prefix, project_id))
        if (seq := seq_of_key(info.key)) is not None)
    keys: list[str] = []
    for _, segment_key in segment_keys:
        try:
            segment = parse_segment(destination.get(segment_key).body)
        except (ManifestFormatError, ObjectNotFound) as exc:
            report.manifest_failures.append((segment_key, str(exc)))
            continue
        report.segments += 1
        report.sealed_through = max(report.sealed_through or "",
                                    str(segment.header.get("sealed_at")))
        for entry in segment.entries:
            hashes = entry.get("recipient_hashes")
            if entry.get("outcome") != "stored" or not isinstance(hashes, dict) or \
                    not wanted & {str(h) for h in hashes.values()}:
                continue
            if not _manifest_entry_matches(entry, query):
                continue
            key = entry.get("key")
            if isinstance(key, str) and parse_key(key, destination.prefix) is not None:
                keys.append(key)
    if report.segments or report.manifest_failures:
        report.source = MANIFESTS
    return keys


def _manifest_entry_matches(entry: dict[str, Any], query: FindQuery) -> bool:
    """A manifest entry within the query's id, campaign, medium and date filters (the read
    object is checked again; this only saves reading what cannot match)."""
    campaign = entry.get("campaign_id")
    folder = campaign if campaign is not None else UNASSOCIATED
    if query.message_id is not None and entry.get("message_id") != query.message_id:
        return False
    if query.campaign_id is not None and folder != query.campaign_id:
        return False
    if query.medium is not None and entry.get("medium") != query.medium:
        return False
    if query.since is not None or query.until is not None:
        try:
            moment = parse_sent_at(entry.get("sent_at"))
        except ValueError:
            return True  # let the object's own sent_at decide
        if (query.since is not None and moment < query.since) or (
                query.until is not None and moment > query.until):
            return False
    return True


def locate_remote(destination: Destination, project_id: str, message_id: str, *,
                  mediums: Iterable[str] = MEDIUMS) -> list[str]:
    """Keys of a message id in one project, found by listing the whole project.

    Costs one list request per 1,000 objects of the project (per medium); it stops at the
    first match, since a message id is unique within a project.
    """
    suffix = f"/{message_id}{KEY_SUFFIX}"
    for medium in mediums:
        for info in destination.list(f"{destination.prefix}{medium}/{project_id}/"):
            if info.key.endswith(suffix):
                parsed = parse_key(info.key, destination.prefix)
                if parsed is not None and parsed["message_id"] == message_id:
                    return [info.key]
    return []


# --------------------------------------------------------------------------- rebuild


@dataclass
class RebuildReport:
    """What `sm index rebuild` did for one project."""

    project_id: str
    destination_url: str
    listed: int = 0
    already_indexed: int = 0
    indexed: int = 0
    vanished: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    def as_dict(self) -> dict[str, Any]:
        """The `--json` form."""
        return {"project_id": self.project_id, "destination": self.destination_url,
                "listed": self.listed, "already_indexed": self.already_indexed,
                "indexed": self.indexed, "vanished": self.vanished,
                "failed": len(self.failures),
                "failures": [{"key": k, "reason": r} for k, r in self.failures]}


def rebuild_index(
    index: ArchiveIndex,
    destination: Destination,
    project_id: str,
    *,
    mediums: Iterable[str] = MEDIUMS,
    workers: int = READ_WORKERS,
    on_total: Callable[[int], None] | None = None,
    on_read: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Index every message of a project found in the bucket, reading and verifying each.

    Resumable: keys already indexed under the same key are not read again. Rows are written
    in short transactions of INDEX_BATCH, so an interrupted rebuild keeps what it did and a
    running `sm run` is never blocked for long. Objects that fail verification are reported,
    not indexed.
    """
    mediums = tuple(mediums)
    report = RebuildReport(project_id, destination.url)
    known = index.keys_of(project_id)
    todo: list[str] = []
    for medium in mediums:
        for info in destination.list(f"{destination.prefix}{medium}/{project_id}/"):
            parsed = parse_key(info.key, destination.prefix)
            if parsed is None or parsed["project_id"] != project_id:
                continue
            report.listed += 1
            if known.get(parsed["message_id"]) == info.key:
                report.already_indexed += 1
            else:
                todo.append(info.key)
    if on_total:
        on_total(len(todo))
    batch: list[IndexEntry] = []
    for key, result in read_many(destination, todo, workers=workers):
        if isinstance(result, VerifiedMessage):
            batch.append(result.entry)
            if len(batch) >= INDEX_BATCH:
                index.add(batch)
                report.indexed += len(batch)
                batch = []
        elif isinstance(result, ObjectNotFound):
            report.vanished += 1
        else:
            report.failures.append((key, str(result)))
        if on_read:
            on_read(1)
    if batch:
        index.add(batch)
        report.indexed += len(batch)
    if set(MEDIUMS) <= set(mediums) and not report.failures:
        index.mark_complete(project_id, "rebuild")  # every message of the project is in
    return report


# --------------------------------------------------------------------------- fetch

# (project_id, destination URL recorded in the index or None for the project's own) -> open
DestinationOpener = Callable[[str, str | None], Destination]


def fetch_message(
    index: ArchiveIndex,
    message_id: str,
    *,
    projects: list[str],
    open_for: DestinationOpener,
    project_id: str | None = None,
) -> VerifiedMessage:
    """Find a message (index first, else by listing each project's bucket) and read it verified.

    `projects` are the projects to search remotely when the index does not know the id.
    The same id in several projects raises AmbiguousMessage; a message read from the bucket
    is added to the index so the next fetch is direct.
    """
    entries = index.entries_for(message_id, project_id)
    if len(entries) > 1:
        places = [e.project_id for e in entries]
        raise AmbiguousMessage(
            f"message id {message_id} exists in projects {', '.join(places)}",
            places=places, hint=f"sm fetch {message_id} --project {places[0]}")
    if entries:
        entry = entries[0]
        destination = open_for(entry.project_id, entry.destination_url)
        try:
            return read_verified(destination, entry.key, expected_sha256=entry.payload_sha256)
        except ObjectNotFound:
            raise ObjectNotFound(
                f"message {message_id} of project {entry.project_id} is in the local index but"
                f" its object {entry.key} is missing from {destination.url}",
                hint="check the bucket's object versions and lifecycle rules") from None
        finally:
            destination.close()
    found: list[tuple[str, Destination, str]] = []
    try:
        for pid in projects:
            destination = open_for(pid, None)
            keys = locate_remote(destination, pid, message_id)
            if keys:
                found.append((pid, destination, keys[0]))
            else:
                destination.close()
        if not found:
            searched = ", ".join(projects) or "none"
            raise ObjectNotFound(
                f"message {message_id} is not in the local index nor in the bucket of"
                f" project(s) {searched}",
                hint="sm find --remote --recipient RECIPIENT --project ID")
        if len(found) > 1:
            places = [pid for pid, _, _ in found]
            raise AmbiguousMessage(
                f"message id {message_id} exists in projects {', '.join(places)}",
                places=places, hint=f"sm fetch {message_id} --project {places[0]}")
        pid, destination, key = found[0]
        verified = read_verified(destination, key)
    finally:
        for _, destination, _ in found:
            destination.close()
    index.add([verified.entry])
    return verified


# --------------------------------------------------------------------------- show

SHOW_FIELDS: tuple[str, ...] = (
    "message_id", "project_id", "state", "final_reason", "last_error", "recorded_at",
    "confirmed_at", "first_failure_at", "next_attempt_at", "stored_at", "attempts",
    "destination", "key", "payload_sha256", "body_in_spool",
)
# What each final reason code means, for a person (`sm show`).
REASON_WORDS: dict[str, str] = {
    "conflict": "another object already holds its key with different bytes; the first copy"
                " is kept",
    "corrupt_in_spool": "its body in the spool no longer matched its hash before upload",
    "expired_unreachable": "its destination stayed unreachable for the whole retry window",
    "never_confirmed": "its send was never confirmed within confirm_timeout",
    "send_failed": "the send pipeline reported that its send failed",
    "medium_not_archived": "its project does not archive this medium",
}


class UnknownMessageId(SmError):
    """Neither the spool nor the local index knows the message id."""


def _key_prefix_of(url: str | None) -> str:
    """The key prefix of a destination URL (`s3://bucket/archive/` → `archive/`)."""
    if not url or url.startswith("file:"):
        return ""
    parts = url.split("/", 3)
    return parts[3] if len(parts) > 3 else ""


def show_message(index: ArchiveIndex, message_id: str, *, project_id: str | None = None,
                 destination_of: Callable[[str], str | None] = lambda _: None
                 ) -> dict[str, Any]:
    """Everything the spool and the local index know of one message, as SHOW_FIELDS.

    `destination_of(project)` is the project's configured URL (where a message not yet
    stored will go). Raises UnknownMessageId, or AmbiguousMessage for an id in several
    projects without `project_id`.
    """
    where = "message_id = ?" + (" AND project_id = ?" if project_id is not None else "")
    params = [message_id] + ([project_id] if project_id is not None else [])
    with index._lock:  # noqa: SLF001 - the spool connection this index shares
        cursor = index.conn.execute(
            "SELECT project_id, state, final_reason, last_error, created_at, confirmed_at,"
            " first_failure_at, next_attempt_at, stored_at, attempts, destination_url,"
            f" stored_key, key, payload_sha256, {HAS_BODY}"
            f" FROM messages WHERE {where} ORDER BY project_id", params)
        rows = cursor.fetchall()
    indexed = {e.project_id: e for e in index.entries_for(message_id, project_id)}
    projects = sorted({row[0] for row in rows} | set(indexed))
    if not projects:
        scope = f" of project {project_id}" if project_id is not None else ""
        raise UnknownMessageId(
            f"message {message_id}{scope} is unknown to the spool and to the local index",
            hint=f"sm find --remote --message-id {message_id} --recipient R, or sm index"
                 " rebuild")
    if len(projects) > 1:
        raise AmbiguousMessage(
            f"message id {message_id} exists in projects {', '.join(projects)}",
            places=projects, hint=f"sm show {message_id} --project {projects[0]}")
    pid = projects[0]
    entry = indexed.get(pid)
    row = next((r for r in rows if r[0] == pid), None)
    if row is None:  # archived, known from the index only (another spool, or pruned)
        assert entry is not None
        return {"message_id": message_id, "project_id": pid, "state": "stored",
                "final_reason": None, "last_error": None, "recorded_at": None,
                "confirmed_at": None, "first_failure_at": None, "next_attempt_at": None,
                "stored_at": to_rfc3339(entry.stored_at), "attempts": None,
                "destination": entry.destination_url, "key": entry.key,
                "payload_sha256": entry.payload_sha256, "body_in_spool": False}
    (_, state, final_reason, last_error, created_at, confirmed_at, first_failure_at,
     next_attempt_at, stored_at, attempts, destination_url, stored_key, relative_key,
     payload_sha256, has_body) = row
    destination = destination_url or (entry.destination_url if entry else None) or \
        destination_of(pid)
    key = stored_key or (entry.key if entry else None) or \
        f"{_key_prefix_of(destination)}{relative_key}"
    return {"message_id": message_id, "project_id": pid, "state": state,
            "final_reason": final_reason, "last_error": last_error,
            "recorded_at": to_rfc3339(created_at), "confirmed_at": to_rfc3339(confirmed_at),
            "first_failure_at": to_rfc3339(first_failure_at),
            "next_attempt_at": to_rfc3339(next_attempt_at),
            "stored_at": to_rfc3339(stored_at), "attempts": int(attempts or 0),
            "destination": destination, "key": key,
            "payload_sha256": payload_sha256 or (entry.payload_sha256 if entry else None),
            "body_in_spool": bool(has_body)}
