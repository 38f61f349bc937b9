"""Build spool_v0_1_0.sql: a spool of the 0.1.0 layout holding messages in every state.

It ran once, with the code of release 0.1.0 (commit 1a0f9c9), as
`PYTHONPATH=. python tests/support/legacy/build_legacy_spool.py OUT.sql`; it is kept to show
how the fixture was made, and does not run against later code.
"""

import copy
import pathlib
import sys
import tempfile

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.spool import Failed, Retry, Spool, Stored  # type: ignore[attr-defined]
from tests.support.fixtures.core import EMAIL_MESSAGE, PUSH_MESSAGE, SMS_MESSAGE

OWNER = "host:1:abc"


def msg(base, mid):
    m = copy.deepcopy(base)
    m["message_id"] = mid
    return m


def unconfirmed(mid):
    return {k: v for k, v in msg(EMAIL_MESSAGE, mid).items() if k not in ("sent_at", "provider")}


out = pathlib.Path(sys.argv[1])
clock = FakeClock(1_790_000_000.0)
s = Spool(pathlib.Path(tempfile.mkdtemp()) / "spool.db", clock=clock)
s.record(msg(EMAIL_MESSAGE, "stored-1"))
s.record(msg(SMS_MESSAGE, "retry-1"))
s.record(msg(PUSH_MESSAGE, "failed-1"))
s.record(msg(EMAIL_MESSAGE, "queued-1"))
s.record(msg(EMAIL_MESSAGE, "expired-1"))
s.record(unconfirmed("awaiting-1"))
s.record(unconfirmed("bounced-1"))
s.record_send_failure(12345, "bounced-1", reason="hard bounce")
s.record(unconfirmed("late-1"))
clock.advance(25 * 3600)
s.discard_unconfirmed(24 * 3600)
s.record(unconfirmed("awaiting-1"))
claimed = {c.message_id: c for c in s.claim(OWNER, "12345", 10, lease_seconds=300)}
s.settle(OWNER, [
    Stored(claimed["stored-1"].row_id, claimed["stored-1"].key, "file:///archive/", None),
    Retry(claimed["retry-1"].row_id, "rate_limited", clock.now() + 60, "SlowDown / HTTP 503"),
    Failed(claimed["failed-1"].row_id,
           "conflict: file:///archive/x already exists with other content"),
    Retry(claimed["expired-1"].row_id, "unreachable", clock.now() + 8 * 3600,
          "ConnectionRefused"),
])
s.release(OWNER)
s.set_health("12345", "file:///archive/", "unreachable", next_probe_at=clock.now() + 8 * 3600,
             last_error="ConnectionRefused")
clock.advance(8 * 86400)
s.expire_overdue("12345", 7 * 86400)
s.conn.execute("INSERT INTO rejected (source, line, reason, raw, rejected_at)"
               " VALUES ('in.jsonl', 3, 'not valid JSON (Expecting value)', '{', 1790000000.0)")
version = s.conn.execute("PRAGMA user_version").fetchone()[0]
lines = [f"-- spool of the 0.1.0 layout (user_version {version}); built by that release's code",
         f"PRAGMA user_version = {version};", *s.conn.iterdump()]
out.write_text("\n".join(lines) + "\n")
