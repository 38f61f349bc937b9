"""Delivery evidence in an export (SPEC 9.3, 9.6): each exported message's archived evidence
objects, read from the bucket and checked against the hash the spool entered in the log,
written as they are stored under `evidence/{project_id}/{message_id}/` beside `messages/`
and named in the load file's `evidence_files` column."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..destinations.base import Destination
from ..errors import DestinationError, ObjectNotFound
from ..investigate.index import IndexEntry
from ..message import sha256_hex
from ..spool import Spool

EvidenceKeys = Mapping[tuple[str, str], list[tuple[str, str | None]]]
MAX_EVIDENCE_BYTES = 4 * 1024 * 1024


def evidence_keys(spool: Spool, entries: list[IndexEntry]) -> dict[tuple[str, str],
                                                                   list[tuple[str, str | None]]]:
    """(project, message id) -> [(evidence key, its SHA-256)] of every archived event."""
    found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for entry in entries:
        rows = spool.deliveries.delivery_of(entry.project_id, entry.message_id)
        keys = [(str(r["key"]), r.get("object_sha256")) for r in rows if r.get("key")]
        if keys:
            found[(entry.project_id, entry.message_id)] = keys
    return found


def read_evidence(entries: list[IndexEntry], keys: EvidenceKeys,
                  open_for: Callable[[str, str | None], Destination], exported: set[Any]
                  ) -> tuple[dict[tuple[str, str], dict[str, bytes]],
                             list[tuple[IndexEntry, str]]]:
    """The evidence files of exported messages (path -> exact bytes), and the evidence that
    failed (missing, unreadable, or not the bytes the log entered) as export failures."""
    files: dict[tuple[str, str], dict[str, bytes]] = {}
    failures: list[tuple[IndexEntry, str]] = []
    for entry in entries:
        wanted = keys.get((entry.project_id, entry.message_id))
        if not wanted or (entry.project_id, entry.message_id) not in exported:
            continue
        destination = open_for(entry.project_id, entry.destination_url)
        own: dict[str, bytes] = {}
        for key, expected in wanted:
            name = key.rsplit("/", 1)[-1]
            try:
                body = destination.get(key).body
            except (ObjectNotFound, DestinationError) as exc:
                failures.append((entry, f"delivery evidence {key} cannot be read: {exc}"))
                continue
            if len(body) > MAX_EVIDENCE_BYTES or (expected and sha256_hex(body) != expected):
                failures.append((entry, f"delivery evidence {key} is not the object the log"
                                 " entered (altered)"))
                continue
            own[f"evidence/{entry.project_id}/{entry.message_id}/{name}"] = body
        if own:
            files[(entry.project_id, entry.message_id)] = own
    return files, failures
