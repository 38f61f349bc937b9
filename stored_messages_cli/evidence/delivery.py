"""Delivery evidence in the bucket (SPEC 9.3): each verified provider event, archived create-
only at `{prefix}_sm/evidence/{project_id}/{message_id}/{event_id}.json.gz` and entered in
the project's log as `"outcome": "evidence"`.

The object is gzip (the pinned member) of canonical JSON holding the request's exact bytes
(base64), the headers verification used and its result. `sm run` calls `tick` as its loop
turns (`Archiver.on_tick`): with `background`, each turn's work (a few uploads within a time
budget, skipping a destination that is down) runs on a thread of its own, as the anchors do,
so archiving never waits on evidence; `close` (before the last seal) joins it and makes one
more pass. An upload that fails is tried again later (doubling, up to an hour). Orphan events
are matched to messages recorded since, and dropped after `orphan_event_ttl`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..clock import to_rfc3339
from ..destinations.base import Destination
from ..errors import DestinationError, SmError
from ..message import canonical_json, gzip_member, sha256_hex
from ..spool import Spool
from ..spool.delivery_rows import EventToArchive
from ..states import HealthState

log = logging.getLogger("sm.evidence")

EVIDENCE_FOLDER = "_sm/evidence/"
EVIDENCE_VERSION = 1
UPLOADS_PER_TURN = 50
TURN_BUDGET = 0.5  # seconds of uploads per loop turn at most
MATCH_EVERY = 5.0  # seconds between looks for orphans' messages
RETRY_FIRST = 30.0
RETRY_CAP = 3600.0
DOWN = (HealthState.UNREACHABLE, HealthState.UNSAFE)


def evidence_key(project_id: str, message_id: str, event_id: str) -> str:
    """An evidence object's key below the destination prefix."""
    return f"{EVIDENCE_FOLDER}{project_id}/{message_id}/{event_id}.json.gz"


def evidence_document(event: EventToArchive) -> dict[str, Any]:
    """What the evidence object holds: the event, the request's bytes and its verification."""
    return {"evidence_version": EVIDENCE_VERSION, "project_id": event.project_id,
            "message_id": event.message_id, "provider": event.provider,
            "event_id": event.event_id, "event": event.kind, "at": event.at,
            "provider_message_id": event.provider_message_id,
            "received_at": to_rfc3339(event.received_at),
            "verified": True, "verification": json.loads(event.result),
            "headers": json.loads(event.headers),
            "body_base64": base64.b64encode(event.body).decode("ascii")}


def evidence_object(event: EventToArchive) -> tuple[bytes, bytes]:
    """(the canonical JSON, its gzip object) of an event's evidence."""
    raw = canonical_json(evidence_document(event))
    return raw, gzip_member(raw)


def request_bytes(document: Mapping[str, Any]) -> bytes:
    """The exact request body an evidence document keeps."""
    return base64.b64decode(str(document["body_base64"]))


class DeliveryEvidence:
    """Archives the evidence of verified provider events for the projects `sm run` serves."""

    def __init__(self, spool: Spool, destinations: Mapping[str, Destination], *,
                 orphan_event_ttl: float = 7 * 86400,
                 uploads_per_turn: int = UPLOADS_PER_TURN,
                 budget: float = TURN_BUDGET, background: bool = False) -> None:
        self.spool = spool
        self.destinations = destinations  # the manifests' own dict: a reload updates both
        self.orphan_event_ttl = orphan_event_ttl
        self.uploads_per_turn = uploads_per_turn
        self.budget = budget
        self._next_match = float("-inf")
        self.background = background
        self._turn: threading.Thread | None = None

    def tick(self) -> None:
        """One turn (`Archiver.on_tick`): on the evidence thread with `background` (none
        started while the last one runs), else here."""
        if not self.background:
            self.turn()
            return
        if self._turn is None or not self._turn.is_alive():
            self._turn = threading.Thread(target=self.turn, name="sm-evidence", daemon=True)
            self._turn.start()

    def close(self) -> None:
        """Before the daemon's last seal: finish the running turn, then one more pass."""
        if self._turn is not None:
            self._turn.join()
        self.turn()

    def turn(self) -> None:
        """Match orphans (every few seconds), then upload what is due within the budget.
        Never raises: the next turn tries again."""
        try:
            now = self.spool.clock.now()
            if now >= self._next_match:
                self._next_match = now + MATCH_EVERY
                self.spool.deliveries.match_orphans(now - self.orphan_event_ttl)
            self.upload_due()
        except (SmError, OSError) as exc:
            log.warning("archiving delivery evidence failed; trying again later: %s", exc)

    def upload_due(self) -> int:
        """Upload due evidence of projects whose destination is up, within the budget."""
        health = self.spool.health.all()
        projects = [p for p in self.destinations
                    if p not in health or health[p].health not in DOWN]
        started = time.monotonic()
        archived = 0
        for event in self.spool.deliveries.to_archive(projects, self.uploads_per_turn):
            if time.monotonic() - started > self.budget:
                break
            archived += self.upload(event)
        return archived

    def sealed(self, event: EventToArchive, relative: str, raw: bytes) -> bytes:
        """`raw` as the event's project stores it (SPEC 9.5): sealed under its message's
        recipient key, bound to the evidence object's key, when the project encrypts per
        recipient (provider events hold addresses); else `raw` itself. The seal is
        deterministic, so a retried upload sends the same bytes."""
        keys = self.spool.intake.keys
        if keys is None or not keys.sealing(event.project_id):
            return raw  # a plain project: no write transaction for nothing
        store = self.spool.store
        with store.write():  # a recipient without a key yet gets one (as intake's)
            where = store.sealed_as(event.project_id, event.message_id)
            if where is None:
                return raw
            return keys.seal_evidence(event.project_id, where[1], relative, raw)

    def upload(self, event: EventToArchive) -> int:
        """Write one evidence object create-only and enter it in the log; 1 when archived."""
        destination = self.destinations[event.project_id]
        relative = evidence_key(event.project_id, event.message_id, event.event_id)
        key = destination.prefix + relative
        raw, body = evidence_object(event)
        sealed = self.sealed(event, relative, raw)
        if sealed is not raw:  # an encrypted project: the envelope is what is stored
            raw, body = sealed, gzip_member(sealed)
        try:
            destination.put(key, body, sha256_hex(raw))  # the same bytes there: not created
        except DestinationError as exc:
            delay = min(RETRY_CAP, RETRY_FIRST * 2 ** min(event.attempts, 20))
            log.warning("evidence %s of message %s: upload failed (%s); trying again in"
                        " %.0f s", event.event_id, event.message_id, exc, delay)
            self.spool.deliveries.archive_failed(event.row_id, str(exc),
                                                 self.spool.clock.now() + delay)
            return 0
        self.spool.deliveries.archived(event.row_id, key, relative, sha256_hex(raw),
                                       sha256_hex(body), len(body))
        return 1
