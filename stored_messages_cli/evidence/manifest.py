"""Manifests: seal each project's open segment and write it, create-only, beside the messages.

A segment is sealed when it holds `manifest_max_entries` outcomes, when its oldest outcome is
`manifest_max_age` old, or when the daemon stops (`Manifests.close`). Sealing numbers it
(`seq` from 1 per project, no gaps), chains it to the previous segment's bytes and keeps its
exact bytes in the spool until the destination has them; an unwritten segment is retried on
later ticks and after restarts, never renumbered. Format: docs/manifests.md (SPEC 8).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Any

from ..clock import Clock
from ..config import parse_duration
from ..destinations.base import Destination
from ..errors import ConfigError, ObjectConflict
from ..message import gunzip, sha256_hex
from ..spool import Spool
from ..spool.evidence_queries import LogHead, OpenEntries, SegmentDraft
from .anchors import Anchors, holds_exactly
from .log import LogOptions, LogSealer
from .segments import (
    MAX_SEGMENT_BYTES,
    SEGMENT_SUFFIX,
    checkpoint_key,
    log_origin,
    manifest_prefix,
    parse_segment,
)

log = logging.getLogger("sm.manifest")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_AGE = 15 * 60.0  # seconds
RETRY_CAP = 300.0  # seconds between attempts to write a segment, at most
ANCHOR_INTERVAL = 5.0  # seconds between two turns of the anchoring thread, at least


LISTING_LIMIT = 100_000  # segment keys `latest_sealer` lists, at most


def segment_sealer(destination: Destination, key: str) -> tuple[str | None, str | None]:
    """(sealer, origin) of the segment at `key` (a full key), read from its header; (None,
    None) when it is not there, too large or not a segment (the bucket's bytes are hostile)."""
    try:
        info = destination.head(key)
        if info is None or info.size is None or info.size > MAX_SEGMENT_BYTES:
            return None, None
        header = parse_segment(destination.get(key).body, key).header
    except Exception:  # noqa: BLE001 - unreadable: nothing is known of its sealer
        return None, None
    sealer, origin = header.get("sealer"), header.get("origin")
    return (sealer if isinstance(sealer, str) else None,
            origin if isinstance(origin, str) else None)


def latest_sealer(destination: Destination, project_id: str,
                  ignore: Collection[str] = ()) -> str | None:
    """The sealer id of the newest segment of the project's log at `destination`, leaving
    out the full keys in `ignore` (this spool's own); None when it has none, or none readable.
    `sm connect` warns when it is not this spool's."""
    newest = None
    for count, info in enumerate(destination.list(manifest_prefix(destination.prefix,
                                                                  project_id))):
        if count >= LISTING_LIMIT:
            break
        if info.key.endswith(SEGMENT_SUFFIX) and info.key not in ignore and (
                newest is None or info.key > newest):
            newest = info.key  # keys sort by day, then number
    if newest is None:
        return None
    sealer, origin = segment_sealer(destination, newest)
    return sealer if origin == log_origin(destination.url, project_id) else None


def limits_from(settings: Any) -> tuple[int, float]:
    """`manifest_max_entries` and `manifest_max_age` (seconds) from the settings when they
    know them, else from `SM_MANIFEST_MAX_ENTRIES` / `SM_MANIFEST_MAX_AGE`, else the defaults."""
    entries = getattr(settings, "manifest_max_entries", None) or \
        os.environ.get("SM_MANIFEST_MAX_ENTRIES") or DEFAULT_MAX_ENTRIES
    age = getattr(settings, "manifest_max_age", None) or \
        os.environ.get("SM_MANIFEST_MAX_AGE") or DEFAULT_MAX_AGE
    try:
        return max(1, int(entries)), max(0.0, parse_duration(age))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid manifest limit: {exc}",
                          hint="manifest_max_entries is a count, manifest_max_age a duration"
                          " (15m)") from None


class Manifests:
    """Seals and writes the manifest segments of the projects `sm run` archives."""

    def __init__(self, spool: Spool, destinations: Mapping[str, Destination],
                 max_entries: int = DEFAULT_MAX_ENTRIES, max_age: float = DEFAULT_MAX_AGE, *,
                 clock: Clock | None = None, log_options: LogOptions | None = None,
                 background_anchors: bool = False) -> None:
        self.spool = spool
        self.destinations = dict(destinations)
        self.max_entries = max(1, int(max_entries))
        self.max_age = float(max_age)
        self.clock = clock or spool.clock
        options = log_options or LogOptions.from_settings(None)
        self.log = LogSealer(spool, options)
        self.anchors = Anchors(spool, self.destinations, options, clock=self.clock)
        # `sm run` makes anchors on a thread of their own: a TSA's answer (often a few hundred
        # milliseconds) or a slow copy location never holds up the archive loop's turn.
        self.background_anchors = background_anchors
        self._anchoring: threading.Thread | None = None
        self._next_anchoring = 0.0
        # What must finish before the last seal (delivery evidence's last pass, SPEC 9.3).
        self.before_close: list[Callable[[], None]] = []
        spool.evidence.complete_entries_on_settle()

    # ----------------------------------------------------------------------- seams

    def tick(self) -> None:
        """Seal what is full or old enough, write what is sealed, then make the anchors due
        (a few, within a time budget: they never hold up archiving) (`Archiver.on_tick`)."""
        self.seal(force=False)
        self.write_pending()
        if not self.background_anchors:
            self.anchors.make_due()
            return
        now = self.clock.now()
        if now >= self._next_anchoring and (self._anchoring is None or
                                            not self._anchoring.is_alive()):
            self._next_anchoring = now + ANCHOR_INTERVAL
            self._anchoring = threading.Thread(target=self._make_anchors, name="sm-anchors",
                                               daemon=True)
            self._anchoring.start()

    def _make_anchors(self) -> None:
        """The anchors due, on the anchoring thread; a failure is logged, never raised."""
        try:
            self.anchors.make_due()
        except Exception:  # noqa: BLE001 - the next turn tries again; the loop goes on
            log.exception("making the log's anchors failed; trying again later")

    def close(self) -> None:
        """The daemon stops: seal every open segment, try once more to write them all and
        make the anchors due (after the anchoring thread's turn, if one is running)."""
        for hook in self.before_close:
            hook()
        self.seal(force=True)
        self.write_pending(ignore_schedule=True)
        if self._anchoring is not None:
            self._anchoring.join()
        try:
            self.anchors.make_due()
        finally:
            self.anchors.close()

    # ----------------------------------------------------------------------- sealing

    def seal(self, *, force: bool) -> int:
        """Seal the open segments that are due (all of them with `force`); returns how many."""
        sealed = 0
        now = self.clock.now()
        due = partial(self._due, now=now, force=force)
        for project_id, destination in self.destinations.items():
            # A read first: a tick with nothing due takes no write lock (an ingest or a
            # settle elsewhere would make it wait); due is asked again under the lock.
            if not due(self.spool.evidence.open_entries(project_id)) or \
                    not self.log.prepare(project_id, destination):
                continue
            while due(self.spool.evidence.open_entries(project_id)):
                segment = self.spool.evidence.seal_segment(
                    project_id, self.max_entries, now, due=due,
                    build=partial(self._segment, project_id, now))
                if segment is None:
                    break
                sealed += 1
                log.info("sealed manifest %d of project %s (%d entries)", segment.seq,
                         project_id, segment.count)
        return sealed

    def _due(self, entries: OpenEntries, *, now: float, force: bool) -> bool:
        """The open segment holds something, and is full or old enough (or `force`)."""
        if not entries.count:
            return False
        if force or entries.count >= self.max_entries:
            return True
        oldest = entries.oldest_settled_at
        return oldest is not None and now - oldest >= self.max_age

    def _segment(self, project_id: str, sealed_at: float, rows: list[dict[str, Any]],
                 head: LogHead | None) -> SegmentDraft:
        """The next segment of the project's log, holding `rows` (the open entries it seals)."""
        return self.log.draft(project_id, self.destinations[project_id], sealed_at, rows, head)

    # ----------------------------------------------------------------------- writing

    def write_pending(self, *, ignore_schedule: bool = False) -> int:
        """Write sealed segments not yet in the bucket, in order; returns how many were written.

        A failure is logged and retried later (backing off up to `RETRY_CAP`); the later
        segments of that project wait, so segments arrive in order.
        """
        written = 0
        now = self.clock.now()
        blocked: set[str] = set()
        for row in self.spool.evidence.segments(unwritten_only=True):
            project_id, seq = row["project_id"], row["seq"]
            destination = self.destinations.get(project_id)
            if destination is None or project_id in blocked or \
                    row["origin"] not in ("", log_origin(destination.url, project_id)):
                continue  # a segment of an earlier destination's log stays where it is
            # (a next attempt beyond RETRY_CAP is due: the clock was set back since)
            if not ignore_schedule and row["next_attempt_at"] and \
                    now < row["next_attempt_at"] <= now + RETRY_CAP:
                blocked.add(project_id)
                continue
            try:
                if row["written_at"] is None:
                    body = self.spool.evidence.segment_body(project_id, seq)
                    if body is None:
                        continue
                    key = destination.prefix + row["key"]
                    destination.put(key, body,
                                    sha256_hex(gunzip(body, key, limit=MAX_SEGMENT_BYTES)))
                    self.spool.evidence.mark_written(project_id, seq, self.clock.now())
                    written += 1
                if row["checkpoint"]:  # after its segment: it never names a missing one
                    text = row["checkpoint"].encode("utf-8")
                    key = destination.prefix + checkpoint_key(project_id, int(row["tree_size"]))
                    try:
                        destination.put(key, text, sha256_hex(text))
                    except ObjectConflict:
                        if not holds_exactly(destination, key, text):
                            raise
                    self.spool.evidence.mark_checkpoint_written(project_id, seq,
                                                                self.clock.now())
            except Exception as exc:  # noqa: BLE001 - the daemon keeps running; retried later
                delay = min(RETRY_CAP, 2.0 ** min(row["attempts"] + 1, 16))
                error = str(exc)
                if isinstance(exc, ObjectConflict):
                    error = self._other_sealer(destination, row) or error
                log.warning("manifest %d of project %s not written yet (%s); retrying in %ds",
                            seq, project_id, error, int(delay))
                self.spool.evidence.mark_write_failed(project_id, seq, error, now + delay)
                blocked.add(project_id)
        return written

    def _other_sealer(self, destination: Destination, row: dict[str, Any]) -> str | None:
        """When the segment's key (or, for its checkpoint, the log's newest segment) holds a
        segment another spool sealed, the error that says so (two spools seal one log); None
        when it does not, or cannot be read."""
        if row["written_at"] is None:
            sealer, _ = segment_sealer(destination, destination.prefix + row["key"])
        else:  # two sealers on different days write different segment keys
            ours = {destination.prefix + segment["key"]
                    for segment in self.spool.evidence.segments(row["project_id"])}
            sealer = latest_sealer(destination, row["project_id"], ours)
        if sealer is None or sealer == self.log.sealer:
            return None
        shown = "".join(c for c in sealer[:40] if c.isprintable())  # the bucket's bytes
        return (f"segment {row['log_seq']} of this log was sealed by another spool (sealer"
                f" {shown}): two spools seal one log; share one PostgreSQL spool"
                " (docs/fleet.md)")
