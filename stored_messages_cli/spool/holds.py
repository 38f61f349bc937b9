"""The legal hold ledger in the spool (`hold_cases`, `hold_objects`; SPEC 9.4).

A case is a saved `sm find` query of one project (`HoldCase.filters`); each stored object it
matches has one `hold_objects` row, `pending` until the store's own hold is applied, then
`applied`; releasing the case makes its rows `releasing` until the store's hold is lifted (or
kept, where another open case covers the object), then `released`. Marking a row applied or
released adds its `hold` / `release` entry to the project's open manifest segment in the same
transaction, so the log tells an auditor when evidence was frozen and when it was let go.
Each backend writes the SQL itself (`sqlite/holds.py`, `postgres/holds.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..message import parse_sent_at
from ..states import HoldState, LogOutcome
from .index_filter import IndexFilter

# The filters a case may keep, in the order `sm hold show` prints them.
FILTER_NAMES = ("recipient_hashes", "message_id", "campaign_id", "medium", "since", "until")
CASE_COLUMNS = '"case_id", "project_id", "filters", "note", "created_at", "released_at"'
ROW_COLUMNS = ('"case_id", "project_id", "message_id", "key", "version_id", "destination_url",'
               ' "state", "applied_at", "attempts"')
# What a new row copies from the archive index (after the case id), in this order.
INDEX_COPY = ('"project_id", "message_id", "key", "version_id", "destination_url", "medium",'
              ' "message_type", "campaign_id", "sent_at", "recipient_hash", "payload_sha256"')
# The columns of a `hold` / `release` manifest entry, from its row (`entry_select`).
ENTRY_INSERT = ('"project_id", "message_row", "message_id", "outcome", "stored_key",'
                ' "relative_key", "payload_sha256", "medium", "message_type", "campaign_id",'
                ' "sent_at", "recipient_hash", "settled_at", "marks"')
# A hold failing this many times is a problem an operator sees (`sm status --check`).
FAILING_ATTEMPTS = 3
# Rows with work left: a hold to apply, or one to lift.
TODO_STATES: tuple[HoldState, ...] = (HoldState.PENDING, HoldState.RELEASING)
# Rows that hold their object for an open case (the store's hold stays while one exists).
HOLDING_STATES: tuple[HoldState, ...] = (HoldState.PENDING, HoldState.APPLIED)


@dataclass(frozen=True, slots=True)
class HoldCase:
    """A legal hold case: its id, project, saved filters (`FILTER_NAMES`), note, and when
    it was opened and released (None while open)."""

    case_id: str
    project_id: str
    filters: dict[str, Any]
    note: str | None
    created_at: float
    released_at: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> HoldCase:
        """A `CASE_COLUMNS` row as the driver gave it."""
        case_id, project_id, filters, note, created, released = tuple(row)
        return cls(str(case_id), str(project_id), json.loads(filters), note, float(created),
                   None if released is None else float(released))

    @property
    def is_open(self) -> bool:
        """True until the case is released."""
        return self.released_at is None

    def index_filter(self, message_ids: Sequence[str] | None = None) -> IndexFilter:
        """The case's query over the archive index (one project)."""
        wanted = self.filters

        def moment(name: str) -> datetime | None:
            value = wanted.get(name)
            return parse_sent_at(value) if value else None

        return IndexFilter(recipient_hashes=tuple(wanted.get("recipient_hashes") or ()),
                           message_id=wanted.get("message_id"),
                           campaign_id=wanted.get("campaign_id"),
                           project_id=self.project_id, medium=wanted.get("medium"),
                           since=moment("since"), until=moment("until"))


@dataclass(frozen=True, slots=True)
class HoldRow:
    """One object of a case: where it is (key, version, destination), its state, whether
    the store's hold was ever applied for this case, and the failed attempts so far."""

    case_id: str
    project_id: str
    message_id: str
    key: str
    version_id: str | None
    destination_url: str | None
    state: HoldState
    applied: bool
    attempts: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> HoldRow:
        """A `ROW_COLUMNS` row as the driver gave it."""
        (case_id, project_id, message_id, key, version_id, url, state, applied_at,
         attempts) = tuple(row)
        return cls(str(case_id), str(project_id), str(message_id), str(key), version_id, url,
                   HoldState(state), applied_at is not None, int(attempts or 0))


def entry_marks(row: HoldRow) -> str:
    """The `marks` of a row's log entry: its case and the object's version (compact JSON)."""
    marks: dict[str, Any] = {"case_id": row.case_id}
    if row.version_id:
        marks["version_id"] = row.version_id
    return json.dumps(marks, separators=(",", ":"))


def finished(row: HoldRow) -> tuple[HoldState, LogOutcome, str]:
    """What a row whose store call succeeded becomes: (state, its log entry's outcome, the
    column stamped with the time). A pending row's hold was applied; a releasing one's lifted."""
    if row.state == HoldState.PENDING:
        return HoldState.APPLIED, LogOutcome.HOLD, '"applied_at"'
    return HoldState.RELEASED, LogOutcome.RELEASE, '"released_at"'


class HoldStore(Protocol):
    """The legal hold ledger: cases, the objects each holds, and their log entries."""

    def add_case(self, case: HoldCase) -> bool:
        """Open a case (caller's transaction); False, and nothing written, when its id is
        taken."""
        ...

    def hold_case(self, case_id: str) -> HoldCase | None:
        """One case, open or released."""
        ...

    def hold_cases(self, project_id: str | None, open_only: bool) -> list[HoldCase]:
        """Cases (of one project, or all), oldest first."""
        ...

    def add_hold_rows(self, case_id: str, wanted: IndexFilter,
                      message_ids: Sequence[str] | None, now: float) -> int:
        """A `pending` row for each indexed message matching `wanted` (and, when given, one
        of `message_ids`) the case does not hold yet (caller's transaction); how many."""
        ...

    def holds_to_do(self, case_id: str | None, project_ids: Sequence[str] | None,
                    after: tuple[str, str] | None, limit: int) -> list[HoldRow]:
        """Rows with work left (`pending`, `releasing`) of a case or of projects, ordered by
        (case id, message id) from after `after`."""
        ...

    def covered_elsewhere(self, case_id: str, keys: Sequence[str]) -> set[str]:
        """Those of `keys` another open case holds (pending or applied)."""
        ...

    def mark_holds_done(self, rows: Sequence[HoldRow], now: float) -> int:
        """`pending` rows become `applied` with a `hold` entry, `releasing` rows `released`
        with a `release` entry (when their hold was applied); rows another process moved on
        meanwhile are left alone (caller's transaction). How many were marked."""
        ...

    def mark_hold_failed(self, row: HoldRow, error: str) -> None:
        """Count a failed attempt on a row and keep why (caller's transaction)."""
        ...

    def release_case(self, case_id: str, now: float) -> int:
        """The case is released: its rows not yet released become `releasing` (caller's
        transaction); how many."""
        ...

    def hold_counts(self, case_id: str) -> tuple[int, int, int]:
        """(objects, pending, failing) of a case: its rows; those with work left; those with
        a failed attempt."""
        ...

    def hold_figures(self) -> tuple[int, int, int]:
        """(open cases, rows with work left, those of them that failed `FAILING_ATTEMPTS`
        times or more) for `sm status`."""
        ...

    def holding_cases(self, project_id: str, message_ids: Sequence[str]
                      ) -> dict[str, list[str]]:
        """message id -> the open cases holding it (pending or applied), sorted."""
        ...

    def applied_holds(self, project_id: str) -> list[tuple[str, str, str | None, str]]:
        """(message id, key, version id, case id) of each object an open case holds by the
        ledger (`applied`), by key."""
        ...
