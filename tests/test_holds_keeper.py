"""`sm run`'s hold keeper (`evidence/hold_keeper.py`): pending holds are applied on a thread of
the keeper's own; a row that keeps failing is retried less and less often, not every turn."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence.hold_keeper import KEEP_INTERVAL, HoldKeeper
from stored_messages_cli.evidence.holds import case_filters, open_case
from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import connected_folder

PROJECT = "12345"


def attempts_after(spool: Spool, wanted: int, timeout: float = 10.0) -> list[int]:
    """Each row's failed attempts, once the first reaches `wanted` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = spool.store.holds_to_do(None, None, None, 10)
        if not rows or rows[0].attempts >= wanted or time.monotonic() > deadline:
            return [r.attempts for r in rows]
        time.sleep(0.02)


def test_the_keeper_holds_beside_the_loop_and_backs_off_a_failing_row(
        spool: Spool, clock: FakeClock, tmp_path: Path) -> None:
    destination = connected_folder(f"file://{tmp_path / 'archive'}/")
    good = f"email/{PROJECT}/h/c/good.json.gz"
    destination.put(good, gzip.compress(b"{}", mtime=0), sha256_hex(b"{}"))
    spool.index.add_learnt([
        ((PROJECT, "good", "email", "blast", "c", "h", "2026-11-01T09:00:00Z", good,
          "ab" * 32, None, destination.url, None), ["h"]),
        ((PROJECT, "moved", "email", "blast", "c", "h", "2026-11-01T09:00:00Z",
          f"email/{PROJECT}/h/c/moved.json.gz", "ab" * 32, None, "file:///elsewhere/", None),
         ["h"])])
    open_case(spool, destination, "c1", PROJECT, case_filters(campaign_id="c"))
    keeper = HoldKeeper(spool, {PROJECT: destination}, clock=clock)
    keeper.tick()
    assert attempts_after(spool, 1) == [1]  # "moved" failed once; "good" is done
    assert destination.legal_hold(good, None)
    clock.advance(KEEP_INTERVAL)
    keeper.tick()  # a pass that made progress: the next one is KEEP_INTERVAL later
    assert attempts_after(spool, 2) == [2]
    clock.advance(KEEP_INTERVAL)
    keeper.tick()  # that pass only failed: the interval doubled, nothing starts now
    assert attempts_after(spool, 3, timeout=0.5) == [2]
    clock.advance(KEEP_INTERVAL)
    keeper.tick()
    assert attempts_after(spool, 3) == [3]
    keeper.stop.set()
    keeper.close()
    destination.close()
