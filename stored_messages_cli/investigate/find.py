"""Finding messages in the bucket itself, without the local index: remote find and locate.

Candidates come from the project's manifests (every identifier's hash) and from listing the
key prefix of each recipient hash; each candidate is read verified (`verified.read_many`)
before it counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..destinations.base import Destination, ObjectInfo
from ..errors import IntegrityError, ObjectNotFound
from ..evidence.segments import (
    MAX_SEGMENT_BYTES,
    ManifestFormatError,
    manifest_prefix,
    parse_segment,
    seq_of_key,
)
from ..message import (
    KEY_SUFFIX,
    MAX_PAYLOAD_BYTES,
    MEDIUMS,
    UNASSOCIATED,
    max_object_bytes,
    parse_key,
    parse_sent_at,
    recipient_prefix,
    too_big,
)
from ..states import State
from .index import FindQuery, IndexEntry, sort_newest_first
from .verified import READ_WORKERS, VerifiedMessage, read_many

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
                mediums: Iterable[str] = MEDIUMS, workers: int = READ_WORKERS,
                max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                phone_region: str | None = None) -> RemoteFindReport:
    """Find a recipient's messages of one project in the bucket, without the local index.

    Lists `{prefix}{medium}/{project}/{hash}/` for each medium and each hash the recipient
    term may be stored under, skips keys the id/campaign filters rule out, then reads and
    verifies each remaining object for `sent_at` and `message_type`. The result is not cut
    to `query.limit`; the caller merges projects first. `phone_region` reads a stored
    national phone number (`default_phone_region`) as the index does.
    """
    if not query.recipient_hashes:
        raise ValueError("a remote find needs recipient hashes")
    report = RemoteFindReport()
    from_manifests = _manifest_candidates(destination, project_id, query, report)
    prefixes = [recipient_prefix(medium, project_id, rhash, destination.prefix)
                for medium in mediums if query.medium in (None, medium)
                for rhash in query.recipient_hashes]
    keys: list[str] = []

    def list_keys(prefix: str) -> list[ObjectInfo]:
        return list(destination.list(prefix))

    # The first listing runs alone so a lazily built SDK client is built once, not per
    # thread; the rest go in parallel, since on a real bucket each is a round trip.
    listings = [list_keys(prefixes[0])] if prefixes else []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(prefixes))),
                            thread_name_prefix="sm-list") as pool:
        listings.extend(pool.map(list_keys, prefixes[1:]))
    too_big_at = max_object_bytes(max_payload_bytes)
    for info in (info for listing in listings for info in listing):
        key = info.key
        parsed = parse_key(key, destination.prefix)
        if parsed is None:
            continue
        report.listed += 1
        if query.message_id is not None and parsed["message_id"] != query.message_id:
            continue
        folder = parsed["campaign_id"] if parsed["campaign_id"] is not None else UNASSOCIATED
        if query.campaign_id is not None and folder != query.campaign_id:
            continue
        if info.size is not None and info.size > too_big_at:  # never downloaded
            report.failures.append((key, str(too_big(key, info.size, max_payload_bytes))))
            from_manifests = [k for k in from_manifests if k != key]
            continue
        keys.append(key)
    keys = list(dict.fromkeys([*keys, *from_manifests]))
    for key, result in read_many(destination, keys, workers=workers,
                                 max_payload_bytes=max_payload_bytes, phone_region=phone_region):
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

    wanted = set(query.recipient_hashes)
    segment_keys = sorted((seq, info.key, info.size) for info in destination.list(
        manifest_prefix(destination.prefix, project_id))
        if (seq := seq_of_key(info.key)) is not None)
    keys: list[str] = []
    for _, segment_key, size in segment_keys:
        if size is not None and size > MAX_SEGMENT_BYTES:
            report.manifest_failures.append((segment_key, f"{size} bytes, over the"
                                             f" {MAX_SEGMENT_BYTES} a segment may hold"))
            continue
        try:
            segment = parse_segment(destination.get(segment_key).body, segment_key)
        except (ManifestFormatError, ObjectNotFound) as exc:
            report.manifest_failures.append((segment_key, str(exc)))
            continue
        report.segments += 1
        report.sealed_through = max(report.sealed_through or "",
                                    str(segment.header.get("sealed_at")))
        for entry in segment.entries:
            hashes = entry.get("recipient_hashes")
            if entry.get("outcome") != State.STORED or not isinstance(hashes, dict) or \
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
