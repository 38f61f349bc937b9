"""`sm ingest -` is a streaming sink: lines are committed within a second of arriving."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def states(sm_home: Path) -> dict[str, int]:
    path = sm_home / "spool.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
    except sqlite3.OperationalError:
        return {}  # not created yet
    finally:
        conn.close()


def test_lines_from_a_pipe_that_stays_open_are_durable_within_a_second(
        sm_home: Path, make_message) -> None:
    sink = subprocess.Popen(
        [sys.executable, "-m", "stored_messages_cli.cli.app", "--json", "ingest", "-"],
        env=dict(os.environ, SM_HOME=str(sm_home)), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sink.stdin is not None
    try:
        for n in range(3):
            sink.stdin.write((json.dumps(make_message(message_id=f"early-{n}")) + "\n").encode())
        sink.stdin.flush()
        written = time.monotonic()
        deadline = written + 10
        while states(sm_home).get("queued", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert states(sm_home) == {"queued": 3}  # committed while the pipe is still open
        assert time.monotonic() - written < 5  # a second's wait, plus a loaded machine's slack
        assert sink.poll() is None
    except BaseException:
        sink.kill()
        raise
    rest = b"not json\n" + (json.dumps(make_message(message_id="late")) + "\n").encode()
    out, err = sink.communicate(rest, timeout=30)
    assert sink.returncode == 1  # one line was rejected
    document = json.loads(out)
    assert (document["accepted"], document["rejected"]) == (4, 1)
    assert document["errors"] == [{"line": 4, "reason": "not valid JSON (Expecting value)"}]
    assert states(sm_home) == {"queued": 4}
