"""`sm index rebuild`: the local index filled from the bucket, every object read verified."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..destinations.base import Destination
from ..errors import ObjectNotFound
from ..message import MAX_PAYLOAD_BYTES, MEDIUMS, max_object_bytes, parse_key, too_big
from .index import ArchiveIndex, IndexEntry
from .verified import READ_WORKERS, VerifiedMessage, read_many

INDEX_BATCH = 200


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
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    phone_region: str | None = None,
) -> RebuildReport:
    """Index every message of a project found in the bucket, reading and verifying each.

    Resumable: keys already indexed under the same key are not read again. Rows are written
    in short transactions of INDEX_BATCH, so an interrupted rebuild keeps what it did and a
    running `sm run` is never blocked for long. Objects that fail verification are reported,
    not indexed. A national phone number is indexed in E.164 read in `phone_region`
    (`default_phone_region`, SPEC 9.2).
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
            elif info.size is not None and info.size > max_object_bytes(max_payload_bytes):
                report.failures.append((info.key, str(too_big(info.key, info.size,
                                                              max_payload_bytes))))
            else:
                todo.append(info.key)
    if on_total:
        on_total(len(todo))
    batch: list[IndexEntry] = []
    for key, result in read_many(destination, todo, workers=workers,
                                 max_payload_bytes=max_payload_bytes, phone_region=phone_region):
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
