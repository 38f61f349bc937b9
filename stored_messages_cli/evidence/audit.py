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
from ..message import MAX_PAYLOAD_BYTES, parse_key
from ..spool import Spool
from ..states import UNARCHIVED_STATES, LogOutcome, State
from .audit_bucket import check_objects, check_retention, list_messages
from .audit_chain import check_chain, log_rows
from .audit_evidence import check_evidence
from .audit_holds import check_holds
from .audit_log import SpoolLog, Trust, check_log
from .findings import AuditResult, Finding, Period, Progress, ProjectAudit, SilentProgress
from .note import NoteError, NoteVerifier, open_note
from .segments import Segment, log_origin, retention_days_of

UNANCHORED_WARNING = ("no trusted key or anchor for project(s) {projects}: a bucket writer could"
                      " rewrite their log; pass --trust \"$(sm key show)\" or --anchor")


def audit(spool: Spool, destinations: Mapping[str, Destination], *,
          since: datetime | None = None, until: datetime | None = None, deep: bool = False,
          progress: Progress | None = None, trust: Trust | None = None,
          own_key: NoteVerifier | None = None,
          max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> AuditResult:
    """Audit every project of `destinations` (project id -> its destination).

    `trust` holds the keys and anchors the auditor brings. Without trusted keys, `own_key`
    (the verifier of this spool's signing key) is trusted for a log whose checkpoints this
    spool signed with it. A project checked against neither is named in one warning.
    `--deep` decompresses at most `max_payload_bytes` of a payload."""
    period = Period(since, until)
    projects = [audit_project(spool, project_id, destination, period, deep=deep,
                              progress=progress, trust=trust, own_key=own_key,
                              max_payload_bytes=max_payload_bytes)
                for project_id, destination in sorted(destinations.items())]
    result = AuditResult(since, until, projects)
    loose = [p.project_id for p in projects if not p.anchored]
    if loose:
        result.warnings.append(UNANCHORED_WARNING.format(projects=", ".join(loose)))
    return result


def audit_project(spool: Spool, project_id: str, destination: Destination, period: Period,
                  *, deep: bool = False, progress: Progress | None = None,
                  trust: Trust | None = None, own_key: NoteVerifier | None = None,
                  max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> ProjectAudit:
    """Audit one project: the chain, the signed log, the bucket and the spool against the
    manifests of its log at `destination`."""
    result = ProjectAudit(project_id)
    say = progress or SilentProgress()
    say.stage(f"project {project_id}: reading manifests")
    origin = log_origin(destination.url, project_id)
    rows = log_rows(spool, project_id, origin)
    segments = check_chain(spool, project_id, destination, result, rows)
    spool_log = SpoolLog(max((int(r["log_seq"]) for r in rows), default=None), {
        int(r["tree_size"]): (str(r["checkpoint"]), r["checkpoint_written_at"] is not None)
        for r in rows if r["checkpoint"] and r["tree_size"] is not None})
    check_log(destination, project_id, origin, segments, result,
              _trust_for(trust or Trust(), own_key, spool_log), spool_log)
    _check_previous_log(spool, project_id, segments, result)
    checked = _count_entries(segments, period, result)
    open_outcomes = spool.evidence.open_outcomes(project_id)
    result.unsealed = sum(1 for _, outcome, _ in open_outcomes if outcome == State.STORED)
    stored_keys, accounted = _listed(segments, open_outcomes)
    say.stage(f"project {project_id}: listing the bucket")
    listing = list_messages(destination, project_id, say)
    result.listing.update(listing)
    check_objects(destination, checked, listing, result, deep=deep, progress=say,
                  max_payload_bytes=max_payload_bytes)
    check_holds(spool, project_id, destination, result, say)
    days = retention_days_of(destination)
    if days:
        check_retention(destination, [e for e in checked if str(e.get("key")) in listing],
                        listing, days, result, say)
    earlier = sum(int(r["count"]) for r in spool.evidence.segments(project_id)
                  if r["origin"] not in (origin, ""))
    _check_spool(spool, project_id, destination.prefix, period, accounted, stored_keys,
                 listing, result, earlier)
    _check_duplicates(listing, destination.prefix, result)
    check_evidence(destination, project_id, segments, open_outcomes, result)
    return result


def _check_previous_log(spool: Spool, project_id: str, segments: list[Segment],
                        result: ProjectAudit) -> None:
    """A log's first segment after a reconnect names the log before it (`previous_log`):
    when this spool sealed that log, its last tree is the one named (`chain_broken`)."""
    if not segments or segments[0].header.get("seq") != 1:
        return
    named = segments[0].header.get("previous_log")
    if not isinstance(named, dict):
        return
    rows = [r for r in spool.evidence.segments(project_id) if r["origin"] == named.get("origin")]
    if not rows:
        return
    last = max(rows, key=lambda r: int(r["log_seq"]))
    if (named.get("tree_size"), named.get("root")) != (last["tree_size"], last["root"]):
        result.findings.append(Finding(
            "chain_broken", f"segment 1: its previous_log is not the log this spool sealed at"
            f" {named.get('origin')} (tree size {last['tree_size']}, root {last['root']})",
            seq=1))


def _trust_for(trust: Trust, own_key: NoteVerifier | None, spool_log: SpoolLog) -> Trust:
    """The trust for one log: the auditor's keys; without any, this spool's own key when it
    signed the log's checkpoints (the sealing host), else none."""
    if trust.verifiers or own_key is None or not spool_log.checkpoints:
        return trust
    text = spool_log.checkpoints[max(spool_log.checkpoints)][0]
    try:
        signed = bool(open_note(text, (own_key,)).verified_by)
    except NoteError:
        signed = False
    if not signed:
        return trust
    return Trust((own_key,), trust.anchors, trust.tsa_ca)


def _count_entries(segments: list[Segment], period: Period, result: ProjectAudit
                   ) -> list[dict[str, Any]]:
    """Count the entries within the period by outcome; returns the stored ones (to check)."""
    checked: list[dict[str, Any]] = []
    for segment in segments:
        sealed_at = segment.header.get("sealed_at")
        if isinstance(sealed_at, str) and (result.complete_through or "") < sealed_at:
            result.complete_through = sealed_at
        for entry in segment.entries:
            if not period.holds(entry.get("sent_at")):
                continue
            result.entries += 1
            result.adopted += "adopted" in entry
            result.backfilled += "backfilled" in entry
            outcome = entry.get("outcome")
            if outcome == State.STORED:
                result.stored += 1
                checked.append(entry)
            elif outcome == State.EXPIRED:
                result.expired += 1
            elif outcome == State.FAILED:
                result.failed += 1
            elif outcome == LogOutcome.HOLD:
                result.holds += 1
            elif outcome == LogOutcome.RELEASE:
                result.releases += 1
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
                 listing: dict[str, ObjectInfo], result: ProjectAudit, earlier: int) -> None:
    """Every settled message of the spool is in this log (`unaccounted_message`), or in an
    earlier log of the project (`earlier` entries the spool sealed at other destinations):
    one that is not here, and whose object is not in this bucket either; every object of the
    layout is in a manifest, or about to be (`unexpected_object`)."""
    in_flight_keys: set[str] = set()
    elsewhere = 0
    for row in spool.evidence.messages_to_account(project_id):
        state = row["state"]
        if state in UNARCHIVED_STATES:
            in_flight_keys.add(prefix + row["key"])  # may be uploaded, not yet settled
            if row["sent_at"] and period.holds(row["sent_at"]):
                result.pending += 1
            continue
        if (row["message_id"], state) in accounted:
            continue
        key = row["stored_key"] or prefix + row["key"]
        if earlier and key not in listing:
            elsewhere += 1  # settled into the log of a destination the project had before
            continue
        if period.holds(row["sent_at"]):
            result.findings.append(Finding(
                "unaccounted_message", f"the spool has it {state}; no manifest lists it"
                " (a message archived before manifests existed: sm manifest backfill)",
                message_id=row["message_id"], key=key))
    if elsewhere > earlier:
        result.findings.append(Finding(
            "unaccounted_message", f"{elsewhere} settled message(s) are in no manifest of this"
            f" log, and the project's earlier logs hold only {earlier} entries"))
    for key in sorted(listing):
        if key not in stored_keys and key not in in_flight_keys:
            parts = parse_key(key, prefix)
            result.findings.append(Finding(
                "unexpected_object", "an object in the message layout that no manifest lists",
                message_id=parts["message_id"] if parts else None, key=key))


def _check_duplicates(listing: dict[str, ObjectInfo], prefix: str, result: ProjectAudit
                      ) -> None:
    """Two objects in the message layout for one message id: one finding per id."""
    keys: dict[str, list[str]] = {}
    for key in sorted(listing):
        parts = parse_key(key, prefix)
        if parts is not None:
            keys.setdefault(parts["message_id"], []).append(key)
    for message_id, found in sorted(keys.items()):
        if len(found) > 1:
            result.findings.append(Finding(
                "duplicate_message", f"{len(found)} objects in the message layout for one"
                f" message ({', '.join(found)})", message_id=message_id, key=found[0]))
