"""`kill -9` of a process receiving provider webhooks, mid-stream, loses nothing that was
answered 200 and applies nothing twice: after a restart that receives every request again
(the provider retries), each event is kept once and each message confirmed once."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stored_messages_cli import Spool
from stored_messages_cli.states import State
from tests.support.fixtures.core import EMAIL_MESSAGE
from tests.support.provider_signing import SnsSigner, ses_event

EVENTS = 60
CHILD = """
import json, sys
from pathlib import Path
from stored_messages_cli import Spool
from stored_messages_cli.clock import SystemClock
from stored_messages_cli.config.providers import SesSettings
from stored_messages_cli.webhooks import Receiver
folder = Path(sys.argv[1])
bodies = json.loads((folder / "bodies.json").read_text())
with Spool(folder / "spool.db") as spool:
    receiver = Receiver(spool, {"12345": {"ses": SesSettings(
        trust_store=str(folder / "sns"))}}, SystemClock())
    for body in bodies:
        status, _ = receiver.receive("ses", "12345", body.encode(), {}, "")
        print(status, flush=True)
"""


def _receive_all(folder: Path, kill_after: int | None) -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert child.stdout is not None
    answers: list[str] = []
    for line in child.stdout:
        answers.append(line.strip())
        if kill_after is not None and len(answers) >= kill_after:
            time.sleep(0.003 * (kill_after % 5))  # land inside a later request
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    return answers


def test_kill_9_mid_stream_then_the_retries_keep_each_event_once(tmp_path: Path) -> None:
    signer = SnsSigner(tmp_path / "sns")
    bodies = [json.dumps(signer.sign(ses_event("Send", f"ses-{i}", sns_id=f"sns-{i}")))
              for i in range(EVENTS)]
    (tmp_path / "bodies.json").write_text(json.dumps(bodies))
    with Spool(tmp_path / "spool.db") as spool:
        messages = []
        for i in range(EVENTS):
            message = copy.deepcopy(EMAIL_MESSAGE)
            message.pop("sent_at")
            message["message_id"] = f"m-{i}"
            message["provider"] = {"name": "ses", "message_id": f"ses-{i}"}
            messages.append(message)
        spool.record_many(messages)

    answered = _receive_all(tmp_path, kill_after=EVENTS // 3)
    assert answered and set(answered) == {"200"}
    with Spool(tmp_path / "spool.db") as spool:
        kept = spool.deliveries.counts()
        assert sum(kept.values()) >= len(answered)  # every 200 was committed
        spool.deliveries.match_orphans()  # what sm run's next turn does

    assert _receive_all(tmp_path, kill_after=None) == ["200"] * EVENTS  # the retries
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.deliveries.counts() == {"matched": EVENTS}
        for i in range(EVENTS):
            row = spool.report.message_state("12345", f"m-{i}")
            assert row is not None and row["state"] == State.QUEUED
            [event] = spool.deliveries.delivery_of("12345", f"m-{i}")
            assert event["applied"] in ("confirmed", "unchanged")
