"""Per-recipient encryption with data keys wrapped by AWS KMS (moto's KMS on the test's moto
server, SPEC 9.5): the spool holds only KMS ciphertexts, reads unwrap through KMS, and
`sm forget` makes the object unreadable although the KMS key itself lives on."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest

from stored_messages_cli.message.envelope import parse_envelope
from tests.support.investigation_support import archive, build_target, cli_for, email
from tests.support.spool_db import rows


def test_kms_wrapped_keys_read_and_erase(moto_endpoint: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_endpoint)
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = kms.create_key(Description="sm test")["KeyMetadata"]["KeyId"]
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'encryption = "per-recipient"\nkms_key_id = "{key_id}"\n')
    target = build_target("s3", tmp_path, moto_endpoint)
    cli = cli_for(home)
    archive(cli, target, [email("mail-1", html="<p>kms secret</p>")])
    [row] = rows(home / "spool.db", "SELECT kid, wrapped, wrapped_with FROM recipient_keys")
    assert row["wrapped_with"] == f"kms:{key_id}"
    assert not (home / "keys" / "master.key").exists()  # KMS, not a master key file
    # the wrapped key is a KMS ciphertext: KMS itself opens it only with sm's context
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=bytes(row["wrapped"]))
    [key] = target.keys()
    body = gzip.decompress(target.read(key))
    assert b"kms secret" not in body and parse_envelope(body).kid == row["kid"]
    fetched = cli("fetch", "mail-1", "--part", "html")
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout_bytes == b"<p>kms secret</p>"
    forgot = cli("--json", "forget", "--project", "12345", "--recipient",
                 "ann.lee@example.com", "--reason", "erasure request 7")
    assert json.loads(forgot.stdout)["keys_destroyed"] == 1
    gone = cli("fetch", "mail-1")
    assert gone.exit_code == 1 and "erased on" in gone.output
    assert "kms secret" not in gone.output
