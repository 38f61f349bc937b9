"""Provider webhooks through a real `sm serve` (SPEC 9.3): a signed SES notification posted
to `/v1/providers/ses/{project}` over the Unix socket confirms the message recorded awaiting
confirmation; a tampered copy is 401 and changes nothing; a provider the project does not
configure is 404; `sm run --once` then archives the message and its evidence, byte for byte."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import EMAIL_MESSAGE
from tests.support.investigation_support import ArchiveTarget, build_target, cli_for, connect
from tests.support.provider_signing import SnsSigner, ses_event
from tests.support.serve_http import ServeProcess, UnixHTTPConnection, call, post, short_dir

PROJECT = "12345"
HOOK = f"/v1/providers/ses/{PROJECT}"
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8",
               "x-amz-sns-message-type": "Notification"}


class Served:
    """A home with an SES provider configured, its folder destination and its `sm serve`."""

    def __init__(self, folder: Path, target: ArchiveTarget, signer: SnsSigner,
                 process: ServeProcess) -> None:
        self.folder = folder
        self.home = folder / "home"
        self.target = target
        self.signer = signer
        self.process = process
        self.socket_path = folder / "s.sock"

    def conn(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.socket_path)

    def state(self, message_id: str) -> str | None:
        with Spool(self.home / "spool.db") as spool:
            row = spool.message_state(PROJECT, message_id)
        return None if row is None else str(row["state"])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    folder = short_dir()
    home = folder / "home"
    target = build_target("file", folder / "bucket", None)
    connect(cli_for(home), target, PROJECT)
    signer = SnsSigner(folder / "sns")
    config = home / "config.toml"
    config.write_text(config.read_text() + f'\n[projects."{PROJECT}".providers.ses]\n'
                      f'trust_store = "{signer.pem_path.parent}"\n')
    process = ServeProcess(home, "--socket", str(folder / "s.sock"), log=folder / "serve.log")
    running = Served(folder, target, signer, process)
    try:
        process.wait_ready(running.conn)
        yield running
    finally:
        code = process.stop()
        log = (folder / "serve.log").read_text()
        shutil.rmtree(folder, ignore_errors=True)
        assert code == 0, log


def awaiting(message_id: str, provider_id: str) -> dict[str, Any]:
    message = copy.deepcopy(EMAIL_MESSAGE)
    message.pop("sent_at")
    message.update(message_id=message_id, provider={"name": "ses", "message_id": provider_id})
    return message


def test_a_signed_event_confirms_the_message_and_is_archived_as_evidence(
        served: Served) -> None:
    conn = served.conn()
    status, summary, _ = post(conn, "/v1/messages", awaiting("hook-1", "0100-hook-1"))
    assert status == 202 and summary["accepted"] == 1, summary
    assert served.state("hook-1") == "awaiting_confirmation"

    body = json.dumps(served.signer.sign(ses_event("Delivery", "0100-hook-1",
                                                   sns_id="sns-hook-1"))).encode()
    status, answer, _ = call(conn, "POST", HOOK, body, SNS_HEADERS)
    assert status == 200, answer
    assert answer["events"][0]["applied"] == "confirmed"
    assert served.state("hook-1") == "queued"

    ran = cli_for(served.home)("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    key = f"{served.target.key_prefix}_sm/evidence/{PROJECT}/hook-1/sns-hook-1.json.gz"
    document = json.loads(gzip.decompress(served.target.read(key)))
    assert base64.b64decode(document["body_base64"]) == body  # the bytes the server received
    assert document["verified"] is True


def test_a_tampered_event_is_401_and_changes_nothing(served: Served) -> None:
    conn = served.conn()
    status, _, _ = post(conn, "/v1/messages", awaiting("hook-2", "0100-hook-2"))
    assert status == 202
    signed = served.signer.sign(ses_event("Delivery", "0100-hook-2", sns_id="sns-hook-2"))
    with Spool(served.home / "spool.db") as spool:
        before = spool.deliveries.counts()
    tampered = json.dumps(signed).replace("0100-hook-2", "0100-hook-1").encode()
    status, answer, _ = call(conn, "POST", HOOK, tampered, SNS_HEADERS)
    assert status == 401, answer
    assert served.state("hook-2") == "awaiting_confirmation"
    with Spool(served.home / "spool.db") as spool:
        assert spool.deliveries.counts() == before  # no event kept, not even as an orphan


def test_a_provider_the_project_does_not_configure_is_404(served: Served) -> None:
    status, answer, _ = call(served.conn(), "POST", f"/v1/providers/mailgun/{PROJECT}",
                             b"{}", {"Content-Type": "application/json"})
    assert status == 404 and "error" in answer
    status, _, _ = call(served.conn(), "POST", "/v1/providers/ses/999", b"{}",
                        {"Content-Type": "application/json"})
    assert status == 404
