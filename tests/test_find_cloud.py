"""`sm find --remote` and `sm fetch` on GCS (gcp-storage-emulator) and Azure (Azurite), through
the real SDKs: an investigator's fresh laptop finds by every identifier through the manifests,
by the key's identifier only without them (and says so), fetches the exact bytes, catches an
altered object, and with `--case` leaves the access record in the bucket."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence import access_log
from tests.support.fixtures.core import jsonl
from tests.support.investigation_support import (
    Invoke,
    canonical,
    cli_for,
    email,
    gunzip,
    sha256_hex,
    sms,
)

ANN = "ann.lee@example.com"
ANN_HASH = sha256_hex(ANN.encode())


def mail() -> dict[str, Any]:
    message = email("mail-1", to=ANN)
    message["recipient"] = {"email": ANN, "user_id": "42"}
    return message


MESSAGES = [mail(), sms("sms-1")]  # the SMS is keyed by user id u-9, also has a phone number
MAIL_KEY = f"archive/email/12345/{ANN_HASH}/111/mail-1.json.gz"
SMS_KEY = f"archive/sms/12345/{sha256_hex(b'u-9')}/unassociated/sms-1.json.gz"


@dataclass
class Bucket:
    """Raw access to one emulated bucket or container, behind sm's back."""

    kind: str
    url: str
    client: Any
    name: str

    def read(self, key: str) -> bytes:
        if self.kind == "gcs":
            return self.client.bucket(self.name).blob(key).download_as_bytes(
                raw_download=True)
        return self.client.get_blob_client(self.name, key).download_blob().readall()

    def keys(self, prefix: str = "") -> list[str]:
        if self.kind == "gcs":
            return sorted(b.name for b in self.client.list_blobs(self.name, prefix=prefix))
        container = self.client.get_container_client(self.name)
        return sorted(b.name for b in container.list_blobs(name_starts_with=prefix))

    def delete(self, key: str) -> None:
        if self.kind == "gcs":
            self.client.bucket(self.name).blob(key).delete()
        else:
            self.client.get_blob_client(self.name, key).delete_blob()

    def overwrite(self, key: str, body: bytes, payload_sha256: str) -> None:
        """Replace an object keeping sm's metadata, as a careless admin's tool would."""
        if self.kind == "gcs":
            blob = self.client.bucket(self.name).blob(key)
            blob.metadata = {"sm-payload-sha256": payload_sha256}
            blob.upload_from_string(body, content_type="application/gzip")
        else:
            self.client.get_blob_client(self.name, key).upload_blob(
                body, overwrite=True, metadata={"sm_payload_sha256": payload_sha256})


@pytest.fixture(params=["gcs", "azure"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    if request.param == "gcs":
        client = request.getfixturevalue("gcs_client")
        name = request.getfixturevalue("gcs_bucket")
        return Bucket("gcs", f"gs://{name}/archive/", client, name)
    service = request.getfixturevalue("azure_service")
    name = request.getfixturevalue("azure_container")
    return Bucket("azure", f"az://{name}/archive/", service, name)


def connect(cli: Invoke, bucket: Bucket) -> None:
    result = cli("connect", bucket.url, "--project", "12345", "--allow-insecure-endpoint")
    assert result.exit_code == 0, result.output


@pytest.fixture
def stored(bucket: Bucket, tmp_path: Path) -> Bucket:
    """The two messages archived by `sm run` (which seals their manifest beside them)."""
    server = cli_for(tmp_path / "server")
    connect(server, bucket)
    assert server("ingest", "-", input=jsonl(*MESSAGES)).exit_code == 0
    ran = server("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == 2
    assert bucket.keys("archive/_sm/manifests/12345/")
    return bucket


def laptop(folder: Path, bucket: Bucket) -> Invoke:
    cli = cli_for(folder)
    connect(cli, bucket)
    return cli


def remote_ids(cli: Invoke, *args: str) -> tuple[list[str], str]:
    result = cli("--json", "find", "--remote", *args)
    assert result.exit_code == 0, result.output
    return [m["message_id"] for m in json.loads(result.stdout)], result.stderr


def test_remote_find_by_every_identifier_through_the_manifests(stored: Bucket,
                                                               tmp_path: Path) -> None:
    cli = laptop(tmp_path / "laptop", stored)
    for recipient, expected in ((f"  {ANN.upper()} ", ["mail-1"]), ("42", ["mail-1"]),
                                ("u-9", ["sms-1"]), ("+15555550100", ["sms-1"]),
                                ("nobody@example.com", [])):
        ids, stderr = remote_ids(cli, "--recipient", recipient)
        assert ids == expected, recipient
        assert "Project 12345: searched 1 manifest segment(s) (every identifier" in stderr
    found = json.loads(cli("--json", "find", "--remote", "--recipient", "42").stdout)
    assert [(f["key"], f["payload_sha256"]) for f in found] == [
        (MAIL_KEY, sha256_hex(gunzip(stored.read(MAIL_KEY))))]
    # what the remote finds read is in the laptop's index: fetch goes straight to it
    fetched = cli("fetch", "sms-1")
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout_bytes == gunzip(stored.read(SMS_KEY))
    assert "not in the local index" not in fetched.stderr
    html = cli("fetch", "mail-1", "--part", "html")
    assert html.stdout_bytes == b"<p>mail-1</p>"


def test_remote_find_without_manifests_uses_the_key_prefix_and_says_so(
        stored: Bucket, tmp_path: Path) -> None:
    for key in stored.keys("archive/_sm/"):
        stored.delete(key)
    cli = laptop(tmp_path / "laptop", stored)
    ids, stderr = remote_ids(cli, "--recipient", ANN)
    assert ids == ["mail-1"]
    assert "no manifests in the bucket; searched by key prefix" in stderr
    assert remote_ids(cli, "--recipient", "u-9")[0] == ["sms-1"]
    # only the identifier the key was made from finds a message by its prefix
    assert remote_ids(cli, "--recipient", "+15555550100")[0] == []
    assert remote_ids(cli, "--recipient", "42")[0] == []


def test_fetch_on_a_fresh_laptop_lists_the_bucket(stored: Bucket, tmp_path: Path) -> None:
    cli = laptop(tmp_path / "laptop", stored)
    fetched = cli("--json", "fetch", "sms-1", "--part", "body")
    assert fetched.exit_code == 0, fetched.output
    record = json.loads(fetched.stdout)
    assert (record["key"], record["content"], record["verified"]) == (
        SMS_KEY, "Code 123456", True)
    assert "is not in the local index; listing the bucket" in fetched.stderr
    again = cli("fetch", "sms-1", "--part", "json")
    assert again.stdout_bytes == canonical(
        dict(MESSAGES[1], project_id="12345", schema_version=1))
    assert "not in the local index" not in again.stderr


def test_an_altered_object_fails_remote_find_and_fetch(stored: Bucket, tmp_path: Path) -> None:
    original = gunzip(stored.read(MAIL_KEY))
    forged = original.replace(b"<p>mail-1</p>", b"<p>mail-X</p>")
    stored.overwrite(MAIL_KEY, gzip.compress(forged, mtime=0), sha256_hex(original))
    cli = laptop(tmp_path / "laptop", stored)
    found = cli("--json", "find", "--remote", "--recipient", ANN)
    assert found.exit_code == 1
    assert json.loads(found.stdout) == []
    assert f"Error: checksum mismatch for {MAIL_KEY}" in found.stderr
    fetched = cli("fetch", "mail-1")
    assert fetched.exit_code == 1
    assert fetched.stdout_bytes == b""
    assert f"checksum mismatch for {MAIL_KEY}" in fetched.stderr


def test_a_case_leaves_the_access_record_in_the_bucket(stored: Bucket, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    clock = FakeClock(1_800_000_000.0)
    monkeypatch.setattr(access_log, "SystemClock", lambda: clock)
    monkeypatch.setattr(access_log, "random_suffix", lambda: "00000000000000aa")
    home = tmp_path / "laptop"
    cli = laptop(home, stored)
    found = cli("find", "--remote", "--recipient", "+15555550100", "--case", "CASE-7")
    assert found.exit_code == 0, found.output
    clock.advance(1)
    assert cli("fetch", "sms-1", "--case", "CASE-7").exit_code == 0
    lines = (home / "access.log").read_bytes().splitlines(keepends=True)
    keys = stored.keys("archive/_sm/access/")
    assert keys == ["archive/_sm/access/CASE-7/20270115T080000Z-00000000000000aa.json",
                    "archive/_sm/access/CASE-7/20270115T080001Z-00000000000000aa.json"]
    assert [stored.read(key) for key in keys] == lines
    first = json.loads(lines[0])
    assert (first["command"], first["filters"]["remote"], first["messages"]) == (
        "find", True, [{"project_id": "12345", "message_id": "sms-1", "key": SMS_KEY}])
    assert b"5555550100" not in b"".join(lines)
