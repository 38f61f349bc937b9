"""Delivery evidence of an encrypted project (SPEC 9.5 item 4 with SPEC 9.3): the provider's
event holds addresses, so its evidence object is sealed under the message's recipient key,
bound to the evidence object's own key. The bucket's bytes hold no address; the audit hashes
the stored bytes and stays clean; after `sm forget` the recipient's key is gone, so neither
the message nor its evidence opens with any key the spool holds."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

from stored_messages_cli.clock import SystemClock
from stored_messages_cli.config.settings import load_settings
from stored_messages_cli.message.envelope import parse_envelope
from stored_messages_cli.spool import Spool
from stored_messages_cli.webhooks import make_receiver
from tests.support.fixtures.core import EMAIL_MESSAGE, jsonl
from tests.support.investigation_support import build_target, cli_for, connect
from tests.support.provider_signing import SnsSigner, ses_event
from tests.support.spool_db import rows

PROJECT = "12345"


def test_evidence_of_an_encrypted_project_is_sealed_and_erased_with_its_recipient(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    signer = SnsSigner(tmp_path / "sns")
    (home / "config.toml").write_text('encryption = "per-recipient"\n')
    target = build_target("file", tmp_path / "bucket", None)
    cli = cli_for(home)
    connect(cli, target, PROJECT)
    config = home / "config.toml"
    config.write_text(config.read_text() + f'\n[projects."{PROJECT}".providers.ses]\n'
                      f'trust_store = "{signer.pem_path.parent}"\n')
    message = copy.deepcopy(EMAIL_MESSAGE)
    message.pop("sent_at")
    message["provider"] = {"name": "ses", "message_id": "0100-sealed-1"}
    assert cli("ingest", "-", input=jsonl(message)).exit_code == 0
    body = json.dumps(signer.sign(ses_event("Delivery", "0100-sealed-1", sns_id="sns-s-1"))
                      ).encode()
    with Spool.open(home=home) as spool:
        receiver = make_receiver(spool, load_settings(config), SystemClock())
        assert receiver is not None
        status, answer = receiver.receive("ses", PROJECT, body, {
            "x-amz-sns-message-type": "Notification"}, "https://hooks/")
    assert status == 200, answer
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output

    mid = message["message_id"]
    relative = f"_sm/evidence/{PROJECT}/{mid}/sns-s-1.json.gz"
    stored = gzip.decompress(target.read(f"{target.key_prefix}{relative}"))
    for plain in (b"ann@example.com", b"0100-sealed-1", b"Delivery", b"body_base64"):
        assert plain not in stored  # nothing of the request is readable in the bucket
    evidence = parse_envelope(stored)
    [message_key] = [k for k in target.keys() if k.endswith(f"{mid}.json.gz")]
    sealed_message = parse_envelope(gzip.decompress(target.read(message_key)))
    assert evidence.kid == sealed_message.kid  # the same recipient key seals both

    audited = cli("--json", "audit")
    [project] = json.loads(audited.stdout)["projects"]
    assert audited.exit_code == 0 and project["findings"] == [], project

    recipient = message["recipient"]["email"]
    forgot = cli("forget", "--project", PROJECT, "--recipient", recipient, "--reason", "GDPR")
    assert forgot.exit_code == 0, forgot.output
    # the key that sealed the evidence is destroyed: its wrapped bytes are gone from the spool
    [(wrapped,)] = rows(home / "spool.db", 'SELECT "wrapped" FROM "recipient_keys"'
                        ' WHERE "kid" = ?', (evidence.kid,))
    assert wrapped is None
    audited = cli("--json", "audit")
    assert audited.exit_code == 0, audited.output  # the stored bytes did not change
