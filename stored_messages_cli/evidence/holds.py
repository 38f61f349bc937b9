"""Legal holds by case (SPEC 9.4, docs/holds.md): a saved `sm find` query whose every stored
object gets the store's own hold, now and at upload, until the case is released.

- `open_case` saves the case (its filters, with a recipient kept only as its hashes) and, in
  the same transaction, a `pending` ledger row for each object of the local archive index it
  matches; opening it again (same project, same filters) resumes it, and picks up objects
  indexed since.
- `apply_holds` does what the ledger says is left to do, on a thread pool, a page of rows at
  a time: a `pending` row gets the store's hold (S3 object lock legal hold on its version, GCS
  temporary hold, Azure version legal hold, a folder's read-only mode), a `releasing` row has
  it lifted unless another open case still holds the object. Each page's rows are marked in
  one transaction that also adds their `hold` / `release` entries to the manifest log. A
  crash leaves rows `pending` (or `releasing`): both calls are safe to repeat, so the next
  `sm run` or `sm hold create` of the case finishes them.
- `hold_new_matches` is the spool's settle hook: a message settling as stored that an open
  case of its project matches gets its `pending` row in the settling transaction.
- `cases_covering_recipient`: the open cases whose filters reach a recipient (erasure refuses
  while there is one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from ..clock import to_rfc3339
from ..destinations.base import Destination
from ..errors import SmError
from ..message import recipient_hash_candidates, sha256_hex
from ..message.recipients import Digest
from ..spool import Settled, Spool
from ..spool.holds import HoldCase, HoldRow
from ..spool.index_filter import IndexFilter
from ..spool.store import SpoolStore
from ..states import HoldState, State

log = logging.getLogger("sm.holds")

PAGE = 200  # ledger rows read, applied and marked together
DEFAULT_WORKERS = 8


class HoldRefused(SmError):
    """The case cannot be opened or released as asked; the text says why (a usage error)."""


class HoldsUnsupported(SmError):
    """The project's store cannot hold objects (an S3 bucket without object lock)."""


class UnknownCase(SmError):
    """No case has this id."""


@dataclass
class HoldReport:
    """What one pass over the ledger did: holds applied, holds lifted, holds kept for another
    open case, and the rows that failed (key, why; retried by the next pass)."""

    applied: int = 0
    lifted: int = 0
    kept: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Rows finished."""
        return self.applied + self.lifted + self.kept


def case_filters(*, recipient: str | None = None, message_id: str | None = None,
                 campaign_id: str | None = None, medium: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 region: str | None = None, digests: Sequence[Digest] = ()) -> dict[str, Any]:
    """A case's saved filters, in `FILTER_NAMES` order: a recipient is kept as the hashes it
    may be stored under (never the address), times as RFC 3339. `digests`: the keyed
    recipient hashes of projects that use one (SPEC 9.5), tried beside SHA-256."""
    filters: dict[str, Any] = {}
    if recipient is not None:
        filters["recipient_hashes"] = sorted(_candidates(recipient, region, digests))
    for name, value in (("message_id", message_id), ("campaign_id", campaign_id),
                        ("medium", medium)):
        if value is not None:
            filters[name] = value
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            filters[name] = to_rfc3339(moment.timestamp())
    return filters


def open_case(spool: Spool, destination: Destination, case_id: str, project_id: str,
              filters: dict[str, Any], note: str | None = None) -> tuple[HoldCase, int]:
    """Open (or resume) a case and queue a hold for each stored object it matches; returns
    the case and how many objects were added to it now.

    Raises HoldsUnsupported when the store cannot hold objects, HoldRefused when the id
    names a released case or one with other filters or another project."""
    case_id = case_id.strip()
    if not case_id or len(case_id) > 200 or not case_id.isprintable():
        raise HoldRefused(f"{case_id!r} is not a case id", hint="a short printable name,"
                          " like 2026-acme-v-doe")
    if not filters:
        raise HoldRefused("a case needs at least one filter (a hold on a whole project is"
                          " its bucket's retention)",
                          hint="--recipient, --campaign, --message-id, --since or --until")
    why_not = destination.hold_support()
    if why_not:
        raise HoldsUnsupported(f"project {project_id}'s store cannot hold objects: {why_not}",
                               hint="docs/holds.md says what each store needs")
    now = spool.clock.now()
    case = HoldCase(case_id, project_id, filters, note, now)
    store = spool.store
    with store.write():
        known = store.hold_case(case_id)
        if known is not None:
            _refuse_other(known, case)
            case = known
        else:
            store.add_case(case)
        added = store.add_hold_rows(case_id, case.index_filter(), None, now)
    return case, added


def _refuse_other(known: HoldCase, asked: HoldCase) -> None:
    """HoldRefused unless `asked` is the open case `known` again (a resume)."""
    if not known.is_open:
        raise HoldRefused(f"case {known.case_id} was released on"
                          f" {to_rfc3339(known.released_at)}; a released case stays closed",
                          hint="open a new case with another id")
    if known.project_id != asked.project_id or known.filters != asked.filters:
        raise HoldRefused(f"case {known.case_id} exists with other filters (project"
                          f" {known.project_id})",
                          hint=f"sm hold show {known.case_id}; to resume it, give the same"
                          " filters (or choose another case id)")


def release_case(spool: Spool, case_id: str) -> HoldCase:
    """Release a case: its objects are queued to have their hold lifted (where no other open
    case holds them); `apply_holds` lifts them. Releasing a released case resumes that."""
    store = spool.store
    with store.write():
        case = store.hold_case(case_id)
        if case is None:
            raise UnknownCase(f"no case {case_id}", hint="sm hold list")
        store.release_case(case_id, spool.clock.now())
    released = store.hold_case(case_id)
    assert released is not None
    return released


def apply_holds(spool: Spool, destinations: Mapping[str, Destination], *,
                case_id: str | None = None, workers: int = DEFAULT_WORKERS,
                progress: Callable[[int], None] | None = None,
                stop: threading.Event | None = None) -> HoldReport:
    """Apply and lift the holds the ledger has left (of one case, or of the projects of
    `destinations`), `workers` objects at a time; a row that fails stays to do."""
    report = HoldReport()
    after: tuple[str, str] | None = None
    projects = None if case_id is not None else sorted(destinations)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sm-hold") as pool:
        while stop is None or not stop.is_set():
            rows = spool.store.holds_to_do(case_id, projects, after, PAGE)
            if not rows:
                break
            after = (rows[-1].case_id, rows[-1].message_id)
            keep = _kept_keys(spool.store, rows)
            outcomes = list(pool.map(partial(_one, destinations=destinations, keep=keep),
                                     rows))
            done = [row for row, error in zip(rows, outcomes, strict=True) if error is None]
            with spool.store.write():
                spool.store.mark_holds_done(done, spool.clock.now())
                for row, error in zip(rows, outcomes, strict=True):
                    if error is not None:
                        spool.store.mark_hold_failed(row, error)
                        report.failed.append((row.key, error))
            for row in done:
                if row.state == HoldState.PENDING:
                    report.applied += 1
                elif row.key in keep:
                    report.kept += 1
                else:
                    report.lifted += 1
            if progress is not None:
                progress(len(rows))
    return report


def _kept_keys(store: SpoolStore, rows: Sequence[HoldRow]) -> set[str]:
    """The keys of releasing rows another open case still holds (their hold stays)."""
    kept: set[str] = set()
    releasing: dict[str, list[str]] = {}
    for row in rows:
        if row.state == HoldState.RELEASING:
            releasing.setdefault(row.case_id, []).append(row.key)
    for case_id, keys in releasing.items():
        kept |= store.covered_elsewhere(case_id, keys)
    return kept


def _one(row: HoldRow, destinations: Mapping[str, Destination], keep: set[str]) -> str | None:
    """Apply (or lift) one row's hold at its store; None when done, else why not."""
    destination = destinations.get(row.project_id)
    if destination is None:
        return f"project {row.project_id} has no destination open here"
    if row.destination_url and row.destination_url != destination.url:
        return (f"the object is at {row.destination_url}, not at the project's destination"
                f" {destination.url}")
    if row.state == HoldState.RELEASING and row.key in keep:
        return None  # another open case holds it: the store's hold stays
    try:
        destination.set_legal_hold(row.key, row.version_id, row.state == HoldState.PENDING,
                                   row.case_id)
    except SmError as exc:
        return str(exc)
    return None


def hold_new_matches(store: SpoolStore, settled: list[Settled]) -> int:
    """The settle hook: each message settling as stored that an open case of its project
    matches gets a `pending` row, in the settling transaction; how many."""
    stored: dict[str, list[str]] = {}
    for item in settled:
        if item.state == State.STORED:
            stored.setdefault(item.project_id, []).append(item.message_id)
    if not stored:
        return 0
    cases = [case for case in store.hold_cases(None, True) if case.project_id in stored]
    added = 0
    now = store.clock.now()
    for case in cases:
        added += store.add_hold_rows(case.case_id, case.index_filter(),
                                     stored[case.project_id], now)
    return added


def holds_on_settle(spool: Spool) -> None:
    """Give every message this process settles as stored its open cases' holds (the hook
    `sm run` and `sm replay` register)."""

    def hook(settled: list[Settled]) -> None:
        hold_new_matches(spool.store, settled)

    spool.on_settled(hook)


def case_document(spool: Spool, case: HoldCase) -> dict[str, Any]:
    """`sm hold show --json`: exactly the SPEC's fields."""
    objects, pending, _failing = spool.store.hold_counts(case.case_id)
    return {"case_id": case.case_id, "project_id": case.project_id, "filters": case.filters,
            "note": case.note, "created_at": to_rfc3339(case.created_at),
            "released_at": to_rfc3339(case.released_at), "objects": objects,
            "pending": pending}


def holding_cases_of(spool: Spool, entries: Sequence[Any]
                     ) -> dict[tuple[str, str], list[str]]:
    """(project, message id) -> the open cases holding it, for indexed `entries` (with
    `project_id` and `message_id`): the export's `holds` column."""
    by_project: dict[str, list[str]] = {}
    for entry in entries:
        by_project.setdefault(entry.project_id, []).append(entry.message_id)
    if not by_project or not spool.store.hold_figures()[0]:
        return {}
    found: dict[tuple[str, str], list[str]] = {}
    for project_id, message_ids in by_project.items():
        for message_id, cases in spool.store.holding_cases(project_id, message_ids).items():
            found[(project_id, message_id)] = cases
    return found


def _candidates(recipient: str, region: str | None, digests: Sequence[Digest]) -> set[str]:
    """Every hash `recipient` may be stored under: SHA-256's and each keyed digest's."""
    return {hash_ for digest in (sha256_hex, *digests)
            for hash_ in recipient_hash_candidates(recipient, region, digest)}


def cases_covering_recipient(spool: Spool, project_id: str, recipient: str,
                             region: str | None = None,
                             digests: Sequence[Digest] = ()) -> list[str]:
    """The open cases of a project whose filters reach `recipient` (any identifier, in any of
    the forms it may be stored under): a case naming one of its hashes, a case without a
    recipient filter that matches one of its stored messages, or a case already holding one
    of them. Erasure refuses while this is not empty."""
    hashes = _candidates(recipient, region, digests)
    if not hashes:
        return []
    cases = spool.store.hold_cases(project_id, True)
    if not cases:
        return []
    mine = IndexFilter(recipient_hashes=tuple(sorted(hashes)), project_id=project_id)
    messages = [str(row[1]) for row in spool.store.find_entries(mine, None)]
    holding = spool.store.holding_cases(project_id, messages) if messages else {}
    held_by = {case_id for cases_of in holding.values() for case_id in cases_of}
    covering = []
    for case in cases:
        named = set(case.filters.get("recipient_hashes") or ())
        if named & hashes or case.case_id in held_by:
            covering.append(case.case_id)
        elif not named and messages:
            wanted = case.index_filter()
            probe = IndexFilter(recipient_hashes=tuple(sorted(hashes)),
                                message_id=wanted.message_id, campaign_id=wanted.campaign_id,
                                project_id=project_id, medium=wanted.medium,
                                since=wanted.since, until=wanted.until)
            if spool.store.find_entries(probe, 1):
                covering.append(case.case_id)
    return covering
