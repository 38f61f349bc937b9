"""`sm audit`, steps 2 and 4: the bucket against the manifests, and the retention it keeps.

Every `stored` entry's object exists (`missing_object`) with its size, and with `deep` its
bytes, payload hash and key (`altered_object`). When the project sets `retention_days`, every
stored object's retain-until date (as its store reports it) covers its settled time plus the
retention and the manifest's `retain_until` (`retention_short`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..clock import to_rfc3339
from ..destinations.base import Destination, ObjectInfo
from ..errors import IntegrityError, ObjectNotFound, PayloadTooLarge, UnreadableObject
from ..message import MAX_PAYLOAD_BYTES, MEDIUMS, gunzip, parse_key, parse_sent_at, sha256_hex
from .findings import Finding, Progress, ProjectAudit
from .segments import RETENTION_SLACK, required_retain_until

DEEP_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


def list_messages(destination: Destination, project_id: str, progress: Progress
                  ) -> dict[str, ObjectInfo]:
    """Every object under the project's message folders (one listing per medium)."""
    listing: dict[str, ObjectInfo] = {}
    for medium in MEDIUMS:
        for info in destination.list(f"{destination.prefix}{medium}/{project_id}/"):
            listing[info.key] = info
            progress.advance()
    return listing


def _each(work: Callable[[T], R], items: Iterable[T], progress: Progress) -> Iterable[R]:
    """`work` over `items` on DEEP_WORKERS threads, in order, advancing the progress."""
    with ThreadPoolExecutor(max_workers=DEEP_WORKERS, thread_name_prefix="sm-audit") as pool:
        for outcome in pool.map(work, items):
            progress.advance()
            yield outcome


def check_objects(destination: Destination, entries: list[dict[str, Any]],
                  listing: dict[str, ObjectInfo], result: ProjectAudit, *, deep: bool,
                  progress: Progress, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
    """Each stored entry's object is listed with the manifest's size (`missing_object`,
    `altered_object`); with `deep`, its bytes, payload hash and key are checked too, at most
    `max_payload_bytes` of a payload decompressed (`_deep_check`)."""
    present = []
    for entry in entries:
        key = str(entry.get("key"))
        info = listing.get(key)
        if info is None:
            result.findings.append(Finding(
                "missing_object", "a stored message of the manifests is not in the bucket",
                message_id=entry.get("message_id"), key=key))
        elif entry.get("size") is not None and info.size is not None and \
                info.size != entry["size"]:
            result.findings.append(Finding(
                "altered_object", f"{info.size} bytes, the manifest says {entry['size']}",
                message_id=entry.get("message_id"), key=key))
        else:
            present.append(entry)
    if not deep or not present:
        return
    progress.stage(f"project {result.project_id}: downloading {len(present)} object(s)",
                   len(present))
    for finding, key, digest, retain_until in _each(
            lambda e: _deep_check(destination, e, result.project_id, max_payload_bytes),
            present, progress):
        if digest:
            result.object_sha256[key] = digest
            result.retain_until[key] = retain_until
        if finding is not None:
            result.findings.append(finding)


def _deep_check(destination: Destination, entry: dict[str, Any], project_id: str,
                limit: int = MAX_PAYLOAD_BYTES
                ) -> tuple[Finding | None, str, str | None, float | None]:
    """One stored entry's object downloaded and checked: its bytes against the manifest's
    SHA-256 (bytes that differ are never decompressed: a bomb), then its payload hash, at
    most `limit` bytes decompressed. A payload over `limit` in bytes the manifest vouches for
    (its SHA-256 matches) is the archive's own, stored before the cap was lowered: not
    altered, and its payload hash is not re-taken (the object's is the manifest's)."""
    key, message_id = str(entry.get("key")), entry.get("message_id")
    try:
        fetched = destination.get(key)
    except ObjectNotFound:
        return Finding("missing_object", "the object vanished while the audit read it",
                       message_id=message_id, key=key), key, None, None
    except IntegrityError as exc:
        return (Finding("altered_object", str(exc), message_id=message_id, key=key), key,
                None, None)
    body, retain_until = fetched.body, fetched.info.retain_until
    digest = hashlib.sha256(body).hexdigest()
    problems = []
    if entry.get("object_sha256") and digest != entry["object_sha256"]:
        problems.append(f"its sha256 is {digest}, the manifest says {entry['object_sha256']}")
    if not problems:  # bytes that are not the manifest's are never decompressed (a bomb)
        try:
            payload_sha: str | None = sha256_hex(gunzip(body, key, limit=limit))
        except PayloadTooLarge as exc:
            if not entry.get("object_sha256"):  # nothing vouches for these bytes
                problems.append(exc.detail)
            payload_sha = entry.get("payload_sha256")
        except UnreadableObject as exc:
            problems.append(exc.detail)
            payload_sha = entry.get("payload_sha256")
        if payload_sha != entry.get("payload_sha256"):
            problems.append("its payload hash is not the manifest's")
    parts = parse_key(key, destination.prefix)
    if parts is None or parts["message_id"] != message_id or parts["project_id"] != project_id:
        problems.append("its key does not name this message")
    if problems:
        return Finding("altered_object", "; ".join(problems), message_id=message_id,
                       key=key), key, digest, retain_until
    return None, key, digest, retain_until


# --------------------------------------------------------------------------- step 4: retention


def check_retention(destination: Destination, entries: list[dict[str, Any]],
                    listing: dict[str, ObjectInfo], days: int, result: ProjectAudit,
                    progress: Progress) -> None:
    """Every stored object is retained until its settled time + `days` (and at least until
    the manifest's `retain_until`), by the date its store reports: from the listing when it
    shows one (GCS), from the --deep download, else from one HEAD per object."""
    per_object = bool(getattr(destination, "retention_per_object", False))
    known: dict[str, float | None] = {}
    to_read: list[str] = []
    for entry in entries:
        key = str(entry.get("key"))
        if listing[key].retain_until is not None:
            known[key] = listing[key].retain_until
        elif key in result.retain_until:
            known[key] = result.retain_until[key]
        else:
            to_read.append(key)
    if to_read:
        progress.stage(f"project {result.project_id}: reading the retention of"
                       f" {len(to_read)} object(s)", len(to_read))
        for key, retain_until in _each(lambda k: (k, _head_retention(destination, k)),
                                       to_read, progress):
            known[key] = retain_until
    for entry in entries:
        key, message_id = str(entry.get("key")), entry.get("message_id")
        required = _required(entry, days)
        if required is None:
            continue
        actual = known.get(key)
        if actual is None:
            if per_object:
                result.findings.append(Finding(
                    "retention_short", f"the store reports no retain-until date; a retention"
                    f" of {days} days requires {to_rfc3339(required)}",
                    message_id=message_id, key=key))
        elif actual < required - RETENTION_SLACK:
            result.findings.append(Finding(
                "retention_short", f"retained until {to_rfc3339(actual)}; a retention of"
                f" {days} days requires {to_rfc3339(required)}", message_id=message_id,
                key=key))


def _head_retention(destination: Destination, key: str) -> float | None:
    info = destination.head(key)
    return None if info is None else info.retain_until


def _required(entry: dict[str, Any], days: int) -> float | None:
    """The entry's settled time + `days`, or its manifest `retain_until` when later."""
    dates = []
    for name in ("settled_at", "retain_until"):
        try:
            moment = parse_sent_at(entry.get(name)).timestamp()
        except ValueError:
            continue
        dates.append(required_retain_until(moment, days) if name == "settled_at" else moment)
    return max(dates) if dates else None
