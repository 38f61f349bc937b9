"""Several sender processes record into one spool while `sm run` drains it (SPEC 2, 4)."""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stored_messages_cli.config.projects import ProjectDestination
from stored_messages_cli.config.writer import save_projects
from tests.support.fixtures.core import EMAIL_MESSAGE, SMS_MESSAGE
from tests.support.spool_db import rows

SENDERS = 3
BLOCKS = 10
PER_BLOCK = 22  # a batch of 20, one confirmed later, one single record


def sender(home: str, number: int) -> None:
    """One sender process: single records, batches, and confirm-later messages."""
    import copy

    from stored_messages_cli import Spool

    def message(index: int) -> dict:
        base = copy.deepcopy(EMAIL_MESSAGE if index % 2 else SMS_MESSAGE)
        base["message_id"] = f"s{number}-{index}"
        base["recipient"] = {"user_id": f"user-{index % 17}"}
        return base

    with Spool.open(home=home) as spool:
        for block in range(BLOCKS):
            first = block * PER_BLOCK
            spool.record_many([message(i) for i in range(first, first + 20)])
            pending = message(first + 20)
            sent_at = pending.pop("sent_at")
            spool.record(pending)
            spool.confirm_sent(pending["project_id"], pending["message_id"], sent_at=sent_at)
            spool.record(message(first + 21))


def counts(home: Path) -> dict[str, int]:
    return {r[0]: r[1] for r in rows(home, "SELECT state, COUNT(*) FROM messages GROUP BY state")}


def test_senders_and_the_archiver_share_one_spool(tmp_path: Path) -> None:
    home, archive = tmp_path / "home", tmp_path / "archive"
    archive.mkdir(mode=0o700)
    save_projects(home / "config.toml",
                  {"12345": ProjectDestination(url=f"file://{archive}/")})
    env = dict(os.environ, SM_HOME=str(home), SM_POLL_INTERVAL="0.05")
    daemon = subprocess.Popen([sys.executable, "-m", "stored_messages_cli.cli.app", "run"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    context = multiprocessing.get_context("spawn")
    senders = [context.Process(target=sender, args=(str(home), n)) for n in range(SENDERS)]
    try:
        for process in senders:
            process.start()
        for process in senders:
            process.join(timeout=120)
        assert [p.exitcode for p in senders] == [0] * SENDERS  # no "database is locked"
        total = SENDERS * BLOCKS * PER_BLOCK
        deadline = time.monotonic() + 60
        while counts(home).get("stored", 0) < total and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr.decode()
    assert b"locked" not in stderr
    assert counts(home) == {"stored": total}
    stored = rows(home, "SELECT stored_key, payload_sha256 FROM messages")
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.json.gz"))
    assert files == sorted(key for key, _ in stored)  # every message once, nothing else
    for key, payload_sha in stored:
        payload = gzip.decompress((archive / key).read_bytes())
        assert hashlib.sha256(payload).hexdigest() == payload_sha
