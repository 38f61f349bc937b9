"""The legal hold ledger on each spool backend (`spool/holds.py`): a case's rows from the
archive index, paging through what is left, marking done with its log entries exactly once,
overlap between open cases, release, the figures; the settle hook's rows for new matches;
and `cases_covering_recipient` for erasure."""

from __future__ import annotations

import json

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence.holds import (
    case_filters,
    cases_covering_recipient,
    hold_new_matches,
)
from stored_messages_cli.message import recipient_hash
from stored_messages_cli.spool import Settled, Spool
from stored_messages_cli.spool.holds import HoldCase
from stored_messages_cli.states import HoldState, State

PROJECT = "12345"


def index(spool: Spool, count: int, *, who: str = "ann", campaign: str = "spring",
          start: int = 0) -> list[str]:
    """Index `count` stored emails of `who`; their message ids."""
    rhash = recipient_hash({"email": f"{who}@example.com"})
    ids = [f"{who}-{start + i}" for i in range(count)]
    spool.index.add_learnt([
        ((PROJECT, message_id, "email", "blast", campaign, rhash,
          f"2026-11-0{1 + i % 9}T09:00:00Z",
          f"archive/email/{PROJECT}/{rhash}/{campaign}/{message_id}.json.gz", "ab" * 32,
          f"v-{message_id}", "s3://bucket/archive/", None), [rhash])
        for i, message_id in enumerate(ids)])
    return ids


def open_case(spool: Spool, case_id: str, **filters: str) -> int:
    case = HoldCase(case_id, PROJECT, case_filters(**filters), None, spool.clock.now())
    with spool.store.write():
        assert spool.store.add_case(case)
        return spool.store.add_hold_rows(case_id, case.index_filter(), None, spool.clock.now())


def test_a_case_holds_what_it_matches_and_marks_each_once_with_its_entry(
        spool: Spool, clock: FakeClock) -> None:
    ann = index(spool, 5)
    index(spool, 3, who="bob")
    assert open_case(spool, "c1", recipient="ann@example.com") == 5
    with spool.store.write():  # opening it again adds nothing
        case = spool.store.hold_case("c1")
        assert case is not None and case.filters["recipient_hashes"]
        assert spool.store.add_hold_rows("c1", case.index_filter(), None, 0) == 0
        assert not spool.store.add_case(case)
    first = spool.store.holds_to_do("c1", None, None, 3)
    assert [r.message_id for r in first] == sorted(ann)[:3]
    rest = spool.store.holds_to_do(None, [PROJECT], (first[-1].case_id, first[-1].message_id),
                                   10)
    assert [r.message_id for r in rest] == sorted(ann)[3:]
    assert {r.state for r in first + rest} == {HoldState.PENDING}
    assert first[0].version_id == f"v-{first[0].message_id}"
    clock.advance(10)
    with spool.store.write():
        assert spool.store.mark_holds_done(first + rest, clock.now()) == 5
        assert spool.store.mark_holds_done(first, clock.now()) == 0  # another process did
        spool.store.mark_hold_failed(first[0], "ignored: it is applied")
    outcomes = spool.evidence.open_outcomes(PROJECT)
    assert sorted(m for m, outcome, _key in outcomes if outcome == "hold") == sorted(ann)
    assert spool.store.hold_counts("c1")[:2] == (5, 0)
    assert spool.store.hold_figures() == (1, 0, 0)
    index(spool, 1, start=5)
    with spool.store.write():
        assert spool.store.add_hold_rows("c1", case.index_filter(), None, clock.now()) == 1
    [late] = spool.store.holds_to_do("c1", None, None, 10)
    for attempt in range(3):
        assert spool.store.hold_figures() == (1, 1, 0)
        with spool.store.write():
            spool.store.mark_hold_failed(late, f"attempt {attempt}")
    assert spool.store.hold_figures() == (1, 1, 1)  # failing: `sm status --check` says so
    assert spool.store.hold_counts("c1") == (6, 1, 1)
    applied = spool.store.applied_holds(PROJECT)
    assert sorted(m for m, _k, _v, _c in applied) == sorted(ann)
    assert spool.store.holding_cases(PROJECT, [ann[0], "bob-0"]) == {ann[0]: ["c1"]}


def test_release_keeps_what_another_open_case_holds(spool: Spool, clock: FakeClock) -> None:
    ann = index(spool, 3, campaign="spring")
    index(spool, 2, campaign="autumn", start=3)
    open_case(spool, "by-person", recipient="ann@example.com")
    open_case(spool, "spring", campaign_id="spring")
    with spool.store.write():
        spool.store.mark_holds_done(spool.store.holds_to_do(None, None, None, 100),
                                    clock.now())
        assert spool.store.release_case("by-person", clock.now()) == 5
    releasing = spool.store.holds_to_do("by-person", None, None, 100)
    assert {r.state for r in releasing} == {HoldState.RELEASING}
    kept = spool.store.covered_elsewhere("by-person", [r.key for r in releasing])
    assert kept == {r.key for r in releasing if r.message_id in ann}
    with spool.store.write():
        assert spool.store.mark_holds_done(releasing, clock.now()) == 5
    assert spool.store.hold_counts("by-person")[:2] == (5, 0)
    assert [c.case_id for c in spool.store.hold_cases(PROJECT, True)] == ["spring"]
    assert len(spool.store.hold_cases(None, False)) == 2
    entries = spool.store.take_entries(PROJECT, 100)
    assert [e["outcome"] for e in entries].count("release") == 5
    marks = [json.loads(e["marks"]) for e in entries if e["outcome"] == "release"]
    assert {m["case_id"] for m in marks} == {"by-person"}
    assert spool.store.holding_cases(PROJECT, ann) == {m: ["spring"] for m in ann}


def test_a_hold_applied_after_its_release_is_lifted_again(spool: Spool,
                                                         clock: FakeClock) -> None:
    index(spool, 1)
    open_case(spool, "c1", recipient="ann@example.com")
    [stale] = spool.store.holds_to_do("c1", None, None, 10)  # a worker starts applying it
    with spool.store.write():
        spool.store.release_case("c1", clock.now())
    [releasing] = spool.store.holds_to_do("c1", None, None, 10)
    with spool.store.write():  # the release is done first (nothing applied: no entry)
        assert spool.store.mark_holds_done([releasing], clock.now()) == 1
        assert spool.store.mark_holds_done([stale], clock.now()) == 0  # then the worker
    [again] = spool.store.holds_to_do("c1", None, None, 10)
    assert again.state == HoldState.RELEASING  # its hold may be on: lifted again
    with spool.store.write():
        assert spool.store.mark_holds_done([again], clock.now()) == 1
    assert spool.store.holds_to_do("c1", None, None, 10) == []
    assert spool.evidence.open_outcomes(PROJECT) == []  # never applied: nothing logged


def test_a_settled_message_an_open_case_matches_gets_a_pending_row(
        spool: Spool, clock: FakeClock) -> None:
    index(spool, 1)
    open_case(spool, "c1", recipient="ann@example.com")
    later = index(spool, 2, start=1) + index(spool, 1, who="bob")
    settled = [Settled(0, PROJECT, message_id, State.STORED, None, clock.now())
               for message_id in later]
    with spool.store.write():
        assert hold_new_matches(spool.store, settled) == 2
        assert hold_new_matches(spool.store, settled) == 0
    rows = spool.store.holds_to_do("c1", None, None, 10)
    assert sorted(r.message_id for r in rows) == ["ann-0", "ann-1", "ann-2"]


def test_cases_covering_a_recipient(spool: Spool) -> None:
    index(spool, 2, campaign="spring")
    index(spool, 2, who="bob", campaign="autumn", start=5)
    assert cases_covering_recipient(spool, PROJECT, "ann@example.com") == []
    open_case(spool, "named", recipient="ANN@example.com ")
    open_case(spool, "spring", campaign_id="spring")
    open_case(spool, "autumn", campaign_id="autumn")
    assert cases_covering_recipient(spool, PROJECT, "ann@example.com") == ["named", "spring"]
    assert cases_covering_recipient(spool, PROJECT, "bob@example.com") == ["autumn"]
    assert cases_covering_recipient(spool, PROJECT, "carol@example.com") == []
    assert cases_covering_recipient(spool, "other", "ann@example.com") == []
    with spool.store.write():
        spool.store.release_case("named", spool.clock.now())
    assert cases_covering_recipient(spool, PROJECT, "ann@example.com") == ["spring"]
