"""End to end (SPEC 9.3): a message recorded awaiting confirmation with its provider message
id, an SES event signed with a local certificate, `sm run --once` on a folder and on S3:
the message is confirmed and stored, its evidence object holds the request's exact bytes,
`sm show` lists it, `sm audit` is clean, and an altered or planted evidence object is a
finding."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.clock import SystemClock
from stored_messages_cli.config.settings import load_settings
from stored_messages_cli.spool import Spool
from stored_messages_cli.webhooks import make_receiver
from tests.support.fixtures.core import EMAIL_MESSAGE, jsonl
from tests.support.investigation_support import (
    ArchiveTarget,
    cli_for,
    connect,
    target_for,
)
from tests.support.provider_signing import SnsSigner, ses_event

PROJECT = "12345"


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveTarget:
    return target_for(request, tmp_path)


def _configure_ses(home: Path, trust: Path) -> None:
    config = home / "config.toml"
    config.write_text(config.read_text() + f'\n[projects."{PROJECT}".providers.ses]\n'
                      f'trust_store = "{trust}"\n')


def _receive(home: Path, body: bytes) -> tuple[int, dict[str, Any]]:
    settings = load_settings(home / "config.toml")
    with Spool.open(home=home) as spool:
        receiver = make_receiver(spool, settings, SystemClock())
        assert receiver is not None
        return receiver.receive("ses", PROJECT, body, {"x-amz-sns-message-type":
                                                       "Notification"}, "https://hooks/")


def _audit(cli: Any) -> tuple[int, dict[str, Any]]:
    result = cli("--json", "audit")
    return result.exit_code, json.loads(result.stdout)


def test_a_provider_event_confirms_archives_and_is_evidence(
        target: ArchiveTarget, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = cli_for(home)
    connect(cli, target)
    signer = SnsSigner(tmp_path / "sns")
    _configure_ses(home, signer.pem_path.parent)
    message = copy.deepcopy(EMAIL_MESSAGE)
    message.pop("sent_at")
    message["provider"] = {"name": "ses", "message_id": "0100-e2e-ses"}
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0

    body = json.dumps(signer.sign(ses_event("Delivery", "0100-e2e-ses", sns_id="sns-e2e-1"))
                      ).encode()
    status, answer = _receive(home, body)
    assert status == 200 and answer["events"][0]["applied"] == "confirmed"

    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == 1

    mid = message["message_id"]
    evidence_key = f"{target.key_prefix}_sm/evidence/{PROJECT}/{mid}/sns-e2e-1.json.gz"
    document = json.loads(gzip.decompress(target.read(evidence_key)))
    import base64

    assert base64.b64decode(document["body_base64"]) == body  # the exact request bytes
    assert (document["event"], document["provider"], document["verified"]) == (
        "delivered", "ses", True)
    assert document["headers"] == {"x-amz-sns-message-type": "Notification"}
    assert document["verification"]["method"] == "sns-signature-v2"

    shown = json.loads(cli("--json", "show", mid).stdout)
    assert shown["state"] == "stored"
    assert shown["delivery"] == [{"event": "delivered", "at": "2026-11-27T17:00:00Z",
                                  "provider": "ses", "verified": True, "key": evidence_key}]

    code, audited = _audit(cli)
    [project] = audited["projects"]
    assert (code, project["findings"]) == (0, []), project
    assert project["entries"] == 2  # the stored message and its evidence
    proved = cli("--json", "prove", mid)  # the message's own entry, not its evidence's
    assert proved.exit_code == 0, proved.output
    assert json.loads(proved.stdout)["entry"].count('"outcome":"stored"') == 1

    # the export writes the evidence beside the messages and names it in the load file
    exported = tmp_path / "export"
    result = cli("export", "--message-id", mid, "--project", PROJECT, "--output", str(exported))
    assert result.exit_code == 0, result.output
    relative = f"evidence/{PROJECT}/{mid}/sns-e2e-1.json.gz"
    assert (exported / relative).read_bytes() == target.read(evidence_key)
    [row] = list(csv.DictReader(io.StringIO((exported / "loadfile.csv").read_text())))
    assert row["evidence_files"] == relative
    assert relative in (exported / "SHA256SUMS").read_text()

    # an altered evidence object is a finding
    changed = json.loads(gzip.decompress(target.read(evidence_key)))
    changed["event"] = "bounced"
    target.overwrite(evidence_key, gzip.compress(json.dumps(changed).encode()),
                     payload_sha256=None)
    code, audited = _audit(cli)
    found = [(f["type"], f.get("key")) for f in audited["projects"][0]["findings"]]
    assert code == 1 and ("altered_object", evidence_key) in found
    result = cli("export", "--message-id", mid, "--project", PROJECT, "--output",
                 str(tmp_path / "export-2"))
    assert result.exit_code == 1 and not (tmp_path / "export-2" / relative).exists()

    # a planted evidence object (no log entry) is a finding too
    planted = f"{target.key_prefix}_sm/evidence/{PROJECT}/{mid}/planted.json.gz"
    target.overwrite(planted, gzip.compress(b"{}"), payload_sha256=None)
    found = [(f["type"], f.get("key")) for f in _audit(cli)[1]["projects"][0]["findings"]]
    assert ("unexpected_object", planted) in found
