"""`sm audit`: prove the archive complete from the manifests, the bucket and the spool.

For each project (SPEC 8, docs/manifests.md):

1. the chain: every segment present (`manifest_missing`), numbers contiguous, each
   `prev_sha256` the hash of the previous segment's bytes, each segment's bytes the ones sealed
   (`chain_broken`);
2. the bucket against the manifests: every `stored` entry's object exists (`missing_object`)
   with its size, and with `deep` its bytes, payload hash and key (`altered_object`); an
   object in the message layout no manifest lists is `unexpected_object`;
3. the spool against the manifests: every stored/expired/failed message is in a manifest (or
   in the open segment, or a sealed one not yet written): else `unaccounted_message`;
   confirmed messages not yet final are counted as `pending`;
4. retention, when the project sets `retention_days`: every stored object's retain-until date
   (as its store reports it) covers its settled time plus the retention, and the manifest's
   `retain_until` (`retention_short`). The listing shows the date on GCS; elsewhere each
   object is read with a HEAD (or its --deep download), and only when retention is set.

`since`/`until` bound the messages checked by their `sent_at`; the chain is always checked
whole. `--report DIR` writes an evidence bundle with `verify.sh` (see `write_report`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..clock import to_rfc3339
from ..destinations.base import Destination, ObjectInfo
from ..errors import IntegrityError, ObjectNotFound
from ..message import MEDIUMS, parse_key, parse_sent_at, sha256_hex
from ..spool import Spool
from ..spool import manifests as store
from ..states import State
from .manifest import (
    RETENTION_SLACK,
    ManifestFormatError,
    Segment,
    manifest_prefix,
    parse_segment,
    required_retain_until,
    retention_days_of,
    seq_of_key,
)

FINDING_TYPES = ("missing_object", "altered_object", "unexpected_object", "manifest_missing",
                 "chain_broken", "unaccounted_message", "retention_short")
PENDING_STATES = (State.QUEUED, State.IN_FLIGHT, State.RETRY_WAIT)
FINAL_OUTCOMES = (State.STORED, State.EXPIRED, State.FAILED)
DEEP_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


class Progress(Protocol):
    """Where a long audit says how far it is (the CLI draws it on a terminal)."""

    def stage(self, text: str, total: int | None = None) -> None:
        """A new step begins; `total` items when known."""

    def advance(self, count: int = 1) -> None:
        """`count` more items of the current step are done."""


class _Silent:
    def stage(self, text: str, total: int | None = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass


@dataclass(frozen=True)
class Finding:
    """One problem: its type, what it concerns, and one line of detail."""

    type: str
    detail: str
    message_id: str | None = None
    key: str | None = None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `--json` form: `type`, then whichever of message_id/key/seq apply, `detail`."""
        document: dict[str, Any] = {"type": self.type}
        for name in ("message_id", "key", "seq"):
            value = getattr(self, name)
            if value is not None:
                document[name] = value
        document["detail"] = self.detail
        return document


@dataclass
class ProjectAudit:
    """What the audit of one project found."""

    project_id: str
    manifests: int = 0
    entries: int = 0
    stored: int = 0
    expired: int = 0
    failed: int = 0
    pending: int = 0
    findings: list[Finding] = field(default_factory=list)
    # for the evidence bundle
    segments: dict[int, bytes] = field(default_factory=dict)
    recorded_sha256: dict[int, str] = field(default_factory=dict)
    listing: dict[str, ObjectInfo] = field(default_factory=dict)
    object_sha256: dict[str, str] = field(default_factory=dict)
    retain_until: dict[str, float | None] = field(default_factory=dict)  # as --deep read it

    def as_dict(self) -> dict[str, Any]:
        """The project's object in `sm audit --json`."""
        return {"project_id": self.project_id, "manifests": self.manifests,
                "entries": self.entries, "stored": self.stored, "expired": self.expired,
                "failed": self.failed, "pending": self.pending,
                "findings": [f.as_dict() for f in self.findings]}


@dataclass
class AuditResult:
    """The whole audit: `ok` exactly when no project has a finding."""

    since: datetime | None
    until: datetime | None
    projects: list[ProjectAudit]

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not any(p.findings for p in self.projects)

    def as_dict(self) -> dict[str, Any]:
        """The `sm audit --json` document (SPEC 8)."""
        return {"ok": self.ok, "since": _iso(self.since), "until": _iso(self.until),
                "projects": [p.as_dict() for p in self.projects]}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else to_rfc3339(moment.timestamp())


class _Period:
    def __init__(self, since: datetime | None, until: datetime | None) -> None:
        self.since, self.until = since, until

    def holds(self, sent_at: str | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if not sent_at:
            return False
        try:
            moment = parse_sent_at(sent_at)
        except ValueError:
            return True  # unreadable: check it rather than skip it
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment <= self.until)


def audit(spool: Spool, destinations: Mapping[str, Destination], *,
          since: datetime | None = None, until: datetime | None = None, deep: bool = False,
          progress: Progress | None = None) -> AuditResult:
    """Audit every project of `destinations` (project id -> its destination)."""
    period = _Period(since, until)
    projects = [audit_project(spool, project_id, destination, period, deep=deep,
                              progress=progress)
                for project_id, destination in sorted(destinations.items())]
    return AuditResult(since, until, projects)


def audit_project(spool: Spool, project_id: str, destination: Destination, period: _Period,
                  *, deep: bool = False, progress: Progress | None = None) -> ProjectAudit:
    """Audit one project: the chain, the bucket and the spool against the manifests."""
    result = ProjectAudit(project_id)
    say = progress or _Silent()
    say.stage(f"project {project_id}: reading manifests")
    segments = _check_chain(spool, project_id, destination, result)
    with spool.lock:
        open_rows = _open_entries(spool.conn, project_id)
    stored_keys: set[str] = set()
    accounted: set[tuple[str, str]] = set()
    checked: list[dict[str, Any]] = []
    for segment in segments:
        for entry in segment.entries:
            accounted.add((str(entry.get("message_id")), str(entry.get("outcome"))))
            if entry.get("outcome") == State.STORED:
                stored_keys.add(str(entry.get("key")))
            if period.holds(entry.get("sent_at")):
                result.entries += 1
                outcome = entry.get("outcome")
                if outcome == State.STORED:
                    result.stored += 1
                    checked.append(entry)
                elif outcome == State.EXPIRED:
                    result.expired += 1
                elif outcome == State.FAILED:
                    result.failed += 1
    for message_id, outcome, key in open_rows:
        accounted.add((message_id, outcome))
        if key:
            stored_keys.add(key)
    say.stage(f"project {project_id}: listing the bucket")
    listing = _list_messages(destination, project_id, say)
    result.listing.update(listing)
    _check_objects(destination, checked, listing, result, deep=deep, progress=say)
    days = retention_days_of(destination)
    if days:
        _check_retention(destination, [e for e in checked if str(e.get("key")) in listing],
                         listing, days, result, say)
    _check_spool(spool, project_id, destination.prefix, period, accounted, stored_keys,
                 listing, result)
    return result


def _open_entries(conn: sqlite3.Connection, project_id: str) -> list[tuple[str, str, str | None]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(
        'SELECT "message_id", "outcome", "stored_key" FROM "manifest_entries"'
        ' WHERE "project_id" = ? ORDER BY "id"', (project_id,)).fetchall()]


# --------------------------------------------------------------------------- 1. the chain


def _check_chain(spool: Spool, project_id: str, destination: Destination,
                 result: ProjectAudit) -> list[Segment]:
    listed: dict[int, list[str]] = {}
    for info in destination.list(manifest_prefix(destination.prefix, project_id)):
        seq = seq_of_key(info.key)
        if seq is not None:
            listed.setdefault(seq, []).append(info.key)
            result.listing[info.key] = info
    with spool.lock:
        known = {int(r["seq"]): r for r in store.segment_rows(spool.conn, project_id)}
    last = max([*listed, *known], default=0)
    segments: list[Segment] = []
    previous: str | None = None  # the previous segment's hash, when known
    previous_known = True
    for seq in range(1, last + 1):
        row = known.get(seq)
        recorded = row["sha256"] if row is not None else None
        if recorded:
            result.recorded_sha256[seq] = recorded
        body, key = _segment_bytes(spool, project_id, destination, seq, listed, row, result)
        if body is None:
            if key is None:
                result.findings.append(Finding(
                    "manifest_missing", f"manifest segment {seq} is not in the bucket"
                    + (" (the spool sealed and wrote it)" if row is not None else
                       f" (segments up to {last} exist)"), seq=seq,
                    key=destination.prefix + row["key"] if row is not None else None))
            previous, previous_known = recorded, recorded is not None
            continue
        result.segments[seq] = body
        digest = sha256_hex(body)
        broken = False
        if recorded and digest != recorded:
            result.findings.append(Finding(
                "chain_broken", f"segment {seq}'s bytes are not those sealed (sha256 {digest},"
                f" sealed as {recorded})", seq=seq, key=key))
            broken = True
        try:
            segment = parse_segment(body)
        except ManifestFormatError as exc:
            if not broken:
                result.findings.append(Finding("chain_broken", f"segment {seq}: {exc}",
                                               seq=seq, key=key))
            previous, previous_known = recorded or digest, True
            continue
        header = segment.header
        problems = []
        if header.get("seq") != seq or str(header.get("project_id")) != project_id:
            problems.append(f"its header says project {header.get('project_id')} segment"
                            f" {header.get('seq')}")
        expected_prev = None if seq == 1 else previous
        if (seq == 1 or previous_known) and header.get("prev_sha256") != expected_prev:
            problems.append("its prev_sha256 is not the hash of segment"
                            f" {seq - 1}'s bytes" if seq > 1 else "segment 1 has a prev_sha256")
        if problems and not broken:
            result.findings.append(Finding("chain_broken", f"segment {seq}: "
                                           + "; ".join(problems), seq=seq, key=key))
        result.manifests += 1
        segments.append(segment)
        previous, previous_known = recorded or digest, True
    return segments


def _segment_bytes(spool: Spool, project_id: str, destination: Destination, seq: int,
                   listed: dict[int, list[str]], row: sqlite3.Row | None,
                   result: ProjectAudit) -> tuple[bytes | None, str | None]:
    """The segment's bytes from the bucket, or from the spool while it is not yet written.

    Returns (None, None) when it is nowhere; (None, key) when it was reported otherwise.
    """
    keys = listed.get(seq, [])
    if len(keys) > 1:
        result.findings.append(Finding("chain_broken", f"segment {seq} exists {len(keys)} times"
                                       f" ({', '.join(keys)})", seq=seq, key=keys[0]))
    for key in keys:
        try:
            return destination.get(key).body, key
        except ObjectNotFound:
            continue
        except IntegrityError as exc:
            result.findings.append(Finding("chain_broken", f"segment {seq}: {exc}",
                                           seq=seq, key=key))
            return None, key
    if row is not None and row["written_at"] is None:
        with spool.lock:
            body = store.segment_body(spool.conn, project_id, seq)
        if body is not None:
            return body, destination.prefix + row["key"]
    return None, None


# --------------------------------------------------------------------------- 2. the bucket


def _list_messages(destination: Destination, project_id: str, progress: Progress
                   ) -> dict[str, ObjectInfo]:
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


def _check_objects(destination: Destination, entries: list[dict[str, Any]],
                   listing: dict[str, ObjectInfo], result: ProjectAudit, *, deep: bool,
                   progress: Progress) -> None:
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
            lambda e: _deep_check(destination, e, result.project_id), present, progress):
        if digest:
            result.object_sha256[key] = digest
            result.retain_until[key] = retain_until
        if finding is not None:
            result.findings.append(finding)


def _deep_check(destination: Destination, entry: dict[str, Any], project_id: str
                ) -> tuple[Finding | None, str, str | None, float | None]:
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
    try:
        payload_sha = sha256_hex(gzip.decompress(body))
    except (OSError, EOFError):
        payload_sha = None
    if payload_sha != entry.get("payload_sha256"):
        problems.append("its payload hash is not the manifest's")
    parts = parse_key(key, destination.prefix)
    if parts is None or parts["message_id"] != message_id or parts["project_id"] != project_id:
        problems.append("its key does not name this message")
    if problems:
        return Finding("altered_object", "; ".join(problems), message_id=message_id,
                       key=key), key, digest, retain_until
    return None, key, digest, retain_until


# --------------------------------------------------------------------------- 4. retention


def _check_retention(destination: Destination, entries: list[dict[str, Any]],
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


# --------------------------------------------------------------------------- 3. the spool


def _check_spool(spool: Spool, project_id: str, prefix: str, period: _Period,
                 accounted: set[tuple[str, str]], stored_keys: set[str],
                 listing: dict[str, ObjectInfo], result: ProjectAudit) -> None:
    finals = ",".join("?" * len(FINAL_OUTCOMES))
    pending = ",".join("?" * len(PENDING_STATES))
    in_flight_keys: set[str] = set()
    with spool.lock:
        cursor = spool.conn.execute(
            "SELECT message_id, state, sent_at, key, stored_key FROM messages"
            f" WHERE project_id = ? AND state IN ({finals}, {pending})",
            (project_id, *FINAL_OUTCOMES, *PENDING_STATES))
        cursor.row_factory = sqlite3.Row
        rows = cursor.fetchall()
    for row in rows:
        state = row["state"]
        if state in PENDING_STATES:
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


# --------------------------------------------------------------------------- evidence bundle


def write_report(result: AuditResult, folder: Path) -> None:
    """The evidence bundle: manifests as read, listing.csv, findings.json, summary.json,
    manifests.sha256 and verify.sh (docs/manifests.md)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    sums: list[str] = []
    for project in result.projects:
        target = folder / "manifests" / project.project_id
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for seq, body in sorted(project.segments.items()):
            name = f"{seq:012d}.jsonl.gz"
            (target / name).write_bytes(body)
            recorded = project.recorded_sha256.get(seq) or sha256_hex(body)
            sums.append(f"{recorded}  manifests/{project.project_id}/{name}\n")
    (folder / "manifests.sha256").write_text("".join(sums), encoding="utf-8")
    with open(folder / "listing.csv", "w", encoding="utf-8", newline="") as handle:
        handle.write("key,size,sha256\n")  # plain: keys hold no newline; verify.sh splits
        for project in result.projects:
            for key, info in sorted(project.listing.items()):
                digest = project.object_sha256.get(key, "")
                number = seq_of_key(key)
                if number is not None and number in project.segments and \
                        "_sm/manifests/" in key:
                    digest = sha256_hex(project.segments[number])
                handle.write(f"{key},{'' if info.size is None else info.size},{digest}\n")
    findings = [dict(f.as_dict(), project_id=p.project_id)
                for p in result.projects for f in p.findings]
    (folder / "findings.json").write_text(json.dumps(findings, indent=2) + "\n",
                                          encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n",
                                         encoding="utf-8")
    script = folder / "verify.sh"
    script.write_text(VERIFY_SH, encoding="utf-8")
    os.chmod(script, 0o755)


VERIFY_SH = r"""#!/bin/sh
# Re-check an `sm audit --report` bundle without sm: only sh, gzip, sha256sum and jq.
#  1. every manifest segment is intact and hashes to the value recorded in manifests.sha256;
#  2. per project, segments are numbered 1, 2, 3... without a gap, each header names its
#     project and number, counts its entries, and carries the SHA-256 of the previous
#     segment's bytes (null for segment 1): the hash chain;
#  3. every `stored` entry's object is in listing.csv with the manifest's size (and SHA-256
#     where the listing has one), and every object of the message layout in listing.csv is
#     in some manifest.
# Exit 0 when everything holds, 1 otherwise (each problem printed on one line).
set -u
case "$0" in */*) cd "${0%/*}" || exit 1 ;; esac
failed=0
bad() { echo "FAIL: $*"; failed=1; }

if [ -s manifests.sha256 ]; then
  sha256sum -c --quiet manifests.sha256 || bad "a manifest segment differs from its recorded hash"
fi

segments=0
for dir in manifests/*/; do
  [ -d "$dir" ] || continue
  project=${dir#manifests/}; project=${project%/}
  expected=1; prev=null
  for file in "$dir"*.jsonl.gz; do
    [ -e "$file" ] || continue
    name=${file##*/}; n=${name%.jsonl.gz}
    while [ "${#n}" -gt 1 ] && [ "${n#0}" != "$n" ]; do n=${n#0}; done
    if [ "$n" -ne "$expected" ]; then
      bad "project $project: segment(s) $expected to $((n - 1)) missing"
      prev=unknown
    fi
    expected=$((n + 1))
    segments=$((segments + 1))
    sum=$(sha256sum "$file"); sum=${sum%% *}
    if ! gzip -t "$file" 2>/dev/null; then
      bad "$file is not intact gzip"; prev=$sum; continue
    fi
    problems=$(gzip -dc "$file" | jq -r -s --arg project "$project" --argjson seq "$n" \
      --arg prev "$prev" '
      .[0] as $h
      | [ (if ($h.manifest_version != 1) then "no manifest header" else empty end),
          (if (($h.project_id | tostring) != $project)
             then "header names project \($h.project_id)" else empty end),
          (if ($h.seq != $seq) then "header says segment \($h.seq)" else empty end),
          (if ($h.count != (length - 1))
             then "header counts \($h.count), holds \(length - 1)" else empty end),
          (if ($prev != "unknown" and (($h.prev_sha256 // "null") != $prev))
             then "prev_sha256 is not the previous segment'"'"'s hash" else empty end)
        ] | join("; ")') || problems="not JSON Lines"
    [ -z "$problems" ] || bad "$file: $problems"
    prev=$sum
  done
done

problems=$(gzip -dc manifests/*/*.jsonl.gz 2>/dev/null | jq -n -r --rawfile listing listing.csv '
  ($listing | split("\n") | .[1:] | map(select(length > 0) | split(",")
     | {key: (.[:-2] | join(",")), size: .[-2], sha: .[-1]}) | map({(.key): .}) | add // {}) as $l
  | [inputs | select(type == "object" and has("outcome") and .outcome == "stored")] as $stored
  | ($stored | map(.key)) as $keys
  | ($stored[] | . as $e | $l[$e.key] as $o
      | if $o == null then "object missing: \($e.key)"
        elif ($e.size != null and $o.size != "" and ($o.size | tonumber) != $e.size)
          then "object size differs from the manifest: \($e.key)"
        elif ($o.sha != "" and $e.object_sha256 != null and $o.sha != $e.object_sha256)
          then "object sha256 differs from the manifest: \($e.key)"
        else empty end),
    (($l | keys) - $keys | .[] | select(contains("_sm/") | not)
      | "object in no manifest: \(.)")') || problems="cannot read the manifests or listing.csv"
if [ -n "$problems" ]; then
  echo "$problems" | while IFS= read -r line; do echo "FAIL: $line"; done
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "verify.sh: FAILED"
  exit 1
fi
echo "verify.sh: OK ($segments manifest segment(s) chained, listing matches the manifests)"
"""

