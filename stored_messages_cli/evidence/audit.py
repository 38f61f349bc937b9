"""`sm audit`: prove the archive complete from the manifests, the bucket and the spool.

For each project (SPEC 8, docs/manifests.md):

1. the chain: every segment present (`manifest_missing`), numbers contiguous, each
   `prev_sha256` the hash of the previous segment's bytes, each segment's bytes the ones sealed
   (`chain_broken`) — `audit_chain`;
2. the bucket against the manifests: every `stored` entry's object exists (`missing_object`)
   with its size, and with `deep` its bytes, payload hash and key (`altered_object`); an
   object in the message layout no manifest lists is `unexpected_object` — `audit_bucket`;
3. the spool against the manifests: every stored/expired/failed message is in a manifest (or
   in the open segment, or a sealed one not yet written): else `unaccounted_message`;
   confirmed messages not yet final are counted as `pending` — here;
4. retention, when the project sets `retention_days`: every stored object's retain-until date
   (as its store reports it) covers its settled time plus the retention, and the manifest's
   `retain_until` (`retention_short`). The listing shows the date on GCS; elsewhere each
   object is read with a HEAD (or its --deep download), and only when retention is set.

`since`/`until` bound the messages checked by their `sent_at`; the chain is always checked
whole. `--report DIR` writes an evidence bundle with `verify.sh` (`bundle.write_report`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..destinations.base import Destination, ObjectInfo
from ..message import parse_key
from ..spool import Spool
from ..states import UNARCHIVED_STATES, State
from .audit_bucket import check_objects, check_retention, list_messages
from .audit_chain import check_chain
from .findings import AuditResult, Finding, Period, Progress, ProjectAudit, SilentProgress
from .segments import Segment, retention_days_of


def audit(spool: Spool, destinations: Mapping[str, Destination], *,
          since: datetime | None = None, until: datetime | None = None, deep: bool = False,
          progress: Progress | None = None) -> AuditResult:
    """Audit every project of `destinations` (project id -> its destination)."""
    period = Period(since, until)
    projects = [audit_project(spool, project_id, destination, period, deep=deep,
                              progress=progress)
                for project_id, destination in sorted(destinations.items())]
    return AuditResult(since, until, projects)


def audit_project(spool: Spool, project_id: str, destination: Destination, period: Period,
                  *, deep: bool = False, progress: Progress | None = None) -> ProjectAudit:
    """Audit one project: the chain, the bucket and the spool against the manifests."""
    result = ProjectAudit(project_id)
    say = progress or SilentProgress()
    say.stage(f"project {project_id}: reading manifests")
    segments = check_chain(spool, project_id, destination, result)
    checked = _count_entries(segments, period, result)
    stored_keys, accounted = _listed(segments, spool.evidence.open_outcomes(project_id))
    say.stage(f"project {project_id}: listing the bucket")
    listing = list_messages(destination, project_id, say)
    result.listing.update(listing)
    check_objects(destination, checked, listing, result, deep=deep, progress=say)
    days = retention_days_of(destination)
    if days:
        check_retention(destination, [e for e in checked if str(e.get("key")) in listing],
                        listing, days, result, say)
    _check_spool(spool, project_id, destination.prefix, period, accounted, stored_keys,
                 listing, result)
    return result


def _count_entries(segments: list[Segment], period: Period, result: ProjectAudit
                   ) -> list[dict[str, Any]]:
    """Count the entries within the period by outcome; returns the stored ones (to check)."""
    checked: list[dict[str, Any]] = []
    for segment in segments:
        for entry in segment.entries:
            if not period.holds(entry.get("sent_at")):
                continue
            result.entries += 1
            outcome = entry.get("outcome")
            if outcome == State.STORED:
                result.stored += 1
                checked.append(entry)
            elif outcome == State.EXPIRED:
                result.expired += 1
            elif outcome == State.FAILED:
                result.failed += 1
    return checked


def _listed(segments: list[Segment], open_outcomes: list[tuple[str, str, str | None]]
            ) -> tuple[set[str], set[tuple[str, str]]]:
    """The keys manifests list as stored, and every (message id, outcome) they account for,
    in sealed segments or in the open one."""
    stored_keys: set[str] = set()
    accounted: set[tuple[str, str]] = set()
    for segment in segments:
        for entry in segment.entries:
            accounted.add((str(entry.get("message_id")), str(entry.get("outcome"))))
            if entry.get("outcome") == State.STORED:
                stored_keys.add(str(entry.get("key")))
    for message_id, outcome, key in open_outcomes:
        accounted.add((message_id, outcome))
        if key:
            stored_keys.add(key)
    return stored_keys, accounted


# --------------------------------------------------------------------------- 3. the spool


def _check_spool(spool: Spool, project_id: str, prefix: str, period: Period,
                 accounted: set[tuple[str, str]], stored_keys: set[str],
                 listing: dict[str, ObjectInfo], result: ProjectAudit) -> None:
    """Every settled message of the spool is in a manifest (`unaccounted_message`); every
    object of the layout is in one, or about to be (`unexpected_object`)."""
    in_flight_keys: set[str] = set()
    for row in spool.evidence.messages_to_account(project_id):
        state = row["state"]
        if state in UNARCHIVED_STATES:
            in_flight_keys.add(prefix + row["key"])  # may be uploaded, not yet settled
            if row["sent_at"] and period.holds(row["sent_at"]):
                result.pending += 1
            continue
        if not period.holds(row["sent_at"]):
            continue
        if (row["message_id"], state) not in accounted:
            result.findings.append(Finding(
                "unaccounted_message", f"the spool has it {state}; no manifest lists it"
                " (a message archived before manifests existed: sm manifest backfill)",
                message_id=row["message_id"], key=row["stored_key"] or prefix + row["key"]))
    for key in sorted(listing):
        if key not in stored_keys and key not in in_flight_keys:
            parts = parse_key(key, prefix)
            result.findings.append(Finding(
                "unexpected_object", "an object in the message layout that no manifest lists",
                message_id=parts["message_id"] if parts else None, key=key))
