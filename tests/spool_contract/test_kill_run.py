"""`kill -9` of `sm run` at random moments loses nothing and duplicates nothing (SPEC 4)."""

from __future__ import annotations

import gzip
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from stored_messages_cli import Spool
from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from stored_messages_cli.message import parse_message
from tests.support.fixtures.core import mixed_messages
from tests.support.spool_db import rows

MESSAGES = 600  # the first kill lands soon after the first store: work is left either way
KILLS = 5


def messages() -> list[dict]:
    return mixed_messages(MESSAGES, lambda index: f"k-{index}")




def stored(home: Path) -> int:
    return int(rows(home, "SELECT COUNT(*) FROM messages WHERE state = 'stored'")[0][0])


def test_sigkill_at_random_moments_then_restart_stores_everything_once(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    home, archive = tmp_path / "home", tmp_path / "archive"
    archive.mkdir(mode=0o700)
    save_projects(home / "config.toml", {"12345": ProjectDestination(url=f"file://{archive}/")})
    sent = messages()
    with Spool.open(home=home) as spool:
        assert spool.record_many(sent) == ["accepted"] * MESSAGES
    env = dict(os.environ, SM_HOME=str(home), SM_POLL_INTERVAL="0.05")
    command = [sys.executable, "-m", "stored_messages_cli.cli.app", "-q", "run"]
    stored_before = 0
    interrupted = 0  # kills that left work undone: the ones that prove something
    for _ in range(KILLS):
        if stored_before == MESSAGES:
            break  # a fast machine finished early; the restart below still has to be clean
        daemon = subprocess.Popen(command + ["--concurrency", "4"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Let it get going, then kill it at a random moment of claiming, uploading or settling.
        deadline = time.monotonic() + 30
        while stored(home) <= stored_before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.15))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=30)
        stored_before = stored(home)
        interrupted += stored_before < MESSAGES
    assert interrupted >= 1, "the kills came too late to interrupt anything"
    final = subprocess.run(command + ["--once"], env=env, capture_output=True, timeout=120)
    assert final.returncode == 0, (seed, final.stderr.decode())

    if not os.environ.get("SM_SPOOL_URL"):
        conn = sqlite3.connect(home / "spool.db")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    states = {r[0]: r[1] for r in rows(home, "SELECT message_id, state FROM messages")}
    assert states == {m["message_id"]: "stored" for m in sent}, seed
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.json.gz"))
    expected = {parse_message(m).key: parse_message(m).payload() for m in sent}
    assert files == sorted(expected), seed  # each message exactly once, nothing else
    for key, payload in expected.items():
        assert gzip.decompress((archive / key).read_bytes()) == payload, (seed, key)
