"""Group commit of `Spool.record()`: concurrent callers share one durable transaction.

What must hold (the same as one transaction per call): every caller returns only after the
COMMIT that holds its row; each caller sees only its own error; a conflicting or failing
record never rolls back another caller's row; when the shared transaction fails, nothing of
the group is kept and every caller of it is told; a process killed mid-batch loses nothing
it acknowledged. Correctness only: nothing here is timed.
"""

from __future__ import annotations

import copy
import functools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli import InvalidMessage, MessageConflict
from stored_messages_cli.message import parse_message
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.bodies import payload_of
from stored_messages_cli.spool.intake import Intake
from tests.support.spool_db import rows

ROOT = Path(__file__).resolve().parents[2]  # the checkout: its children import this code
THREADS = 8




def on_disk(spool: Spool | Path | str) -> dict[str, tuple[str, bytes | None]]:
    """message_id → (state, payload) as a fresh connection reads the spool."""
    return {r[0]: (r[1], None if r[2] is None else payload_of(bytes(r[2])))
            for r in rows(spool, "SELECT message_id, state, payload FROM messages m"
                          " LEFT JOIN message_bodies b ON b.id = m.id")}


def messages(make_message: Callable[..., dict[str, Any]], prefix: str, count: int
             ) -> list[dict[str, Any]]:
    return [make_message(message_id=f"{prefix}-{i}", recipient={"email": f"{prefix}{i}@x.example"})
            for i in range(count)]


def run_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call on its own thread; returns each one's result or the exception it raised."""
    results: list[Any] = [None] * len(calls)

    def worker(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # handed back to the test
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a record() call never returned"
    return results


def in_background(calls: list[Callable[[], Any]]) -> tuple[threading.Thread, list[Any]]:
    """`run_threads(calls)` on a thread of its own; its results fill the list when done."""
    results: list[Any] = []

    def run() -> None:
        results.extend(run_threads(calls))

    runner = threading.Thread(target=run)
    runner.start()
    return runner, results


def recorder(spool: Spool, message: dict[str, Any]) -> Callable[[], str]:
    return functools.partial(spool.record, message)


def queued_callers(spool: Spool) -> int:
    """Callers waiting for a transaction: queued, or in the group the leader is writing."""
    group = spool.intake._group
    with group._cond:
        return len(group._queue) + len(group._writing)


@pytest.fixture
def held(spool: Spool) -> Iterator[Callable[[int], None]]:
    """Hold the spool's lock so record() callers pile up behind a blocked leader; the returned
    `release(n)` waits until `n` callers wait for a transaction, then lets the leader write."""
    spool.lock.acquire()
    released = False

    def release(followers: int) -> None:
        nonlocal released
        deadline = time.monotonic() + 30
        while queued_callers(spool) < followers:
            assert time.monotonic() < deadline, "callers never queued up"
            time.sleep(0.005)
        spool.lock.release()
        released = True

    yield release
    if not released:
        spool.lock.release()


def trace_statements(spool: Spool, callback: Callable[[str], object] | None) -> None:
    """Call `callback(sql)` with each statement the spool's connection runs."""
    if spool.is_postgres:
        spool._db.session.set_trace_callback(callback)
    else:
        spool.conn.set_trace_callback(callback)


def count_commits(spool: Spool) -> list[str]:
    statements: list[str] = []
    trace_statements(spool,
        lambda sql: statements.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return statements


# ----------------------------------------------------------------------------- sharing


def test_concurrent_records_are_all_durable_and_exact(spool: Spool, make_message) -> None:
    batches = [messages(make_message, f"t{t}", 40) for t in range(THREADS)]
    def record_all(batch: list[dict[str, Any]]) -> list[str]:
        return [spool.record(m) for m in batch]

    results = run_threads([functools.partial(record_all, batch) for batch in batches])
    assert all(r == ["accepted"] * 40 for r in results), results
    stored = on_disk(spool)
    assert len(stored) == THREADS * 40
    for batch in batches:
        for message in batch:
            state, payload = stored[message["message_id"]]
            assert state == "queued"
            assert payload == parse_message(message).payload()


def test_callers_waiting_behind_a_transaction_share_the_next_one(
        spool: Spool, make_message, held) -> None:
    commits = count_commits(spool)
    batch = messages(make_message, "g", THREADS)
    runner, results = in_background([recorder(spool, m) for m in batch])
    held(THREADS)  # the leader (and the callers it gathered) wait for the lock, others queue
    runner.join(timeout=60)
    assert results == ["accepted"] * THREADS
    assert len(commits) <= 2  # the leader's group, then one for all that queued behind it
    assert set(on_disk(spool)) == {m["message_id"] for m in batch}


def test_a_lone_caller_writes_at_once(spool: Spool, make_message) -> None:
    commits = count_commits(spool)
    for message in messages(make_message, "solo", 3):
        assert spool.record(message) == "accepted"
    assert len(commits) == 3
    assert queued_callers(spool) == 0


def test_record_while_holding_the_spool_lock_does_not_deadlock(spool: Spool,
                                                               make_message) -> None:
    with spool.lock:
        assert spool.record(make_message(message_id="inside")) == "accepted"
    assert "inside" in on_disk(spool)


# ----------------------------------------------------------------------------- errors


def test_each_error_goes_to_its_own_caller_and_rolls_back_nothing_else(
        spool: Spool, make_message, held) -> None:
    first = make_message(message_id="taken")
    assert spool.record(first) == "accepted"
    good = messages(make_message, "ok", 4)
    conflicting = make_message(message_id="taken", content={**first["content"], "subject": "x"})
    duplicate = copy.deepcopy(first)
    invalid = make_message(message_id="bad id with spaces")
    calls = [recorder(spool, m) for m in [*good, conflicting, duplicate, invalid]]
    runner, results = in_background(calls)
    held(len(calls))  # every caller queues: the leader validates its group before writing
    runner.join(timeout=60)
    assert results[:4] == ["accepted"] * 4
    assert isinstance(results[4], MessageConflict)
    assert "other content" in str(results[4])
    assert results[5] == "duplicate"
    assert isinstance(results[6], InvalidMessage)
    stored = on_disk(spool)
    assert {m["message_id"] for m in good} <= set(stored)
    assert stored["taken"][1] == parse_message(first).payload()  # the first copy is kept
    assert len(stored) == 5


@pytest.mark.parametrize("where", ["new_row", "apply_after_insert"])
def test_an_exception_in_one_record_of_a_batch_keeps_the_others(
        sm_home: Path, clock, make_message, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """`new_row`: preparing one message's row fails. `apply_after_insert`: a message seen
    before sends the group down the one-by-one path, where one apply fails after writing its
    row. Either way only that caller fails and nothing of it is kept."""
    if where == "new_row":
        new_row = Intake._new_row

        def failing_row(self: Intake, msg: Any, *args: Any) -> Any:
            if msg.message_id == "boom":
                raise RuntimeError("injected")
            return new_row(self, msg, *args)

        monkeypatch.setattr(Intake, "_new_row", failing_row)
    else:
        apply = Intake._apply_message

        def failing(self: Intake, msg: Any, *args: Any) -> str:
            outcome = apply(self, msg, *args)  # its row is written, then the failure
            if msg.message_id == "boom":
                raise RuntimeError("injected")
            return outcome

        monkeypatch.setattr(Intake, "_apply_message", failing)
    with Spool.open(home=sm_home, clock=clock) as spool:
        seen = make_message(message_id="seen")
        assert spool.record(seen) == "accepted"
        spool.lock.acquire()
        batch = [*messages(make_message, "b", 5), make_message(message_id="boom"),
                 copy.deepcopy(seen)]
        runner, results = in_background([recorder(spool, m) for m in batch])
        deadline = time.monotonic() + 30
        while queued_callers(spool) < len(batch):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        spool.lock.release()
        runner.join(timeout=60)
        outcomes = dict(zip([m["message_id"] for m in batch], results, strict=True))
        assert isinstance(outcomes.pop("boom"), RuntimeError)
        assert outcomes.pop("seen") == "duplicate"
        assert set(outcomes.values()) == {"accepted"}
        stored = on_disk(spool)
        assert "boom" not in stored  # nothing of it was kept
        assert set(stored) == {*outcomes, "seen"}


class _FailingCommit:
    """The spool's connection, except that COMMIT fails once (a disk error, say)."""

    def __init__(self, conn: Any, error: type[BaseException]) -> None:
        self._conn = conn
        self._error = error
        self.failed = False

    def trace(self, sql: str) -> None:
        """Fail the first COMMIT (the PostgreSQL session calls this before each statement)."""
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise self._error("disk I/O error (injected)")

    def execute(self, sql: str, *args: Any) -> Any:
        self.trace(sql)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_commit_keeps_nothing_and_tells_every_caller(
        spool: Spool, make_message, held) -> None:
    real = None if spool.is_postgres else spool._db.conn
    batch = messages(make_message, "c", 4)
    if spool.is_postgres:
        import psycopg

        trace_statements(spool, _FailingCommit(None, psycopg.OperationalError).trace)
    else:
        spool._db.conn = _FailingCommit(real, sqlite3.OperationalError)
    try:
        runner, results = in_background([recorder(spool, m) for m in batch])
        held(len(batch))
        runner.join(timeout=60)
    finally:
        if spool.is_postgres:
            trace_statements(spool, None)
        else:
            spool._db.conn = real
    # The caller sees the error (as sqlite3's, or as the spool's SpoolError wrapping it).
    failed = [r for r in results if isinstance(r, Exception) and "injected" in str(r)]
    acknowledged = {m["message_id"] for m, r in zip(batch, results, strict=True)
                    if r == "accepted"}
    assert failed, f"the injected COMMIT failure reached no caller: {results}"
    # Whatever was acknowledged is on disk, whatever failed is not.
    assert set(on_disk(spool)) == acknowledged
    assert len(acknowledged) + len(failed) == len(batch)
    assert spool.record(make_message(message_id="after")) == "accepted"  # the spool still works


# ----------------------------------------------------------------------------- crash

_RECORDER = textwrap.dedent("""
    import sys, threading
    from stored_messages_cli import Spool

    spool = Spool(sys.argv[1])
    out = threading.Lock()

    def work(t):
        for n in range(100000):
            message = {"message_id": f"k{t}-{n}", "project_id": 12345, "medium": "sms",
                       "message_type": "triggered", "recipient": {"user_id": f"k{t}-{n}"},
                       "sent_at": "2026-11-27T17:01:00Z",
                       "content": {"from": "+15555550199", "to": "+15555550100", "body": "hi"}}
            spool.record(message)
            with out:
                sys.stdout.write(message["message_id"] + "\\n")
                sys.stdout.flush()

    for t in range(8):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


def test_a_process_killed_mid_batch_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = os.environ.get("SM_SPOOL_URL") or str(tmp_path / "spool.db")
    proc = subprocess.Popen([sys.executable, "-c", _RECORDER, path], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acknowledged) < 300:
            line = proc.stdout.readline()
            assert line, "the recorder died"
            acknowledged.append(line.strip())
        proc.send_signal(signal.SIGKILL)  # mid-batch: other callers are waiting or writing
        proc.wait()
        acknowledged += [line.strip() for line in proc.stdout.read().splitlines()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored = on_disk(path)
    missing = [m for m in acknowledged if m not in stored]
    assert not missing, f"acknowledged but lost: {missing[:5]}"
    for message_id in acknowledged:
        state, payload = stored[message_id]
        assert state == "queued"
        assert payload is not None and f'"message_id":"{message_id}"'.encode() in payload
