"""`Report.waiting()` (the store verb `waiting_count`), what `sm serve`'s 429 reads: every
message not settled yet, and nothing settled or discarded, on each backend."""

from __future__ import annotations

from stored_messages_cli.spool import Retry, Spool, Stored
from stored_messages_cli.states import RetryClass


def test_waiting_counts_every_unsettled_state_and_nothing_else(spool: Spool,
                                                               make_message) -> None:
    assert spool.report.waiting() == 0
    spool.record_many([make_message(message_id=f"q{n}") for n in range(5)])
    unconfirmed = make_message(message_id="a1")
    del unconfirmed["sent_at"]
    spool.record(unconfirmed)
    failed = make_message(message_id="a2")
    del failed["sent_at"]
    spool.record(failed)
    spool.record_send_failure(12345, "a2")  # discarded: not waiting
    assert spool.report.waiting() == 6
    claimed = spool.queue.claim("me", "12345", 3, lease_seconds=300)
    assert len(claimed) == 3
    assert spool.report.waiting() == 6  # in flight still waits
    spool.queue.settle("me", [Stored(claimed[0].row_id, claimed[0].key, "file:///x/"),
                              Retry(claimed[1].row_id, RetryClass.UNREACHABLE,
                                    spool.clock.now() + 60, "down")])
    spool.queue.release("me")
    assert spool.report.waiting() == 5  # the stored one is settled; retry_wait waits
    counts = spool.status()["counts"]
    assert spool.report.waiting() == sum(counts[state] for state in (
        "awaiting_confirmation", "queued", "in_flight", "retry_wait"))
