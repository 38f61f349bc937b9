"""The spool's anchor verbs on each backend (`spool/anchors.py`): the anchors a sealed
checkpoint is owed come back due, with the checkpoint's text, time-stamps before copies; a
failure waits for its next attempt but stays behind; a kept token survives; a done anchor is
no longer behind; manifest writes failing three times are listed."""

from __future__ import annotations

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.spool import Spool
from stored_messages_cli.spool.manifests import NewSegment

PROJECT = "12345"
ORIGIN = "file:///archive/#12345"
COPY_URL = "file:///copy/"
TSA_URL = "https://tsa.example/tsr"


def seal(spool: Spool, seq: int, tree_size: int, at: float, *, written: bool = True) -> str:
    """Record a sealed segment owed a copy and a time-stamp (and, with `written`, its
    segment and checkpoint written); returns its checkpoint text."""
    checkpoint = f"{ORIGIN}\n{tree_size}\nroot{seq}=\n\n\u2014 test sig{seq}\n"
    with spool.store.write():
        spool.store.add_segment(NewSegment(
            project_id=PROJECT, seq=seq, key=f"_sm/manifests/{PROJECT}/{seq:012d}.jsonl.gz",
            sealed_at=at, count=1, prev_sha256=None, body=b"segment %d" % seq, entry_ids=[],
            origin=ORIGIN, log_seq=seq, version=2, tree_size=tree_size, root=f"root{seq}=",
            frontier="[]", checkpoint=checkpoint,
            anchors=(("copy", COPY_URL), ("timestamp", TSA_URL))))
    if written:
        spool.evidence.mark_written(PROJECT, seq, at)
        spool.evidence.mark_checkpoint_written(PROJECT, seq, at)
    return checkpoint


def test_pending_anchors_are_due_oldest_first_with_their_checkpoint(
        spool: Spool, clock: FakeClock) -> None:
    now = clock.now()
    first = seal(spool, 1, 3, now)
    seal(spool, 2, 5, now + 1)
    pending = spool.evidence.pending_anchors(now + 1, 10)
    assert [(a.tree_size, a.kind) for a in pending] == [
        (3, "timestamp"), (3, "copy"), (5, "timestamp"), (5, "copy")]
    assert pending[0].checkpoint == first and pending[0].target == TSA_URL
    assert (pending[0].attempts, pending[0].token, pending[0].last_error) == (0, None, None)
    assert len(spool.evidence.pending_anchors(now + 1, 3)) == 3


def test_a_failed_anchor_waits_for_its_next_attempt_but_stays_behind(
        spool: Spool, clock: FakeClock) -> None:
    now = clock.now()
    seal(spool, 1, 3, now)
    stamp = spool.evidence.pending_anchors(now, 10)[0]
    spool.evidence.mark_anchor_failed(stamp, "HTTP 500 from the TSA", now + 60)
    assert [a.kind for a in spool.evidence.pending_anchors(now + 59, 10)] == ["copy"]
    behind = {a.kind: a for a in spool.evidence.anchors_behind(now + 59)}
    assert (behind["timestamp"].attempts, behind["timestamp"].last_error,
            behind["timestamp"].next_attempt_at) == (1, "HTTP 500 from the TSA", now + 60)
    assert behind["timestamp"].age(now + 59) == 59
    assert [a.kind for a in spool.evidence.pending_anchors(now + 60, 10)] == [
        "timestamp", "copy"]


def test_a_kept_token_survives_and_a_done_anchor_is_no_longer_behind(
        spool: Spool, clock: FakeClock) -> None:
    now = clock.now()
    seal(spool, 1, 3, now)
    stamp, copy = spool.evidence.pending_anchors(now, 10)
    token = b"\x30\x82token bytes"
    spool.evidence.keep_anchor_token(stamp, token)
    assert spool.evidence.anchor_tokens(PROJECT, ORIGIN, 3) == [(TSA_URL, token)]
    assert spool.evidence.pending_anchors(now, 10)[0].token == token
    spool.evidence.mark_anchor_done(stamp, None, now + 5)
    assert spool.evidence.anchor_tokens(PROJECT, ORIGIN, 3) == [(TSA_URL, token)]
    spool.evidence.mark_anchor_done(copy, None, now + 5)
    assert spool.evidence.anchors_behind(now + 5) == []
    assert spool.evidence.pending_anchors(now + 5, 10) == []


def test_anchors_wait_until_their_checkpoint_is_written(spool: Spool, clock: FakeClock
                                                       ) -> None:
    now = clock.now()
    seal(spool, 1, 3, now, written=False)
    assert spool.evidence.pending_anchors(now, 10) == []
    assert len(spool.evidence.anchors_behind(now)) == 2  # owed all the same
    spool.evidence.mark_written(PROJECT, 1, now + 1)
    assert spool.evidence.pending_anchors(now + 1, 10) == []
    spool.evidence.mark_checkpoint_written(PROJECT, 1, now + 2)
    assert len(spool.evidence.pending_anchors(now + 2, 10)) == 2


def test_manifest_writes_failing_three_times_are_listed(spool: Spool, clock: FakeClock) -> None:
    now = clock.now()
    seal(spool, 1, 3, now, written=False)
    seal(spool, 2, 5, now, written=False)
    for attempt in range(3):
        spool.evidence.mark_write_failed(PROJECT, 1, f"AccessDenied {attempt}", now + 60)
        if attempt < 2:
            spool.evidence.mark_write_failed(PROJECT, 2, "SlowDown", now + 60)
    [failing] = spool.evidence.failing_manifest_writes()
    assert (failing["project_id"], failing["seq"], failing["log_seq"], failing["attempts"],
            failing["last_error"]) == (PROJECT, 1, 1, 3, "AccessDenied 2")
    spool.evidence.mark_written(PROJECT, 1, now + 70)
    [still] = spool.evidence.failing_manifest_writes()  # its checkpoint is not written yet
    assert still["seq"] == 1 and still["written_at"] == now + 70
    spool.evidence.mark_checkpoint_written(PROJECT, 1, now + 71)
    assert spool.evidence.failing_manifest_writes() == []


def test_a_next_attempt_beyond_any_retry_is_due_after_the_clock_is_set_back(
        spool: Spool, clock: FakeClock) -> None:
    """A failure recorded while the clock ran a day ahead set the next attempt a day out;
    with `latest` (the longest a retry waits) it is due now, not a day later."""
    now = clock.now()
    seal(spool, 1, 3, now)
    stamp = spool.evidence.pending_anchors(now, 10)[0]
    spool.evidence.mark_anchor_failed(stamp, "timed out", now + 86400 + 60)
    assert [a.kind for a in spool.evidence.pending_anchors(now, 10)] == ["copy"]
    assert [a.kind for a in spool.evidence.pending_anchors(now, 10, now + 3600)] == [
        "timestamp", "copy"]
